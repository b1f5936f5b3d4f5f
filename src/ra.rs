//! Receive side of IPv6 router discovery: parsing an ICMPv6 Router Advertisement (RFC 4861
//! §4.2, options §4.6) into a [`RouterAdvertisement`], and the two decisions the daemon takes
//! from it for a DHCPv6 lease: the prefix length of the leased address
//! ([`on_link_prefix_len`]) and the default router ([`default_router`]).
//!
//! DHCPv6 (RFC 8415) hands out bare addresses: IA_NA carries no prefix length and no router.
//! Hosts learn both from the link's Router Advertisements, as dhcpcd and systemd-networkd do
//! (docs/design.md, *Router Advertisements*). Sans-IO like [`crate::dhcp`]: no socket here. The
//! caller reads the message from a raw ICMPv6 socket in the container's namespace and passes the
//! ICMPv6 body (from the type byte) and the IPv6 source address.
//!
//! # Validation
//!
//! RFC 4861 §6.1.2 lists what makes a Router Advertisement invalid. [`parse`] checks everything
//! that can be checked on the payload: type 134, code 0, at least [`HEADER_LEN`] bytes, every
//! option with a non-zero length and inside the message, and a link-local (fe80::/10) source.
//! It cannot check the other two: **the caller must pass only messages received with an IPv6 hop
//! limit of 255** (read from the `IPV6_HOPLIMIT` control message that `IPV6_RECVHOPLIMIT`
//! turns on, RFC 3542 §6.3) so that no off-link node can forge one; and the ICMPv6 checksum,
//! which the kernel verifies on raw ICMPv6 sockets before delivering anything (RFC 3542 §3.1).
//!
//! A Prefix Information option (§4.6.2) that cannot be read (Length not 4, prefix length over
//! 128) makes the whole message an error: prefixes are what this module decides from, and a
//! router that sends them damaged is not to be half believed. Other known options that are
//! malformed (an MTU under 1280, an RDNSS option of the wrong length, RFC 4191 and RFC 8106
//! options that break their own rules) are ignored and reported in
//! [`RouterAdvertisement::malformed`], never hiding the valid options around them, as
//! [`crate::dhcp::reply`] does for DHCPv4. Unknown options are skipped silently (§4.6).
//!
//! # Cost and size bounds
//!
//! Parsing is linear in the payload and never panics: every index is checked. What is kept is
//! bounded whatever the message length: at most [`MAX_PREFIXES`] prefixes, [`MAX_ROUTES`]
//! routes, [`MAX_DNS_SERVERS`] DNS servers and [`MAX_SEARCH_NAMES`] search names; the rest are
//! dropped and reported.
//!
//! Times are as on the wire: router lifetime and option lifetimes in seconds ([`INFINITE`] =
//! forever where the RFC says so), reachable time and retransmission timer in milliseconds.

use std::net::Ipv6Addr;
use std::time::Duration;

use ipnet::Ipv6Net;

use crate::dhcp::reply::{MAX_NAME_LEN, valid_label};

/// ICMPv6 type of a Router Advertisement (RFC 4861 §4.2).
pub const ROUTER_ADVERTISEMENT: u8 = 134;

/// Length of the fixed Router Advertisement header (RFC 4861 §4.2): type, code, checksum, cur hop
/// limit, flags, router lifetime, reachable time, retrans timer. A shorter message is invalid
/// (§6.1.2).
pub const HEADER_LEN: usize = 16;

/// A lifetime of all ones: forever (RFC 4861 §4.6.2 for the prefix lifetimes, RFC 4191 §2.3
/// for routes, RFC 8106 §5.1 for RDNSS and DNSSL).
pub const INFINITE: u32 = u32::MAX;

/// Smallest MTU option value accepted: the IPv6 minimum link MTU (RFC 8200 §5). RFC 4861 §6.3.4
/// says to ignore smaller values.
pub const MIN_MTU: u32 = 1280;

/// Most Prefix Information options kept; those after are dropped and reported in
/// [`RouterAdvertisement::malformed`]. Routers send one or two per link.
pub const MAX_PREFIXES: usize = 16;

/// Most Route Information options (RFC 4191) kept; those after are dropped and reported.
pub const MAX_ROUTES: usize = 16;

/// Most DNS server addresses kept, over all RDNSS options (RFC 8106); resolv.conf reads 3.
pub const MAX_DNS_SERVERS: usize = 16;

/// Most search names kept, over all DNSSL options (RFC 8106), as for DHCPv4's option 119
/// ([`crate::dhcp::reply::MAX_SEARCH_NAMES`]).
pub const MAX_SEARCH_NAMES: usize = crate::dhcp::reply::MAX_SEARCH_NAMES;

/// Longest link-layer address kept from a Source Link-Layer Address option (Ethernet's is 6
/// bytes, InfiniBand's 20); a longer option is reported and ignored.
pub const MAX_LINK_LAYER_LEN: usize = 30;

/// Option types this module decodes (RFC 4861 §4.6 unless noted).
pub mod option_type {
    /// Source Link-Layer Address (RFC 4861 §4.6.1).
    pub const SOURCE_LINK_LAYER: u8 = 1;
    /// Prefix Information (RFC 4861 §4.6.2).
    pub const PREFIX_INFORMATION: u8 = 3;
    /// MTU (RFC 4861 §4.6.4).
    pub const MTU: u8 = 5;
    /// Route Information (RFC 4191 §2.3).
    pub const ROUTE_INFORMATION: u8 = 24;
    /// Recursive DNS Server (RFC 8106 §5.1).
    pub const RDNSS: u8 = 25;
    /// DNS Search List (RFC 8106 §5.2).
    pub const DNSSL: u8 = 31;
}

/// Why an ICMPv6 payload is not a valid Router Advertisement (RFC 4861 §6.1.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RaError {
    /// Shorter than the 16-byte header (RFC 4861 §4.2); the value is the length in bytes.
    #[error("message too short: {0} bytes, a router advertisement has at least 16")]
    TooShort(usize),
    /// The ICMPv6 type is not 134.
    #[error("ICMPv6 type {0}, not a router advertisement (134)")]
    WrongType(u8),
    /// The ICMPv6 code is not 0.
    #[error("ICMPv6 code {0}, a router advertisement has code 0")]
    WrongCode(u8),
    /// The IPv6 source is not link-local (fe80::/10): routers advertise from their link-local
    /// address (RFC 4861 §6.1.2), so this did not come from a router on the link.
    #[error("source {0} is not link-local")]
    SourceNotLinkLocal(Ipv6Addr),
    /// An option with length 0 at this offset (bytes from the type byte): the whole message is
    /// invalid (RFC 4861 §4.6, §6.1.2).
    #[error("option of length 0 at offset {0}")]
    ZeroLengthOption(usize),
    /// An option at `offset` whose length (`len` bytes) runs past the end of the message.
    #[error("option at offset {offset} of {len} bytes runs past the end")]
    OptionPastEnd {
        /// Offset of the option's type byte, from the ICMPv6 type byte.
        offset: usize,
        /// The option's length in bytes (its Length field times 8).
        len: usize,
    },
    /// A Prefix Information option at `offset` that cannot be read (RFC 4861 §4.6.2).
    #[error("prefix information option at offset {offset}: {reason}")]
    BadPrefixInformation {
        /// Offset of the option's type byte, from the ICMPv6 type byte.
        offset: usize,
        /// What was wrong, in words.
        reason: &'static str,
    },
}

/// One option that was present but ignored, kept for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedOption {
    /// The option type ([`option_type`]).
    pub kind: u8,
    /// Offset of its type byte, from the ICMPv6 type byte.
    pub offset: usize,
    /// What was wrong, in words.
    pub reason: &'static str,
}

/// A router's or a route's preference (RFC 4191 §2.1): the 2-bit field 01 high, 00 medium,
/// 11 low. The reserved value 10 is read as medium in the RA header (RFC 4191 §2.2); it makes a
/// Route Information option ignored (§2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Preference {
    /// 11.
    Low,
    /// 00, and the reserved 10 in the header.
    #[default]
    Medium,
    /// 01.
    High,
}

impl Preference {
    /// The field's 2 bits (low bits of the result), `None` for the reserved value.
    fn from_bits(bits: u8) -> Option<Self> {
        match bits & 0b11 {
            0b01 => Some(Self::High),
            0b00 => Some(Self::Medium),
            0b11 => Some(Self::Low),
            _ => None,
        }
    }

    fn bits(self) -> u8 {
        match self {
            Self::High => 0b01,
            Self::Medium => 0b00,
            Self::Low => 0b11,
        }
    }
}

/// A Prefix Information option (RFC 4861 §4.6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixInformation {
    /// The prefix and its length (0 to 128), bits after the length cleared (the receiver ignores
    /// them, §4.6.2).
    pub prefix: Ipv6Net,
    /// L flag: the prefix is on-link (RFC 4861 §4.6.2, §6.3.4). When clear the option says
    /// nothing about on-link (RFC 5942 §4).
    pub on_link: bool,
    /// A flag: the prefix may be used for stateless autoconfiguration (RFC 4862 §5.5.3).
    pub autonomous: bool,
    /// Valid lifetime in seconds (on-link determination); [`INFINITE`] = forever, 0 = remove
    /// now (§6.3.4).
    pub valid_lifetime: u32,
    /// Preferred lifetime in seconds (autoconfiguration only); [`INFINITE`] = forever. Kept as
    /// sent, even when over the valid lifetime.
    pub preferred_lifetime: u32,
}

/// A Route Information option (RFC 4191 §2.3): a more specific route via the advertising router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInformation {
    /// Destination prefix (length 0 to 128), bits after the length cleared.
    pub prefix: Ipv6Net,
    /// The route's preference (never the reserved value: such options are ignored).
    pub preference: Preference,
    /// Route lifetime in seconds; [`INFINITE`] = forever, 0 = remove now.
    pub lifetime: u32,
}

/// The addresses of one RDNSS option (RFC 8106 §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsServers {
    /// Lifetime in seconds; [`INFINITE`] = forever, 0 = no longer use these servers.
    pub lifetime: u32,
    /// The servers, in the router's order; never empty.
    pub addresses: Vec<Ipv6Addr>,
}

/// The names of one DNSSL option (RFC 8106 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchList {
    /// Lifetime in seconds; [`INFINITE`] = forever, 0 = no longer use these names.
    pub lifetime: u32,
    /// Domain names in text form without the trailing dot, in the router's order; only names
    /// whose labels are letters, digits, `-` and `_` (they end up in resolv.conf, docs/design.md,
    /// *Bad input*), at most [`MAX_NAME_LEN`] bytes each; never empty.
    pub names: Vec<String>,
}

/// A valid Router Advertisement (RFC 4861 §4.2) and the options of it that we read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterAdvertisement {
    /// The IPv6 source address of the message: the router's link-local address, always in
    /// fe80::/10.
    pub source: Ipv6Addr,
    /// Cur Hop Limit: the hop limit the router suggests; 0 = unspecified.
    pub cur_hop_limit: u8,
    /// M flag: addresses are available from DHCPv6 (RFC 4861 §4.2; RFC 8415).
    pub managed: bool,
    /// O flag: other configuration (DNS...) is available from DHCPv6.
    pub other: bool,
    /// Default router preference (RFC 4191 §2.2); [`Preference::Medium`] when the router
    /// lifetime is 0 (the receiver ignores it then) or the field holds the reserved value.
    pub preference: Preference,
    /// Router Lifetime in seconds as a default router; 0 = not a default router (RFC 4861
    /// §4.2, §6.3.4). Up to 65535 (RFC 8319).
    pub router_lifetime: u16,
    /// Reachable Time in milliseconds; 0 = unspecified.
    pub reachable_time: u32,
    /// Retrans Timer in milliseconds; 0 = unspecified.
    pub retrans_timer: u32,
    /// Source Link-Layer Address option (§4.6.1): the option's bytes after type and length (6
    /// for Ethernet, RFC 2464 §9, any padding included); the first such option.
    pub source_link_layer: Option<Vec<u8>>,
    /// MTU option (§4.6.4), at least [`MIN_MTU`]; the first such option.
    pub mtu: Option<u32>,
    /// Prefix Information options (§4.6.2), in message order; at most [`MAX_PREFIXES`].
    pub prefixes: Vec<PrefixInformation>,
    /// Route Information options (RFC 4191), in message order; at most [`MAX_ROUTES`].
    pub routes: Vec<RouteInformation>,
    /// RDNSS options (RFC 8106), in message order; [`MAX_DNS_SERVERS`] addresses in all.
    pub dns_servers: Vec<DnsServers>,
    /// DNSSL options (RFC 8106), in message order; [`MAX_SEARCH_NAMES`] names in all.
    pub search_lists: Vec<SearchList>,
    /// Known options that were ignored, and why; empty for a well-formed message.
    pub malformed: Vec<MalformedOption>,
}

/// Parses `payload`, an ICMPv6 message from its type byte as a raw ICMPv6 socket delivers it,
/// received from the IPv6 address `source`.
///
/// The caller must pass only messages that arrived with an IPv6 hop limit of 255 and whose
/// checksum the kernel verified (see the module documentation). Work and memory are linear in
/// `payload`; never panics.
///
/// # Errors
///
/// [`RaError`] when the message is invalid under RFC 4861 §6.1.2: too short, not type 134 code
/// 0, a non-link-local source, an option of length 0 or running past the end, or an unreadable
/// Prefix Information option. The message must then be ignored as a whole.
pub fn parse(payload: &[u8], source: Ipv6Addr) -> Result<RouterAdvertisement, RaError> {
    let Some(header) = payload.first_chunk::<HEADER_LEN>() else {
        return Err(RaError::TooShort(payload.len()));
    };
    if header[0] != ROUTER_ADVERTISEMENT {
        return Err(RaError::WrongType(header[0]));
    }
    if header[1] != 0 {
        return Err(RaError::WrongCode(header[1]));
    }
    if !source.is_unicast_link_local() {
        return Err(RaError::SourceNotLinkLocal(source));
    }
    let flags = header[5];
    let router_lifetime = u16::from_be_bytes([header[6], header[7]]);
    let preference = if router_lifetime == 0 {
        Preference::Medium
    } else {
        Preference::from_bits(flags >> 3).unwrap_or(Preference::Medium)
    };
    let mut ra = RouterAdvertisement {
        source,
        cur_hop_limit: header[4],
        managed: flags & 0x80 != 0,
        other: flags & 0x40 != 0,
        preference,
        router_lifetime,
        reachable_time: be_u32(&header[8..12]),
        retrans_timer: be_u32(&header[12..16]),
        source_link_layer: None,
        mtu: None,
        prefixes: Vec::new(),
        routes: Vec::new(),
        dns_servers: Vec::new(),
        search_lists: Vec::new(),
        malformed: Vec::new(),
    };

    // First check the framing of every option (§6.1.2: one bad length invalidates the whole
    // message), then decode them.
    let mut options = Vec::new();
    let mut offset = HEADER_LEN;
    while offset < payload.len() {
        let Some(&[kind, units]) = payload.get(offset..offset.saturating_add(2)) else {
            // One byte left: too short for an option's type and length.
            return Err(RaError::OptionPastEnd { offset, len: 2 });
        };
        if units == 0 {
            return Err(RaError::ZeroLengthOption(offset));
        }
        let len = usize::from(units) * 8;
        let end = offset.saturating_add(len);
        let Some(option) = payload.get(offset..end) else {
            return Err(RaError::OptionPastEnd { offset, len });
        };
        options.push((offset, kind, option));
        offset = end;
    }
    for (offset, kind, option) in options {
        let body = &option[2..];
        let mut ignore = |reason| {
            ra.malformed.push(MalformedOption {
                kind,
                offset,
                reason,
            })
        };
        match kind {
            option_type::SOURCE_LINK_LAYER => {
                if ra.source_link_layer.is_some() {
                    ignore("repeated source link-layer address option");
                } else if body.len() > MAX_LINK_LAYER_LEN {
                    ignore("link-layer address longer than MAX_LINK_LAYER_LEN");
                } else {
                    ra.source_link_layer = Some(body.to_vec());
                }
            }
            option_type::PREFIX_INFORMATION => {
                let prefix = decode_prefix(option)
                    .map_err(|reason| RaError::BadPrefixInformation { offset, reason })?;
                if ra.prefixes.len() < MAX_PREFIXES {
                    ra.prefixes.push(prefix);
                } else {
                    ignore("more than MAX_PREFIXES prefixes");
                }
            }
            option_type::MTU => match decode_mtu(body) {
                Err(reason) => ignore(reason),
                Ok(_) if ra.mtu.is_some() => ignore("repeated MTU option"),
                Ok(mtu) => ra.mtu = Some(mtu),
            },
            option_type::ROUTE_INFORMATION => match decode_route(option) {
                Err(reason) => ignore(reason),
                Ok(_) if ra.routes.len() >= MAX_ROUTES => ignore("more than MAX_ROUTES routes"),
                Ok(route) => ra.routes.push(route),
            },
            option_type::RDNSS => match decode_rdnss(body) {
                Err(reason) => ignore(reason),
                Ok(mut servers) => {
                    let kept: usize = ra.dns_servers.iter().map(|s| s.addresses.len()).sum();
                    let room = MAX_DNS_SERVERS.saturating_sub(kept);
                    if servers.addresses.len() > room {
                        servers.addresses.truncate(room);
                        ignore("more than MAX_DNS_SERVERS DNS servers");
                    }
                    if !servers.addresses.is_empty() {
                        ra.dns_servers.push(servers);
                    }
                }
            },
            option_type::DNSSL => match decode_dnssl(body) {
                Err(reason) => ignore(reason),
                Ok((mut list, bad)) => {
                    if let Some(reason) = bad {
                        ignore(reason);
                    }
                    let kept: usize = ra.search_lists.iter().map(|l| l.names.len()).sum();
                    let room = MAX_SEARCH_NAMES.saturating_sub(kept);
                    if list.names.len() > room {
                        list.names.truncate(room);
                        ignore("more than MAX_SEARCH_NAMES search names");
                    }
                    if !list.names.is_empty() {
                        ra.search_lists.push(list);
                    }
                }
            },
            // Unknown options are ignored silently (RFC 4861 §4.6).
            _ => {}
        }
    }
    Ok(ra)
}

/// The prefix length to give `address` (a DHCPv6 lease) on the link `ra` describes: the length
/// of the longest prefix that contains it among the Prefix Information options with the L flag
/// set and a non-zero valid lifetime, or `None` when no such prefix contains it.
///
/// `None` means /128: an address from DHCPv6 is not on-link unless a prefix says so (RFC 5942
/// §4, §5), and the host reaches its neighbours through the default router. Link-local and
/// multicast prefixes are not on-link prefixes (RFC 4861 §6.3.4 ignores the link-local prefix;
/// Linux ignores both). The A flag plays no part: dnsmasq's prefix has L set and A clear
/// (docs/design.md, *Router Advertisements*). With several RAs the caller applies this to each
/// and keeps the longest answer.
pub fn on_link_prefix_len(ra: &RouterAdvertisement, address: Ipv6Addr) -> Option<u8> {
    ra.prefixes
        .iter()
        .filter(|p| {
            let network = p.prefix.network();
            p.on_link
                && p.valid_lifetime != 0
                && !network.is_unicast_link_local()
                && !network.is_multicast()
                && p.prefix.contains(&address)
        })
        .map(|p| p.prefix.prefix_len())
        .max()
}

/// The default router `ra` announces: its source (the router's link-local address, to be used
/// with the interface it arrived on) and for how long, from the Router Lifetime in seconds;
/// `None` when the lifetime is 0, meaning the sender is not a default router (RFC 4861 §4.2,
/// §6.3.4). The lifetime counts from the moment the message was received; a later RA from the
/// same router replaces it.
pub fn default_router(ra: &RouterAdvertisement) -> Option<(Ipv6Addr, Duration)> {
    (ra.router_lifetime != 0).then(|| {
        (
            ra.source,
            Duration::from_secs(u64::from(ra.router_lifetime)),
        )
    })
}

impl RouterAdvertisement {
    /// The message as a router would send it: the ICMPv6 body from the type byte, checksum
    /// 0 (the kernel fills it in on a raw ICMPv6 socket), then the options in this order: source
    /// link-layer address, MTU, prefixes, routes, RDNSS, DNSSL. For a fake router in tests and
    /// for the fuzz corpus; [`parse`] of the result gives `self` back (with `malformed` empty)
    /// when `self` came from [`parse`].
    ///
    /// Each item goes into its own option, except that RDNSS addresses and DNSSL names are split
    /// over as many options as their 2040-byte limit needs. Nothing here fails: a link-layer
    /// address longer than [`MAX_LINK_LAYER_LEN`], empty RDNSS or DNSSL lists and search names
    /// [`parse`] would refuse are left out.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut m = vec![ROUTER_ADVERTISEMENT, 0, 0, 0, self.cur_hop_limit];
        let mut flags = 0;
        if self.managed {
            flags |= 0x80;
        }
        if self.other {
            flags |= 0x40;
        }
        if self.router_lifetime != 0 {
            flags |= self.preference.bits() << 3;
        }
        m.push(flags);
        m.extend_from_slice(&self.router_lifetime.to_be_bytes());
        m.extend_from_slice(&self.reachable_time.to_be_bytes());
        m.extend_from_slice(&self.retrans_timer.to_be_bytes());
        if let Some(lla) = &self.source_link_layer
            && lla.len() <= MAX_LINK_LAYER_LEN
        {
            push_option(&mut m, option_type::SOURCE_LINK_LAYER, lla);
        }
        if let Some(mtu) = self.mtu {
            let mut body = vec![0, 0];
            body.extend_from_slice(&mtu.to_be_bytes());
            push_option(&mut m, option_type::MTU, &body);
        }
        for p in &self.prefixes {
            let mut body = vec![p.prefix.prefix_len()];
            body.push(u8::from(p.on_link) << 7 | u8::from(p.autonomous) << 6);
            body.extend_from_slice(&p.valid_lifetime.to_be_bytes());
            body.extend_from_slice(&p.preferred_lifetime.to_be_bytes());
            body.extend_from_slice(&[0; 4]);
            body.extend_from_slice(&p.prefix.network().octets());
            push_option(&mut m, option_type::PREFIX_INFORMATION, &body);
        }
        for r in &self.routes {
            let len = r.prefix.prefix_len();
            let mut body = vec![len, r.preference.bits() << 3];
            body.extend_from_slice(&r.lifetime.to_be_bytes());
            // The shortest Length that holds the prefix (RFC 4191 §2.3): 0, 8 or 16 bytes.
            let prefix_bytes = match len {
                0 => 0,
                1..=64 => 8,
                _ => 16,
            };
            body.extend_from_slice(&r.prefix.network().octets()[..prefix_bytes]);
            push_option(&mut m, option_type::ROUTE_INFORMATION, &body);
        }
        for servers in &self.dns_servers {
            // 6 bytes of reserved and lifetime, then 16 per address, in at most 2038 bytes.
            for chunk in servers.addresses.chunks(127) {
                let mut body = vec![0, 0];
                body.extend_from_slice(&servers.lifetime.to_be_bytes());
                for a in chunk {
                    body.extend_from_slice(&a.octets());
                }
                push_option(&mut m, option_type::RDNSS, &body);
            }
        }
        for list in &self.search_lists {
            let mut body = Vec::new();
            for name in list.names.iter().filter(|n| valid_name(n)) {
                let wire = name_to_wire(name);
                // 2038 bytes after type and length, less 6 of reserved and lifetime.
                if body.len() + wire.len() > 2032 {
                    push_dnssl(&mut m, list.lifetime, &body);
                    body.clear();
                }
                body.extend_from_slice(&wire);
            }
            push_dnssl(&mut m, list.lifetime, &body);
        }
        m
    }
}

fn be_u32(b: &[u8]) -> u32 {
    match b.first_chunk::<4>() {
        Some(&bytes) => u32::from_be_bytes(bytes),
        None => 0,
    }
}

/// A prefix of `len` bits from the first up to 16 bytes of `bytes` (missing bytes are zero),
/// bits after `len` cleared. `len` must be at most 128.
fn prefix_from(bytes: &[u8], len: u8) -> Option<Ipv6Net> {
    let mut octets = [0u8; 16];
    let n = bytes.len().min(16);
    octets[..n].copy_from_slice(&bytes[..n]);
    Ipv6Net::new(Ipv6Addr::from(octets), len)
        .ok()
        .map(|net| net.trunc())
}

/// A whole Prefix Information option (type and length included, RFC 4861 §4.6.2): Length 4;
/// prefix length, flags (L 0x80, A 0x40), valid lifetime, preferred lifetime, 4 reserved bytes,
/// the 16-byte prefix.
fn decode_prefix(option: &[u8]) -> Result<PrefixInformation, &'static str> {
    if option.len() != 32 {
        return Err("length is not 4 (32 bytes)");
    }
    let prefix_len = option[2];
    if prefix_len > 128 {
        return Err("prefix length over 128");
    }
    let prefix = prefix_from(&option[16..32], prefix_len).ok_or("prefix length over 128")?;
    Ok(PrefixInformation {
        prefix,
        on_link: option[3] & 0x80 != 0,
        autonomous: option[3] & 0x40 != 0,
        valid_lifetime: be_u32(&option[4..8]),
        preferred_lifetime: be_u32(&option[8..12]),
    })
}

/// MTU option body (RFC 4861 §4.6.4): 2 reserved bytes and the MTU; Length 1.
fn decode_mtu(body: &[u8]) -> Result<u32, &'static str> {
    if body.len() != 6 {
        return Err("MTU option length is not 1");
    }
    let mtu = be_u32(&body[2..6]);
    if mtu < MIN_MTU {
        return Err("MTU under 1280");
    }
    Ok(mtu)
}

/// A whole Route Information option (RFC 4191 §2.3): prefix length, flags with the preference
/// in bits 4-3, route lifetime, then 0, 8 or 16 bytes of prefix (Length 1, 2 or 3). Invalid
/// (so ignored, §3.1): Length over 3, prefix length over 128, over 64 with Length 2, over 0
/// with Length 1; the reserved preference.
fn decode_route(option: &[u8]) -> Result<RouteInformation, &'static str> {
    let (len, prefix_len) = match option {
        [_, len, prefix_len, ..] if option.len() >= 8 => (*len, *prefix_len),
        _ => return Err("route information option shorter than 8 bytes"),
    };
    let fits = match len {
        1 => prefix_len == 0,
        2 => prefix_len <= 64,
        3 => prefix_len <= 128,
        _ => false,
    };
    if !fits {
        return Err("route information length does not fit its prefix length");
    }
    let preference =
        Preference::from_bits(option[3] >> 3).ok_or("route information reserved preference")?;
    let prefix = prefix_from(&option[8..], prefix_len).ok_or("prefix length over 128")?;
    Ok(RouteInformation {
        prefix,
        preference,
        lifetime: be_u32(&option[4..8]),
    })
}

/// RDNSS option body (RFC 8106 §5.1): 2 reserved bytes, lifetime, one or more addresses; Length
/// 3, 5, 7...
fn decode_rdnss(body: &[u8]) -> Result<DnsServers, &'static str> {
    let addresses = body.get(6..).unwrap_or_default();
    if addresses.is_empty() || addresses.len() % 16 != 0 {
        return Err("RDNSS length is not 1 + 2n with n >= 1");
    }
    Ok(DnsServers {
        lifetime: be_u32(&body[2..6]),
        addresses: addresses
            .chunks_exact(16)
            .map(|a| {
                let mut o = [0u8; 16];
                o.copy_from_slice(a);
                Ipv6Addr::from(o)
            })
            .collect(),
    })
}

/// DNSSL option body (RFC 8106 §5.2): 2 reserved bytes, lifetime, then domain names in DNS wire
/// format (RFC 1035 §3.1) without compression, padded with zero bytes; Length at least 2.
/// A name structurally broken (a label running past the option, a compression pointer) makes
/// the option ignored; a name with characters we refuse or too long is dropped, and the second
/// value says so.
fn decode_dnssl(body: &[u8]) -> Result<(SearchList, Option<&'static str>), &'static str> {
    let Some(data) = body.get(6..).filter(|d| !d.is_empty()) else {
        return Err("DNSSL length under 2");
    };
    let mut names = Vec::new();
    let mut refused = None;
    let mut pos = 0;
    // A zero byte where a name would start is padding: the list ends there.
    while let Some(&first) = data.get(pos)
        && first != 0
    {
        let mut labels: Vec<&[u8]> = Vec::new();
        loop {
            let Some(&len) = data.get(pos) else {
                return Err("DNSSL name runs past the option");
            };
            pos += 1;
            if len == 0 {
                break;
            }
            if len > 63 {
                return Err("DNSSL label over 63 bytes or compressed");
            }
            let Some(label) = data.get(pos..pos + usize::from(len)) else {
                return Err("DNSSL name runs past the option");
            };
            labels.push(label);
            pos += usize::from(len);
        }
        let text_len = labels.iter().map(|l| l.len() + 1).sum::<usize>() - 1;
        if text_len > MAX_NAME_LEN || !labels.iter().all(|l| valid_label(l)) {
            refused = Some("DNSSL name refused (characters or length)");
            continue;
        }
        let name: Vec<u8> = labels.join(&b'.');
        // valid_label admits ASCII only.
        names.push(String::from_utf8(name).map_err(|_| "DNSSL name is not ASCII")?);
    }
    if data[pos..].iter().any(|&b| b != 0) {
        return Err("DNSSL padding is not zero");
    }
    if names.is_empty() {
        return Err(refused.unwrap_or("DNSSL option without names"));
    }
    Ok((
        SearchList {
            lifetime: be_u32(&body[2..6]),
            names,
        },
        refused,
    ))
}

/// A search name [`decode_dnssl`] would keep.
fn valid_name(name: &str) -> bool {
    name.len() <= MAX_NAME_LEN && name.split('.').all(|l| valid_label(l.as_bytes()))
}

fn name_to_wire(name: &str) -> Vec<u8> {
    let mut wire = Vec::with_capacity(name.len() + 2);
    for label in name.split('.') {
        // valid_name checked each label is 1 to 63 bytes.
        wire.push(label.len() as u8);
        wire.extend_from_slice(label.as_bytes());
    }
    wire.push(0);
    wire
}

fn push_dnssl(m: &mut Vec<u8>, lifetime: u32, names: &[u8]) {
    if names.is_empty() {
        return;
    }
    let mut body = vec![0, 0];
    body.extend_from_slice(&lifetime.to_be_bytes());
    body.extend_from_slice(names);
    push_option(m, option_type::DNSSL, &body);
}

/// Appends an option of `kind` with `body` after its type and length, padded with zeros to a
/// multiple of 8 bytes. `body` is at most 2038 bytes (the callers make sure of it), so the
/// Length fits its byte.
fn push_option(m: &mut Vec<u8>, kind: u8, body: &[u8]) {
    let units = (body.len() + 2).div_ceil(8);
    m.push(kind);
    m.push(u8::try_from(units).unwrap_or(u8::MAX));
    m.extend_from_slice(body);
    m.resize(m.len() + units * 8 - body.len() - 2, 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ROUTER: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x200, 0xc6ff, 0xfe12, 1);
    const LEASED: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 0x150);

    /// A Router Advertisement shaped like dnsmasq's with `--enable-ra` and a DHCPv6 range on
    /// 2001:db8:0:1::/64 (docs/design.md, *Router Advertisements*), written byte by byte from
    /// RFC 4861 §4.2 and §4.6 rather than captured: M and O set, router lifetime 1800 s, a
    /// prefix with L set and A clear, MTU, RDNSS with the router's own address, source
    /// link-layer address.
    #[rustfmt::skip]
    const DNSMASQ_RA: &[u8] = &[
        134, 0, 0x5a, 0x3c,             // type, code, checksum (any: the kernel checks it)
        64,                             // cur hop limit
        0xc0,                           // M | O, preference medium
        0x07, 0x08,                     // router lifetime 1800 s
        0, 0, 0, 0,                     // reachable time: unspecified
        0, 0, 0, 0,                     // retrans timer: unspecified
        // Prefix Information: length 4, /64, L only, valid 86400 s, preferred 14400 s.
        3, 4, 64, 0x80,
        0x00, 0x01, 0x51, 0x80,
        0x00, 0x00, 0x38, 0x40,
        0, 0, 0, 0,
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0,
        // MTU 1500.
        5, 1, 0, 0, 0x00, 0x00, 0x05, 0xdc,
        // RDNSS: lifetime 1200 s, the router's link-local address.
        25, 3, 0, 0, 0x00, 0x00, 0x04, 0xb0,
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x02, 0x00, 0xc6, 0xff, 0xfe, 0x12, 0x00, 0x01,
        // Source link-layer address 02:00:c6:12:00:01.
        1, 1, 0x02, 0x00, 0xc6, 0x12, 0x00, 0x01,
    ];

    fn prefix(net: &str, on_link: bool, valid: u32) -> PrefixInformation {
        PrefixInformation {
            prefix: net.parse().unwrap(),
            on_link,
            autonomous: false,
            valid_lifetime: valid,
            preferred_lifetime: valid,
        }
    }

    fn ra_with(prefixes: Vec<PrefixInformation>) -> RouterAdvertisement {
        let mut ra = parse(&DNSMASQ_RA[..HEADER_LEN], ROUTER).unwrap();
        ra.prefixes = prefixes;
        ra
    }

    /// The header of a valid RA with `options` after it.
    fn with_options(options: &[u8]) -> Vec<u8> {
        let mut m = DNSMASQ_RA[..HEADER_LEN].to_vec();
        m.extend_from_slice(options);
        m
    }

    /// Everything in a parsed RA is read by the decision functions and the encoder.
    fn exercise(ra: &RouterAdvertisement) {
        let _ = default_router(ra);
        let _ = on_link_prefix_len(ra, LEASED);
        for p in &ra.prefixes {
            let _ = on_link_prefix_len(ra, p.prefix.network());
        }
        let _ = ra.to_bytes();
    }

    #[test]
    fn dnsmasq_ra_parses_field_by_field() {
        let ra = parse(DNSMASQ_RA, ROUTER).unwrap();
        assert_eq!(ra.source, ROUTER);
        assert_eq!(ra.cur_hop_limit, 64);
        assert!(ra.managed && ra.other);
        assert_eq!(ra.preference, Preference::Medium);
        assert_eq!(ra.router_lifetime, 1800);
        assert_eq!((ra.reachable_time, ra.retrans_timer), (0, 0));
        assert_eq!(
            ra.prefixes,
            vec![PrefixInformation {
                prefix: "2001:db8:0:1::/64".parse().unwrap(),
                on_link: true,
                autonomous: false,
                valid_lifetime: 86400,
                preferred_lifetime: 14400,
            }]
        );
        assert_eq!(ra.mtu, Some(1500));
        assert_eq!(
            ra.dns_servers,
            vec![DnsServers {
                lifetime: 1200,
                addresses: vec![ROUTER]
            }]
        );
        assert_eq!(
            ra.source_link_layer.as_deref(),
            Some(&[0x02, 0x00, 0xc6, 0x12, 0x00, 0x01][..])
        );
        assert!(ra.routes.is_empty() && ra.search_lists.is_empty());
        assert!(ra.malformed.is_empty(), "{:?}", ra.malformed);
        // The decision: the leased address is on the /64, the router is the default for 30 min.
        assert_eq!(on_link_prefix_len(&ra, LEASED), Some(64));
        assert_eq!(
            default_router(&ra),
            Some((ROUTER, Duration::from_secs(1800)))
        );
        // The encoder writes the same options in its own order (no checksum): same message.
        assert_eq!(parse(&ra.to_bytes(), ROUTER).unwrap(), ra);
    }

    #[test]
    fn longest_on_link_prefix_wins() {
        let ra = ra_with(vec![
            prefix("2001:db8::/32", true, 3600),
            prefix("2001:db8:0:1::/64", true, 3600),
            prefix("2001:db8:0:1::/56", true, 3600),
        ]);
        assert_eq!(on_link_prefix_len(&ra, LEASED), Some(64));
        // Only the /32 holds this one.
        let other = "2001:db8:ff::1".parse().unwrap();
        assert_eq!(on_link_prefix_len(&ra, other), Some(32));
    }

    #[test]
    fn a_prefix_without_the_l_flag_says_nothing_about_on_link() {
        // RFC 5942 §4: L clear is not "off-link"; with nothing else the address is a /128.
        let ra = ra_with(vec![prefix("2001:db8:0:1::/64", false, 3600)]);
        assert_eq!(on_link_prefix_len(&ra, LEASED), None);
        let ra = ra_with(vec![
            prefix("2001:db8:0:1::/64", false, 3600),
            prefix("2001:db8::/48", true, 3600),
        ]);
        assert_eq!(on_link_prefix_len(&ra, LEASED), Some(48));
    }

    #[test]
    fn a_prefix_with_zero_valid_lifetime_is_ignored() {
        let ra = ra_with(vec![
            prefix("2001:db8:0:1::/64", true, 0),
            prefix("2001:db8::/48", true, INFINITE),
        ]);
        assert_eq!(on_link_prefix_len(&ra, LEASED), Some(48));
        let ra = ra_with(vec![prefix("2001:db8:0:1::/64", true, 0)]);
        assert_eq!(on_link_prefix_len(&ra, LEASED), None);
    }

    #[test]
    fn an_address_outside_every_prefix_is_a_128() {
        let ra = ra_with(vec![
            prefix("2001:db8:0:2::/64", true, 3600),
            prefix("2001:db9::/32", true, 3600),
        ]);
        assert_eq!(on_link_prefix_len(&ra, LEASED), None);
        assert_eq!(on_link_prefix_len(&ra_with(vec![]), LEASED), None);
    }

    #[test]
    fn link_local_and_multicast_prefixes_are_not_on_link_prefixes() {
        let ra = ra_with(vec![
            prefix("fe80::/64", true, 3600),
            prefix("ff02::/16", true, 3600),
        ]);
        assert_eq!(on_link_prefix_len(&ra, "fe80::1".parse().unwrap()), None);
        assert_eq!(on_link_prefix_len(&ra, "ff02::1".parse().unwrap()), None);
    }

    #[test]
    fn host_bits_of_a_prefix_are_ignored() {
        // §4.6.2: bits after the prefix length are ignored by the receiver.
        let mut m = DNSMASQ_RA.to_vec();
        m[HEADER_LEN + 16 + 15] = 0x99;
        let ra = parse(&m, ROUTER).unwrap();
        assert_eq!(ra.prefixes[0].prefix, "2001:db8:0:1::/64".parse().unwrap());
    }

    #[test]
    fn router_lifetime_zero_is_no_default_router() {
        let mut m = DNSMASQ_RA.to_vec();
        m[5] |= 0b01 << 3; // high preference, to be ignored with lifetime 0
        m[6..8].copy_from_slice(&[0, 0]);
        let ra = parse(&m, ROUTER).unwrap();
        assert_eq!(default_router(&ra), None);
        assert_eq!(ra.preference, Preference::Medium);
        // Its prefixes still count (RFC 4861 §6.3.4 treats them on their own).
        assert_eq!(on_link_prefix_len(&ra, LEASED), Some(64));
    }

    #[test]
    fn router_lifetime_up_to_65535_seconds() {
        let mut m = DNSMASQ_RA.to_vec();
        m[6..8].copy_from_slice(&[0xff, 0xff]);
        let ra = parse(&m, ROUTER).unwrap();
        assert_eq!(
            default_router(&ra),
            Some((ROUTER, Duration::from_secs(65535)))
        );
    }

    #[test]
    fn preference_bits() {
        for (bits, want) in [
            (0b01, Preference::High),
            (0b00, Preference::Medium),
            (0b11, Preference::Low),
            (0b10, Preference::Medium), // reserved: medium (RFC 4191 §2.2)
        ] {
            let mut m = DNSMASQ_RA.to_vec();
            m[5] = 0xc0 | bits << 3;
            assert_eq!(
                parse(&m, ROUTER).unwrap().preference,
                want,
                "bits {bits:02b}"
            );
        }
    }

    #[test]
    fn short_messages_are_errors() {
        for n in 0..HEADER_LEN {
            assert_eq!(parse(&DNSMASQ_RA[..n], ROUTER), Err(RaError::TooShort(n)));
        }
        // The bare header is a valid RA without options.
        let ra = parse(&DNSMASQ_RA[..HEADER_LEN], ROUTER).unwrap();
        assert!(ra.prefixes.is_empty() && ra.mtu.is_none());
    }

    #[test]
    fn wrong_type_or_code_is_an_error() {
        let mut m = DNSMASQ_RA.to_vec();
        m[0] = 133; // router solicitation
        assert_eq!(parse(&m, ROUTER), Err(RaError::WrongType(133)));
        let mut m = DNSMASQ_RA.to_vec();
        m[1] = 1;
        assert_eq!(parse(&m, ROUTER), Err(RaError::WrongCode(1)));
    }

    #[test]
    fn a_source_off_link_is_an_error() {
        for source in ["2001:db8::1", "::1", "::", "ff02::1", "fec0::1"] {
            let source: Ipv6Addr = source.parse().unwrap();
            assert_eq!(
                parse(DNSMASQ_RA, source),
                Err(RaError::SourceNotLinkLocal(source))
            );
        }
        // fe80::/10, not only fe80::/64.
        assert!(parse(DNSMASQ_RA, "febf::1".parse().unwrap()).is_ok());
    }

    #[test]
    fn a_zero_length_option_invalidates_the_message() {
        // Even after valid options, even an unknown one.
        let mut m = DNSMASQ_RA.to_vec();
        m.extend_from_slice(&[200, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            parse(&m, ROUTER),
            Err(RaError::ZeroLengthOption(DNSMASQ_RA.len()))
        );
        assert_eq!(
            parse(&with_options(&[3, 0]), ROUTER),
            Err(RaError::ZeroLengthOption(HEADER_LEN))
        );
    }

    #[test]
    fn an_option_past_the_end_invalidates_the_message() {
        // The prefix option cut short.
        let m = &DNSMASQ_RA[..HEADER_LEN + 31];
        assert_eq!(
            parse(m, ROUTER),
            Err(RaError::OptionPastEnd {
                offset: HEADER_LEN,
                len: 32
            })
        );
        // One stray byte after the options.
        let mut m = DNSMASQ_RA.to_vec();
        m.push(1);
        assert_eq!(
            parse(&m, ROUTER),
            Err(RaError::OptionPastEnd {
                offset: DNSMASQ_RA.len(),
                len: 2
            })
        );
        // Length 255 (2040 bytes) in a short message.
        assert_eq!(
            parse(&with_options(&[25, 255, 0, 0, 0, 0, 0, 0]), ROUTER),
            Err(RaError::OptionPastEnd {
                offset: HEADER_LEN,
                len: 2040
            })
        );
    }

    #[test]
    fn an_unreadable_prefix_option_invalidates_the_message() {
        let mut m = DNSMASQ_RA.to_vec();
        m[HEADER_LEN + 2] = 129;
        assert_eq!(
            parse(&m, ROUTER),
            Err(RaError::BadPrefixInformation {
                offset: HEADER_LEN,
                reason: "prefix length over 128"
            })
        );
        let mut m = DNSMASQ_RA.to_vec();
        m[HEADER_LEN + 2] = 255;
        assert!(matches!(
            parse(&m, ROUTER),
            Err(RaError::BadPrefixInformation { .. })
        ));
        // /128 and /0 are valid lengths.
        for len in [0, 128] {
            let mut m = DNSMASQ_RA.to_vec();
            m[HEADER_LEN + 2] = len;
            assert_eq!(
                parse(&m, ROUTER).unwrap().prefixes[0].prefix.prefix_len(),
                len
            );
        }
        // Length 3 and 5 instead of 4.
        for units in [3u8, 5] {
            let mut option = vec![3, units, 64, 0x80];
            option.resize(usize::from(units) * 8, 0);
            assert_eq!(
                parse(&with_options(&option), ROUTER),
                Err(RaError::BadPrefixInformation {
                    offset: HEADER_LEN,
                    reason: "length is not 4 (32 bytes)"
                })
            );
        }
    }

    #[test]
    fn other_malformed_options_are_ignored_and_reported() {
        let options: &[&[u8]] = &[
            // MTU under 1280, then a good one.
            &[5, 1, 0, 0, 0, 0, 0x04, 0xff],
            &[5, 1, 0, 0, 0, 0, 0x05, 0x00],
            // MTU option of length 2.
            &[5, 2, 0, 0, 0, 0, 0x05, 0xdc, 0, 0, 0, 0, 0, 0, 0, 0],
            // RDNSS of length 2 (half an address), then of length 1 (none).
            &[25, 2, 0, 0, 0, 0, 0, 60, 0, 0, 0, 0, 0, 0, 0, 0],
            &[25, 1, 0, 0, 0, 0, 0, 60],
            // Route information: /48 with Length 1; reserved preference; prefix length 129.
            &[24, 1, 48, 0, 0, 0, 0, 60],
            &[
                24,
                2,
                48,
                0b10 << 3,
                0,
                0,
                0,
                60,
                0x20,
                1,
                0xd,
                0xb8,
                0,
                0,
                0,
                0,
            ],
            &[
                24, 3, 129, 0, 0, 0, 0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
            // Route information of Length 4.
            &[
                24, 4, 0, 0, 0, 0, 0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                0, 0, 0, 0, 0,
            ],
            // A second source link-layer address.
            &[1, 1, 0x02, 0, 0, 0, 0, 0x01],
            &[1, 1, 0x02, 0, 0, 0, 0, 0x02],
            // An unknown option: skipped, not reported.
            &[42, 1, 1, 2, 3, 4, 5, 6],
            // A good route: 2001:db8:1::/48 high preference, 600 s.
            &[
                24,
                2,
                48,
                0b01 << 3,
                0,
                0,
                0x02,
                0x58,
                0x20,
                1,
                0xd,
                0xb8,
                0,
                1,
                0,
                0,
            ],
        ];
        let ra = parse(&with_options(&options.concat()), ROUTER).unwrap();
        assert_eq!(ra.mtu, Some(1280));
        assert!(ra.dns_servers.is_empty());
        assert_eq!(
            ra.routes,
            vec![RouteInformation {
                prefix: "2001:db8:1::/48".parse().unwrap(),
                preference: Preference::High,
                lifetime: 600,
            }]
        );
        assert_eq!(ra.source_link_layer, Some(vec![2, 0, 0, 0, 0, 1]));
        let kinds: Vec<u8> = ra.malformed.iter().map(|m| m.kind).collect();
        assert_eq!(kinds, [5, 5, 25, 25, 24, 24, 24, 24, 1]);
        // Offsets point at each reported option's type byte.
        let m = with_options(&options.concat());
        assert!(ra.malformed.iter().all(|o| m[o.offset] == o.kind));
    }

    #[test]
    fn route_information_lengths() {
        // ::/0 in Length 1; a /64 in Length 2; a /128 in Length 3; a /64 in Length 3.
        let options: &[&[u8]] = &[
            &[24, 1, 0, 0b11 << 3, 0xff, 0xff, 0xff, 0xff],
            &[24, 2, 64, 0, 0, 0, 0, 1, 0x20, 1, 0xd, 0xb8, 0, 2, 0, 3],
            &[
                24, 3, 128, 0, 0, 0, 0, 1, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9,
            ],
            &[
                24, 3, 64, 0, 0, 0, 0, 1, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 4, 0xff, 0, 0, 0, 0, 0, 0, 9,
            ],
        ];
        let ra = parse(&with_options(&options.concat()), ROUTER).unwrap();
        assert!(ra.malformed.is_empty(), "{:?}", ra.malformed);
        let got: Vec<(String, Preference, u32)> = ra
            .routes
            .iter()
            .map(|r| (r.prefix.to_string(), r.preference, r.lifetime))
            .collect();
        assert_eq!(
            got,
            [
                ("::/0".to_string(), Preference::Low, INFINITE),
                ("2001:db8:2:3::/64".to_string(), Preference::Medium, 1),
                ("2001:db8::9/128".to_string(), Preference::Medium, 1),
                ("2001:db8:0:4::/64".to_string(), Preference::Medium, 1),
            ]
        );
    }

    /// A DNSSL option body: reserved, lifetime 300 s, then `names` (already in wire form).
    fn dnssl(names: &[u8]) -> Vec<u8> {
        let mut body = vec![0, 0, 0, 0, 0x01, 0x2c];
        body.extend_from_slice(names);
        let mut m = Vec::new();
        push_option(&mut m, option_type::DNSSL, &body);
        m
    }

    #[test]
    fn dnssl_names_are_decoded_and_checked() {
        let ok = dnssl(b"\x07example\x03com\x00\x03lab\x00");
        let ra = parse(&with_options(&ok), ROUTER).unwrap();
        assert_eq!(
            ra.search_lists,
            vec![SearchList {
                lifetime: 300,
                names: vec!["example.com".into(), "lab".into()]
            }]
        );
        assert!(ra.malformed.is_empty());
        // A name with a shell metacharacter is dropped, the others kept.
        let ra = parse(&with_options(&dnssl(b"\x04a;b$\x00\x03lab\x00")), ROUTER).unwrap();
        assert_eq!(ra.search_lists[0].names, ["lab"]);
        assert_eq!(ra.malformed.len(), 1);
        // Structurally broken: compression pointer, label past the option, non-zero padding,
        // no names at all, nothing after the lifetime (Length 1).
        for bad in [
            dnssl(b"\x03lab\xc0\x00"),
            dnssl(b"\x3flab"),
            dnssl(b"\x03lab\x00\x00\x01"),
            dnssl(b""),
            vec![31, 1, 0, 0, 0, 0, 0, 1],
        ] {
            let ra = parse(&with_options(&bad), ROUTER).unwrap();
            assert!(ra.search_lists.is_empty(), "{bad:?}");
            assert_eq!(ra.malformed.len(), 1, "{bad:?}");
            assert_eq!(ra.malformed[0].kind, option_type::DNSSL);
        }
    }

    #[test]
    fn lists_are_bounded() {
        let mut options = Vec::new();
        for i in 0..MAX_PREFIXES + 3 {
            let mut p = vec![
                3, 4, 64, 0x80, 0, 0, 0, 60, 0, 0, 0, 60, 0, 0, 0, 0, 0x20, 1, 0xd, 0xb8,
            ];
            p.extend_from_slice(&(i as u16).to_be_bytes());
            p.resize(32, 0);
            options.extend_from_slice(&p);
        }
        for _ in 0..MAX_ROUTES + 1 {
            options.extend_from_slice(&[24, 1, 0, 0, 0, 0, 0, 60]);
        }
        // 3 RDNSS options of 7 addresses each: 21 > 16.
        for _ in 0..3 {
            let mut body = vec![0, 0, 0, 0, 0, 60];
            for _ in 0..7 {
                body.extend_from_slice(&ROUTER.octets());
            }
            push_option(&mut options, option_type::RDNSS, &body);
        }
        let names: Vec<u8> = b"\x01a\x00".repeat(MAX_SEARCH_NAMES + 5);
        options.extend_from_slice(&dnssl(&names));
        let ra = parse(&with_options(&options), ROUTER).unwrap();
        assert_eq!(ra.prefixes.len(), MAX_PREFIXES);
        assert_eq!(ra.routes.len(), MAX_ROUTES);
        let servers: usize = ra.dns_servers.iter().map(|s| s.addresses.len()).sum();
        assert_eq!(servers, MAX_DNS_SERVERS);
        assert_eq!(ra.dns_servers.len(), 3);
        assert_eq!(ra.search_lists[0].names.len(), MAX_SEARCH_NAMES);
        assert_eq!(ra.malformed.len(), 3 + 1 + 1 + 1);
        assert_eq!(parse(&ra.to_bytes(), ROUTER).unwrap().prefixes, ra.prefixes);
    }

    #[test]
    fn to_bytes_splits_long_lists_and_leaves_out_what_parse_refuses() {
        let mut ra = ra_with(vec![]);
        ra.dns_servers = vec![DnsServers {
            lifetime: 60,
            addresses: vec![ROUTER; 130],
        }];
        ra.search_lists = vec![SearchList {
            lifetime: 60,
            names: vec!["a".repeat(63) + "." + &"b".repeat(63); 40]
                .into_iter()
                .chain(["bad name".to_string()])
                .collect(),
        }];
        ra.source_link_layer = Some(vec![0; MAX_LINK_LAYER_LEN + 1]);
        let bytes = ra.to_bytes();
        let back = parse(&bytes, ROUTER).unwrap();
        // 130 addresses in two options (127 + 3), of which MAX_DNS_SERVERS are kept.
        assert_eq!(back.dns_servers.len(), 1);
        assert_eq!(back.dns_servers[0].addresses.len(), MAX_DNS_SERVERS);
        // 40 names of 129 bytes in wire form: 15 fit in an option.
        assert_eq!(back.search_lists.len(), 3);
        assert_eq!(back.search_lists[0].names.len(), 15);
        assert_eq!(back.source_link_layer, None);
    }

    #[test]
    fn never_panics_on_mutations_of_a_valid_ra() {
        use rand::rngs::SmallRng;
        use rand::{Rng, SeedableRng};
        let mut rng = SmallRng::seed_from_u64(12);
        for _ in 0..20_000 {
            let mut m = DNSMASQ_RA.to_vec();
            for _ in 0..rng.random_range(1..6) {
                let i = rng.random_range(0..m.len());
                m[i] = rng.random();
            }
            m.truncate(rng.random_range(0..=m.len()));
            if let Ok(ra) = parse(&m, ROUTER) {
                exercise(&ra);
            }
        }
    }

    /// The seeds of the `ra` fuzz target (fuzz/corpus/ra/): valid RAs, one file each. Run
    /// `cargo test --lib ra::tests::write_fuzz_corpus -- --ignored` to write them again.
    fn corpus() -> Vec<(&'static str, Vec<u8>)> {
        let mut rich = parse(DNSMASQ_RA, ROUTER).unwrap();
        rich.preference = Preference::High;
        rich.reachable_time = 30_000;
        rich.retrans_timer = 1000;
        rich.prefixes.push(prefix("2001:db8::/48", true, INFINITE));
        rich.prefixes.push(PrefixInformation {
            prefix: "2001:db8:0:2::/64".parse().unwrap(),
            on_link: false,
            autonomous: true,
            valid_lifetime: 0,
            preferred_lifetime: 0,
        });
        rich.routes = vec![
            RouteInformation {
                prefix: "::/0".parse().unwrap(),
                preference: Preference::Low,
                lifetime: 1800,
            },
            RouteInformation {
                prefix: "2001:db8:100::/40".parse().unwrap(),
                preference: Preference::High,
                lifetime: INFINITE,
            },
            RouteInformation {
                prefix: "2001:db8:200::1/128".parse().unwrap(),
                preference: Preference::Medium,
                lifetime: 60,
            },
        ];
        rich.search_lists = vec![SearchList {
            lifetime: 1200,
            names: vec!["example.com".into(), "lab.example".into()],
        }];
        let mut leaving = parse(DNSMASQ_RA, ROUTER).unwrap();
        leaving.router_lifetime = 0;
        leaving.prefixes[0].valid_lifetime = 0;
        leaving.prefixes[0].preferred_lifetime = 0;
        vec![
            ("dnsmasq", DNSMASQ_RA.to_vec()),
            ("header-only", DNSMASQ_RA[..HEADER_LEN].to_vec()),
            ("rich", rich.to_bytes()),
            ("leaving", leaving.to_bytes()),
        ]
    }

    #[test]
    #[ignore = "writes fuzz/corpus/ra/"]
    fn write_fuzz_corpus() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/ra");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in corpus() {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }

    #[test]
    fn the_committed_fuzz_corpus_is_current() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/ra");
        for (name, bytes) in corpus() {
            let ra = parse(&bytes, ROUTER).unwrap();
            assert!(ra.malformed.is_empty(), "{name}: {:?}", ra.malformed);
            let committed = std::fs::read(dir.join(name)).unwrap();
            assert_eq!(committed, bytes, "fuzz/corpus/ra/{name} is stale");
        }
    }

    fn prefix_strategy() -> impl Strategy<Value = Ipv6Net> {
        (any::<u128>(), 0u8..=128)
            .prop_map(|(a, len)| Ipv6Net::new(Ipv6Addr::from(a), len).unwrap().trunc())
    }

    fn preference_strategy() -> impl Strategy<Value = Preference> {
        prop_oneof![
            Just(Preference::Low),
            Just(Preference::Medium),
            Just(Preference::High)
        ]
    }

    fn ra_strategy() -> impl Strategy<Value = RouterAdvertisement> {
        let header = (
            any::<u8>(),
            any::<bool>(),
            any::<bool>(),
            preference_strategy(),
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
            proptest::option::of(any::<[u8; 6]>()),
            proptest::option::of(MIN_MTU..),
        );
        let prefixes = proptest::collection::vec(
            (
                prefix_strategy(),
                any::<bool>(),
                any::<bool>(),
                any::<u32>(),
                any::<u32>(),
            )
                .prop_map(
                    |(prefix, on_link, autonomous, valid_lifetime, preferred_lifetime)| {
                        PrefixInformation {
                            prefix,
                            on_link,
                            autonomous,
                            valid_lifetime,
                            preferred_lifetime,
                        }
                    },
                ),
            0..=MAX_PREFIXES,
        );
        let routes = proptest::collection::vec(
            (prefix_strategy(), preference_strategy(), any::<u32>()).prop_map(
                |(prefix, preference, lifetime)| RouteInformation {
                    prefix,
                    preference,
                    lifetime,
                },
            ),
            0..=MAX_ROUTES,
        );
        let dns = proptest::collection::vec(
            (
                any::<u32>(),
                proptest::collection::vec(any::<u128>(), 1..=4),
            )
                .prop_map(|(lifetime, a)| DnsServers {
                    lifetime,
                    addresses: a.into_iter().map(Ipv6Addr::from).collect(),
                }),
            0..=4,
        );
        let search = proptest::collection::vec(
            (
                any::<u32>(),
                proptest::collection::vec("[a-z0-9_-]{1,20}(\\.[a-z0-9-]{1,20}){0,3}", 1..=8),
            )
                .prop_map(|(lifetime, names)| SearchList { lifetime, names }),
            0..=4,
        );
        (header, prefixes, routes, dns, search, any::<u64>()).prop_map(
            |(
                (hop, m, o, pref, life, reach, retrans, lla, mtu),
                prefixes,
                routes,
                dns,
                search,
                iid,
            )| {
                RouterAdvertisement {
                    source: Ipv6Addr::from((0xfe80u128 << 112) | u128::from(iid)),
                    cur_hop_limit: hop,
                    managed: m,
                    other: o,
                    preference: if life == 0 { Preference::Medium } else { pref },
                    router_lifetime: life,
                    reachable_time: reach,
                    retrans_timer: retrans,
                    source_link_layer: lla.map(|a| a.to_vec()),
                    mtu,
                    prefixes,
                    routes,
                    dns_servers: dns,
                    search_lists: search,
                    malformed: Vec::new(),
                }
            },
        )
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            iid in any::<u64>(),
        ) {
            let source = Ipv6Addr::from((0xfe80u128 << 112) | u128::from(iid));
            // As they come, and with a valid header so that the options get walked.
            let mut with_header = DNSMASQ_RA[..HEADER_LEN].to_vec();
            with_header.extend_from_slice(&bytes);
            for m in [&bytes, &with_header] {
                if let Ok(ra) = parse(m, source) {
                    exercise(&ra);
                    // What parse kept survives the encoder.
                    let mut clean = ra.clone();
                    clean.malformed.clear();
                    prop_assert_eq!(parse(&ra.to_bytes(), source).unwrap(), clean);
                }
            }
        }

        #[test]
        fn encoded_ras_parse_back(ra in ra_strategy()) {
            let back = parse(&ra.to_bytes(), ra.source).unwrap();
            prop_assert_eq!(&back, &ra);
            for p in &ra.prefixes {
                let got = on_link_prefix_len(&ra, p.prefix.network());
                // Some prefix holds the address, so the answer is at least this one's length
                // when it counts.
                let counts = p.on_link && p.valid_lifetime != 0
                    && !p.prefix.network().is_unicast_link_local()
                    && !p.prefix.network().is_multicast();
                if counts {
                    prop_assert!(got >= Some(p.prefix.prefix_len()));
                }
                if let Some(len) = got {
                    prop_assert!(ra.prefixes.iter().any(|q| q.on_link
                        && q.valid_lifetime != 0
                        && q.prefix.prefix_len() == len
                        && q.prefix.contains(&p.prefix.network())));
                }
            }
            prop_assert_eq!(default_router(&ra).is_some(), ra.router_lifetime != 0);
        }
    }
}
