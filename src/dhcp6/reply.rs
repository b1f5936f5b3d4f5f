//! Receive side: parsing a server's ADVERTISE or REPLY (RFC 8415 §8, §21) into a [`Reply`], and
//! the binding it grants our IA_NA into a [`Lease6`].
//!
//! Written by hand, as the DHCPv4 parser is ([`crate::dhcp::reply`]), rather than with
//! dhcproto's `v6` decoder: its DHCPv4 decoder panics under debug assertions on some malformed
//! options (docs/design.md, *dhcproto's decoder*), and a decoder that stops at the first bad
//! option loses the good ones after it. Here the 4-byte header is read by offsets, options are
//! walked as code/length/data (§21.1), and an option whose length runs past its container stops
//! that walk keeping everything valid before it. Each known option is decoded on its own; one
//! that is malformed (a Preference not 1 byte, a DNS option not a multiple of 16) is reported
//! in [`Reply::malformed`] and ignored. A repeated option that must appear once (Client or
//! Server Identifier, Preference, the top-level Status Code, the Domain Search List) keeps
//! its first copy. Nothing here panics on any input: every index is checked and all arithmetic
//! is bounded.
//!
//! # Cost and size bounds
//!
//! [`parse_reply`] runs on every datagram heard on port 546 before the transaction id and the
//! Client Identifier tell whether it is ours, so it does work linear in the datagram only (the
//! domain list of option 24 is never compressed, RFC 8415 §10, so decoding it is linear too) and
//! keeps at most: [`MAX_IAS`] IA_NA options of [`MAX_IA_ADDRESSES`] addresses each,
//! [`MAX_ADDRESSES`] DNS servers, [`MAX_SEARCH_NAMES`] search names of [`MAX_NAME_LEN`] bytes
//! and [`MAX_SEARCH_BYTES`] in all, status messages of [`MAX_STATUS_MESSAGE`] bytes, and
//! [`MAX_MALFORMED`] malformed-option reports. A [`Lease6`] will be persisted and listed like
//! the DHCPv4 [`crate::dhcp::Lease`], so its lists share the DHCPv4 bounds.

use std::net::Ipv6Addr;

pub use crate::dhcp::reply::{MAX_ADDRESSES, MAX_NAME_LEN, MAX_SEARCH_BYTES, MAX_SEARCH_NAMES};

use super::identity::MAX_DUID_LEN;
use super::message::{MessageType, code};

/// Most IA_NA options of a reply kept (we send one; a server answers with ours, maybe with
/// others it holds for our DUID).
pub const MAX_IAS: usize = 8;

/// Most IA Address options kept per IA_NA.
pub const MAX_IA_ADDRESSES: usize = 16;

/// Longest status message kept, in bytes (§21.13 sets no limit; it is only logged).
pub const MAX_STATUS_MESSAGE: usize = 256;

/// Most malformed options reported per reply.
pub const MAX_MALFORMED: usize = 16;

/// Infinity for lifetimes, T1 and T2 (RFC 8415 §7.7: 0xffffffff).
pub const INFINITY: u32 = u32::MAX;

/// Why a payload is not a DHCPv6 message at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Shorter than the 4-byte header (msg-type and transaction id, §8).
    #[error("message too short: {0} bytes, a DHCPv6 message has at least 4")]
    TooShort(usize),
}

/// One option that was present but could not be decoded, kept for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedOption {
    /// The option code.
    pub code: u16,
    /// What was wrong, in words.
    pub reason: &'static str,
}

/// A Status Code value (RFC 8415 §21.13; the codes of §21.13's table that concern IA_NA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum StatusCode {
    /// 0: success.
    Success,
    /// 1: failure, reason unspecified.
    UnspecFail,
    /// 2: the server has no addresses available for the IA.
    NoAddrsAvail,
    /// 3: the client's binding is unknown to the server (RENEW, REBIND).
    NoBinding,
    /// 4: the prefix of the addresses is not on the client's link (CONFIRM, REQUEST).
    NotOnLink,
    /// 5: the server wants the client to multicast (we always do).
    UseMulticast,
    /// Any other code (prefix delegation's NoPrefixAvail 6, later RFCs' codes).
    Other(u16),
}

impl StatusCode {
    /// The status of code `c`.
    pub fn from_code(c: u16) -> StatusCode {
        match c {
            0 => StatusCode::Success,
            1 => StatusCode::UnspecFail,
            2 => StatusCode::NoAddrsAvail,
            3 => StatusCode::NoBinding,
            4 => StatusCode::NotOnLink,
            5 => StatusCode::UseMulticast,
            c => StatusCode::Other(c),
        }
    }
}

/// A Status Code option (§21.13): the code and the server's message, UTF-8 (invalid sequences
/// replaced), at most [`MAX_STATUS_MESSAGE`] bytes of it, for logs only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The status-code field.
    pub code: StatusCode,
    /// The status-message field.
    pub message: String,
}

/// An IA Address option (§21.6) from a reply. Lifetimes in seconds, [`INFINITY`] for ever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IaAddress {
    /// The address.
    pub address: Ipv6Addr,
    /// preferred-lifetime.
    pub preferred: u32,
    /// valid-lifetime; 0 means the address must no longer be used (§18.2.10.1).
    pub valid: u32,
    /// The Status Code option inside it, if any.
    pub status: Option<Status>,
}

/// An IA_NA option (§21.4) from a reply. T1 and T2 in seconds as sent (0: the client chooses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IaNa {
    /// The IAID.
    pub iaid: u32,
    /// T1.
    pub t1: u32,
    /// T2.
    pub t2: u32,
    /// Its IA Address options, at most [`MAX_IA_ADDRESSES`].
    pub addresses: Vec<IaAddress>,
    /// The Status Code option inside the IA_NA, if any.
    pub status: Option<Status>,
}

/// A server message, decoded; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// msg-type (§7.3): ADVERTISE and REPLY are what a client accepts.
    pub message_type: MessageType,
    /// transaction-id (§8), the low 24 bits.
    pub xid: u32,
    /// Client Identifier option 1 (§21.2): must be our DUID.
    pub client_id: Option<Vec<u8>>,
    /// Server Identifier option 2 (§21.3): required in ADVERTISE and REPLY (§16.3, §16.10).
    pub server_id: Option<Vec<u8>>,
    /// IA_NA options 3, at most [`MAX_IAS`].
    pub ia_na: Vec<IaNa>,
    /// The top-level Status Code option 13.
    pub status: Option<Status>,
    /// Preference option 7 (§21.8); 0 when absent (§18.2.9).
    pub preference: u8,
    /// Rapid Commit option 14 present (§21.14).
    pub rapid_commit: bool,
    /// DNS Recursive Name Server option 23 (RFC 3646 §3), at most [`MAX_ADDRESSES`].
    pub dns_servers: Vec<Ipv6Addr>,
    /// Domain Search List option 24 (RFC 3646 §4), names without the trailing dot; names with
    /// other characters than letters, digits, `-` and `_` in a label are dropped (they go into
    /// resolv.conf). Bounded by [`MAX_SEARCH_NAMES`], [`MAX_NAME_LEN`], [`MAX_SEARCH_BYTES`].
    pub domain_search: Vec<String>,
    /// SOL_MAX_RT option 82 (§21.24) in seconds, when within 60..=86400 (a client MUST ignore
    /// other values).
    pub sol_max_rt: Option<u32>,
    /// Options present but not decodable, at most [`MAX_MALFORMED`].
    pub malformed: Vec<MalformedOption>,
}

/// What a server grants our IA_NA: one address, decoded and checked (RFC 8415 §18.2.10.1,
/// §21.4, §21.6). Lifetimes, T1 and T2 are in seconds, relative to when the client sent the
/// message the REPLY answers; [`INFINITY`] (u32::MAX) is for ever. Invariant (enforced by
/// [`Reply::to_lease`]): `t1 <= t2 <= valid_lifetime` and `preferred_lifetime <= valid_lifetime`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lease6 {
    /// The address granted (IA Address option 5).
    pub address: Ipv6Addr,
    /// Its preferred lifetime.
    pub preferred_lifetime: u32,
    /// Its valid lifetime: expiry.
    pub valid_lifetime: u32,
    /// When to RENEW: the IA_NA's T1, or 0.5 × the preferred lifetime when the server sent 0
    /// (§21.4), at most `t2`.
    pub t1: u32,
    /// When to REBIND: the IA_NA's T2, or 0.8 × the preferred lifetime when the server sent 0,
    /// at most the valid lifetime.
    pub t2: u32,
    /// The IAID of the IA_NA it came in (ours).
    pub iaid: u32,
    /// The granting server's DUID (Server Identifier option 2 data): RENEW, RELEASE and DECLINE
    /// name it.
    pub server_id: Vec<u8>,
    /// Option 23 DNS servers, in server order.
    pub dns_servers: Vec<Ipv6Addr>,
    /// Option 24 search domains, in server order.
    pub domain_search: Vec<String>,
}

/// A [`Lease6`] with what DHCPv6 does not carry and the link's Router Advertisements tell
/// (RFC 8415 §18.2.10.1 leaves both to RAs; RFC 4861 §6.3.4): the on-link prefix length of the
/// address and the default router. What the CNI result and the interface get
/// (docs/design.md, *Router Advertisements*).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Leased6 {
    /// The lease as granted.
    #[serde(flatten)]
    pub lease: Lease6,
    /// Length of the on-link prefix (a Prefix Information option with the L flag covering the
    /// address) of the RA heard, else 128: the address alone, no on-link route.
    pub prefix_len: u8,
    /// The link-local address of the router whose RA had a non-zero router lifetime: the
    /// default route's gateway. `None` without such an RA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<Ipv6Addr>,
}

impl Leased6 {
    /// `lease` with no RA heard: /128, no router.
    pub fn without_ra(lease: Lease6) -> Leased6 {
        Leased6 {
            lease,
            prefix_len: 128,
            router: None,
        }
    }

    /// The address with its prefix length (clamped to 128).
    pub fn address_net(&self) -> ipnet::Ipv6Net {
        ipnet::Ipv6Net::new(self.lease.address, self.prefix_len.min(128))
            .unwrap_or_else(|_| ipnet::Ipv6Net::from(self.lease.address))
    }

    /// The default route `::/0` via [`Leased6::router`], if one was heard.
    pub fn default_route(&self) -> Option<(ipnet::Ipv6Net, Ipv6Addr)> {
        self.router.map(|r| (ipnet::Ipv6Net::default(), r))
    }
}

/// Why a reply's binding is not a usable [`Lease6`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// No Server Identifier (§16.10: such a REPLY must be discarded).
    #[error("no server identifier")]
    NoServerId,
    /// A Status Code other than Success at the top level, in our IA_NA or in the address.
    #[error("status {0:?}")]
    Status(StatusCode),
    /// No IA_NA with our IAID.
    #[error("no IA_NA for IAID {0:#010x}")]
    NoIa(u32),
    /// T1 > T2 with both non-zero (§21.4: "the client MUST discard the IA_NA option").
    #[error("T1 {t1} > T2 {t2}")]
    BadTimers {
        /// T1 as sent.
        t1: u32,
        /// T2 as sent.
        t2: u32,
    },
    /// No usable address in our IA_NA: none, or each with a valid lifetime of 0, a preferred
    /// lifetime over the valid one (§21.6: "MUST discard"), a Status Code other than Success,
    /// or an unspecified, loopback or multicast address; or none of them the address asked for.
    #[error("no usable address")]
    NoAddress,
}

/// Reads a big-endian u16 at `at`.
fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

/// Reads a big-endian u32 at `at`.
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// The options of `area` as (code, data), in order; an option running past the end stops the
/// walk with `Err(code)` as its last item.
fn options(area: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), u16>> {
    let mut at = 0usize;
    let mut done = false;
    std::iter::from_fn(move || {
        if done || at >= area.len() {
            return None;
        }
        let (Some(code), Some(len)) = (u16_at(area, at), u16_at(area, at.saturating_add(2))) else {
            done = true;
            return Some(Err(u16_at(area, at).unwrap_or(0)));
        };
        let start = at.saturating_add(4);
        let end = start.saturating_add(usize::from(len));
        match area.get(start..end) {
            Some(data) => {
                at = end;
                Some(Ok((code, data)))
            }
            None => {
                done = true;
                Some(Err(code))
            }
        }
    })
}

/// Collects malformed-option reports, bounded.
#[derive(Default)]
struct Malformed(Vec<MalformedOption>);

impl Malformed {
    /// Notes option `code` as malformed for `reason`, unless [`MAX_MALFORMED`] are noted.
    fn note(&mut self, code: u16, reason: &'static str) {
        if self.0.len() < MAX_MALFORMED {
            self.0.push(MalformedOption { code, reason });
        }
    }
}

/// A Status Code option's data (§21.13), or None when shorter than its 2-byte code.
fn status(d: &[u8]) -> Option<Status> {
    let code = StatusCode::from_code(u16_at(d, 0)?);
    let text = d.get(2..).unwrap_or_default();
    let text = &text[..text.len().min(MAX_STATUS_MESSAGE)];
    Some(Status {
        code,
        message: String::from_utf8_lossy(text).into_owned(),
    })
}

/// An IA Address option's data (§21.6): 16 bytes of address, preferred and valid lifetimes,
/// then options, of which Status Code is kept.
fn ia_address(d: &[u8], bad: &mut Malformed) -> Option<IaAddress> {
    let octets: [u8; 16] = d.get(..16)?.try_into().ok()?;
    let (preferred, valid) = (u32_at(d, 16)?, u32_at(d, 20)?);
    let mut st = None;
    for o in options(d.get(24..).unwrap_or_default()) {
        match o {
            Ok((code::STATUS_CODE, s)) if st.is_none() => {
                st = status(s);
                if st.is_none() {
                    bad.note(code::STATUS_CODE, "status code shorter than 2 bytes");
                }
            }
            Ok(_) => {}
            Err(c) => bad.note(c, "option in IA Address runs past it"),
        }
    }
    Some(IaAddress {
        address: Ipv6Addr::from(octets),
        preferred,
        valid,
        status: st,
    })
}

/// An IA_NA option's data (§21.4): IAID, T1, T2, then options: IA Address and Status Code.
fn ia_na(d: &[u8], bad: &mut Malformed) -> Option<IaNa> {
    let (iaid, t1, t2) = (u32_at(d, 0)?, u32_at(d, 4)?, u32_at(d, 8)?);
    let mut ia = IaNa {
        iaid,
        t1,
        t2,
        addresses: Vec::new(),
        status: None,
    };
    for o in options(d.get(12..).unwrap_or_default()) {
        match o {
            Ok((code::IAADDR, a)) => match ia_address(a, bad) {
                Some(_) if ia.addresses.len() >= MAX_IA_ADDRESSES => {
                    bad.note(code::IAADDR, "too many addresses in IA_NA")
                }
                Some(a) => ia.addresses.push(a),
                None => bad.note(code::IAADDR, "IA Address shorter than 24 bytes"),
            },
            Ok((code::STATUS_CODE, s)) if ia.status.is_none() => {
                ia.status = status(s);
                if ia.status.is_none() {
                    bad.note(code::STATUS_CODE, "status code shorter than 2 bytes");
                }
            }
            Ok(_) => {}
            Err(c) => bad.note(c, "option in IA_NA runs past it"),
        }
    }
    Some(ia)
}

/// Letters, digits, `-` and `_` only, 1 to 63 bytes: the name goes into resolv.conf and the CNI
/// result (the rule of the DHCPv4 search list; docs/design.md, *Bad input*).
fn valid_label(l: &[u8]) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && l.iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
}

/// Option 24's data (RFC 3646 §4): uncompressed DNS names (RFC 1035 §3.1, RFC 8415 §10), each
/// a sequence of length-prefixed labels ending in a 0 byte. A name with a bad label, or longer
/// than [`MAX_NAME_LEN`] as text, is dropped; a name cut short (or a length byte over 63, e.g. a
/// compression pointer) stops the decoding; the caps bound the rest.
fn domain_list(d: &[u8], bad: &mut Malformed) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut total = 0usize;
    let mut at = 0usize;
    let mut name = String::new();
    let mut ok = true;
    while let Some(&len) = d.get(at) {
        let len = usize::from(len);
        if len == 0 {
            at = at.saturating_add(1);
            if !ok || name.is_empty() || name.len() > MAX_NAME_LEN {
                bad.note(code::DOMAIN_LIST, "invalid name in domain list");
            } else if names.len() >= MAX_SEARCH_NAMES
                || total.saturating_add(name.len()) > MAX_SEARCH_BYTES
            {
                bad.note(code::DOMAIN_LIST, "domain list over its bounds");
                return names;
            } else {
                total = total.saturating_add(name.len());
                names.push(std::mem::take(&mut name));
            }
            name.clear();
            ok = true;
            continue;
        }
        let label = match d.get(at.saturating_add(1)..at.saturating_add(1).saturating_add(len)) {
            Some(l) if len <= 63 => l,
            _ => {
                bad.note(code::DOMAIN_LIST, "domain list cut short or compressed");
                return names;
            }
        };
        at = at.saturating_add(1).saturating_add(len);
        if !valid_label(label) {
            ok = false;
        } else if ok && name.len() <= MAX_NAME_LEN {
            if !name.is_empty() {
                name.push('.');
            }
            // Checked ASCII above.
            name.extend(label.iter().map(|&b| char::from(b)));
        }
    }
    if !name.is_empty() || !ok {
        bad.note(code::DOMAIN_LIST, "domain list ends inside a name");
    }
    names
}

/// Parses a DHCPv6 message (`payload`, a UDP payload from port 547) into a [`Reply`]. It
/// accepts any msg-type (the client checks); relay messages (12, 13) are not unwrapped.
///
/// Errors: [`ParseError::TooShort`] under 4 bytes. Anything else malformed is ignored per option
/// and reported in [`Reply::malformed`].
pub fn parse_reply(payload: &[u8]) -> Result<Reply, ParseError> {
    if payload.len() < 4 {
        return Err(ParseError::TooShort(payload.len()));
    }
    let mut bad = Malformed::default();
    let mut r = Reply {
        message_type: MessageType::from_code(payload[0]),
        xid: u32::from_be_bytes([0, payload[1], payload[2], payload[3]]),
        client_id: None,
        server_id: None,
        ia_na: Vec::new(),
        status: None,
        preference: 0,
        rapid_commit: false,
        dns_servers: Vec::new(),
        domain_search: Vec::new(),
        sol_max_rt: None,
        malformed: Vec::new(),
    };
    let mut preference = None;
    let mut domains = false;
    for o in options(&payload[4..]) {
        let (c, d) = match o {
            Ok(o) => o,
            Err(c) => {
                bad.note(c, "option runs past the message");
                break;
            }
        };
        match c {
            code::CLIENTID | code::SERVERID => {
                let slot = if c == code::CLIENTID {
                    &mut r.client_id
                } else {
                    &mut r.server_id
                };
                if !(1..=MAX_DUID_LEN).contains(&d.len()) {
                    bad.note(c, "DUID empty or longer than 130 bytes");
                } else if slot.is_none() {
                    *slot = Some(d.to_vec());
                }
            }
            code::IA_NA => match ia_na(d, &mut bad) {
                Some(_) if r.ia_na.len() >= MAX_IAS => bad.note(c, "too many IA_NA options"),
                Some(ia) => r.ia_na.push(ia),
                None => bad.note(c, "IA_NA shorter than 12 bytes"),
            },
            code::STATUS_CODE if r.status.is_none() => {
                r.status = status(d);
                if r.status.is_none() {
                    bad.note(c, "status code shorter than 2 bytes");
                }
            }
            code::PREFERENCE if preference.is_none() => match d {
                [p] => preference = Some(*p),
                _ => bad.note(c, "preference not 1 byte"),
            },
            code::RAPID_COMMIT => {
                if d.is_empty() {
                    r.rapid_commit = true;
                } else {
                    bad.note(c, "rapid commit not empty");
                }
            }
            code::DNS_SERVERS => {
                if d.len() % 16 != 0 {
                    bad.note(c, "DNS servers not a multiple of 16 bytes");
                    continue;
                }
                for a in d.chunks_exact(16) {
                    if r.dns_servers.len() >= MAX_ADDRESSES {
                        bad.note(c, "too many DNS servers");
                        break;
                    }
                    let octets: [u8; 16] = a.try_into().unwrap_or([0; 16]);
                    r.dns_servers.push(Ipv6Addr::from(octets));
                }
            }
            code::DOMAIN_LIST if !domains => {
                domains = true;
                r.domain_search = domain_list(d, &mut bad);
            }
            code::SOL_MAX_RT => match u32_at(d, 0) {
                Some(v) if d.len() == 4 && (60..=86400).contains(&v) => r.sol_max_rt = Some(v),
                _ => bad.note(c, "SOL_MAX_RT not 4 bytes in 60..=86400"),
            },
            // Server Unicast (§21.12) is ignored: every message of ours is multicast
            // (docs/design.md, *DHCPv6 identity*). Anything else is not ours to read.
            _ => {}
        }
    }
    r.preference = preference.unwrap_or(0);
    r.malformed = bad.0;
    Ok(r)
}

/// Whether `a` can be a leased address: not unspecified, loopback or multicast.
fn usable(a: Ipv6Addr) -> bool {
    !(a.is_unspecified() || a.is_loopback() || a.is_multicast())
}

/// T1 and T2 in seconds for an IA_NA that sent `t1` and `t2` for an address with `preferred`
/// and `valid` lifetimes (§21.4): a 0 is the client's choice, 0.5 and 0.8 × `preferred`
/// (infinite when `preferred` is); then clamped so that `t1 <= t2 <= valid`.
pub fn lease_times(t1: u32, t2: u32, preferred: u32, valid: u32) -> (u32, u32) {
    let part = |num: u64, den: u64| {
        if preferred == INFINITY {
            INFINITY
        } else {
            u32::try_from(u64::from(preferred) * num / den).unwrap_or(INFINITY)
        }
    };
    let t2 = if t2 == 0 { part(4, 5) } else { t2 }.min(valid);
    let t1 = if t1 == 0 { part(1, 2) } else { t1 }.min(t2);
    (t1, t2)
}

impl Reply {
    /// The status that decides about our IA_NA `iaid`: the top-level Status Code when it is not
    /// Success, else the one inside that IA_NA, else Success (§21.13: absent means Success).
    pub fn status_for(&self, iaid: u32) -> StatusCode {
        let top = self.status.as_ref().map_or(StatusCode::Success, |s| s.code);
        if top != StatusCode::Success {
            return top;
        }
        self.ia_na
            .iter()
            .find(|ia| ia.iaid == iaid)
            .and_then(|ia| ia.status.as_ref())
            .map_or(StatusCode::Success, |s| s.code)
    }

    /// The lease this reply grants IA_NA `iaid` (§18.2.10.1): its first usable address, or the
    /// address `want` when given (a RENEW or REBIND asks for the address held). Usable: valid
    /// lifetime above 0, preferred lifetime at most the valid one (§21.6), no Status Code other
    /// than Success inside it, not unspecified, loopback or multicast. T1 and T2 per
    /// [`lease_times`].
    ///
    /// Errors: see [`LeaseError`]; the status is checked first ([`Reply::status_for`]).
    pub fn to_lease(&self, iaid: u32, want: Option<Ipv6Addr>) -> Result<Lease6, LeaseError> {
        let server_id = self.server_id.clone().ok_or(LeaseError::NoServerId)?;
        match self.status_for(iaid) {
            StatusCode::Success => {}
            s => return Err(LeaseError::Status(s)),
        }
        let ia = self
            .ia_na
            .iter()
            .find(|ia| ia.iaid == iaid)
            .ok_or(LeaseError::NoIa(iaid))?;
        if ia.t1 > ia.t2 && ia.t2 > 0 {
            return Err(LeaseError::BadTimers {
                t1: ia.t1,
                t2: ia.t2,
            });
        }
        let a = ia
            .addresses
            .iter()
            .filter(|a| want.is_none_or(|w| w == a.address))
            .find(|a| {
                a.valid > 0
                    && a.preferred <= a.valid
                    && usable(a.address)
                    && a.status
                        .as_ref()
                        .is_none_or(|s| s.code == StatusCode::Success)
            })
            .ok_or(LeaseError::NoAddress)?;
        let (t1, t2) = lease_times(ia.t1, ia.t2, a.preferred, a.valid);
        Ok(Lease6 {
            address: a.address,
            preferred_lifetime: a.preferred,
            valid_lifetime: a.valid,
            t1,
            t2,
            iaid,
            server_id,
            dns_servers: self.dns_servers.clone(),
            domain_search: self.domain_search.clone(),
        })
    }
}

/// Builders of server messages for the tests of this module, the client's and the fuzz seeds.
#[cfg(test)]
pub(crate) mod build {
    use std::net::Ipv6Addr;

    /// Appends option `code` with `data`.
    pub(crate) fn opt(out: &mut Vec<u8>, code: u16, data: &[u8]) {
        out.extend_from_slice(&code.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
    }

    /// An IA Address option's data.
    pub(crate) fn iaaddr(a: Ipv6Addr, preferred: u32, valid: u32, status: Option<u16>) -> Vec<u8> {
        let mut d = a.octets().to_vec();
        d.extend_from_slice(&preferred.to_be_bytes());
        d.extend_from_slice(&valid.to_be_bytes());
        if let Some(s) = status {
            opt(&mut d, 13, &s.to_be_bytes());
        }
        d
    }

    /// An IA_NA option's data with `addrs` (IA Address data each) and an optional status.
    pub(crate) fn ia(
        iaid: u32,
        t1: u32,
        t2: u32,
        addrs: &[Vec<u8>],
        status: Option<u16>,
    ) -> Vec<u8> {
        let mut d = iaid.to_be_bytes().to_vec();
        d.extend_from_slice(&t1.to_be_bytes());
        d.extend_from_slice(&t2.to_be_bytes());
        for a in addrs {
            opt(&mut d, 5, a);
        }
        if let Some(s) = status {
            let mut sd = s.to_be_bytes().to_vec();
            sd.extend_from_slice(b"status");
            opt(&mut d, 13, &sd);
        }
        d
    }

    /// A message header.
    pub(crate) fn header(msg_type: u8, xid: u32) -> Vec<u8> {
        let mut m = vec![msg_type];
        m.extend_from_slice(&xid.to_be_bytes()[1..]);
        m
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;
    use proptest::prelude::*;

    const CLIENT: [u8; 4] = [0, 4, 1, 2];
    const SERVER: [u8; 4] = [0, 3, 9, 9];
    const ADDR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
    const DNS: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x53);

    fn reply_with(ia: Vec<u8>) -> Vec<u8> {
        let mut m = header(7, 0x123456);
        opt(&mut m, 1, &CLIENT);
        opt(&mut m, 2, &SERVER);
        opt(&mut m, 3, &ia);
        opt(&mut m, 7, &[200]);
        opt(&mut m, 12, &DNS.octets());
        opt(&mut m, 23, &DNS.octets());
        opt(&mut m, 24, b"\x03lab\x07example\x00\x04corp\x00");
        opt(&mut m, 82, &3600u32.to_be_bytes());
        m
    }

    #[test]
    fn parses_a_full_reply() {
        let ia = ia(7, 100, 160, &[iaaddr(ADDR, 200, 300, None)], None);
        let r = parse_reply(&reply_with(ia)).unwrap();
        assert_eq!(r.message_type, MessageType::Reply);
        assert_eq!(r.xid, 0x123456);
        assert_eq!(r.client_id.as_deref(), Some(&CLIENT[..]));
        assert_eq!(r.server_id.as_deref(), Some(&SERVER[..]));
        assert_eq!(r.preference, 200);
        assert_eq!(r.dns_servers, vec![DNS]);
        assert_eq!(r.domain_search, vec!["lab.example", "corp"]);
        assert_eq!(r.sol_max_rt, Some(3600));
        assert!(r.malformed.is_empty(), "{:?}", r.malformed);
        let l = r.to_lease(7, None).unwrap();
        assert_eq!(
            l,
            Lease6 {
                address: ADDR,
                preferred_lifetime: 200,
                valid_lifetime: 300,
                t1: 100,
                t2: 160,
                iaid: 7,
                server_id: SERVER.to_vec(),
                dns_servers: vec![DNS],
                domain_search: vec!["lab.example".into(), "corp".into()],
            }
        );
        assert_eq!(r.to_lease(8, None), Err(LeaseError::NoIa(8)));
        assert_eq!(r.to_lease(7, Some(DNS)), Err(LeaseError::NoAddress));
        // A Lease6 survives a serde round trip (it will be persisted).
        let json = serde_json::to_string(&l).unwrap();
        assert_eq!(serde_json::from_str::<Lease6>(&json).unwrap(), l);
    }

    #[test]
    fn zero_timers_are_the_clients_choice() {
        // §21.4: 0.5 and 0.8 of the preferred lifetime.
        assert_eq!(lease_times(0, 0, 1000, 2000), (500, 800));
        assert_eq!(lease_times(0, 0, INFINITY, INFINITY), (INFINITY, INFINITY));
        // Clamped: T2 to the valid lifetime, T1 to T2.
        assert_eq!(lease_times(900, 5000, 1000, 2000), (900, 2000));
        assert_eq!(lease_times(0, 300, 1000, 2000), (300, 300));
        let ia = ia(7, 0, 0, &[iaaddr(ADDR, 1000, 2000, None)], None);
        let l = parse_reply(&reply_with(ia))
            .unwrap()
            .to_lease(7, None)
            .unwrap();
        assert_eq!((l.t1, l.t2), (500, 800));
    }

    #[test]
    fn unusable_bindings_are_refused() {
        let cases = [
            // T1 > T2 > 0: the IA is discarded.
            (
                ia(7, 200, 100, &[iaaddr(ADDR, 200, 300, None)], None),
                LeaseError::BadTimers { t1: 200, t2: 100 },
            ),
            // preferred > valid; valid 0; multicast; an address status.
            (
                ia(7, 0, 0, &[iaaddr(ADDR, 301, 300, None)], None),
                LeaseError::NoAddress,
            ),
            (
                ia(7, 0, 0, &[iaaddr(ADDR, 0, 0, None)], None),
                LeaseError::NoAddress,
            ),
            (
                ia(
                    7,
                    0,
                    0,
                    &[iaaddr(
                        Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
                        1,
                        2,
                        None,
                    )],
                    None,
                ),
                LeaseError::NoAddress,
            ),
            (
                ia(7, 0, 0, &[iaaddr(ADDR, 1, 2, Some(1))], None),
                LeaseError::NoAddress,
            ),
            (ia(7, 0, 0, &[], None), LeaseError::NoAddress),
            // IA status NoAddrsAvail / NoBinding.
            (
                ia(7, 0, 0, &[], Some(2)),
                LeaseError::Status(StatusCode::NoAddrsAvail),
            ),
            (
                ia(7, 0, 0, &[], Some(3)),
                LeaseError::Status(StatusCode::NoBinding),
            ),
        ];
        for (ia, err) in cases {
            let r = parse_reply(&reply_with(ia)).unwrap();
            assert_eq!(r.to_lease(7, None), Err(err));
        }
        // A top-level status wins over the IA's.
        let mut m = reply_with(ia(7, 0, 0, &[iaaddr(ADDR, 1, 2, None)], None));
        opt(&mut m, 13, &[0, 4, b'n', b'o']);
        let r = parse_reply(&m).unwrap();
        assert_eq!(r.status.as_ref().unwrap().message, "no");
        assert_eq!(
            r.to_lease(7, None),
            Err(LeaseError::Status(StatusCode::NotOnLink))
        );
        // No server id.
        let mut m = header(7, 1);
        opt(&mut m, 3, &ia(7, 0, 0, &[iaaddr(ADDR, 1, 2, None)], None));
        assert_eq!(
            parse_reply(&m).unwrap().to_lease(7, None),
            Err(LeaseError::NoServerId)
        );
    }

    #[test]
    fn malformed_options_are_reported_and_the_rest_kept() {
        let mut m = header(2, 1);
        opt(&mut m, 7, &[1, 2]); // preference of 2 bytes
        opt(&mut m, 23, &[0; 17]); // not a multiple of 16
        opt(&mut m, 14, &[1]); // rapid commit with data
        opt(&mut m, 82, &10u32.to_be_bytes()); // SOL_MAX_RT under 60
        opt(&mut m, 3, &[0; 11]); // IA_NA too short
        opt(&mut m, 1, &[]); // empty DUID
        opt(&mut m, 2, &SERVER);
        opt(&mut m, 7, &[9]); // a valid preference after the bad one
        m.extend_from_slice(&[0, 23, 0, 40, 1]); // runs past the end
        let r = parse_reply(&m).unwrap();
        assert_eq!(r.server_id.as_deref(), Some(&SERVER[..]));
        assert_eq!(r.preference, 9);
        assert!(!r.rapid_commit);
        assert_eq!(r.sol_max_rt, None);
        let codes: Vec<u16> = r.malformed.iter().map(|m| m.code).collect();
        assert_eq!(codes, vec![7, 23, 14, 82, 3, 1, 23]);
        assert_eq!(parse_reply(&[7, 0, 0]), Err(ParseError::TooShort(3)));
        assert_eq!(parse_reply(&[7, 0, 0, 1]).unwrap().preference, 0);
    }

    #[test]
    fn domain_list_bounds_and_bad_names() {
        let mut bad = Malformed::default();
        // A bad label drops its name only; a compression pointer stops.
        let d = b"\x02a!\x03com\x00\x02ok\x00\xc0\x0c";
        assert_eq!(domain_list(d, &mut bad), vec!["ok"]);
        assert_eq!(bad.0.len(), 2);
        // Cut inside a name.
        let mut bad = Malformed::default();
        assert_eq!(domain_list(b"\x02ok\x00\x03ab", &mut bad), vec!["ok"]);
        assert_eq!(bad.0.len(), 1);
        // More names than MAX_SEARCH_NAMES.
        let mut d = Vec::new();
        for _ in 0..40 {
            d.extend_from_slice(b"\x01a\x00");
        }
        let mut bad = Malformed::default();
        assert_eq!(domain_list(&d, &mut bad).len(), MAX_SEARCH_NAMES);
        // A name longer than MAX_NAME_LEN (five 63-byte labels) is dropped.
        let mut d = Vec::new();
        for _ in 0..5 {
            d.push(63);
            d.extend_from_slice(&[b'x'; 63]);
        }
        d.push(0);
        let mut bad = Malformed::default();
        assert!(domain_list(&d, &mut bad).is_empty());
    }

    #[test]
    fn counts_are_bounded() {
        let mut m = header(7, 1);
        let addrs: Vec<Vec<u8>> = (0..40).map(|_| iaaddr(ADDR, 1, 2, None)).collect();
        for _ in 0..20 {
            opt(&mut m, 3, &ia(7, 0, 0, &addrs, None));
        }
        opt(&mut m, 23, &[1; 16 * 40]);
        let r = parse_reply(&m).unwrap();
        assert_eq!(r.ia_na.len(), MAX_IAS);
        assert!(
            r.ia_na
                .iter()
                .all(|ia| ia.addresses.len() == MAX_IA_ADDRESSES)
        );
        assert_eq!(r.dns_servers.len(), MAX_ADDRESSES);
        assert_eq!(r.malformed.len(), MAX_MALFORMED);
    }

    proptest! {
        /// Any bytes: parsing and lease extraction never panic, and the bounds hold.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(r) = parse_reply(&bytes) {
                let _ = r.to_lease(7, None);
                let _ = r.status_for(0);
                prop_assert!(r.ia_na.len() <= MAX_IAS);
                prop_assert!(r.domain_search.len() <= MAX_SEARCH_NAMES);
                prop_assert!(r.malformed.len() <= MAX_MALFORMED);
            }
        }

        /// Valid-looking structure with random contents: a REPLY around a random IA_NA.
        #[test]
        fn random_ia_never_panics(ia in proptest::collection::vec(any::<u8>(), 0..200)) {
            let r = parse_reply(&reply_with(ia)).unwrap();
            if let Ok(l) = r.to_lease(7, None) {
                prop_assert!(l.t1 <= l.t2 && l.t2 <= l.valid_lifetime);
            }
        }
    }
}
