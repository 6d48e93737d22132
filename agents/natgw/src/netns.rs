//! Entering a named network namespace (`ip netns add <name>`) from one
//! thread; used by `--netns` for tests and development.

use std::fs::File;
use std::os::fd::AsRawFd;

/// Moves the calling thread into `/var/run/netns/<name>`.
pub fn enter(name: &str) -> std::io::Result<()> {
    let f = File::open(format!("/var/run/netns/{name}"))?;
    // SAFETY: setns on a valid descriptor; affects only the calling thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
