//! Which of two replicas is active (pure): a Lease taken and renewed by the
//! agents themselves, judged by each one's own clock only (like
//! client-go's leader election), so clocks need not agree.
//!
//! The active renews every `retry`; if it has not renewed for
//! `renew_deadline` (measured from when it *sent* its last successful
//! renewal) it steps down. The standby takes the Lease once the Lease has
//! not changed for `duration` since the standby *saw* it change, which is
//! after that renewal was sent. `duration - renew_deadline` is therefore
//! the time an old active has to take its addresses down before another
//! may add them.

use std::time::{Duration, Instant};

/// Why a replica took the Lease (written on the Lease for the operator).
pub mod cause {
    /// Nobody held it before.
    pub const INITIAL: &str = "Initial";
    /// The holder stopped renewing (it, its node or its link died).
    pub const EXPIRED: &str = "LeaseExpired";
    /// The holder gave it up (shutdown, handover, lost the API).
    pub const RELEASED: &str = "Released";
}

/// The Lease as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// `holderIdentity` (None or empty: released or never held).
    pub holder: Option<String>,
    /// `resourceVersion`: any change, renewals included.
    pub version: String,
    /// Who released it, when it is released.
    pub released_by: Option<String>,
}

/// What to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Active: renew the Lease.
    Renew,
    /// Take the Lease (and then the addresses).
    Acquire {
        /// Why, see [`cause`].
        cause: &'static str,
        /// Who held it.
        previous: Option<String>,
    },
    /// Another holds it: give up the addresses now.
    StepDown,
    /// Standby: nothing yet.
    Wait,
}

/// Timings derived from the Lease duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long an unchanged Lease stays the holder's.
    pub duration: Duration,
    /// How long the active goes without a renewal before it steps down.
    pub renew_deadline: Duration,
    /// How often the active renews the Lease.
    pub retry: Duration,
    /// How often each replica reads it (the standby sees a renewal at most
    /// this late, and takes an expired Lease at most this late).
    pub poll: Duration,
}

impl Timing {
    /// From the Lease duration: the active renews every 1/6 of it and
    /// steps down after 2/3; both read it every 1/15 (50 ms to 1 s).
    pub fn from_duration(duration: Duration) -> Timing {
        Timing {
            duration,
            renew_deadline: duration * 2 / 3,
            retry: (duration / 6).max(Duration::from_millis(50)),
            poll: (duration / 15).clamp(Duration::from_millis(50), Duration::from_secs(1)),
        }
    }

    /// Whether a refresh of the addresses' lifetime may still follow a
    /// renewal sent `since_sent` ago: they must expire (lifetime, plus up
    /// to 0.25 s of the kernel's timer slack) before the Lease can.
    pub fn may_refresh(&self, since_sent: Duration) -> bool {
        let expiry =
            Duration::from_secs(u64::from(self.addr_lifetime_secs())) + Duration::from_millis(300);
        since_sent + expiry < self.duration
    }

    /// Lifetime of the active's addresses in whole seconds (the kernel's
    /// unit): at least 1, at most what fits before the standby may take
    /// over after a renewal.
    pub fn addr_lifetime_secs(&self) -> u32 {
        (self.duration.as_secs_f64() - 0.4).floor().max(1.0) as u32
    }
}

/// One replica's view of the election.
#[derive(Clone, Debug)]
pub struct Elector {
    me: String,
    timing: Timing,
    /// The Lease version last seen to change, and when.
    observed: Option<(String, Instant)>,
    /// When the last successful renewal (or acquisition) was sent.
    last_renew_sent: Option<Instant>,
    active: bool,
    /// After a handover: do not take the Lease back before this.
    hold_off_until: Option<Instant>,
}

impl Elector {
    /// A standby named `me` (its pod's name).
    pub fn new(me: &str, timing: Timing) -> Self {
        Elector {
            me: me.to_string(),
            timing,
            observed: None,
            last_renew_sent: None,
            active: false,
            hold_off_until: None,
        }
    }

    /// Whether this replica is active.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Its name.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// The timings.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// Decides on the Lease as read at `now`.
    pub fn step(&mut self, seen: &Seen, now: Instant) -> Step {
        if self
            .observed
            .as_ref()
            .is_none_or(|(v, _)| *v != seen.version)
        {
            self.observed = Some((seen.version.clone(), now));
        }
        let holder = seen.holder.as_deref().filter(|h| !h.is_empty());
        if self.active {
            return if holder == Some(self.me.as_str()) {
                Step::Renew
            } else {
                // Someone took it: this one was too slow to renew.
                self.active = false;
                Step::StepDown
            };
        }
        if self.hold_off_until.is_some_and(|t| now < t) {
            return Step::Wait;
        }
        match holder {
            None => Step::Acquire {
                cause: if seen.released_by.is_some() {
                    cause::RELEASED
                } else {
                    cause::INITIAL
                },
                previous: seen.released_by.clone(),
            },
            // Held, possibly under this pod's name by its agent before a
            // restart: that one may still have addresses up, so it is
            // waited out like anyone.
            Some(h) => {
                let since = self.observed.as_ref().map(|(_, t)| *t).unwrap_or(now);
                if now.duration_since(since) >= self.timing.duration {
                    Step::Acquire {
                        cause: cause::EXPIRED,
                        previous: Some(h.to_string()),
                    }
                } else {
                    Step::Wait
                }
            }
        }
    }

    /// The renewal or acquisition sent at `sent` succeeded.
    pub fn confirmed(&mut self, sent: Instant) {
        self.active = true;
        self.last_renew_sent = Some(sent);
    }

    /// Active and the renewal interval has passed since the last one.
    pub fn renew_due(&self, now: Instant) -> bool {
        self.last_renew_sent
            .is_none_or(|t| now.duration_since(t) >= self.timing.retry)
    }

    /// Active and not renewed for the renew deadline: must step down.
    pub fn overdue(&self, now: Instant) -> bool {
        self.active
            && self
                .last_renew_sent
                .is_none_or(|t| now.duration_since(t) >= self.timing.renew_deadline)
    }

    /// Gives up the role (addresses first, then the Lease). With `hold_off`
    /// it does not take the Lease back for one duration: a handover.
    pub fn step_down(&mut self, now: Instant, hold_off: bool) {
        self.active = false;
        self.last_renew_sent = None;
        if hold_off {
            self.hold_off_until = Some(now + self.timing.duration);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(holder: Option<&str>, v: &str) -> Seen {
        Seen {
            holder: holder.map(str::to_string),
            version: v.into(),
            released_by: None,
        }
    }

    fn timing() -> Timing {
        Timing::from_duration(Duration::from_millis(1500))
    }

    #[test]
    fn the_first_takes_a_free_lease_and_renews_it() {
        let t0 = Instant::now();
        let mut a = Elector::new("gw-0", timing());
        assert_eq!(
            a.step(&seen(None, "1"), t0),
            Step::Acquire {
                cause: cause::INITIAL,
                previous: None
            }
        );
        a.confirmed(t0);
        assert!(a.is_active());
        assert_eq!(a.step(&seen(Some("gw-0"), "2"), t0), Step::Renew);
        assert!(!a.overdue(t0 + Duration::from_millis(999)));
        assert!(a.overdue(t0 + Duration::from_millis(1000)));
    }

    #[test]
    fn the_standby_waits_out_a_renewed_lease_and_takes_an_expired_one() {
        let t0 = Instant::now();
        let mut b = Elector::new("gw-1", timing());
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(b.step(&seen(Some("gw-0"), "5"), ms(0)), Step::Wait);
        // Renewals keep it waiting, however long it has been.
        assert_eq!(b.step(&seen(Some("gw-0"), "6"), ms(1400)), Step::Wait);
        assert_eq!(b.step(&seen(Some("gw-0"), "7"), ms(2800)), Step::Wait);
        // No change for a whole duration since it last saw one.
        assert_eq!(b.step(&seen(Some("gw-0"), "7"), ms(4299)), Step::Wait);
        assert_eq!(
            b.step(&seen(Some("gw-0"), "7"), ms(4300)),
            Step::Acquire {
                cause: cause::EXPIRED,
                previous: Some("gw-0".into())
            }
        );
    }

    #[test]
    fn an_old_active_steps_down_before_the_standby_may_take_over() {
        let tm = timing();
        let t0 = Instant::now();
        let mut a = Elector::new("gw-0", tm);
        a.confirmed(t0);
        let mut b = Elector::new("gw-1", tm);
        // b sees that renewal no earlier than it was sent.
        b.step(&seen(Some("gw-0"), "9"), t0);
        let first_take = (0..5000)
            .map(|ms| t0 + Duration::from_millis(ms))
            .find(|t| matches!(b.step(&seen(Some("gw-0"), "9"), *t), Step::Acquire { .. }))
            .unwrap();
        let stepped_down = (0..5000)
            .map(|ms| t0 + Duration::from_millis(ms))
            .find(|t| a.overdue(*t))
            .unwrap();
        assert!(first_take.duration_since(stepped_down) >= Duration::from_millis(500));
        // Addresses expire on their own before the standby may take over,
        // if refreshed promptly after a renewal.
        assert!(tm.may_refresh(Duration::from_millis(150)));
        assert!(!tm.may_refresh(Duration::from_millis(250)));
        assert_eq!(tm.poll, Duration::from_millis(100));
    }

    #[test]
    fn a_handover_is_released_and_not_taken_back_at_once() {
        let t0 = Instant::now();
        let mut a = Elector::new("gw-0", timing());
        a.confirmed(t0);
        a.step_down(t0, true);
        let released = Seen {
            holder: None,
            version: "10".into(),
            released_by: Some("gw-0".into()),
        };
        assert_eq!(a.step(&released, t0), Step::Wait);
        let mut b = Elector::new("gw-1", timing());
        assert_eq!(
            b.step(&released, t0),
            Step::Acquire {
                cause: cause::RELEASED,
                previous: Some("gw-0".into())
            }
        );
        // The one that handed over takes it when it is free after the hold-off.
        assert!(matches!(
            a.step(&released, t0 + Duration::from_millis(1500)),
            Step::Acquire { .. }
        ));
    }

    #[test]
    fn an_active_that_lost_the_lease_steps_down() {
        let t0 = Instant::now();
        let mut a = Elector::new("gw-0", timing());
        a.confirmed(t0);
        assert_eq!(a.step(&seen(Some("gw-1"), "3"), t0), Step::StepDown);
        assert!(!a.is_active());
    }
}
