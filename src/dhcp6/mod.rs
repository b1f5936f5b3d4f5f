//! DHCPv6 (RFC 8415) for containers: pure protocol code, no sockets, no clocks, no netlink, in
//! the shape of the DHCPv4 side ([`crate::dhcp`]).
//!
//! - [`identity`]: who the client is: a DUID-UUID (RFC 6355) per container and an IAID per
//!   interface, derived byte for byte as docs/design.md (*DHCPv6 identity*) documents;
//! - [`config`]: what one client is configured with ([`ClientConfig`]);
//! - [`message`]: what we send: SOLICIT, REQUEST, RENEW, REBIND, RELEASE, DECLINE, CONFIRM,
//!   encoded by hand (RFC 8415 §8, §21);
//! - [`reply`]: what we receive: a defensive parser of ADVERTISE and REPLY into a [`Reply`] and
//!   the [`Lease6`] it grants;
//! - [`client`]: the sans-IO client state machine (RFC 8415 §18.2) with the §15 retransmission.
//!
//! Only IA_NA (non-temporary addresses) is implemented: no IA_TA, no prefix delegation, no
//! relay messages, no RECONFIGURE, no INFORMATION-REQUEST.

use std::net::{Ipv6Addr, SocketAddrV6};

pub mod client;
pub mod config;
pub mod identity;
pub mod message;
pub mod reply;

pub use client::{Accepted, Client, Event, Ignored, State, Transmit};
pub use config::{ClientConfig, DEFAULT_OPTION_REQUEST, MIN_LIFETIME_SECS};
pub use message::MessageType;
pub use reply::{Lease6, Leased6, ParseError, Reply, StatusCode, parse_reply};

/// All_DHCP_Relay_Agents_and_Servers (RFC 8415 §7.1), `ff02::1:2`: where every message of
/// this client goes.
pub const ALL_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);

/// UDP port clients listen on (RFC 8415 §7.2).
pub const CLIENT_PORT: u16 = 546;

/// UDP port servers and relay agents listen on (RFC 8415 §7.2).
pub const SERVER_PORT: u16 = 547;

/// [`ALL_SERVERS`] port [`SERVER_PORT`], scope 0: the socket, bound to the container's
/// interface, picks the link.
pub const ALL_SERVERS_SOCKET: SocketAddrV6 = SocketAddrV6::new(ALL_SERVERS, SERVER_PORT, 0, 0);
