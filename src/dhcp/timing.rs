//! Time bookkeeping both sans-IO clients share, the DHCPv4 one ([`super::client`], RFC 2131)
//! and the DHCPv6 one ([`crate::dhcp6::client`], RFC 8415): the budget of one acquisition and
//! the earlier of two optional deadlines. No clock is read here; instants are the caller's.

use std::time::{Duration, Instant};

/// The time budget of one acquisition (from INIT, INIT-REBOOT, SOLICIT or a reboot's first
/// message to BOUND). It survives the restarts within an acquisition (a DHCPNAK or NotOnLink,
/// an unanswered request), so those share one `timeout` of the client's configuration; a lost
/// lease starts a new one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    /// When the acquisition began: DHCPv4's `secs` counts from it (RFC 2131 §2), and a
    /// rebooting client gives up its reboot half a timeout after it.
    pub(crate) started: Instant,
    /// `started` plus the timeout, when the acquisition fails; None beyond `Instant`'s range.
    /// Kept even where keep-trying mode waives it, so that switching the mode off restores it.
    pub(crate) deadline: Option<Instant>,
}

impl Budget {
    /// A budget of `timeout` from `now`.
    pub(crate) fn new(now: Instant, timeout: Duration) -> Budget {
        Budget {
            started: now,
            deadline: now.checked_add(timeout),
        }
    }
}

/// The earlier of two optional instants, None meaning "never".
pub(crate) fn min_opt(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_opt_treats_none_as_never_and_budgets_saturate() {
        let now = Instant::now();
        let later = now.checked_add(Duration::from_secs(1)).unwrap();
        assert_eq!(min_opt(Some(later), Some(now)), Some(now));
        assert_eq!(min_opt(None, Some(now)), Some(now));
        assert_eq!(min_opt(Some(later), None), Some(later));
        assert_eq!(min_opt(None, None), None);
        assert_eq!(
            Budget::new(now, Duration::from_secs(1)).deadline,
            Some(later)
        );
        assert_eq!(Budget::new(now, Duration::MAX).deadline, None);
    }
}
