//! How long this process has run, from the kernel's record of its start
//! (so it counts the time before `main` too, e.g. the dynamic loader).

use std::time::Duration;

/// Process age: `/proc/uptime` minus field 22 (`starttime`) of
/// `/proc/self/stat`, in clock ticks of 100 Hz (Linux's fixed USER_HZ).
pub fn process_uptime() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which may hold spaces, ends with ')'.
    let rest = stat.rsplit_once(')')?.1;
    let start_ticks: f64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let up: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(Duration::from_secs_f64((up - start_ticks / 100.0).max(0.0)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_running_test_is_young_but_not_unborn() {
        let d = super::process_uptime().expect("procfs");
        assert!(d < std::time::Duration::from_secs(3600), "{d:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(super::process_uptime().unwrap() >= std::time::Duration::from_millis(50));
    }
}
