#!/usr/bin/env python3
"""Traffic probes the NAT gateway failover suite runs on the external host
(inside its network namespace). Each prints one line per event, flushed.

  netprobe.py udp-ping IP PORT INTERVAL_MS SECONDS
      a datagram every INTERVAL_MS from one socket (one source port);
      prints "<unix ms> ok" or "<unix ms> timeout" per datagram.
  netprobe.py tcp-stream IP PORT INTERVAL_MS SECONDS
      one connection to a testapp "ECHO" server, a line every INTERVAL_MS;
      prints "<unix ms> ok <bytes echoed>" / "<unix ms> wait", "<ms> reset"
      (exit 3) when the connection breaks, and "done sent=N received=M".
  netprobe.py echo-server IP PORT
      echoes every connection until it closes; prints "ready" when listening.
  netprobe.py arp-watch IFACE IP INTERVAL_MS SECONDS
      asks who has IP every INTERVAL_MS; prints "<unix ms> <mac>[,<mac>...]"
      with every MAC that answered that one request ("-" for none).
"""
import socket
import struct
import sys
import threading
import time


def now_ms():
    return int(time.time() * 1000)


def udp_ping(ip, port, interval_ms, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((ip, port))
    s.settimeout(interval_ms / 1000)
    end = time.time() + seconds
    while time.time() < end:
        t = now_ms()
        try:
            s.send(b"ping")
            s.recv(2048)
            print(f"{t} ok", flush=True)
        except (socket.timeout, ConnectionRefusedError, OSError):
            print(f"{t} timeout", flush=True)
        left = t / 1000 + interval_ms / 1000 - time.time()
        if left > 0:
            time.sleep(left)


def tcp_stream(ip, port, interval_ms, seconds):
    s = socket.create_connection((ip, port), timeout=5)
    s.settimeout(interval_ms / 1000)
    sent = got = 0
    end = time.time() + seconds
    i = 0
    while time.time() < end:
        t = now_ms()
        line = (f"ECHO {i}\n" if i == 0 else f"tick {i}\n").encode()
        i += 1
        try:
            s.sendall(line)
            sent += len(line)
            b = s.recv(4096)
            if not b:
                print(f"{t} reset", flush=True)
                sys.exit(3)
            got += len(b)
            print(f"{t} ok {got}", flush=True)
        except socket.timeout:
            print(f"{t} wait", flush=True)
        except OSError:
            print(f"{t} reset", flush=True)
            sys.exit(3)
        left = t / 1000 + interval_ms / 1000 - time.time()
        if left > 0:
            time.sleep(left)
    s.settimeout(15)
    try:
        while got < sent:
            b = s.recv(4096)
            if not b:
                print(f"{now_ms()} reset", flush=True)
                sys.exit(3)
            got += len(b)
    except OSError:
        print(f"{now_ms()} reset", flush=True)
        sys.exit(3)
    print(f"done sent={sent} received={got}", flush=True)
    sys.exit(0 if got == sent else 4)


def echo_server(ip, port):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((ip, port))
    srv.listen(16)
    print("ready", flush=True)

    def serve(c):
        with c:
            while True:
                try:
                    b = c.recv(4096)
                except OSError:
                    return
                if not b:
                    return
                c.sendall(b)

    while True:
        c, _ = srv.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def mac_str(b):
    return ":".join(f"{x:02x}" for x in b)


def arp_watch(iface, ip, interval_ms, seconds):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    s.bind((iface, 0))
    with open(f"/sys/class/net/{iface}/address") as f:
        mine = bytes.fromhex(f.read().strip().replace(":", ""))
    # The sender address: any of ours on the interface's subnet.
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.connect((ip, 9))
    src_ip = socket.inet_aton(probe.getsockname()[0])
    target = socket.inet_aton(ip)
    req = (b"\xff" * 6 + mine + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
           + mine + src_ip + b"\x00" * 6 + target)
    end = time.time() + seconds
    while time.time() < end:
        t = now_ms()
        s.send(req)
        seen = []
        deadline = time.time() + interval_ms / 1000
        while True:
            left = deadline - time.time()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                f = s.recv(128)
            except socket.timeout:
                break
            if len(f) < 42 or f[12:14] != b"\x08\x06":
                continue
            op = struct.unpack("!H", f[20:22])[0]
            if op == 2 and f[28:32] == target and f[32:38] == mine:
                m = mac_str(f[22:28])
                if m not in seen:
                    seen.append(m)
        print(f"{t} {','.join(seen) if seen else '-'}", flush=True)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "udp-ping":
        udp_ping(args[0], int(args[1]), int(args[2]), float(args[3]))
    elif cmd == "tcp-stream":
        tcp_stream(args[0], int(args[1]), int(args[2]), float(args[3]))
    elif cmd == "echo-server":
        echo_server(args[0], int(args[1]))
    elif cmd == "arp-watch":
        arp_watch(args[0], args[1], int(args[2]), float(args[3]))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
