//! How fast the daemon sends: a window of exchanges in flight per network, spaced sends for
//! messages that get no reply, and spaced retries when the kernel's queue is full.
//!
//! A thousand ADDs at once meet three fixed queues (measured on the benchmark machine, see
//! docs/performance.md):
//!
//! - The server's socket buffer. dnsmasq answers one datagram at a time from one socket whose
//!   buffer holds a couple of hundred; a thousand DHCPDISCOVERs in a second would overflow it and
//!   each loss costs its client RFC 2131's 4-second retransmission. So requests that expect a
//!   reply (DHCPDISCOVER, DHCPREQUEST) hold a permit of their CNI network's window from the send
//!   until the reply comes, like TCP's congestion window: at most [`WINDOW`] exchanges per network
//!   are in flight, and the next waits for a reply rather than for a timer. A permit whose reply
//!   never comes is given back after [`WINDOW_HOLD`], so a silent server slows only its own
//!   network, to one exchange per permit per second.
//! - The same buffer for messages that get no reply (DHCPRELEASE, DHCPDECLINE): nothing clocks
//!   them, so they are spaced by [`NO_REPLY_SPACING`] per CNI network. dnsmasq rewrites and syncs
//!   its whole lease file for each release. Measured with 1000 leases: 1000 DHCPRELEASEs spaced
//!   0.5 ms reached dnsmasq as 185-224; spaced 2 ms, 1000 in four runs and 960 in one (right
//!   after a renewal cycle); spaced 4 ms, all 1000.
//! - The sending CPU's backlog (`net.core.netdev_max_backlog`, 1000 packets). A broadcast from a
//!   macvlan (bridge) or ipvlan (l2) slave is copied to every other slave of the master before it
//!   leaves, and the copy for the wire is queued last: with a thousand slaves one broadcast fills
//!   the backlog, and the next one sent before it drained is refused with `ENOBUFS` (nothing left
//!   the host). The driver then sends again after a retry turn ([`RETRY_SPACING`] apart
//!   daemon-wide, about what the backlog takes to drain) instead of waiting 4 s. Spacing every
//!   broadcast ahead of time by its fan-out was tried and measured slower (4.4-6.0 s instead of
//!   4.1 s for 1000 ADDs): the kernel's refusal is the better signal.
//!
//! Turns are reserved, not polled: a turn takes the next free instant under a mutex and sleeps
//! until it, so a thousand waiting sends cost a thousand sleeping timers, no spinning.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Exchanges in flight per CNI network: enough to keep one server busy (dnsmasq answers a
/// DISCOVER or REQUEST in about 0.4 ms of CPU), few enough that its socket buffer never fills.
pub(crate) const WINDOW: usize = 32;
/// How long a permit waits for its reply before it is given back: hundreds of times the
/// server's answer time under load, so it only fires for replies that were lost.
pub(crate) const WINDOW_HOLD: Duration = Duration::from_secs(1);
/// Spacing of messages that get no reply (DHCPRELEASE, DHCPDECLINE): 4 ms, 250 per second.
pub(crate) const NO_REPLY_SPACING: Duration = Duration::from_millis(4);
/// Spacing of sends retried after `ENOBUFS`: 1 ms, about what a CPU takes to drain a backlog
/// of a thousand broadcast copies.
pub(crate) const RETRY_SPACING: Duration = Duration::from_millis(1);

/// The in-flight limit of one CNI network.
type Window = Arc<Semaphore>;

/// One queue of evenly spaced turns.
#[derive(Debug)]
struct Turns {
    /// The earliest instant the next turn may start.
    next: Mutex<Instant>,
    spacing: Duration,
}

impl Turns {
    fn new(spacing: Duration) -> Turns {
        Turns {
            next: Mutex::new(Instant::now()),
            spacing,
        }
    }

    /// Reserves the next turn at or after `now`; returns its instant.
    fn reserve(&self, now: Instant) -> Instant {
        let mut next = self.next.lock();
        let at = (*next).max(now);
        *next = at + self.spacing;
        at
    }

    async fn wait(&self) {
        let at = self.reserve(Instant::now());
        if at > Instant::now() {
            tokio::time::sleep_until(at.into()).await;
        }
    }
}

/// What the pacer keeps per CNI network (one server, one broadcast domain).
#[derive(Debug)]
struct Network {
    window: Window,
    no_reply: Arc<Turns>,
}

/// The daemon's send discipline. One per daemon, shared by every lease's driver.
#[derive(Debug)]
pub(crate) struct Pacer {
    /// Per CNI network name, made on first use.
    networks: Mutex<HashMap<String, Network>>,
    window: usize,
    no_reply_spacing: Duration,
    /// Daemon-wide: the backlog that refuses sends is the host's, whatever the network.
    retry: Turns,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer::new(WINDOW, NO_REPLY_SPACING, RETRY_SPACING)
    }
}

impl Pacer {
    /// A pacer with `window` exchanges in flight per network (at least 1), no-reply messages
    /// spaced by `no_reply_spacing` and retries by `retry_spacing`.
    pub(crate) fn new(window: usize, no_reply_spacing: Duration, retry_spacing: Duration) -> Pacer {
        Pacer {
            networks: Mutex::new(HashMap::new()),
            window: window.max(1),
            no_reply_spacing,
            retry: Turns::new(retry_spacing),
        }
    }

    /// `f` applied to `network`'s entry, made on first use.
    fn network<T>(&self, network: &str, f: impl FnOnce(&Network) -> T) -> T {
        let mut networks = self.networks.lock();
        let entry = networks
            .entry(network.to_string())
            .or_insert_with(|| Network {
                window: Arc::new(Semaphore::new(self.window)),
                no_reply: Arc::new(Turns::new(self.no_reply_spacing)),
            });
        f(entry)
    }

    /// Waits for a permit of `network`'s window: an exchange may then be in flight until the
    /// permit is dropped (on the reply, after [`WINDOW_HOLD`], or when the send failed).
    pub(crate) async fn permit(&self, network: &str) -> OwnedSemaphorePermit {
        let window = self.network(network, |n| n.window.clone());
        // The semaphore is never closed, so acquiring cannot fail.
        window
            .acquire_owned()
            .await
            .expect("pacer windows are never closed")
    }

    /// Waits for `network`'s turn for a message that gets no reply.
    pub(crate) async fn no_reply_turn(&self, network: &str) {
        let turns = self.network(network, |n| n.no_reply.clone());
        turns.wait().await
    }

    /// Waits for the turn of a send retried after `ENOBUFS`.
    pub(crate) async fn retry_turn(&self) {
        self.retry.wait().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_are_spaced_and_an_idle_queue_does_not_delay() {
        let t = Turns::new(Duration::from_millis(2));
        let t0 = Instant::now();
        assert_eq!(t.reserve(t0), t0);
        assert_eq!(t.reserve(t0), t0 + Duration::from_millis(2));
        assert_eq!(t.reserve(t0), t0 + Duration::from_millis(4));
        // Long after the last turn: the next one is now, not in the past.
        let later = t0 + Duration::from_secs(1);
        assert_eq!(t.reserve(later), later);
    }

    #[tokio::test]
    async fn a_full_window_makes_the_next_exchange_wait_on_its_network_only() {
        let p = Pacer::new(2, NO_REPLY_SPACING, RETRY_SPACING);
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

    #[tokio::test]
    async fn no_reply_and_retry_turns_are_separate_queues() {
        let p = Pacer::new(1, Duration::from_secs(60), Duration::from_secs(60));
        // The first turn of each queue is immediate even though both spacings are long.
        tokio::time::timeout(Duration::from_millis(50), p.no_reply_turn("net-a"))
            .await
            .expect("first no-reply turn");
        tokio::time::timeout(Duration::from_millis(50), p.no_reply_turn("net-b"))
            .await
            .expect("another network's releases do not queue behind net-a's");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), p.no_reply_turn("net-a"))
                .await
                .is_err(),
            "the second no-reply turn on net-a waits its spacing"
        );
        tokio::time::timeout(Duration::from_millis(50), p.retry_turn())
            .await
            .expect("first retry turn, not behind the no-reply queue");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), p.retry_turn())
                .await
                .is_err(),
            "the second retry waits its spacing"
        );
    }
}
