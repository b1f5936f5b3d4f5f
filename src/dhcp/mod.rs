//! DHCPv4 for containers on ipvlan: pure protocol code, no sockets, no clocks, no netlink.
//!
//! - [`message`]: what we send: the client identifier (option 61, byte-identical to the reference
//!   plugin) and DHCPDISCOVER / DHCPREQUEST / DHCPRELEASE built with dhcproto (RFC 2131, RFC 2132);
//! - [`reply`]: what we receive: a defensive parser of a whole server message into a [`Reply`]
//!   (fixed BOOTP header by offsets, options walked by hand with RFC 3396 concatenation and
//!   option 52 overload) and the [`Lease`] it grants (RFC 3442 classless routes, RFC 3397 search
//!   list);
//! - [`config`]: what one client is configured with ([`ClientConfig`]), read by both of the
//!   above and by the state machine below;
//! - [`names`]: option names for the `provide` and `request` ipam keys;
//! - [`client`]: the sans-IO client state machine (RFC 2131 §4.4) the lease daemon drives with
//!   received payloads and the current time;
//! - `timing`: the acquisition budget and deadline arithmetic it shares with [`crate::dhcp6`].
//!
//! On ipvlan all slaves share the master's MAC, so every message carries option 61, a chaddr
//! derived from it (unless configured otherwise) and, when configured, the BOOTP broadcast
//! flag; replies are filtered by xid, chaddr and echoed option 61 (RFC 6842), and with the
//! shared MAC as chaddr only the xid and option 61 tell slaves apart (docs/design.md, *ipvlan
//! and DHCP*, *A chaddr per container*).

pub mod client;
pub mod config;
pub mod message;
pub mod names;
pub mod reply;
pub(crate) mod timing;

pub use client::{Accepted, Client, Event, Ignored, State, Transmit};
pub use config::{ClientConfig, DEFAULT_PARAMETER_REQUEST_LIST, MIN_LEASE_SECS};
pub use dhcproto::v4::MessageType;
pub use message::client_id;
pub use reply::{Lease, MalformedOption, ParseError, Reply, Route, parse_reply};
