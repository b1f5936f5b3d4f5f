//! Receive side: parsing a server's DHCP message (DHCPOFFER, DHCPACK, DHCPNAK) into a [`Reply`]
//! and the lease it describes into a [`Lease`].
//!
//! We deliberately do not use dhcproto's decoder here (docs/design.md, *dhcproto's decoder*): it
//! panics under debug assertions on some malformed options, stops at the first malformed option and
//! so loses every option after it, mis-decodes option 121 and ignores option 52. Instead the fixed
//! BOOTP header is read by offsets (RFC 2131 §2, figure 1) and the options are walked by hand
//! (RFC 2132 §2): pad (0) is skipped, end (255) stops, zero-length options are skipped, an option
//! whose length runs past the buffer stops the walk keeping everything valid before it, repeated
//! codes are concatenated (RFC 3396) and option 52 overload continues the walk into `file` then
//! `sname`.
//! Each known option is then decoded on its own; one that is malformed (e.g. option 1 not 4 bytes)
//! is reported in [`Reply::malformed`] and ignored, never hiding the valid options around it.
//! Nothing here panics on any input: every index is checked and all arithmetic is bounded.
//!
//! # Cost and size bounds
//!
//! [`parse_reply`] runs on every datagram the client hears, before [`Reply::xid`] and
//! [`Reply::client_id`] tell whether it is ours (on ipvlan every slave hears every broadcast
//! reply), so it does only work linear in the datagram and allocates at most a copy of it: it
//! never decodes option 119, whose DNS name compression (RFC 1035 §4.1.4) makes a few bytes
//! stand for a whole name. Option 119 is decoded by [`Reply::domain_search`], which
//! [`Reply::to_lease`] calls, and the client calls that only for a reply that passed its xid,
//! client identifier, chaddr and message type checks.
//!
//! A [`Lease`] is kept in the daemon's state files and sent in every LIST answer, so each of
//! its lists has a bound ([`Lease::check_bounds`]): [`MAX_ADDRESSES`] routers and DNS servers,
//! [`MAX_ROUTES`] routes per route option, [`MAX_SEARCH_NAMES`] search names of
//! [`MAX_SEARCH_BYTES`] in all, [`MAX_NAME_LEN`] per name.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use dhcproto::v4::MessageType;
use ipnet::Ipv4Net;

/// The DHCP magic cookie 99.130.83.99 that starts the options field (RFC 2131 §3, RFC 2132 §2).
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];

/// Length of the fixed BOOTP header up to and including the magic cookie (RFC 2131 §2): 236 bytes
/// of header plus the 4-byte cookie. A shorter UDP payload cannot be a DHCP message.
pub const HEADER_LEN: usize = 240;

/// Most routers (option 3) and most DNS servers (option 6) kept in a [`Lease`], each. Only the
/// first router is used (the CNI result's gateway) and resolv.conf reads 3 name servers
/// (`MAXNS`); addresses beyond are dropped and reported in [`Reply::malformed`].
pub const MAX_ADDRESSES: usize = 16;

/// Most routes in [`Lease::classless_routes`] (option 121) and in [`Lease::static_routes`]
/// (option 33), each. An option with more is ignored as a whole and reported in
/// [`Reply::malformed`], as a malformed one is: a routing table cut short (possibly without its
/// default route) is worse than none.
pub const MAX_ROUTES: usize = 64;

/// Most entries of the option 119 search list examined (RFC 3397 sets no limit; glibc used to
/// read 6); entries beyond, and names that would take the list past [`MAX_SEARCH_BYTES`], are
/// dropped and reported by [`Reply::domain_search`].
pub const MAX_SEARCH_NAMES: usize = 32;

/// Most bytes of the decoded search list, counted as the sum of the names' lengths in text
/// form (`example.com` is 11). Compression pointers let 2 bytes of option 119 stand for a
/// 253-byte name, so about 1 KiB of option would otherwise decode to over 100 KiB.
pub const MAX_SEARCH_BYTES: usize = 1024;

/// Longest domain name, in bytes of text form (names are ASCII: one byte a character): 255
/// bytes in DNS wire form (RFC 1035 §2.3.4) less the first length byte and the root byte.
/// Applies to option 15 and to each option 119 name.
pub const MAX_NAME_LEN: usize = 253;

/// Most compression pointers followed within one option 119 name: a 255-byte name has at most
/// 127 labels, so no encoder needs more; it bounds the work of a chain of pointers to pointers.
pub const MAX_NAME_POINTERS: usize = 127;

// Offsets of the fixed header fields (RFC 2131 §2, figure 1). All multi-byte fields are in
// network byte order.
const OFF_OP: usize = 0;
const OFF_HTYPE: usize = 1;
const OFF_HLEN: usize = 2;
const OFF_XID: usize = 4;
const OFF_SECS: usize = 8;
const OFF_FLAGS: usize = 10;
const OFF_CIADDR: usize = 12;
const OFF_YIADDR: usize = 16;
const OFF_SIADDR: usize = 20;
const OFF_GIADDR: usize = 24;
const OFF_CHADDR: usize = 28;
const OFF_SNAME: usize = 44;
const OFF_FILE: usize = 108;
const OFF_COOKIE: usize = 236;
const SNAME_LEN: usize = 64;
const FILE_LEN: usize = 128;

/// Option codes this module decodes (RFC 2132 unless noted).
pub mod code {
    /// Subnet mask, 4 bytes (RFC 2132 §3.3).
    pub const SUBNET_MASK: u8 = 1;
    /// Routers, n*4 bytes (RFC 2132 §3.5).
    pub const ROUTER: u8 = 3;
    /// Domain name servers, n*4 bytes (RFC 2132 §3.8).
    pub const DNS_SERVER: u8 = 6;
    /// Host name (RFC 2132 §3.14).
    pub const HOSTNAME: u8 = 12;
    /// Domain name (RFC 2132 §3.17).
    pub const DOMAIN_NAME: u8 = 15;
    /// Interface MTU, 2 bytes, at least 68 (RFC 2132 §5.1).
    pub const MTU: u8 = 26;
    /// Broadcast address, 4 bytes (RFC 2132 §5.3).
    pub const BROADCAST: u8 = 28;
    /// Static routes, n*8 bytes of (destination, router) (RFC 2132 §5.8).
    pub const STATIC_ROUTE: u8 = 33;
    /// Requested IP address, 4 bytes (RFC 2132 §9.1).
    pub const REQUESTED_IP: u8 = 50;
    /// IP address lease time, 4 bytes, seconds (RFC 2132 §9.2).
    pub const LEASE_TIME: u8 = 51;
    /// Option overload, 1 byte: 1 = file, 2 = sname, 3 = both (RFC 2132 §9.3).
    pub const OVERLOAD: u8 = 52;
    /// DHCP message type, 1 byte (RFC 2132 §9.6).
    pub const MESSAGE_TYPE: u8 = 53;
    /// Server identifier, 4 bytes (RFC 2132 §9.7).
    pub const SERVER_ID: u8 = 54;
    /// Parameter request list (RFC 2132 §9.8).
    pub const PARAMETER_REQUEST_LIST: u8 = 55;
    /// Maximum DHCP message size, 2 bytes (RFC 2132 §9.10).
    pub const MAX_MESSAGE_SIZE: u8 = 57;
    /// Renewal (T1) time, 4 bytes, seconds (RFC 2132 §9.11).
    pub const RENEWAL_TIME: u8 = 58;
    /// Rebinding (T2) time, 4 bytes, seconds (RFC 2132 §9.12).
    pub const REBINDING_TIME: u8 = 59;
    /// Client identifier (RFC 2132 §9.14; echoed by servers, RFC 6842).
    pub const CLIENT_ID: u8 = 61;
    /// Domain search list, DNS wire format with compression (RFC 3397).
    pub const DOMAIN_SEARCH: u8 = 119;
    /// Classless static routes (RFC 3442).
    pub const CLASSLESS_ROUTE: u8 = 121;
}

/// Why a received UDP payload could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Shorter than the 240-byte fixed header plus magic cookie (RFC 2131 §2).
    #[error("message too short: {0} bytes, a DHCP message has at least 240")]
    TooShort(usize),
    /// The 4 bytes at offset 236 are not the DHCP magic cookie 99.130.83.99 (RFC 2131 §3): a plain
    /// BOOTP message or garbage.
    #[error("bad magic cookie {0:?}")]
    BadCookie([u8; 4]),
    /// A required option is absent or malformed; the value is the option code (e.g. 54 server
    /// identifier or 51 lease time, both required in DHCPOFFER/DHCPACK by RFC 2131 §4.3.1 table 3).
    #[error("option {0} missing or malformed")]
    MissingOption(u8),
    /// yiaddr is not a usable unicast host address (0.0.0.0, broadcast, multicast, loopback...).
    #[error("yiaddr {0} is not a usable address")]
    BadAddress(Ipv4Addr),
}

/// One option that was present but could not be decoded, kept for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedOption {
    /// The option code.
    pub code: u8,
    /// What was wrong, in words.
    pub reason: &'static str,
}

/// A static route for the CNI result: destination network and next hop.
///
/// `gateway` 0.0.0.0 means the destination is on-link (RFC 3442 §3).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Route {
    /// Destination network, host bits cleared.
    pub dst: Ipv4Net,
    /// Next-hop router; 0.0.0.0 = directly connected.
    pub gateway: Ipv4Addr,
}

/// What a DHCPOFFER or DHCPACK grants, decoded and validated (RFC 2131 §3.1, RFC 2132).
///
/// Times are in seconds, relative to when the client sent the DHCPREQUEST the ACK answers
/// (RFC 2131 §4.4.1); the state machine turns them into instants. `u32::MAX` as `lease_time` means
/// an infinite lease (RFC 2131 §3.3). Invariant (enforced by [`Reply::to_lease`]):
/// `renewal_time <= rebinding_time <= lease_time`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Lease {
    /// The address granted: yiaddr.
    pub address: Ipv4Addr,
    /// Prefix length from option 1 (RFC 2132 §3.3); when absent or not a contiguous mask, the
    /// classful default of `address` (A /8, B /16, C /24, otherwise /32), as the reference does.
    pub prefix_len: u8,
    /// Option 3 routers, in server order (RFC 2132 §3.5); at most [`MAX_ADDRESSES`].
    pub routers: Vec<Ipv4Addr>,
    /// Option 6 DNS servers, in server order (RFC 2132 §3.8); at most [`MAX_ADDRESSES`].
    pub dns_servers: Vec<Ipv4Addr>,
    /// Option 15 domain name (RFC 2132 §3.17), trailing NULs and dot removed; only names made of
    /// letters, digits, `-`, `_` and `.` are accepted (they end up in resolv.conf); at most
    /// [`MAX_NAME_LEN`] bytes.
    pub domain_name: Option<String>,
    /// Option 119 domain search list (RFC 3397), decoded from DNS wire format with compression;
    /// names with other characters than letters, digits, `-`, `_` are dropped. At most
    /// [`MAX_SEARCH_NAMES`] names of at most [`MAX_NAME_LEN`] bytes, [`MAX_SEARCH_BYTES`] in
    /// all.
    pub domain_search: Vec<String>,
    /// Option 121 classless static routes (RFC 3442), in server order; at most [`MAX_ROUTES`].
    pub classless_routes: Vec<Route>,
    /// Option 33 static routes (RFC 2132 §5.8), destination with its classful mask; at most
    /// [`MAX_ROUTES`].
    pub static_routes: Vec<Route>,
    /// Option 26 interface MTU in bytes (RFC 2132 §5.1), at least 68.
    pub mtu: Option<u16>,
    /// Option 28 broadcast address (RFC 2132 §5.3).
    pub broadcast_address: Option<Ipv4Addr>,
    /// Option 54 server identifier (RFC 2132 §9.7): where renewals and DHCPRELEASE go.
    pub server_id: Ipv4Addr,
    /// Option 51 lease time, seconds (RFC 2132 §9.2); `u32::MAX` = infinite.
    pub lease_time: u32,
    /// T1 in seconds: option 58, else half the lease (RFC 2131 §4.4.5).
    pub renewal_time: u32,
    /// T2 in seconds: option 59, else 0.875 of the lease (RFC 2131 §4.4.5).
    pub rebinding_time: u32,
}

impl Lease {
    /// Routes for the CNI result: option 121 when present, which replaces options 3 and 33
    /// entirely (RFC 3442 §3: a client that receives 121 MUST ignore 3 and 33); otherwise the
    /// option 33 routes followed by a default route 0.0.0.0/0 via the first router, if any.
    pub fn routes(&self) -> Vec<Route> {
        if !self.classless_routes.is_empty() {
            return self.classless_routes.clone();
        }
        let mut routes = self.static_routes.clone();
        if let Some(gateway) = self.gateway() {
            routes.push(Route {
                dst: Ipv4Net::default(),
                gateway,
            });
        }
        routes
    }

    /// Routes worth an operator's attention (docs/design.md, *Bad input*: option 121 routes that
    /// hijack traffic), one sentence each; empty when none:
    /// - option 121 carries a default route via another gateway than option 3's first router
    ///   (RFC 3442: option 121 replaces options 3 and 33, so it silently moves the default);
    /// - option 121 is present without a default route while option 3 names a router (the
    ///   container loses its default route);
    /// - a route sends the DHCP server's own address through a gateway (renewals would then
    ///   go elsewhere than the server that granted the lease).
    pub fn route_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if !self.classless_routes.is_empty() {
            let default = self
                .classless_routes
                .iter()
                .find(|r| r.dst.prefix_len() == 0);
            match (default, self.gateway()) {
                (Some(d), Some(router)) if d.gateway != router => warnings.push(format!(
                    "option 121 replaces the default route: via {} instead of router {router}",
                    d.gateway
                )),
                (Some(d), None) => warnings.push(format!(
                    "option 121 sets a default route via {} (no option 3 router)",
                    d.gateway
                )),
                (None, Some(router)) => warnings.push(format!(
                    "option 121 has no default route, so router {router} (option 3) is not used"
                )),
                _ => {}
            }
        }
        for r in self.routes() {
            if r.dst.prefix_len() > 0
                && r.dst.contains(&self.server_id)
                && !r.gateway.is_unspecified()
            {
                warnings.push(format!(
                    "route {} via {} covers the DHCP server {}",
                    r.dst, r.gateway, self.server_id
                ));
            }
        }
        warnings
    }

    /// Checks the size bounds of the module documentation ("Cost and size bounds"), which
    /// [`Reply::to_lease`] guarantees, for a lease read from elsewhere (a state file, an RPC
    /// answer): at most [`MAX_ADDRESSES`] routers and DNS servers, [`MAX_ROUTES`] classless and
    /// static routes, [`MAX_SEARCH_NAMES`] search names, each at most [`MAX_NAME_LEN`] bytes
    /// and [`MAX_SEARCH_BYTES`] in all, a domain name of at most [`MAX_NAME_LEN`] bytes.
    ///
    /// Errors: the first bound broken, in words, e.g. `10000 classless routes, more than 64`.
    pub fn check_bounds(&self) -> Result<(), String> {
        let count = |what: &str, n: usize, max: usize| {
            if n > max {
                Err(format!("{n} {what}, more than {max}"))
            } else {
                Ok(())
            }
        };
        count("routers", self.routers.len(), MAX_ADDRESSES)?;
        count("DNS servers", self.dns_servers.len(), MAX_ADDRESSES)?;
        count("classless routes", self.classless_routes.len(), MAX_ROUTES)?;
        count("static routes", self.static_routes.len(), MAX_ROUTES)?;
        count("search domains", self.domain_search.len(), MAX_SEARCH_NAMES)?;
        let names = self.domain_name.iter().chain(&self.domain_search);
        if let Some(long) = names.map(String::len).find(|&n| n > MAX_NAME_LEN) {
            return Err(format!(
                "a domain name of {long} bytes, longer than {MAX_NAME_LEN}"
            ));
        }
        let search_bytes: usize = self.domain_search.iter().map(String::len).sum();
        count("bytes of search domains", search_bytes, MAX_SEARCH_BYTES)
    }

    /// The first option 3 router, used as the CNI result's gateway (as the reference does).
    pub fn gateway(&self) -> Option<Ipv4Addr> {
        self.routers.first().copied()
    }

    /// The address with its prefix, e.g. 198.18.0.10/24.
    pub fn address_net(&self) -> Ipv4Net {
        // prefix_len is <= 32 by construction; fall back to /32 if a deserialized lease lies.
        Ipv4Net::new(self.address, self.prefix_len).unwrap_or_else(|_| Ipv4Net::from(self.address))
    }
}

/// A parsed server message (any op/type; the client decides what to accept).
///
/// Header fields come straight from their offsets (RFC 2131 §2); option values are the raw bytes
/// after RFC 3396 concatenation of repeated codes across `options`, `file` and `sname`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// op: 1 BOOTREQUEST, 2 BOOTREPLY. Servers send 2.
    pub op: u8,
    /// htype (1 = Ethernet).
    pub htype: u8,
    /// hlen: hardware address length.
    pub hlen: u8,
    /// xid: transaction id chosen by the client, echoed by the server.
    pub xid: u32,
    /// secs, seconds.
    pub secs: u16,
    /// flags, host order; bit 15 (0x8000) is the BOOTP broadcast flag (RFC 2131 §2).
    pub flags: u16,
    /// ciaddr: client address (echoed in replies to RENEWING/REBINDING requests).
    pub ciaddr: Ipv4Addr,
    /// yiaddr: "your" address, the one offered or acknowledged.
    pub yiaddr: Ipv4Addr,
    /// siaddr: next server (TFTP); not the server identifier.
    pub siaddr: Ipv4Addr,
    /// giaddr: relay agent address.
    pub giaddr: Ipv4Addr,
    /// chaddr, all 16 bytes: the client's (on ipvlan the master's MAC, shared by every slave, or
    /// one derived per container).
    pub chaddr: [u8; 16],
    /// sname up to its first NUL; empty when overloaded with options (option 52).
    pub sname: Vec<u8>,
    /// file up to its first NUL; empty when overloaded with options (option 52).
    pub file: Vec<u8>,
    /// Option 53 (RFC 2132 §9.6), when present and 1 byte long.
    pub message_type: Option<MessageType>,
    /// Option 54 server identifier (RFC 2132 §9.7), when present and 4 bytes long.
    pub server_id: Option<Ipv4Addr>,
    /// Option 61 client identifier as echoed by the server (RFC 6842), when present.
    pub client_id: Option<Vec<u8>>,
    /// Every option by code, concatenated per RFC 3396, pad/end excluded, zero-length skipped.
    pub options: BTreeMap<u8, Vec<u8>>,
    /// Known options that were present but malformed (and are ignored) or over a bound (cut
    /// to it: [`MAX_ADDRESSES`]; or ignored: [`MAX_ROUTES`]), plus walk problems (code 0 for a
    /// truncated options area). Option 119 is not checked here (it is costly to decode, see
    /// the module documentation): its problems are reported by [`Reply::domain_search`].
    pub malformed: Vec<MalformedOption>,
}

impl Reply {
    /// Whether the BOOTP broadcast flag (0x8000) is set.
    pub fn broadcast(&self) -> bool {
        self.flags & 0x8000 != 0
    }

    /// The raw bytes of option `code`, if present.
    pub fn option(&self, code: u8) -> Option<&[u8]> {
        self.options.get(&code).map(Vec::as_slice)
    }

    /// The lease this DHCPOFFER/DHCPACK grants.
    ///
    /// Errors: [`ParseError::BadAddress`] when yiaddr is not a usable unicast address,
    /// [`ParseError::MissingOption`] when option 54 (server identifier) or 51 (lease time) is
    /// missing or malformed (both MUST be in OFFER and ACK, RFC 2131 §4.3.1 table 3). Other
    /// malformed options are left out of the lease. T1/T2 default to 0.5/0.875 of the lease
    /// (RFC 2131 §4.4.5) and are clamped so that T1 <= T2 <= lease. The lease is within the
    /// bounds of [`Lease::check_bounds`]; this is where option 119 is decoded
    /// ([`Reply::domain_search`]), so call it only for a reply known to be for this client.
    pub fn to_lease(&self) -> Result<Lease, ParseError> {
        let address = self.yiaddr;
        if !usable_unicast(address) {
            return Err(ParseError::BadAddress(address));
        }
        let server_id = self
            .server_id
            .ok_or(ParseError::MissingOption(code::SERVER_ID))?;
        let lease_time = self
            .decoded(code::LEASE_TIME, decode_u32)
            .ok_or(ParseError::MissingOption(code::LEASE_TIME))?;
        let (renewal_time, rebinding_time) = lease_times(
            lease_time,
            self.decoded(code::RENEWAL_TIME, decode_u32),
            self.decoded(code::REBINDING_TIME, decode_u32),
        );
        Ok(Lease {
            address,
            prefix_len: self
                .decoded(code::SUBNET_MASK, decode_mask)
                .unwrap_or_else(|| classful_prefix(address)),
            routers: self.decoded(code::ROUTER, decode_addrs).unwrap_or_default(),
            dns_servers: self
                .decoded(code::DNS_SERVER, decode_addrs)
                .unwrap_or_default(),
            domain_name: self.decoded(code::DOMAIN_NAME, decode_domain_name),
            domain_search: self.domain_search().0,
            classless_routes: self
                .decoded(code::CLASSLESS_ROUTE, decode_classless_routes)
                .unwrap_or_default(),
            static_routes: self
                .decoded(code::STATIC_ROUTE, decode_static_routes)
                .unwrap_or_default(),
            mtu: self.decoded(code::MTU, decode_mtu),
            broadcast_address: self.decoded(code::BROADCAST, decode_addr),
            server_id,
            lease_time,
            renewal_time,
            rebinding_time,
        })
    }

    /// Option 119 (RFC 3397) decoded: the search names (empty without the option) and what
    /// was wrong with it, if anything (code 119). Names decoded before a malformed encoding are
    /// kept; names with characters other than letters, digits, `-`, `_` are dropped silently.
    /// At most [`MAX_SEARCH_NAMES`] entries are examined and [`MAX_SEARCH_BYTES`] of names
    /// kept; what is beyond is dropped and reported. The work is bounded too: at most
    /// [`MAX_SEARCH_NAMES`] names of at most 127 labels and [`MAX_NAME_POINTERS`] pointers
    /// each, whatever the option's length.
    ///
    /// Decoding is not free (compression pointers): it is left out of [`parse_reply`] and
    /// happens here, for [`Reply::to_lease`] or a caller that wants the report.
    pub fn domain_search(&self) -> (Vec<String>, Option<MalformedOption>) {
        let Some(d) = self.option(code::DOMAIN_SEARCH) else {
            return (Vec::new(), None);
        };
        let (names, problem) = decode_domain_search(d);
        (
            names,
            problem.map(|reason| MalformedOption {
                code: code::DOMAIN_SEARCH,
                reason,
            }),
        )
    }

    fn decoded<T>(&self, code: u8, f: fn(&[u8]) -> Result<T, &'static str>) -> Option<T> {
        self.option(code).and_then(|d| f(d).ok())
    }
}

/// Validity check of one option's data, for [`Reply::malformed`].
type Check = fn(&[u8]) -> Result<(), &'static str>;

/// Parse a DHCP message from a UDP payload (the bytes after the UDP header).
///
/// Errors only when the fixed header is missing ([`ParseError::TooShort`], under 240 bytes) or the
/// magic cookie is wrong ([`ParseError::BadCookie`]). Everything in the options area is best
/// effort: see the module documentation. Work and memory are linear in `bytes`; option 119 is
/// not decoded here ([`Reply::domain_search`]). Never panics.
pub fn parse_reply(bytes: &[u8]) -> Result<Reply, ParseError> {
    if bytes.len() < HEADER_LEN {
        return Err(ParseError::TooShort(bytes.len()));
    }
    let cookie = [
        bytes[OFF_COOKIE],
        bytes[OFF_COOKIE + 1],
        bytes[OFF_COOKIE + 2],
        bytes[OFF_COOKIE + 3],
    ];
    if cookie != MAGIC_COOKIE {
        return Err(ParseError::BadCookie(cookie));
    }
    let u32_at =
        |o: usize| u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
    let u16_at = |o: usize| u16::from_be_bytes([bytes[o], bytes[o + 1]]);
    let mut chaddr = [0u8; 16];
    chaddr.copy_from_slice(&bytes[OFF_CHADDR..OFF_CHADDR + 16]);
    let sname_field = &bytes[OFF_SNAME..OFF_SNAME + SNAME_LEN];
    let file_field = &bytes[OFF_FILE..OFF_FILE + FILE_LEN];

    let mut options = BTreeMap::new();
    let mut malformed = Vec::new();
    walk_options(&bytes[HEADER_LEN..], &mut options, &mut malformed);

    // Option 52 overload (RFC 2132 §9.3): continue in `file`, then `sname` (RFC 3396 §5 order).
    let overload = match options.get(&code::OVERLOAD).map(Vec::as_slice) {
        None => 0,
        Some([v @ 1..=3]) => *v,
        Some(_) => {
            malformed.push(MalformedOption {
                code: code::OVERLOAD,
                reason: "option overload must be 1 byte of value 1, 2 or 3",
            });
            0
        }
    };
    if overload & 1 != 0 {
        walk_options(file_field, &mut options, &mut malformed);
    }
    if overload & 2 != 0 {
        walk_options(sname_field, &mut options, &mut malformed);
    }
    let until_nul = |f: &[u8]| {
        f.iter()
            .take_while(|&&b| b != 0)
            .copied()
            .collect::<Vec<u8>>()
    };
    let file = if overload & 1 != 0 {
        Vec::new()
    } else {
        until_nul(file_field)
    };
    let sname = if overload & 2 != 0 {
        Vec::new()
    } else {
        until_nul(sname_field)
    };

    // Decode each known option once, only to report the malformed ones. Option 119 is left
    // to Reply::domain_search: its decoding costs more than reading it (see the module docs).
    let checks: &[(u8, Check)] = &[
        (code::SUBNET_MASK, |d| decode_mask(d).map(drop)),
        (code::ROUTER, check_addrs),
        (code::DNS_SERVER, check_addrs),
        (code::DOMAIN_NAME, |d| decode_domain_name(d).map(drop)),
        (code::MTU, |d| decode_mtu(d).map(drop)),
        (code::BROADCAST, |d| decode_addr(d).map(drop)),
        (code::STATIC_ROUTE, |d| decode_static_routes(d).map(drop)),
        (code::LEASE_TIME, |d| decode_u32(d).map(drop)),
        (code::MESSAGE_TYPE, |d| decode_u8(d).map(drop)),
        (code::SERVER_ID, |d| decode_addr(d).map(drop)),
        (code::RENEWAL_TIME, |d| decode_u32(d).map(drop)),
        (code::REBINDING_TIME, |d| decode_u32(d).map(drop)),
        (code::CLASSLESS_ROUTE, |d| {
            decode_classless_routes(d).map(drop)
        }),
    ];
    for (code, check) in checks {
        if let Some(Err(reason)) = options.get(code).map(|d| check(d)) {
            malformed.push(MalformedOption {
                code: *code,
                reason,
            });
        }
    }

    Ok(Reply {
        op: bytes[OFF_OP],
        htype: bytes[OFF_HTYPE],
        hlen: bytes[OFF_HLEN],
        xid: u32_at(OFF_XID),
        secs: u16_at(OFF_SECS),
        flags: u16_at(OFF_FLAGS),
        ciaddr: Ipv4Addr::from(u32_at(OFF_CIADDR)),
        yiaddr: Ipv4Addr::from(u32_at(OFF_YIADDR)),
        siaddr: Ipv4Addr::from(u32_at(OFF_SIADDR)),
        giaddr: Ipv4Addr::from(u32_at(OFF_GIADDR)),
        chaddr,
        sname,
        file,
        message_type: options
            .get(&code::MESSAGE_TYPE)
            .and_then(|d| decode_u8(d).ok())
            .map(MessageType::from),
        server_id: options
            .get(&code::SERVER_ID)
            .and_then(|d| decode_addr(d).ok()),
        client_id: options.get(&code::CLIENT_ID).cloned(),
        options,
        malformed,
    })
}

/// Walk one options area (RFC 2132 §2), appending each option's data to `out[code]` (RFC 3396
/// concatenation). Stops at end (255), at the end of the area, or at an option whose length byte
/// or data runs past the area (reported with the option's code, or 0 when even the length byte is
/// missing); everything before that point is kept.
fn walk_options(
    area: &[u8],
    out: &mut BTreeMap<u8, Vec<u8>>,
    malformed: &mut Vec<MalformedOption>,
) {
    let mut i = 0;
    while let Some(&code) = area.get(i) {
        match code {
            0 => i += 1,
            255 => return,
            _ => {
                let Some(&len) = area.get(i + 1) else {
                    malformed.push(MalformedOption {
                        code,
                        reason: "option length byte past the end of the buffer",
                    });
                    return;
                };
                let start = i + 2;
                let end = start + usize::from(len);
                let Some(data) = area.get(start..end) else {
                    malformed.push(MalformedOption {
                        code,
                        reason: "option data past the end of the buffer",
                    });
                    return;
                };
                if !data.is_empty() {
                    out.entry(code).or_default().extend_from_slice(data);
                }
                i = end;
            }
        }
    }
}

/// Whether `a` can be a host's own address: not unspecified, broadcast, multicast, loopback or in
/// 0.0.0.0/8 / 240.0.0.0/4.
fn usable_unicast(a: Ipv4Addr) -> bool {
    let first = a.octets()[0];
    !(a.is_unspecified()
        || a.is_broadcast()
        || a.is_multicast()
        || a.is_loopback()
        || first == 0
        || first >= 240)
}

/// Classful prefix length of an address (RFC 791 classes): A /8, B /16, C /24, otherwise /32.
pub fn classful_prefix(a: Ipv4Addr) -> u8 {
    match a.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        192..=223 => 24,
        _ => 32,
    }
}

/// T1 and T2 in seconds from the lease time and the optional options 58/59 (RFC 2131 §4.4.5):
/// defaults 0.5 and 0.875 of the lease, then clamped so that T1 <= T2 <= lease.
pub fn lease_times(lease: u32, t1: Option<u32>, t2: Option<u32>) -> (u32, u32) {
    let frac = |num: u64, den: u64| u32::try_from(u64::from(lease) * num / den).unwrap_or(lease);
    let t2 = t2.unwrap_or_else(|| frac(7, 8)).min(lease);
    let t1 = t1.unwrap_or_else(|| frac(1, 2)).min(t2);
    (t1, t2)
}

fn decode_u8(d: &[u8]) -> Result<u8, &'static str> {
    match d {
        [v] => Ok(*v),
        _ => Err("expected 1 byte"),
    }
}

fn decode_u32(d: &[u8]) -> Result<u32, &'static str> {
    <[u8; 4]>::try_from(d)
        .map(u32::from_be_bytes)
        .map_err(|_| "expected 4 bytes")
}

fn decode_addr(d: &[u8]) -> Result<Ipv4Addr, &'static str> {
    <[u8; 4]>::try_from(d)
        .map(Ipv4Addr::from)
        .map_err(|_| "expected 4 bytes")
}

/// Options 3 and 6: a list of addresses, the first [`MAX_ADDRESSES`] kept.
fn decode_addrs(d: &[u8]) -> Result<Vec<Ipv4Addr>, &'static str> {
    if d.is_empty() || !d.len().is_multiple_of(4) {
        return Err("expected a non-empty multiple of 4 bytes");
    }
    Ok(d.chunks_exact(4)
        .take(MAX_ADDRESSES)
        .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
        .collect())
}

/// [`decode_addrs`] for [`Reply::malformed`]: also reports addresses beyond [`MAX_ADDRESSES`].
fn check_addrs(d: &[u8]) -> Result<(), &'static str> {
    decode_addrs(d)?;
    if d.len() / 4 > MAX_ADDRESSES {
        return Err(TOO_MANY_ADDRESSES);
    }
    Ok(())
}

/// The report of [`check_addrs`]; its numbers are [`MAX_ADDRESSES`] (checked by a test).
const TOO_MANY_ADDRESSES: &str = "more than 16 addresses: the first 16 are kept";
/// The report of a route option over [`MAX_ROUTES`] (numbers checked by a test).
const TOO_MANY_ROUTES: &str = "more than 64 routes: the option is ignored";
/// The report of an option 119 with more than [`MAX_SEARCH_NAMES`] entries.
const TOO_MANY_NAMES: &str = "more than 32 names: the rest are dropped";
/// The report of an option 119 whose names exceed [`MAX_SEARCH_BYTES`].
const TOO_MANY_BYTES: &str = "names longer than 1024 bytes in all: the rest are dropped";
/// The report of an option 119 name with more than [`MAX_NAME_POINTERS`] pointers.
const TOO_MANY_POINTERS: &str = "more than 127 compression pointers in one name";

/// Option 1: a contiguous mask of /1 to /32.
fn decode_mask(d: &[u8]) -> Result<u8, &'static str> {
    let m = u32::from(decode_addr(d)?);
    let ones = m.leading_ones();
    if ones == 0 || ones + m.trailing_zeros() != 32 {
        return Err("subnet mask is not a contiguous /1 to /32");
    }
    u8::try_from(ones).map_err(|_| "subnet mask out of range")
}

fn decode_mtu(d: &[u8]) -> Result<u16, &'static str> {
    let v = <[u8; 2]>::try_from(d)
        .map(u16::from_be_bytes)
        .map_err(|_| "expected 2 bytes")?;
    if v < 68 {
        return Err("MTU below 68 (RFC 2132 §5.1)");
    }
    Ok(v)
}

/// Letters, digits, `-` and `_` only: the name goes into resolv.conf and the CNI result, so no
/// whitespace, quotes or shell metacharacters (docs/design.md, *Bad input*).
pub(crate) fn valid_label(l: &[u8]) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && l.iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
}

fn decode_domain_name(d: &[u8]) -> Result<String, &'static str> {
    // Some servers include a terminating NUL (RFC 2132 §2 says they should not).
    let end = d.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    let mut name = &d[..end];
    if let [rest @ .., b'.'] = name {
        name = rest;
    }
    if name.len() > MAX_NAME_LEN || !name.split(|&b| b == b'.').all(valid_label) {
        return Err("domain name is not a valid host name");
    }
    String::from_utf8(name.to_vec()).map_err(|_| "domain name is not ASCII")
}

/// Option 119 (RFC 3397): a sequence of DNS names in RFC 1035 §3.1 wire format; compression
/// pointers (RFC 1035 §4.1.4) are offsets into the concatenated option data. Returns the names
/// decoded before any error or bound, and the first error or bound reached. Loops are
/// impossible: each pointer must point strictly before the start of the label run that contains
/// it, so positions strictly decrease. Bounded: at most [`MAX_SEARCH_NAMES`] entries are
/// examined (kept or not), names are kept up to [`MAX_SEARCH_BYTES`] in all, and each name costs
/// at most 127 labels and [`MAX_NAME_POINTERS`] pointers ([`decode_dns_name`]).
fn decode_domain_search(d: &[u8]) -> (Vec<String>, Option<&'static str>) {
    let mut names = Vec::new();
    let mut bytes = 0usize;
    let mut pos = 0;
    let mut entries = 0;
    while pos < d.len() {
        if entries == MAX_SEARCH_NAMES {
            return (names, Some(TOO_MANY_NAMES));
        }
        entries += 1;
        match decode_dns_name(d, pos) {
            Ok((name, next)) => {
                if let Some(name) = name {
                    bytes += name.len();
                    if bytes > MAX_SEARCH_BYTES {
                        return (names, Some(TOO_MANY_BYTES));
                    }
                    names.push(name);
                }
                pos = next;
            }
            Err(e) => return (names, Some(e)),
        }
    }
    (names, None)
}

/// One name at `start`; returns it (None for the root name or a name with invalid characters)
/// and the offset just after it in the primary sequence. A name longer than 255 bytes in wire
/// form ([`MAX_NAME_LEN`] in text) or with more than [`MAX_NAME_POINTERS`] pointers is an
/// error.
fn decode_dns_name(d: &[u8], start: usize) -> Result<(Option<String>, usize), &'static str> {
    let mut labels: Vec<&[u8]> = Vec::new();
    // Wire length so far, without the root byte: length bytes plus labels.
    let mut total = 0usize;
    let mut pointers = 0usize;
    let mut pos = start;
    let mut run_start = start;
    let mut next = None;
    loop {
        let len = *d.get(pos).ok_or("name runs past the end of option 119")?;
        match len {
            0 => {
                let after = next.unwrap_or(pos + 1);
                if labels.is_empty() {
                    return Ok((None, after));
                }
                if !labels.iter().all(|l| valid_label(l)) {
                    return Ok((None, after));
                }
                let parts: Vec<String> = labels
                    .iter()
                    .map(|l| String::from_utf8_lossy(l).into_owned())
                    .collect();
                return Ok((Some(parts.join(".")), after));
            }
            1..=63 => {
                let label = d
                    .get(pos + 1..pos + 1 + usize::from(len))
                    .ok_or("label runs past the end of option 119")?;
                total += label.len() + 1;
                // RFC 1035 §2.3.4: 255 bytes at most, the root byte included.
                if total + 1 > 255 {
                    return Err("name longer than 255 bytes");
                }
                labels.push(label);
                pos += 1 + usize::from(len);
            }
            0xc0..=0xff => {
                let low = *d
                    .get(pos + 1)
                    .ok_or("pointer runs past the end of option 119")?;
                let target = (usize::from(len & 0x3f) << 8) | usize::from(low);
                if target >= run_start {
                    return Err("compression pointer does not point backwards");
                }
                pointers += 1;
                if pointers > MAX_NAME_POINTERS {
                    return Err(TOO_MANY_POINTERS);
                }
                if next.is_none() {
                    next = Some(pos + 2);
                }
                pos = target;
                run_start = target;
            }
            _ => return Err("reserved label type"),
        }
    }
}

/// Option 121 (RFC 3442 §3): (width, significant destination octets, router) entries. The whole
/// option is rejected if any entry is malformed or there are more than [`MAX_ROUTES`]: a
/// partial routing table is worse than none.
fn decode_classless_routes(d: &[u8]) -> Result<Vec<Route>, &'static str> {
    let mut routes = Vec::new();
    let mut rest = d;
    while let Some((&width, tail)) = rest.split_first() {
        if routes.len() == MAX_ROUTES {
            return Err(TOO_MANY_ROUTES);
        }
        if width > 32 {
            return Err("destination width over 32");
        }
        let n = usize::from(width).div_ceil(8);
        let (dst_bytes, tail) = tail.split_at_checked(n).ok_or("truncated destination")?;
        let (gw, tail) = tail.split_at_checked(4).ok_or("truncated router")?;
        let mut dst = [0u8; 4];
        dst[..n].copy_from_slice(dst_bytes);
        let dst = Ipv4Net::new(Ipv4Addr::from(dst), width)
            .map_err(|_| "bad prefix")?
            .trunc();
        routes.push(Route {
            dst,
            gateway: Ipv4Addr::new(gw[0], gw[1], gw[2], gw[3]),
        });
        rest = tail;
    }
    if routes.is_empty() {
        return Err("no routes");
    }
    Ok(routes)
}

/// Option 33 (RFC 2132 §5.8): (destination, router) pairs; the destination gets its classful mask
/// as in the reference. 0.0.0.0 as destination is illegal there and skipped. More than
/// [`MAX_ROUTES`] pairs: the whole option is rejected, as for option 121.
fn decode_static_routes(d: &[u8]) -> Result<Vec<Route>, &'static str> {
    if d.is_empty() || !d.len().is_multiple_of(8) {
        return Err("expected a non-empty multiple of 8 bytes");
    }
    if d.len() / 8 > MAX_ROUTES {
        return Err(TOO_MANY_ROUTES);
    }
    Ok(d.chunks_exact(8)
        .filter_map(|c| {
            let dst = Ipv4Addr::new(c[0], c[1], c[2], c[3]);
            if dst.is_unspecified() {
                return None;
            }
            let net = Ipv4Net::new(dst, classful_prefix(dst)).ok()?.trunc();
            Some(Route {
                dst: net,
                gateway: Ipv4Addr::new(c[4], c[5], c[6], c[7]),
            })
        })
        .collect())
}

/// A plain lease for unit tests elsewhere in the crate: `address`/24 from server and router
/// 198.18.0.1, one hour (T1 1800 s, T2 3150 s), nothing else. Tests change fields with struct
/// update syntax.
#[cfg(test)]
pub(crate) fn test_lease(address: &str) -> Lease {
    Lease {
        address: address.parse().expect("test lease address"),
        prefix_len: 24,
        routers: vec![Ipv4Addr::new(198, 18, 0, 1)],
        dns_servers: vec![],
        domain_name: None,
        domain_search: vec![],
        classless_routes: vec![],
        static_routes: vec![],
        mtu: None,
        broadcast_address: None,
        server_id: Ipv4Addr::new(198, 18, 0, 1),
        lease_time: 3600,
        renewal_time: 1800,
        rebinding_time: 3150,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    const YIADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
    const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

    /// A BOOTREPLY with xid 0x01020304, yiaddr 198.18.0.10, the given raw `file`/`sname`
    /// contents and raw options area (after the cookie), built by hand so that malformed
    /// encodings can be expressed.
    fn raw_with(options: &[u8], file: &[u8], sname: &[u8]) -> Vec<u8> {
        let mut m = vec![0u8; HEADER_LEN];
        m[OFF_OP] = 2;
        m[OFF_HTYPE] = 1;
        m[OFF_HLEN] = 6;
        m[OFF_XID..OFF_XID + 4].copy_from_slice(&[1, 2, 3, 4]);
        m[OFF_FLAGS] = 0x80;
        m[OFF_YIADDR..OFF_YIADDR + 4].copy_from_slice(&YIADDR.octets());
        m[OFF_CHADDR..OFF_CHADDR + 6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        m[OFF_FILE..OFF_FILE + file.len()].copy_from_slice(file);
        m[OFF_SNAME..OFF_SNAME + sname.len()].copy_from_slice(sname);
        m[OFF_COOKIE..HEADER_LEN].copy_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(options);
        m
    }

    fn raw(options: &[u8]) -> Vec<u8> {
        raw_with(options, &[], &[])
    }

    /// Options 53 = ACK, 54 = SERVER, 51 = 3600 s: the minimum for a lease.
    const BASE: &[u8] = &[53, 1, 5, 54, 4, 198, 18, 0, 1, 51, 4, 0, 0, 0x0e, 0x10];

    fn with_base(extra: &[u8]) -> Vec<u8> {
        let mut o = BASE.to_vec();
        o.extend_from_slice(extra);
        o.push(255);
        raw(&o)
    }

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn header_fields_by_offset() {
        let r = parse_reply(&with_base(&[61, 3, 0, b'a', b'b'])).unwrap();
        assert_eq!(r.op, 2);
        assert_eq!(r.xid, 0x0102_0304);
        assert!(r.broadcast());
        assert_eq!(r.yiaddr, YIADDR);
        assert_eq!(r.ciaddr, Ipv4Addr::UNSPECIFIED);
        assert_eq!(&r.chaddr[..6], &[2, 0, 0, 0, 0, 1]);
        assert_eq!(r.message_type, Some(MessageType::Ack));
        assert_eq!(r.server_id, Some(SERVER));
        assert_eq!(r.client_id.as_deref(), Some(&[0, b'a', b'b'][..]));
        assert!(r.malformed.is_empty());
    }

    #[test]
    fn full_lease() {
        let extra = [
            1, 4, 255, 255, 255, 0, // mask /24
            3, 8, 198, 18, 0, 1, 198, 18, 0, 2, // routers
            6, 4, 198, 18, 0, 53, // dns
            15, 12, b'e', b'x', b'a', b'm', b'p', b'l', b'e', b'.', b'c', b'o', b'm',
            0, // NUL
            26, 2, 0x05, 0xdc, // mtu 1500
            28, 4, 198, 18, 0, 255, // broadcast
        ];
        let lease = parse_reply(&with_base(&extra)).unwrap().to_lease().unwrap();
        assert_eq!(
            lease,
            Lease {
                address: YIADDR,
                prefix_len: 24,
                routers: vec![SERVER, Ipv4Addr::new(198, 18, 0, 2)],
                dns_servers: vec![Ipv4Addr::new(198, 18, 0, 53)],
                domain_name: Some("example.com".into()),
                domain_search: vec![],
                classless_routes: vec![],
                static_routes: vec![],
                mtu: Some(1500),
                broadcast_address: Some(Ipv4Addr::new(198, 18, 0, 255)),
                server_id: SERVER,
                lease_time: 3600,
                renewal_time: 1800,
                rebinding_time: 3150,
            }
        );
        assert_eq!(lease.gateway(), Some(SERVER));
        assert_eq!(lease.address_net(), net("198.18.0.10/24"));
        assert_eq!(
            lease.routes(),
            vec![Route {
                dst: net("0.0.0.0/0"),
                gateway: SERVER
            }]
        );
    }

    #[test]
    fn classful_prefix_when_mask_absent_or_bad() {
        let lease = parse_reply(&with_base(&[])).unwrap().to_lease().unwrap();
        assert_eq!(lease.prefix_len, 24, "198.x is class C");
        assert_eq!(classful_prefix(Ipv4Addr::new(10, 1, 2, 3)), 8);
        assert_eq!(classful_prefix(Ipv4Addr::new(172, 16, 0, 1)), 16);
        assert_eq!(classful_prefix(Ipv4Addr::new(224, 0, 0, 1)), 32);
        // Non-contiguous mask: ignored and reported, classful used.
        let r = parse_reply(&with_base(&[1, 4, 255, 0, 255, 0])).unwrap();
        assert_eq!(r.to_lease().unwrap().prefix_len, 24);
        assert_eq!(r.malformed.len(), 1);
        assert_eq!(r.malformed[0].code, 1);
    }

    #[test]
    fn malformed_option_does_not_hide_later_ones() {
        // Option 1 with 3 bytes, then a valid router and DNS server.
        let r = parse_reply(&with_base(&[
            1, 3, 255, 255, 0, 3, 4, 198, 18, 0, 1, 6, 4, 198, 18, 0, 53, 26, 1, 9,
        ]))
        .unwrap();
        let lease = r.to_lease().unwrap();
        assert_eq!(lease.prefix_len, 24);
        assert_eq!(lease.routers, vec![SERVER]);
        assert_eq!(lease.dns_servers, vec![Ipv4Addr::new(198, 18, 0, 53)]);
        assert_eq!(lease.mtu, None);
        let codes: Vec<u8> = r.malformed.iter().map(|m| m.code).collect();
        assert_eq!(codes, vec![1, 26]);
    }

    #[test]
    fn pad_and_zero_length_options_are_skipped() {
        let r = parse_reply(&with_base(&[0, 0, 3, 0, 0, 6, 4, 1, 1, 1, 1])).unwrap();
        assert!(!r.options.contains_key(&3));
        assert_eq!(
            r.to_lease().unwrap().dns_servers,
            vec![Ipv4Addr::new(1, 1, 1, 1)]
        );
    }

    #[test]
    fn truncated_input_keeps_what_was_valid() {
        // Router OK, then DNS claims 8 bytes but the buffer ends after 4 (no end option).
        let mut o = BASE.to_vec();
        o.extend_from_slice(&[3, 4, 198, 18, 0, 1, 6, 8, 1, 1, 1, 1]);
        let r = parse_reply(&raw(&o)).unwrap();
        let lease = r.to_lease().unwrap();
        assert_eq!(lease.routers, vec![SERVER]);
        assert!(lease.dns_servers.is_empty());
        assert_eq!(r.malformed[0].code, 6);
        // A code byte with no length byte at the very end.
        let mut o = BASE.to_vec();
        o.push(3);
        let r = parse_reply(&raw(&o)).unwrap();
        assert_eq!(r.malformed.len(), 1);
        assert!(r.to_lease().is_ok());
        // Shorter than the header, or no cookie.
        let full = with_base(&[]);
        assert_eq!(parse_reply(&full[..239]), Err(ParseError::TooShort(239)));
        let mut bad = full.clone();
        bad[OFF_COOKIE] = 0;
        assert!(matches!(parse_reply(&bad), Err(ParseError::BadCookie(_))));
    }

    #[test]
    fn rfc3396_split_options_are_concatenated() {
        // DNS split over two instances; option 121 split in the middle of a route.
        let r = parse_reply(&with_base(&[
            6, 4, 1, 1, 1, 1, 121, 3, 24, 10, 1, 3, 4, 198, 18, 0, 1, 6, 4, 8, 8, 8, 8, 121, 5, 2,
            198, 18, 0, 254,
        ]))
        .unwrap();
        let lease = r.to_lease().unwrap();
        assert_eq!(
            lease.dns_servers,
            vec![Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(8, 8, 8, 8)]
        );
        assert_eq!(
            lease.classless_routes,
            vec![Route {
                dst: net("10.1.2.0/24"),
                gateway: Ipv4Addr::new(198, 18, 0, 254)
            }]
        );
        assert!(r.malformed.is_empty());
    }

    #[test]
    fn option_overload_into_file_and_sname() {
        // 52 = 3: options continue in file (router, DNS part 1) then sname (DNS part 2).
        let mut o = BASE.to_vec();
        o.extend_from_slice(&[52, 1, 3, 255]);
        let file = [3, 4, 198, 18, 0, 1, 6, 4, 1, 1, 1, 1, 255];
        let sname = [6, 4, 9, 9, 9, 9, 255];
        let r = parse_reply(&raw_with(&o, &file, &sname)).unwrap();
        let lease = r.to_lease().unwrap();
        assert_eq!(lease.routers, vec![SERVER]);
        assert_eq!(
            lease.dns_servers,
            vec![Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(9, 9, 9, 9)]
        );
        assert!(r.file.is_empty() && r.sname.is_empty());
        // Without 52 the same bytes are just file and sname names, not options.
        let mut o = BASE.to_vec();
        o.push(255);
        let r = parse_reply(&raw_with(&o, b"boot.img", b"srv")).unwrap();
        assert_eq!(r.file, b"boot.img");
        assert_eq!(r.sname, b"srv");
        assert!(r.to_lease().unwrap().routers.is_empty());
        // Overload with an unterminated option running to the end of `file`: no panic, kept
        // what was valid, reported.
        let mut o = BASE.to_vec();
        o.extend_from_slice(&[52, 1, 1, 255]);
        let mut file = [0u8; FILE_LEN];
        file[..6].copy_from_slice(&[3, 4, 198, 18, 0, 1]);
        file[FILE_LEN - 2] = 6;
        file[FILE_LEN - 1] = 200;
        let r = parse_reply(&raw_with(&o, &file, &[])).unwrap();
        assert_eq!(r.to_lease().unwrap().routers, vec![SERVER]);
        assert_eq!(r.malformed[0].code, 6);
        // Bad overload value: ignored and reported.
        let mut o = BASE.to_vec();
        o.extend_from_slice(&[52, 1, 7, 255]);
        let r = parse_reply(&raw_with(&o, &[3, 4, 1, 2, 3, 4, 255], &[])).unwrap();
        assert!(r.to_lease().unwrap().routers.is_empty());
        assert_eq!(r.malformed[0].code, 52);
    }

    #[test]
    fn classless_routes_replace_router_and_static_routes() {
        let r = parse_reply(&with_base(&[
            3, 4, 198, 18, 0, 1, // router
            33, 8, 10, 9, 9, 9, 198, 18, 0, 7, // static 10.0.0.0/8 (classful) via .7
            121, 14, 0, 198, 18, 0, 254, // default via .254
            32, 192, 0, 2, 1, 0, 0, 0, 0, // 192.0.2.1/32 on-link
        ]))
        .unwrap();
        let lease = r.to_lease().unwrap();
        assert_eq!(
            lease.static_routes,
            vec![Route {
                dst: net("10.0.0.0/8"),
                gateway: Ipv4Addr::new(198, 18, 0, 7)
            }]
        );
        let expected = vec![
            Route {
                dst: net("0.0.0.0/0"),
                gateway: Ipv4Addr::new(198, 18, 0, 254),
            },
            Route {
                dst: net("192.0.2.1/32"),
                gateway: Ipv4Addr::UNSPECIFIED,
            },
        ];
        assert_eq!(lease.routes(), expected);
        assert_eq!(lease.gateway(), Some(SERVER));
        // Without 121: 33 then default via the first router.
        let lease = parse_reply(&with_base(&[
            3, 4, 198, 18, 0, 1, 33, 8, 172, 16, 5, 0, 198, 18, 0, 7,
        ]))
        .unwrap()
        .to_lease()
        .unwrap();
        assert_eq!(
            lease.routes(),
            vec![
                Route {
                    dst: net("172.16.0.0/16"),
                    gateway: Ipv4Addr::new(198, 18, 0, 7)
                },
                Route {
                    dst: net("0.0.0.0/0"),
                    gateway: SERVER
                }
            ]
        );
    }

    #[test]
    fn malformed_classless_routes_are_rejected_whole() {
        // Second entry has width 33.
        let r = parse_reply(&with_base(&[
            3, 4, 198, 18, 0, 1, 121, 10, 0, 198, 18, 0, 254, 33, 1, 2, 3, 4,
        ]))
        .unwrap();
        let lease = r.to_lease().unwrap();
        assert!(lease.classless_routes.is_empty());
        assert_eq!(lease.routes()[0].gateway, SERVER);
        assert_eq!(r.malformed[0].code, 121);
        // Truncated router.
        let r = parse_reply(&with_base(&[121, 4, 8, 10, 1, 2])).unwrap();
        assert!(r.to_lease().unwrap().classless_routes.is_empty());
        assert_eq!(r.malformed[0].code, 121);
    }

    #[test]
    fn domain_search_with_compression() {
        // "example.com" at 0, "sub" + pointer to 0, "corp" + pointer to "com" (offset 8).
        let d = [
            7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0, // 0..13
            3, b's', b'u', b'b', 0xc0, 0, // 13..19
            4, b'c', b'o', b'r', b'p', 0xc0, 8, // 19..26
        ];
        let mut extra = vec![119, d.len() as u8];
        extra.extend_from_slice(&d);
        let r = parse_reply(&with_base(&extra)).unwrap();
        assert!(r.malformed.is_empty());
        assert_eq!(
            r.to_lease().unwrap().domain_search,
            vec!["example.com", "sub.example.com", "corp.com"]
        );
    }

    #[test]
    fn domain_search_pointer_loops_and_out_of_range() {
        // Self pointer, forward pointer, pointer to a later loop, pointer past the end.
        for d in [
            &[0xc0, 0][..],
            &[3, b'a', b'b', b'c', 0xc0, 0][..],
            &[3, b'a', b'b', b'c', 0, 0xc0, 5][..],
            &[3, b'a', b'b', b'c', 0, 1, b'x', 0xc0, 60][..],
            &[0xc0][..],
            &[0x40, 1][..],
        ] {
            let (names, err) = decode_domain_search(d);
            assert!(err.is_some(), "{d:?} accepted: {names:?}");
        }
        // Names before the bad one are kept.
        let (names, err) = decode_domain_search(&[3, b'a', b'b', b'c', 0, 0xc0, 9]);
        assert_eq!(names, vec!["abc"]);
        assert!(err.is_some());
        // Unsafe characters: the name is dropped, the others kept.
        let (names, err) = decode_domain_search(&[3, b'a', b';', b'c', 0, 2, b'o', b'k', 0]);
        assert_eq!(names, vec!["ok"]);
        assert!(err.is_none());
    }

    /// Option `code` carrying `data` of any length, split into instances of at most 255 bytes
    /// (RFC 3396), as a server sends a long option.
    fn long_option(code: u8, data: &[u8]) -> Vec<u8> {
        let mut o = Vec::new();
        for chunk in data.chunks(255) {
            o.push(code);
            o.push(chunk.len() as u8);
            o.extend_from_slice(chunk);
        }
        o
    }

    /// A 253-character name in wire form (255 bytes: the longest RFC 1035 allows).
    fn longest_name() -> Vec<u8> {
        let mut d = Vec::new();
        for len in [63u8, 63, 63, 61] {
            d.push(len);
            d.extend(std::iter::repeat_n(b'a', usize::from(len)));
        }
        d.push(0);
        assert_eq!(d.len(), 255);
        d
    }

    #[test]
    fn parse_reply_leaves_option_119_to_domain_search() {
        // A pointer to itself: malformed, but parse_reply does not look.
        let r = parse_reply(&with_base(&[119, 2, 0xc0, 0, 6, 4, 1, 1, 1, 1])).unwrap();
        assert!(r.malformed.is_empty(), "{:?}", r.malformed);
        let (names, problem) = r.domain_search();
        assert!(names.is_empty());
        assert_eq!(problem.map(|p| p.code), Some(code::DOMAIN_SEARCH));
        let lease = r.to_lease().unwrap();
        assert!(lease.domain_search.is_empty());
        assert_eq!(lease.dns_servers, vec![Ipv4Addr::new(1, 1, 1, 1)]);
        // No option 119: nothing decoded, nothing reported.
        assert_eq!(
            parse_reply(&with_base(&[])).unwrap().domain_search(),
            (vec![], None)
        );
    }

    #[test]
    fn domain_search_compression_bomb_stays_within_the_caps() {
        // One 253-character name, then 600 two-byte pointers to it: 1455 bytes of option that
        // would decode to 601 names, 152 KB.
        let mut d = longest_name();
        for _ in 0..600 {
            d.extend_from_slice(&[0xc0, 0]);
        }
        let r = parse_reply(&with_base(&long_option(119, &d))).unwrap();
        assert_eq!(r.option(119).map(<[u8]>::len), Some(d.len()));
        let (names, problem) = r.domain_search();
        let bytes: usize = names.iter().map(String::len).sum();
        assert!(names.len() <= MAX_SEARCH_NAMES && bytes <= MAX_SEARCH_BYTES);
        assert_eq!(
            names.len(),
            MAX_SEARCH_BYTES / 253,
            "as many whole names as fit"
        );
        assert_eq!(problem.map(|p| p.reason), Some(TOO_MANY_BYTES));
        let lease = r.to_lease().unwrap();
        assert_eq!(lease.domain_search, names);
        assert_eq!(lease.check_bounds(), Ok(()));

        // Short names: the entry count stops it (40 pointers to "a").
        let mut d = vec![1, b'a', 0];
        for _ in 0..40 {
            d.extend_from_slice(&[0xc0, 0]);
        }
        let (names, problem) = decode_domain_search(&d);
        assert_eq!(names.len(), MAX_SEARCH_NAMES);
        assert_eq!(problem, Some(TOO_MANY_NAMES));
        // Entries that are dropped (root names, bad characters) count too, so they cannot buy
        // unbounded work either.
        let mut d = vec![0; 1000];
        d.extend_from_slice(&[2, b'o', b'k', 0]);
        assert_eq!(decode_domain_search(&d), (vec![], Some(TOO_MANY_NAMES)));
        // Exactly the caps: no report.
        let d: Vec<u8> = (0..MAX_SEARCH_NAMES).flat_map(|_| [1, b'x', 0]).collect();
        let (names, problem) = decode_domain_search(&d);
        assert_eq!((names.len(), problem), (MAX_SEARCH_NAMES, None));
    }

    #[test]
    fn domain_search_pointer_chains_are_bounded() {
        // "a" at 0, then pointers each to the one before: the k-th entry follows k pointers, so
        // n entries would cost n²/2 steps.
        let mut d = vec![1, b'a', 0];
        let mut prev = 0u16;
        for _ in 0..2000 {
            let here = d.len() as u16;
            d.extend_from_slice(&(0xc000 | prev).to_be_bytes());
            prev = here;
        }
        let (names, problem) = decode_domain_search(&d);
        assert_eq!(names, vec!["a"; MAX_SEARCH_NAMES]);
        assert_eq!(problem, Some(TOO_MANY_NAMES));
        // One name at the end of a long chain: refused after MAX_NAME_POINTERS pointers.
        assert_eq!(
            decode_dns_name(&d, usize::from(prev)),
            Err(TOO_MANY_POINTERS)
        );
        let at = 3 + 2 * (MAX_NAME_POINTERS - 1);
        assert_eq!(decode_dns_name(&d, at), Ok((Some("a".into()), at + 2)));
    }

    #[test]
    fn domain_names_over_255_wire_bytes_are_refused() {
        let d = longest_name();
        let (names, problem) = decode_domain_search(&d);
        assert_eq!((names[0].len(), problem), (MAX_NAME_LEN, None));
        // One more character: 256 bytes in wire form.
        let mut d = longest_name();
        d[255 - 62 - 1] = 62;
        d.insert(255 - 1, b'a');
        assert_eq!(
            decode_domain_search(&d).1,
            Some("name longer than 255 bytes")
        );
    }

    #[test]
    fn address_lists_are_cut_to_the_bound_and_reported() {
        let addrs = |n: u8| -> Vec<u8> { (0..n).flat_map(|i| [198, 18, 1, i]).collect() };
        let mut o = long_option(6, &addrs(20));
        o.extend(long_option(3, &addrs(16)));
        let r = parse_reply(&with_base(&o)).unwrap();
        let lease = r.to_lease().unwrap();
        assert_eq!(lease.dns_servers.len(), MAX_ADDRESSES);
        assert_eq!(lease.dns_servers[15], Ipv4Addr::new(198, 18, 1, 15));
        assert_eq!(lease.routers.len(), MAX_ADDRESSES);
        assert_eq!(
            r.malformed,
            vec![MalformedOption {
                code: code::DNS_SERVER,
                reason: TOO_MANY_ADDRESSES
            }]
        );
    }

    #[test]
    fn route_options_over_the_bound_are_ignored_and_reported() {
        // n routes 10.i.0.0/16 via 198.18.0.254, in option 121 and option 33 encodings.
        let classless = |n: usize| -> Vec<u8> {
            (0..n)
                .flat_map(|i| [16, 10, i as u8, 198, 18, 0, 254])
                .collect()
        };
        let statics = |n: usize| -> Vec<u8> {
            (0..n)
                .flat_map(|i| [10, i as u8, 0, 1, 198, 18, 0, 254])
                .collect()
        };
        let mut o = long_option(121, &classless(MAX_ROUTES));
        o.extend(long_option(33, &statics(MAX_ROUTES)));
        let r = parse_reply(&with_base(&o)).unwrap();
        assert!(r.malformed.is_empty(), "{:?}", r.malformed);
        let lease = r.to_lease().unwrap();
        assert_eq!(lease.classless_routes.len(), MAX_ROUTES);
        assert_eq!(lease.static_routes.len(), MAX_ROUTES);

        let mut o = vec![3, 4, 198, 18, 0, 1];
        o.extend(long_option(121, &classless(MAX_ROUTES + 1)));
        o.extend(long_option(33, &statics(MAX_ROUTES + 1)));
        let r = parse_reply(&with_base(&o)).unwrap();
        let lease = r.to_lease().unwrap();
        assert!(lease.classless_routes.is_empty() && lease.static_routes.is_empty());
        assert_eq!(
            lease.routes(),
            vec![Route {
                dst: net("0.0.0.0/0"),
                gateway: SERVER
            }]
        );
        let mut reports: Vec<(u8, &str)> = r.malformed.iter().map(|m| (m.code, m.reason)).collect();
        reports.sort();
        assert_eq!(
            reports,
            vec![
                (code::STATIC_ROUTE, TOO_MANY_ROUTES),
                (code::CLASSLESS_ROUTE, TOO_MANY_ROUTES)
            ]
        );
    }

    #[test]
    fn reports_name_the_bounds_they_enforce() {
        let has = |text: &str, n: usize| text.contains(&format!("more than {n} "));
        assert!(has(TOO_MANY_ADDRESSES, MAX_ADDRESSES));
        assert!(TOO_MANY_ADDRESSES.contains(&format!("first {MAX_ADDRESSES} ")));
        assert!(has(TOO_MANY_ROUTES, MAX_ROUTES));
        assert!(has(TOO_MANY_NAMES, MAX_SEARCH_NAMES));
        assert!(TOO_MANY_BYTES.contains(&format!("{MAX_SEARCH_BYTES} bytes")));
        assert!(has(TOO_MANY_POINTERS, MAX_NAME_POINTERS));
    }

    #[test]
    fn check_bounds_refuses_each_oversized_list() {
        let ok = test_lease("198.18.0.5");
        assert_eq!(ok.check_bounds(), Ok(()));
        let route = Route {
            dst: net("10.0.0.0/8"),
            gateway: SERVER,
        };
        let name = |n: usize| "a".repeat(n);
        let cases: Vec<(Lease, &str)> = vec![
            (
                Lease {
                    routers: vec![SERVER; MAX_ADDRESSES + 1],
                    ..ok.clone()
                },
                "routers",
            ),
            (
                Lease {
                    dns_servers: vec![SERVER; MAX_ADDRESSES + 1],
                    ..ok.clone()
                },
                "DNS servers",
            ),
            (
                Lease {
                    classless_routes: vec![route.clone(); 10_000],
                    ..ok.clone()
                },
                "10000 classless routes, more than 64",
            ),
            (
                Lease {
                    static_routes: vec![route.clone(); MAX_ROUTES + 1],
                    ..ok.clone()
                },
                "static routes",
            ),
            (
                Lease {
                    domain_search: vec![name(1); MAX_SEARCH_NAMES + 1],
                    ..ok.clone()
                },
                "search domains",
            ),
            (
                Lease {
                    domain_search: vec![name(250); 5],
                    ..ok.clone()
                },
                "bytes of search domains",
            ),
            (
                Lease {
                    domain_search: vec![name(254)],
                    ..ok.clone()
                },
                "254 bytes",
            ),
            (
                Lease {
                    domain_name: Some(name(254)),
                    ..ok.clone()
                },
                "254 bytes",
            ),
        ];
        for (lease, why) in cases {
            let err = lease.check_bounds().unwrap_err();
            assert!(err.contains(why), "{why:?}: {err}");
        }
        // Exactly at every bound is fine.
        let full = Lease {
            routers: vec![SERVER; MAX_ADDRESSES],
            dns_servers: vec![SERVER; MAX_ADDRESSES],
            classless_routes: vec![route.clone(); MAX_ROUTES],
            static_routes: vec![route; MAX_ROUTES],
            domain_search: [vec![name(253); 4], vec![name(1); 12]].concat(),
            domain_name: Some(name(MAX_NAME_LEN)),
            ..ok
        };
        assert_eq!(
            full.domain_search.iter().map(String::len).sum::<usize>(),
            1024
        );
        assert_eq!(full.check_bounds(), Ok(()));
    }

    #[test]
    fn unsafe_domain_name_is_rejected() {
        let r = parse_reply(&with_base(&[
            15, 8, b'a', b'$', b'(', b'x', b')', b'.', b'c', b'o',
        ]))
        .unwrap();
        assert_eq!(r.to_lease().unwrap().domain_name, None);
        assert_eq!(r.malformed[0].code, 15);
    }

    #[test]
    fn lease_requires_server_id_lease_time_and_usable_address() {
        let mut m = raw(&[53, 1, 5, 51, 4, 0, 0, 1, 0, 255]);
        assert_eq!(
            parse_reply(&m).unwrap().to_lease(),
            Err(ParseError::MissingOption(54))
        );
        m = raw(&[53, 1, 5, 54, 4, 198, 18, 0, 1, 51, 2, 0, 1, 255]);
        assert_eq!(
            parse_reply(&m).unwrap().to_lease(),
            Err(ParseError::MissingOption(51))
        );
        let mut m = with_base(&[]);
        m[OFF_YIADDR..OFF_YIADDR + 4].copy_from_slice(&[0, 0, 0, 0]);
        assert_eq!(
            parse_reply(&m).unwrap().to_lease(),
            Err(ParseError::BadAddress(Ipv4Addr::UNSPECIFIED))
        );
        m[OFF_YIADDR..OFF_YIADDR + 4].copy_from_slice(&[224, 0, 0, 1]);
        assert!(parse_reply(&m).unwrap().to_lease().is_err());
    }

    #[test]
    fn t1_t2_defaults_and_clamping() {
        assert_eq!(lease_times(3600, None, None), (1800, 3150));
        assert_eq!(lease_times(0, None, None), (0, 0));
        assert_eq!(lease_times(1, None, None), (0, 0));
        assert_eq!(
            lease_times(u32::MAX, None, None),
            (2_147_483_647, 3_758_096_383)
        );
        // Server T1 > T2 > lease: clamped to T1 <= T2 <= lease.
        assert_eq!(lease_times(100, Some(500), Some(400)), (100, 100));
        assert_eq!(lease_times(100, Some(90), Some(80)), (80, 80));
        assert_eq!(lease_times(100, Some(10), None), (10, 87));
        let lease = parse_reply(&with_base(&[58, 4, 0, 0, 0, 100, 59, 4, 0, 0, 0, 200]))
            .unwrap()
            .to_lease()
            .unwrap();
        assert_eq!((lease.renewal_time, lease.rebinding_time), (100, 200));
    }

    #[test]
    fn never_panics_on_mutated_or_random_input() {
        let seed = with_base(&[
            1, 4, 255, 255, 255, 0, 3, 4, 198, 18, 0, 1, 52, 1, 3, 119, 7, 1, b'a', 0, 0xc0, 0, 1,
            b'b', 121, 5, 8, 10, 1, 2, 3, 33, 8, 1, 2, 3, 4, 5, 6, 7, 8,
        ]);
        let mut rng = SmallRng::seed_from_u64(7);
        for _ in 0..20_000 {
            let mut m = seed.clone();
            for _ in 0..rng.random_range(1..8) {
                let i = rng.random_range(0..m.len());
                m[i] = rng.random();
            }
            m.truncate(rng.random_range(200..=m.len()));
            if let Ok(r) = parse_reply(&m) {
                if let Ok(l) = r.to_lease() {
                    assert!(l.renewal_time <= l.rebinding_time);
                    assert!(l.rebinding_time <= l.lease_time);
                    assert!(l.prefix_len <= 32);
                    assert_eq!(l.check_bounds(), Ok(()));
                    let _ = l.routes();
                }
            }
        }
        for _ in 0..2_000 {
            let len = rng.random_range(0..600);
            let mut m: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if m.len() >= HEADER_LEN {
                m[OFF_COOKIE..HEADER_LEN].copy_from_slice(&MAGIC_COOKIE);
            }
            if let Ok(r) = parse_reply(&m) {
                let _ = r.to_lease();
            }
        }
    }
}
