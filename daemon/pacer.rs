//! Spacing the daemon's broadcasts so the kernel's queues drain between them.
//!
//! A broadcast sent from a macvlan (bridge) or ipvlan (l2) slave is copied by the kernel to every
//! other slave of the same master before it leaves, and every copy waits in the sending CPU's
//! backlog (`net.core.netdev_max_backlog`, 1000 packets) until softirq work processes it. With a
//! thousand containers on a master, one DHCPDISCOVER fills the backlog by itself; the next one sent
//! before the backlog drained is dropped, and so are the server's replies that arrive behind it
//! (shared NOTES §1; measured here: 1000 unpaced ADDs lost 3700 packets to the backlog and waited
//! out RFC 2131's 4-second retransmission). A client cannot see the backlog, but it knows the
//! cause: the fan-out of each broadcast grows with the number of containers, and the daemon holds
//! one lease per container.
//!
//! So each broadcast takes a turn: turns are spaced by `fan_out × cost_per_copy`, where `fan_out`
//! is the number of attachments the daemon holds and `cost_per_copy` the time the kernel takes to
//! deliver one copy ([`DEFAULT_COST_PER_COPY`], measured on the 2-core benchmark machine). A
//! daemon with ten containers is spaced by microseconds, that is, not at all; one with a thousand
//! sends a broadcast about every millisecond, about what the backlog drains in. Unicasts
//! (renewals, releases) are spaced by a fixed [`UNICAST_SPACING`] so a burst of a thousand
//! DHCPRELEASEs does not overflow the server's socket buffer (NOTES §4).
//!
//! Turns are reserved, not polled: [`Pacer::turn`] takes the next free instant under a mutex and
//! sleeps until it, so a thousand waiting broadcasts cost a thousand sleeping timers, no spinning.
//!
//! Spacing alone does not stop the server from drowning: dnsmasq answers one request at a time
//! from one socket, whose receive buffer holds a couple of hundred datagrams; a thousand
//! DHCPDISCOVERs in a second overflow it, and each one lost costs its client RFC 2131's 4-second
//! retransmission (measured: 1000 ADDs at once took 9-12 s, with the machine 60% idle). So requests
//! that expect a reply (DHCPDISCOVER, DHCPREQUEST) also hold a permit of their network's
//! [`Window`] from the send until the reply comes, like TCP's congestion window: at most
//! [`WINDOW`] exchanges per CNI network are in flight, and the next waits for a free permit
//! rather than for a retransmission timer. A permit whose reply never comes is given back after
//! [`WINDOW_HOLD`], so a silent server slows its own network down to one exchange per permit per
//! second and never blocks another network.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Kernel time to deliver one copy of a broadcast to one slave (clone, backlog, IP input, drop),
/// as measured with `perf` on the benchmark machine (docs/benchmarks.md): about 1 µs.
pub const DEFAULT_COST_PER_COPY: Duration = Duration::from_nanos(1000);
/// Spacing of unicast sends (renewals, releases): 2 ms, 500 per second. dnsmasq rewrites its
/// lease file for every DHCPRELEASE; measured here with 1000 leases, 1000 releases spaced by
/// 0.5 ms reached it as 185-224 (its socket buffer overflowed), spaced by 2 ms all 1000 did.
pub const UNICAST_SPACING: Duration = Duration::from_millis(2);
/// Exchanges in flight per CNI network: enough to keep one server busy (dnsmasq answers a
/// DISCOVER or REQUEST in about 0.4 ms of CPU), few enough that its socket buffer never fills.
pub const WINDOW: usize = 32;
/// How long a permit waits for its reply before it is given back: a hundred times the server's
/// answer time under load, so it only fires for replies that were lost.
pub const WINDOW_HOLD: Duration = Duration::from_secs(1);

/// The in-flight limit of one CNI network.
pub type Window = Arc<Semaphore>;

/// Hands out send turns. One per daemon, shared by every lease's driver.
#[derive(Debug)]
pub struct Pacer {
    /// The earliest instant the next broadcast may go.
    next_broadcast: Mutex<Instant>,
    /// The earliest instant the next unicast may go.
    next_unicast: Mutex<Instant>,
    cost_per_copy: Duration,
    unicast_spacing: Duration,
    /// One window per CNI network name, made on first use.
    windows: Mutex<HashMap<String, Window>>,
    window: usize,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer::new(DEFAULT_COST_PER_COPY, UNICAST_SPACING)
    }
}

impl Pacer {
    /// A pacer spacing broadcasts by `fan_out × cost_per_copy` and unicasts by `unicast_spacing`.
    pub fn new(cost_per_copy: Duration, unicast_spacing: Duration) -> Pacer {
        let now = Instant::now();
        Pacer {
            next_broadcast: Mutex::new(now),
            next_unicast: Mutex::new(now),
            cost_per_copy,
            unicast_spacing,
            windows: Mutex::new(HashMap::new()),
            window: WINDOW,
        }
    }

    /// The same pacer with `window` exchanges in flight per network instead of [`WINDOW`].
    pub fn with_window(mut self, window: usize) -> Pacer {
        self.window = window.max(1);
        self
    }

    /// Waits for a permit of `network`'s window: an exchange may then be in flight until the
    /// permit is dropped (on the reply, or after [`WINDOW_HOLD`]).
    pub async fn permit(&self, network: &str) -> OwnedSemaphorePermit {
        let window = {
            let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
            windows
                .entry(network.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.window)))
                .clone()
        };
        // The semaphore is never closed, so acquiring cannot fail.
        window
            .acquire_owned()
            .await
            .expect("pacer windows are never closed")
    }

    /// Reserves the next turn at or after `now` and returns its instant: for a broadcast reaching
    /// `fan_out` receivers, or a unicast (`broadcast` false, `fan_out` ignored). Pure: the caller
    /// sleeps until the returned instant ([`Pacer::turn`] does).
    pub fn reserve(&self, now: Instant, broadcast: bool, fan_out: usize) -> Instant {
        let (next, spacing) = if broadcast {
            let copies = u32::try_from(fan_out).unwrap_or(u32::MAX);
            (
                &self.next_broadcast,
                self.cost_per_copy.saturating_mul(copies),
            )
        } else {
            (&self.next_unicast, self.unicast_spacing)
        };
        let mut next = next.lock().unwrap_or_else(|e| e.into_inner());
        let at = (*next).max(now);
        *next = at + spacing;
        at
    }

    /// Waits for a turn (see [`Pacer::reserve`]).
    pub async fn turn(&self, broadcast: bool, fan_out: usize) {
        let at = self.reserve(Instant::now(), broadcast, fan_out);
        if at > Instant::now() {
            tokio::time::sleep_until(at.into()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_turns_are_spaced_by_fan_out() {
        let p = Pacer::new(Duration::from_micros(1), Duration::from_micros(500));
        let t0 = Instant::now();
        let a = p.reserve(t0, true, 1000);
        let b = p.reserve(t0, true, 1000);
        let c = p.reserve(t0, true, 10);
        assert_eq!(a, t0);
        assert_eq!(b - a, Duration::from_millis(1));
        assert_eq!(c - b, Duration::from_millis(1));
        // The small broadcast's own spacing is tiny: the one after it is nearly immediate.
        let d = p.reserve(t0, true, 10);
        assert_eq!(d - c, Duration::from_micros(10));
    }

    #[test]
    fn an_idle_pacer_does_not_delay() {
        let p = Pacer::new(Duration::from_micros(1), Duration::from_micros(500));
        let t0 = Instant::now();
        p.reserve(t0, true, 1000);
        // Long after the last turn: the next one is now, not in the past.
        let later = t0 + Duration::from_secs(1);
        assert_eq!(p.reserve(later, true, 1000), later);
    }

    #[tokio::test]
    async fn a_full_window_makes_the_next_exchange_wait_on_its_network_only() {
        let p = Pacer::default().with_window(2);
        let a = p.permit("net-a").await;
        let _b = p.permit("net-a").await;
        // A third exchange on net-a waits; net-b is not affected.
        let third = tokio::time::timeout(Duration::from_millis(50), p.permit("net-a")).await;
        assert!(
            third.is_err(),
            "a third permit was handed out on a window of 2"
        );
        let _c = tokio::time::timeout(Duration::from_millis(50), p.permit("net-b"))
            .await
            .expect("another network has its own window");
        drop(a);
        let _d = tokio::time::timeout(Duration::from_millis(50), p.permit("net-a"))
            .await
            .expect("a reply frees a permit");
    }

    #[test]
    fn unicasts_have_their_own_queue() {
        let p = Pacer::new(Duration::from_micros(1), Duration::from_micros(500));
        let t0 = Instant::now();
        p.reserve(t0, true, 100_000);
        assert_eq!(p.reserve(t0, false, 0), t0);
        assert_eq!(p.reserve(t0, false, 0), t0 + Duration::from_micros(500));
    }
}
