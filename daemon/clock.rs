//! The daemon's clock for lease timers: the monotonic clock plus the time the machine spent
//! suspended.
//!
//! tokio's timers, like Rust's `Instant`, run on `CLOCK_MONOTONIC`, which stops while the
//! machine is suspended (or a VM is paused). A lease, though, runs on the server's clock, which
//! does not stop: after a two-hour suspend a one-hour lease has expired, yet a timer set for its
//! T1 would still be waiting, and the address would stay in use past its lease (RFC 2131 §4.4.5:
//! the client must stop using it at expiry). `CLOCK_BOOTTIME` counts suspended time too, which
//! is why systemd-networkd's DHCP client (sd-dhcp-client) runs its lease timers on it; this
//! module does the same for a runtime whose timers only know the monotonic clock.
//!
//! So the client state machine is fed [`now`]: `Instant::now()` moved forward by the time spent
//! suspended since the daemon started (how far `CLOCK_BOOTTIME` ran ahead of
//! `CLOCK_MONOTONIC`). A driver sleeps until [`to_monotonic`] of the client's `poll_at`, and
//! [`watch_suspend`] wakes every driver when a suspend is noticed, so each runs its timers at
//! once: expired leases are withdrawn, late ones renewed. The mapping itself is
//! [`Offset::suspended`], a pure function of two clock readings, unit-tested without suspending
//! anything.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// How often [`watch_suspend`] compares the two clocks. A resumed machine runs its lease timers
/// at most this late.
pub(crate) const SUSPEND_CHECK: Duration = Duration::from_secs(5);

/// Growth of the suspended time between two checks that counts as a suspend (smaller
/// differences are the clocks' reading jitter).
const SUSPEND_MIN: Duration = Duration::from_millis(500);

/// The gap between `CLOCK_BOOTTIME` and `CLOCK_MONOTONIC` when the daemon started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Offset {
    /// `boottime - monotonic` at start (time suspended before the daemon started).
    base: Duration,
}

impl Offset {
    /// The offset from readings of the two clocks taken together.
    pub(crate) fn new(monotonic: Duration, boottime: Duration) -> Offset {
        Offset {
            base: boottime.saturating_sub(monotonic),
        }
    }

    /// Time spent suspended since the offset was taken, given a later reading of both clocks:
    /// how much further `CLOCK_BOOTTIME` has run ahead of `CLOCK_MONOTONIC`. Never negative.
    pub(crate) fn suspended(&self, monotonic: Duration, boottime: Duration) -> Duration {
        boottime.saturating_sub(monotonic).saturating_sub(self.base)
    }
}

fn read(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; both clocks exist since Linux 2.6.39.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0).min(999_999_999),
    )
}

fn offset() -> &'static Offset {
    static OFFSET: OnceLock<Offset> = OnceLock::new();
    OFFSET.get_or_init(|| Offset::new(read(libc::CLOCK_MONOTONIC), read(libc::CLOCK_BOOTTIME)))
}

/// Time spent suspended since the daemon first read its clock.
pub(crate) fn suspended() -> Duration {
    offset().suspended(read(libc::CLOCK_MONOTONIC), read(libc::CLOCK_BOOTTIME))
}

/// Now on the lease clock: `Instant::now()` plus [`suspended`]. Feed this, never
/// `Instant::now()`, to the client state machine and compare lease timers with it.
pub(crate) fn now() -> Instant {
    let mono = Instant::now();
    mono.checked_add(suspended()).unwrap_or(mono)
}

/// The monotonic instant (what tokio's timers sleep until) at which the lease clock reads
/// `at`, as far as is known now: `at - suspended()`, never earlier than the monotonic clock's
/// start.
pub(crate) fn to_monotonic(at: Instant) -> Instant {
    at.checked_sub(suspended())
        .unwrap_or(at.min(Instant::now()))
}

/// A watch that changes whenever a suspend is noticed; drivers hold a receiver.
pub(crate) fn suspend_channel() -> (watch::Sender<u64>, watch::Receiver<u64>) {
    watch::channel(0)
}

/// Compares the clocks every [`SUSPEND_CHECK`] and bumps `tx` whenever the suspended time grew,
/// so every driver wakes and runs the timers that came due meanwhile. Runs until the daemon
/// stops.
pub(crate) async fn watch_suspend(tx: watch::Sender<u64>) {
    let mut seen = suspended();
    loop {
        tokio::time::sleep(SUSPEND_CHECK).await;
        let now = suspended();
        if now.saturating_sub(seen) >= SUSPEND_MIN {
            tracing::warn!(
                suspended_secs = now.saturating_sub(seen).as_secs_f64(),
                "the machine was suspended: running lease timers that came due"
            );
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
        seen = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::client::{Client, Event, State};
    use crate::dhcp::config::ClientConfig;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn suspended_time_is_how_far_boottime_ran_ahead() {
        // Started 100 s after boot, 30 s of it suspended before the daemon ran.
        let off = Offset::new(secs(70), secs(100));
        assert_eq!(off.suspended(secs(70), secs(100)), Duration::ZERO);
        // An hour later with no suspend: both clocks moved alike.
        assert_eq!(off.suspended(secs(3670), secs(3700)), Duration::ZERO);
        // Then a two-hour suspend: boottime moved, monotonic did not.
        assert_eq!(off.suspended(secs(3671), secs(10_901)), secs(7200));
        // Readings that disagree the other way (jitter) never go negative.
        assert_eq!(off.suspended(secs(80), secs(100)), Duration::ZERO);
        assert_eq!(
            Offset::new(secs(100), secs(5)).suspended(secs(100), secs(5)),
            Duration::ZERO
        );
    }

    /// A bound client driven with the lease clock: after a suspend longer than the lease, the
    /// first wake-up sees the expiry at once, although the monotonic clock barely moved.
    #[test]
    fn a_suspend_past_expiry_expires_the_lease_at_the_first_wakeup() {
        let off = Offset::new(secs(1000), secs(1000));
        let mono0 = Instant::now();
        // The lease clock is the monotonic one plus the time suspended.
        let lease_clock = |mono_elapsed: Duration, boot_elapsed: Duration| {
            let suspended = off.suspended(secs(1000) + mono_elapsed, secs(1000) + boot_elapsed);
            mono0 + mono_elapsed + suspended
        };
        let t0 = lease_clock(Duration::ZERO, Duration::ZERO);
        let lease = crate::dhcp::reply::test_lease("198.18.0.7");
        assert_eq!(lease.lease_time, 3600);
        let mut config = ClientConfig::new(vec![0, 1], [2, 0, 0, 0, 0, 1]);
        config.broadcast = false;
        let mut c = Client::resume(config, lease, t0, 7);
        assert_eq!(c.state(), State::Bound);
        // Ten seconds of monotonic time, two hours of boot time: the machine slept.
        let now = lease_clock(secs(10), secs(10 + 7200));
        let mut sent = 0;
        while c.poll_transmit(now).is_some() {
            sent += 1;
        }
        assert_eq!(c.state(), State::Expired, "{c:?}");
        assert_eq!(sent, 0, "nothing may be sent for a lease already expired");
        assert!(matches!(c.poll_event(), Some(Event::Expired)));
        // On the monotonic clock alone the lease would still look fine for an hour.
        let mut c2 = Client::resume(
            ClientConfig::new(vec![0, 1], [2, 0, 0, 0, 0, 1]),
            crate::dhcp::reply::test_lease("198.18.0.7"),
            mono0,
            7,
        );
        assert!(c2.poll_transmit(mono0 + secs(10)).is_none());
        assert_eq!(c2.state(), State::Bound);
    }

    #[test]
    fn lease_clock_and_monotonic_agree_without_a_suspend() {
        // Test machines are not suspended while the tests run, so the lease clock must be the
        // monotonic one: time suspended before the daemon (the test process) started does not
        // count, and converting back lands on the same instant.
        let mono = Instant::now();
        let lease_now = now();
        assert!(
            lease_now.saturating_duration_since(mono) < Duration::from_secs(1),
            "lease clock {:?} ahead of the monotonic one",
            lease_now.saturating_duration_since(mono)
        );
        let back = to_monotonic(lease_now);
        assert!(back.saturating_duration_since(mono) < Duration::from_secs(1));
    }
}
