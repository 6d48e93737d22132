//! Gratuitous ARP: announce a new EIP so the external network's neighbours
//! and switches learn it is on this gateway now. Sent on a raw packet
//! socket; `arping -U` is the fallback when the socket cannot be used.

use std::net::Ipv4Addr;
use std::process::Command;

/// Builds the Ethernet frame of a gratuitous ARP request for `ip` from `mac`.
pub fn frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]); // broadcast
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes()); // ARP
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // request
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    // target MAC stays zero; target IP = sender IP makes it gratuitous.
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// Sends one gratuitous ARP on `ifindex` through an `AF_PACKET` socket
/// opened in the calling thread's network namespace.
pub fn send_raw(ifindex: u32, mac: [u8; 6], ip: Ipv4Addr) -> std::io::Result<()> {
    let f = frame(mac, ip);
    // SAFETY: plain socket syscalls on a descriptor we own and close; the
    // sockaddr is fully initialised and its size passed correctly.
    unsafe {
        let proto = (libc::ETH_P_ARP as u16).to_be();
        let fd = libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(proto),
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut sa: libc::sockaddr_ll = std::mem::zeroed();
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_protocol = proto;
        sa.sll_ifindex = ifindex as i32;
        sa.sll_halen = 6;
        sa.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        let n = libc::sendto(
            fd,
            f.as_ptr().cast(),
            f.len(),
            0,
            (&sa as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if n < 0 {
            return Err(err);
        }
    }
    Ok(())
}

/// Announces `ip`: the raw socket, or `arping -U -c1 -I iface ip` if that fails.
pub fn announce(iface: &str, ifindex: u32, mac: [u8; 6], ip: Ipv4Addr) -> Result<(), String> {
    match send_raw(ifindex, mac, ip) {
        Ok(()) => Ok(()),
        Err(e) => {
            let out = Command::new("arping")
                .args(["-U", "-c1", "-I", iface, &ip.to_string()])
                .output()
                .map_err(|e2| format!("raw socket: {e}; arping: {e2}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "raw socket: {e}; arping: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_is_a_gratuitous_request() {
        let f = frame([2, 0, 0, 0, 0, 1], "172.16.3.10".parse().unwrap());
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1]);
        assert_eq!(&f[28..32], &[172, 16, 3, 10]);
        assert_eq!(&f[38..42], &[172, 16, 3, 10]);
    }
}
