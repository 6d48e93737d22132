//! Network namespaces: run code with the current thread inside one, open
//! rtnetlink sockets there, and the one ethtool setting the plugin makes.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

/// An open network namespace.
#[derive(Debug)]
pub struct Netns {
    file: File,
}

impl Netns {
    pub fn open(path: &Path) -> io::Result<Netns> {
        Ok(Netns {
            file: File::open(path)?,
        })
    }

    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Run `f` with the calling thread in this namespace, then switch back.
    /// `f` must be synchronous: the thread must not run anything else meanwhile.
    pub fn enter<R>(&self, f: impl FnOnce() -> R) -> io::Result<R> {
        let orig = File::open("/proc/thread-self/ns/net")?;
        setns(self.fd())?;
        let r = f();
        if let Err(e) = setns(orig.as_raw_fd()) {
            // Continuing in the wrong namespace would act on the wrong interfaces.
            panic!("cannot return to the original network namespace: {e}");
        }
        Ok(r)
    }
}

fn setns(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain syscall on a valid namespace file descriptor.
    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A command that runs inside `ns` (or the caller's namespace): the child
/// enters it between fork and exec.
pub fn command(ns: Option<&Netns>, program: &str) -> std::process::Command {
    let mut c = std::process::Command::new(program);
    if let Some(ns) = ns {
        let fd = ns.fd();
        // SAFETY: only setns(2), async-signal-safe, runs in the forked child;
        // `fd` stays open until exec (the caller holds `ns`).
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut c, move || setns(fd));
        }
    }
    c
}

/// An rtnetlink handle whose socket lives in `ns` (or in the caller's
/// namespace). The connection task is spawned on the current runtime.
pub fn rtnl(ns: Option<&Netns>) -> io::Result<rtnetlink::Handle> {
    let (conn, handle, _) = match ns {
        Some(ns) => ns.enter(rtnetlink::new_connection)??,
        None => rtnetlink::new_connection()?,
    };
    tokio::spawn(conn);
    Ok(handle)
}

const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

fn ethtool(ns: &Netns, ifname: &str, cmd: u32, data: u32) -> io::Result<u32> {
    if ifname.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {ifname:?} too long"),
        ));
    }
    ns.enter(|| {
        // SAFETY: socket(2) with constant arguments; the fd is owned at once.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh, valid descriptor.
        let sock = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut val = EthtoolValue { cmd, data };
        // SAFETY: ifreq is plain old data; all-zero is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in ifr.ifr_name.iter_mut().zip(ifname.bytes()) {
            *d = s as libc::c_char;
        }
        ifr.ifr_ifru.ifru_data = (&mut val as *mut EthtoolValue).cast();
        // SAFETY: SIOCETHTOOL with a valid ifreq pointing at a live ethtool_value.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(val.data)
    })?
}

/// `ethtool -K <ifname> tx on|off` inside `ns`.
pub fn set_tx_checksum(ns: &Netns, ifname: &str, on: bool) -> io::Result<()> {
    ethtool(ns, ifname, ETHTOOL_STXCSUM, u32::from(on)).map(|_| ())
}

/// Whether TX checksum offload is on for `ifname` inside `ns`.
pub fn tx_checksum(ns: &Netns, ifname: &str) -> io::Result<bool> {
    ethtool(ns, ifname, ETHTOOL_GTXCSUM, 0).map(|v| v != 0)
}
