//! The state every part of the daemon shares, in the manner of mini-redis's `db.rs`: the
//! listener ([`super::server`]) creates one [`Shared`] at start and hands an `Arc` of it to each
//! connection's command ([`super::command`]), each lease's driver ([`super::driver`]) and the
//! background tasks (sweeper, metrics, trim). It holds data and the handles to it, no behaviour:
//! what a request does lives in `command.rs`, what a lease does in `driver/`.

use parking_lot::Mutex;
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, AtomicUsize};

use super::Config;
use super::known_servers::KnownServers;
use super::metrics::Metrics;
use super::pacer::Pacer;
use super::store::Store;
use super::table::Table;

/// The daemon's state, shared by every connection, every lease's driver and the background tasks.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The daemon's settings.
    pub(crate) config: Config,
    /// The leases.
    pub(crate) table: Table,
    /// The leases on disk.
    pub(crate) store: Store,
    /// Counters for Prometheus; served only with `-metrics-listen`, kept all the same.
    pub(crate) metrics: Metrics,
    /// Send discipline for every lease's driver (window per network, spaced no-reply sends).
    pub(crate) pacer: Pacer,
    /// Each network's DHCPv4 server MAC, learnt from replies: where a first DHCPDISCOVER goes
    /// as an Ethernet unicast.
    pub(crate) known_servers: KnownServers,
    /// Connections being served now.
    pub(crate) connections: AtomicUsize,
    /// Connections accepted since start.
    pub(crate) accepted: AtomicU64,
    /// (server identifier, chaddr) pairs of servers that have shown they key leases by MAC and
    /// ignore option 61 for that chaddr (`driver::on_offer`): later ADDs on that chaddr fail
    /// while a sibling holds that server's lease.
    pub(crate) mac_keyed: Mutex<HashSet<(Ipv4Addr, [u8; 6])>>,
    /// Bumped when the machine was suspended ([`super::clock::watch_suspend`]); every driver
    /// holds a receiver and runs its timers then.
    pub(crate) suspend: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    /// The state of a daemon that starts with `config` over the opened state directory `store`:
    /// an empty lease table (the listener resumes the persisted leases into it), zeroed counters.
    pub(crate) fn new(config: Config, store: Store) -> Shared {
        Shared {
            config,
            table: Table::default(),
            store,
            metrics: Metrics::default(),
            pacer: Pacer::default(),
            known_servers: KnownServers::default(),
            connections: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            mac_keyed: Default::default(),
            suspend: super::clock::suspend_channel().0,
        }
    }
}
