//! cni-dhcp: a DHCP IPAM for container networking that works on ipvlan.
//!
//! The library every binary shares:
//! - [`cni`]: CNI spec 1.1.0 types (network configuration, results in every supported version,
//!   errors with the spec's codes, the `CNI_*` environment) and the plugin skeleton;
//! - [`dhcp`]: DHCPv4 message building and parsing (RFC 2131, RFC 2132 options) and the sans-IO
//!   client state machine that the daemon drives;
//! - [`dhcp6`]: DHCPv6 (RFC 8415) IA_NA: the per-container DUID-UUID and IAID, message building
//!   and parsing, and a sans-IO client in the same shape (not yet driven by the daemon);
//! - [`ra`]: IPv6 Router Advertisements (RFC 4861) parsed, and what a DHCPv6 lease takes from
//!   them: the on-link prefix length of its address and the default router (RFC 5942);
//! - [`ipam`]: the `dhcp` IPAM plugin (config keys, lease to CNI result);
//! - [`lease_file`]: the format of the persisted lease files and the state directory's layout,
//!   and the read-only loader `dhcp-leases --state-dir` uses;
//! - [`lease_state`]: a lease's state (the client's RFC 2131 state or the daemon's own, such
//!   as `LOST`), as the table, the lease files, the protocol and `dhcp-leases` name it;
//! - [`leases_view`]: what `dhcp-leases` shows (table, detail, JSON schema), live or offline;
//! - [`rpc`]: the versioned, size-limited protocol between the `dhcp` plugin and `dhcp daemon`;
//! - [`netns`]: entering a network namespace on a short-lived thread;
//! - [`link`]: rtnetlink helpers (links, addresses, routes) used by the daemon and `ipvlan`;
//! - [`daemon`]: everything that runs long (lease table, timers, packet sockets, the Unix-socket
//!   server). Its source lives in the top-level `daemon/` directory.
//!
//! The binaries (`src/bin/`) are thin front-ends over these modules.

#![warn(missing_docs)]

pub mod cni;
pub mod dhcp;
pub mod dhcp6;
pub mod ipam;
pub mod lease_file;
pub mod lease_state;
pub mod leases_view;
pub mod link;
pub mod netns;
pub mod ra;
pub mod rpc;
pub mod trunk;

#[path = "../daemon/mod.rs"]
pub mod daemon;
