//! The daemon's shared state: one slot per attachment and family (an attachment with DHCPv4
//! and DHCPv6 has two slots, two drivers, two records: the protocols keep their leases
//! independently, as dhcpcd and systemd-networkd do).
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
use crate::dhcp6::Leased6;
use crate::lease_file::Identity;
use crate::lease_state::LeaseState;
use crate::rpc::{Attachment, Direction, Family, HISTORY_LEN, LeaseCore, LeaseRecord, Transaction};

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
    /// Option 61 bytes (IPv4), the DUID (IPv6).
    pub(crate) client_id: Vec<u8>,
    /// chaddr as sent: the interface's MAC (on ipvlan, the master's) or one derived from the
    /// client identifier ([`crate::rpc::ChaddrPolicy`]). Two live leases with the same chaddr
    /// and address mean a server keying by MAC.
    pub(crate) chaddr: [u8; 6],
    /// The client's RFC 2131 state, or the daemon's own (`LOST`); [`LeaseState::Unset`] until
    /// the driver sets one.
    pub(crate) state: LeaseState,
    /// BOOTP broadcast flag in use.
    pub(crate) broadcast: bool,
    /// Why ([`LeaseCore::broadcast_reason`]).
    pub(crate) broadcast_reason: String,
    /// Last acknowledged DHCPv4 lease.
    pub(crate) lease: Option<Lease>,
    /// Last granted DHCPv6 lease.
    pub(crate) lease6: Option<Leased6>,
    /// T1, T2 and expiry of that lease as the client schedules them (fuzz included).
    pub(crate) timers: Option<Timers>,
    /// DHCPACKs received in RENEWING or REBINDING.
    pub(crate) renewals: u32,
    /// The address this attachment held before the server gave it another one (after a NAK or
    /// an expiry), if that ever happened.
    pub(crate) previous_address: Option<std::net::IpAddr>,
    /// Last error, for operators.
    pub(crate) last_error: Option<String>,
}

impl Status {
    /// Whether a lease (of either family) is held.
    pub(crate) fn has_lease(&self) -> bool {
        self.lease.is_some() || self.lease6.is_some()
    }
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

impl Timers {
    /// From a client's T1, T2 and expiry: `None` unless all three are set (no lease, or an
    /// infinite one, `u32::MAX` seconds).
    pub(crate) fn of(
        renew_at: Option<Instant>,
        rebind_at: Option<Instant>,
        expires_at: Option<Instant>,
    ) -> Option<Timers> {
        Some(Timers {
            renew_at: renew_at?,
            rebind_at: rebind_at?,
            expires_at: expires_at?,
        })
    }
}

/// One attachment's slot.
#[derive(Debug)]
pub(crate) struct Slot {
    /// Whose slot.
    pub(crate) attachment: Attachment,
    /// Which of its leases.
    pub(crate) family: Family,
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
        let lease_time = s
            .lease
            .as_ref()
            .map(|l| l.lease_time)
            .or(s.lease6.as_ref().map(|l| l.lease.valid_lifetime));
        let granted = match (&s.timers, lease_time) {
            (Some(t), Some(secs)) => t.expires_at.checked_sub(Duration::from_secs(secs.into())),
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
                family: self.family,
                netns: s.netns,
                client_id: hex::encode(&s.client_id),
                chaddr: (self.family == crate::rpc::Family::Ipv4)
                    .then(|| crate::lease_file::mac::to_string(&s.chaddr)),
                state: s.state,
                broadcast: s.broadcast,
                broadcast_reason: s.broadcast_reason,
                lease: s.lease,
                lease6: s.lease6,
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
    slots: Mutex<HashMap<(Attachment, Family), Arc<Slot>>>,
}

impl Slot {
    fn key(&self) -> (Attachment, Family) {
        (self.attachment.clone(), self.family)
    }
}

impl Table {
    fn slots(&self) -> MutexGuard<'_, HashMap<(Attachment, Family), Arc<Slot>>> {
        self.slots.lock()
    }

    /// The slot of `attachment`'s lease of `family`, created empty if there is none.
    pub(crate) fn slot(&self, attachment: &Attachment, family: Family) -> Arc<Slot> {
        self.slots()
            .entry((attachment.clone(), family))
            .or_insert_with(|| {
                Arc::new(Slot {
                    attachment: attachment.clone(),
                    family,
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
            .get(&slot.key())
            .is_some_and(|s| Arc::ptr_eq(s, slot))
    }

    /// The slot of `attachment`'s lease of `family`, if it has one.
    pub(crate) fn get(&self, attachment: &Attachment, family: Family) -> Option<Arc<Slot>> {
        self.slots().get(&(attachment.clone(), family)).cloned()
    }

    /// The slots of `attachment`, IPv4 first.
    pub(crate) fn of(&self, attachment: &Attachment) -> Vec<Arc<Slot>> {
        [Family::Ipv4, Family::Ipv6]
            .into_iter()
            .filter_map(|f| self.get(attachment, f))
            .collect()
    }

    /// Removes `slot` from the table if it is still the attachment's slot. A request that got
    /// the slot before its removal and waits for its `op` lock must check
    /// [`Table::is_current`] once it has the lock and start over with a fresh slot (as
    /// `command::add` does), or its work would live in a slot nobody can see.
    pub(crate) fn remove(&self, slot: &Arc<Slot>) {
        let mut slots = self.slots();
        let key = slot.key();
        if slots.get(&key).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            slots.remove(&key);
        }
    }

    /// Every slot, sorted by attachment, then family.
    pub(crate) fn all(&self) -> Vec<Arc<Slot>> {
        let mut all: Vec<_> = self.slots().values().cloned().collect();
        all.sort_by(|a, b| (&a.attachment, a.family).cmp(&(&b.attachment, b.family)));
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
impl Table {
    /// [`Table::slot`] of the IPv4 lease.
    pub(crate) fn slot4(&self, attachment: &Attachment) -> Arc<Slot> {
        self.slot(attachment, Family::Ipv4)
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
        let a = t.slot4(&att("a"));
        let a2 = t.slot4(&att("a"));
        assert!(Arc::ptr_eq(&a, &a2));
        let b = t.slot4(&att("b"));
        assert!(!Arc::ptr_eq(&a, &b));
        t.remove(&a);
        assert!(t.get(&att("a"), Family::Ipv4).is_none());
        // A stale slot does not remove its successor.
        let a3 = t.slot4(&att("a"));
        t.remove(&a);
        assert!(
            t.get(&att("a"), Family::Ipv4)
                .is_some_and(|s| Arc::ptr_eq(&s, &a3))
        );
        assert_eq!(t.all().len(), 2);
    }

    #[test]
    fn record_reports_times_relative_to_now() {
        let t = Table::default();
        let s = t.slot4(&att("a"));
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
        let s = t.slot4(&att("a"));
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
