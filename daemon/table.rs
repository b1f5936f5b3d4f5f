//! The daemon's shared state: one slot per attachment.
//!
//! A [`Slot`] serialises every request for its attachment (an async mutex held for the whole of
//! an ADD or DEL, so a DEL that races an ADD waits for it, and two DELs run one after the other)
//! while requests for different attachments never wait for each other: the table's own lock is
//! a plain mutex held only to look a slot up or insert one, never across an `.await`.
//!
//! Each slot also carries a [`Status`] snapshot that the lease's driver task updates as it goes,
//! so `dhcp-leases` can list a lease while an ADD is still acquiring it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use crate::dhcp::Lease;
use crate::lease_file::Identity;
use crate::lease_state::LeaseState;
use crate::rpc::{Attachment, Direction, HISTORY_LEN, LeaseCore, LeaseRecord, Transaction};

/// A request to a running driver task.
#[derive(Debug)]
pub(crate) enum DriverCommand {
    /// Send DHCPRELEASE (if a lease is held), stop, and answer on the channel.
    Release(oneshot::Sender<()>),
}

/// The running driver task of a lease.
#[derive(Debug)]
pub(crate) struct Handle {
    /// Commands to the task.
    pub(crate) commands: mpsc::Sender<DriverCommand>,
    /// The task itself; finished once the lease is released, expired or lost.
    pub(crate) task: tokio::task::JoinHandle<()>,
}

impl Handle {
    /// Whether the driver still runs (the lease is still being kept).
    pub(crate) fn is_alive(&self) -> bool {
        !self.task.is_finished()
    }
}

/// What the daemon knows of a lease right now (the source of a [`LeaseRecord`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct Status {
    /// `CNI_NETNS` as given at ADD.
    pub(crate) netns: String,
    /// What the lease was granted on ([`Identity`]: namespace, interface, boot), once known.
    /// The sweeper ([`crate::daemon::driver::sweep_lost_namespaces`]) compares it with what
    /// the namespace path names now.
    pub(crate) identity: Option<Identity>,
    /// When (lease clock, [`crate::daemon::clock::now`]) the driver took the DHCPACK that bound
    /// the current lease: a reply to a DHCPDISCOVER sent after this cannot have been built
    /// before the server granted it (used to tell a server keying by MAC from one answering
    /// many clients at once).
    pub(crate) bound_at: Option<Instant>,
    /// Option 61 bytes.
    pub(crate) client_id: Vec<u8>,
    /// chaddr: the interface's MAC (on ipvlan, the master's). Two live leases with the same
    /// chaddr and address mean a server keying by MAC.
    pub(crate) chaddr: [u8; 6],
    /// The client's RFC 2131 state, or the daemon's own (`LOST`); [`LeaseState::Unset`] until
    /// the driver sets one.
    pub(crate) state: LeaseState,
    /// BOOTP broadcast flag in use.
    pub(crate) broadcast: bool,
    /// Why ([`LeaseCore::broadcast_reason`]).
    pub(crate) broadcast_reason: String,
    /// Last acknowledged lease.
    pub(crate) lease: Option<Lease>,
    /// T1, T2 and expiry of that lease as the client schedules them (fuzz included).
    pub(crate) timers: Option<Timers>,
    /// DHCPACKs received in RENEWING or REBINDING.
    pub(crate) renewals: u32,
    /// The address this attachment held before the server gave it another one (after a NAK or
    /// an expiry), if that ever happened.
    pub(crate) previous_address: Option<std::net::Ipv4Addr>,
    /// Last error, for operators.
    pub(crate) last_error: Option<String>,
}

/// When a bound lease next needs attention (monotonic clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timers {
    /// T1: RENEWING starts (RFC 2131 §4.4.5).
    pub(crate) renew_at: Instant,
    /// T2: REBINDING starts.
    pub(crate) rebind_at: Instant,
    /// The lease expires.
    pub(crate) expires_at: Instant,
}

/// One attachment's slot.
#[derive(Debug)]
pub(crate) struct Slot {
    /// Whose slot.
    pub(crate) attachment: Attachment,
    /// Held for the whole of a request on this attachment; holds the driver, if one runs.
    pub(crate) op: tokio::sync::Mutex<Option<Handle>>,
    status: Mutex<Status>,
    /// Woken by the sweeper when the container's namespace is gone: the driver then drops the
    /// lease.
    pub(crate) gone: tokio::sync::Notify,
    /// The last [`HISTORY_LEN`] transactions, oldest first. Kept beside [`Status`], not in it,
    /// so that the driver's `*slot.status() = Status { .. }` (a new ADD, a resume) does not
    /// erase what led to it.
    history: Mutex<VecDeque<Transaction>>,
}

/// Wall-clock milliseconds since the Unix epoch of `at` on the lease clock, by the clocks'
/// offset right now (`SystemTime::now() - (clock::now() - at)`, [`crate::daemon::clock`]); 0
/// before the epoch.
pub(crate) fn unix_ms_of(at: Instant) -> u64 {
    let (mono, wall) = (super::clock::now(), SystemTime::now());
    let wall = if at <= mono {
        wall.checked_sub(mono - at)
    } else {
        wall.checked_add(at - mono)
    };
    wall.and_then(|w| w.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Slot {
    /// The status snapshot, locked. Never hold it across an `.await`.
    pub(crate) fn status(&self) -> MutexGuard<'_, Status> {
        // A poisoned lock only means a thread panicked while holding it; the data is plain.
        self.status.lock()
    }

    /// Appends to the attachment's history (stamped with the wall clock now), dropping the
    /// oldest entry beyond [`HISTORY_LEN`]. Cheap (a short mutex), callable with the
    /// [`Slot::status`] lock held.
    pub(crate) fn push_history(&self, direction: Direction, message: impl Into<String>) {
        let at_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let mut history = self.history.lock();
        if history.len() >= HISTORY_LEN {
            history.pop_front();
        }
        history.push_back(Transaction {
            at_unix_ms,
            direction,
            message: message.into(),
        });
    }

    /// The history, oldest first.
    pub(crate) fn history(&self) -> Vec<Transaction> {
        let history = self.history.lock();
        history.iter().cloned().collect()
    }

    /// [`Slot::record`] with [`LeaseRecord::history`] filled in (the answer to SHOW).
    pub(crate) fn record_with_history(&self, now: Instant) -> LeaseRecord {
        LeaseRecord {
            history: Some(self.history()),
            ..self.record(now)
        }
    }

    /// The snapshot as a protocol record, with times relative to `now` (and absolute ones by
    /// the wall clock, [`unix_ms_of`]); no history.
    pub(crate) fn record(&self, now: Instant) -> LeaseRecord {
        let s = self.status().clone();
        // The client counts expiry from the grant without fuzz, so the grant is expiry minus
        // the lease time.
        let granted = match (&s.timers, &s.lease) {
            (Some(t), Some(l)) => t
                .expires_at
                .checked_sub(Duration::from_secs(l.lease_time.into())),
            _ => None,
        };
        let abs = |at: Option<Instant>| at.map(unix_ms_of);
        let secs_until = |at: Instant| Some(at.saturating_duration_since(now).as_secs());
        let (t1_in, t2_in, expires_in) = match s.timers {
            Some(t) => (
                secs_until(t.renew_at),
                secs_until(t.rebind_at),
                secs_until(t.expires_at),
            ),
            None => (None, None, None),
        };
        let warnings = s
            .lease
            .as_ref()
            .map(|l| l.route_warnings())
            .unwrap_or_default();
        LeaseRecord {
            core: LeaseCore {
                attachment: self.attachment.clone(),
                netns: s.netns,
                client_id: hex::encode(&s.client_id),
                state: s.state,
                broadcast: s.broadcast,
                broadcast_reason: s.broadcast_reason,
                lease: s.lease,
            },
            t1_in,
            t2_in,
            expires_in,
            renewals: s.renewals,
            previous_address: s.previous_address,
            warnings,
            last_error: s.last_error,
            granted_unix_ms: abs(granted),
            t1_unix_ms: abs(s.timers.map(|t| t.renew_at)),
            t2_unix_ms: abs(s.timers.map(|t| t.rebind_at)),
            expires_unix_ms: abs(s.timers.map(|t| t.expires_at)),
            history: None,
        }
    }
}

/// All slots.
#[derive(Debug, Default)]
pub(crate) struct Table {
    slots: Mutex<HashMap<Attachment, Arc<Slot>>>,
}

impl Table {
    fn slots(&self) -> MutexGuard<'_, HashMap<Attachment, Arc<Slot>>> {
        self.slots.lock()
    }

    /// The attachment's slot, created empty if there is none.
    pub(crate) fn slot(&self, attachment: &Attachment) -> Arc<Slot> {
        self.slots()
            .entry(attachment.clone())
            .or_insert_with(|| {
                Arc::new(Slot {
                    attachment: attachment.clone(),
                    op: tokio::sync::Mutex::new(None),
                    status: Mutex::new(Status::default()),
                    gone: tokio::sync::Notify::new(),
                    history: Mutex::new(VecDeque::new()),
                })
            })
            .clone()
    }

    /// Whether `slot` is still the table's slot for its attachment (not removed by a DEL,
    /// GC or lost container while a request waited for its lock, nor replaced by a newer one).
    pub(crate) fn is_current(&self, slot: &Arc<Slot>) -> bool {
        self.slots()
            .get(&slot.attachment)
            .is_some_and(|s| Arc::ptr_eq(s, slot))
    }

    /// The attachment's slot, if it has one.
    pub(crate) fn get(&self, attachment: &Attachment) -> Option<Arc<Slot>> {
        self.slots().get(attachment).cloned()
    }

    /// Removes `slot` from the table if it is still the attachment's slot. A request that got
    /// the slot before its removal and waits for its `op` lock must check
    /// [`Table::is_current`] once it has the lock and start over with a fresh slot (as
    /// `command::add` does), or its work would live in a slot nobody can see.
    pub(crate) fn remove(&self, slot: &Arc<Slot>) {
        let mut slots = self.slots();
        if slots
            .get(&slot.attachment)
            .is_some_and(|s| Arc::ptr_eq(s, slot))
        {
            slots.remove(&slot.attachment);
        }
    }

    /// Every slot, sorted by attachment.
    pub(crate) fn all(&self) -> Vec<Arc<Slot>> {
        let mut all: Vec<_> = self.slots().values().cloned().collect();
        all.sort_by(|a, b| a.attachment.cmp(&b.attachment));
        all
    }

    /// Every slot, in no particular order: for scans that need no order (a conflict check at
    /// every DHCPACK), without [`Table::all`]'s sort.
    pub(crate) fn snapshot(&self) -> Vec<Arc<Slot>> {
        self.slots().values().cloned().collect()
    }

    /// Number of slots.
    pub(crate) fn len(&self) -> usize {
        self.slots().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn att(c: &str) -> Attachment {
        Attachment {
            container_id: c.into(),
            network: "n".into(),
            ifname: "eth0".into(),
        }
    }

    #[test]
    fn slot_is_shared_until_removed() {
        let t = Table::default();
        let a = t.slot(&att("a"));
        let a2 = t.slot(&att("a"));
        assert!(Arc::ptr_eq(&a, &a2));
        let b = t.slot(&att("b"));
        assert!(!Arc::ptr_eq(&a, &b));
        t.remove(&a);
        assert!(t.get(&att("a")).is_none());
        // A stale slot does not remove its successor.
        let a3 = t.slot(&att("a"));
        t.remove(&a);
        assert!(t.get(&att("a")).is_some_and(|s| Arc::ptr_eq(&s, &a3)));
        assert_eq!(t.all().len(), 2);
    }

    #[test]
    fn record_reports_times_relative_to_now() {
        let t = Table::default();
        let s = t.slot(&att("a"));
        let start = Instant::now();
        {
            let mut st = s.status();
            st.timers = Some(Timers {
                renew_at: start + std::time::Duration::from_secs(50),
                rebind_at: start + std::time::Duration::from_secs(87),
                expires_at: start + std::time::Duration::from_secs(100),
            });
            st.state = "BOUND".into();
            st.client_id = vec![0, 0x61];
            st.lease = Some(Lease {
                routers: vec![],
                lease_time: 100,
                renewal_time: 50,
                rebinding_time: 87,
                ..crate::dhcp::reply::test_lease("198.18.0.5")
            });
        }
        let r = s.record(start + std::time::Duration::from_secs(10));
        assert_eq!(r.t1_in, Some(40));
        assert_eq!(r.t2_in, Some(77));
        assert_eq!(r.expires_in, Some(90));
        assert_eq!(r.core.client_id, "0061");
        // Absolute times: the grant is expiry minus the lease time, all on the wall clock.
        let wall = |i: Instant| unix_ms_of(i) as i64;
        let near = |a: Option<u64>, b: i64| (a.unwrap() as i64 - b).abs() < 50;
        assert!(near(r.granted_unix_ms, wall(start)), "{r:?}");
        assert!(near(r.t1_unix_ms, wall(start) + 50_000), "{r:?}");
        assert!(near(r.t2_unix_ms, wall(start) + 87_000), "{r:?}");
        assert!(near(r.expires_unix_ms, wall(start) + 100_000), "{r:?}");
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!((wall(start) - now_ms).abs() < 1000);
        assert_eq!(r.history, None);
        let r = s.record(start + std::time::Duration::from_secs(200));
        assert_eq!(r.expires_in, Some(0));
        s.status().timers = None;
        let r = s.record(start);
        assert_eq!(
            (r.granted_unix_ms, r.t1_unix_ms, r.expires_unix_ms),
            (None, None, None)
        );
    }

    #[test]
    fn history_keeps_the_last_entries_in_order() {
        let t = Table::default();
        let s = t.slot(&att("a"));
        assert_eq!(s.record_with_history(Instant::now()).history, Some(vec![]));
        for i in 0..HISTORY_LEN + 5 {
            s.push_history(Direction::Sent, format!("m{i}"));
        }
        s.push_history(Direction::Event, "address withdrawn");
        let h = s.record_with_history(Instant::now()).history.unwrap();
        assert_eq!(h.len(), HISTORY_LEN);
        assert_eq!(h[0].message, "m6");
        assert_eq!(h.last().unwrap().direction, Direction::Event);
        assert!(h.windows(2).all(|w| w[0].at_unix_ms <= w[1].at_unix_ms));
        // A new status (a new ADD) keeps the history.
        *s.status() = Status::default();
        assert_eq!(s.history().len(), HISTORY_LEN);
    }
}
