//! Send side: the DHCPv6 messages the client builds (SOLICIT, REQUEST, RENEW, REBIND, RELEASE,
//! DECLINE, CONFIRM), encoded by hand in the RFC 8415 §8 format: a 1-byte msg-type, a 3-byte
//! transaction id, then options, each a 2-byte code, a 2-byte length and its data (§21.1), every
//! integer in network order. Written by hand rather than with dhcproto's `v6` module because
//! the few options we send are simpler to get byte-exact than to check through its API (its
//! `Duid::link_layer` builds the DUID from an IPv6 address instead of a link-layer address,
//! and `Duid::uuid` asserts on its input's length; docs/design.md, *DHCPv6 identity*).
//!
//! Every message carries our Client Identifier (option 1, §21.2) and the Elapsed Time option
//! (8, §21.9); every message about an address carries one IA_NA (3, §21.4) with our IAID, T1
//! and T2 set to 0 and, when an address is named, one IA Address option (5, §21.6) with both
//! lifetimes 0 ("SHOULD be set to 0" in a client's message; servers ignore them). Appendix B
//! of RFC 8415 says which option goes in which message; the kinds below follow it. The output
//! is a UDP payload from port 546 to port 547 of `ff02::1:2` ([`crate::dhcp6::ALL_SERVERS`]).

use std::net::Ipv6Addr;

use super::config::ClientConfig;

/// Option codes (RFC 8415 §21, RFC 3646) this client sends or reads.
pub mod code {
    /// Client Identifier (§21.2): the client's DUID.
    pub const CLIENTID: u16 = 1;
    /// Server Identifier (§21.3): the server's DUID.
    pub const SERVERID: u16 = 2;
    /// Identity Association for Non-temporary Addresses (§21.4).
    pub const IA_NA: u16 = 3;
    /// IA Address (§21.6), inside an IA_NA.
    pub const IAADDR: u16 = 5;
    /// Option Request (§21.7).
    pub const ORO: u16 = 6;
    /// Preference (§21.8).
    pub const PREFERENCE: u16 = 7;
    /// Elapsed Time (§21.9).
    pub const ELAPSED_TIME: u16 = 8;
    /// Server Unicast (§21.12); read and ignored: we always multicast.
    pub const UNICAST: u16 = 12;
    /// Status Code (§21.13).
    pub const STATUS_CODE: u16 = 13;
    /// Rapid Commit (§21.14).
    pub const RAPID_COMMIT: u16 = 14;
    /// DNS Recursive Name Server (RFC 3646 §3).
    pub const DNS_SERVERS: u16 = 23;
    /// Domain Search List (RFC 3646 §4).
    pub const DOMAIN_LIST: u16 = 24;
    /// SOL_MAX_RT (§21.24): the server's cap on the SOLICIT retransmission interval.
    pub const SOL_MAX_RT: u16 = 82;
}

/// A DHCPv6 message type (RFC 8415 §7.3), the first byte of every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// 1: a client looks for servers.
    Solicit,
    /// 2: a server offers itself in answer to a SOLICIT.
    Advertise,
    /// 3: a client asks one server for addresses.
    Request,
    /// 4: a client checks that its addresses are still on-link.
    Confirm,
    /// 5: a client extends its lease with the server that granted it.
    Renew,
    /// 6: a client extends its lease with any server.
    Rebind,
    /// 7: a server's answer to everything but SOLICIT (and to SOLICIT with Rapid Commit).
    Reply,
    /// 8: a client gives addresses back.
    Release,
    /// 9: a client refuses addresses found in use.
    Decline,
    /// Any other type (relay messages, RECONFIGURE, INFORMATION-REQUEST, unassigned).
    Other(u8),
}

impl MessageType {
    /// The type of msg-type byte `b`.
    pub fn from_code(b: u8) -> MessageType {
        match b {
            1 => MessageType::Solicit,
            2 => MessageType::Advertise,
            3 => MessageType::Request,
            4 => MessageType::Confirm,
            5 => MessageType::Renew,
            6 => MessageType::Rebind,
            7 => MessageType::Reply,
            8 => MessageType::Release,
            9 => MessageType::Decline,
            b => MessageType::Other(b),
        }
    }

    /// The msg-type byte.
    pub fn code(self) -> u8 {
        match self {
            MessageType::Solicit => 1,
            MessageType::Advertise => 2,
            MessageType::Request => 3,
            MessageType::Confirm => 4,
            MessageType::Renew => 5,
            MessageType::Rebind => 6,
            MessageType::Reply => 7,
            MessageType::Release => 8,
            MessageType::Decline => 9,
            MessageType::Other(b) => b,
        }
    }

    /// The RFC 8415 §7.3 name ("SOLICIT", "REPLY", ...), "OTHER" for the rest: a closed set,
    /// fit for a metrics label.
    pub fn name(self) -> &'static str {
        match self {
            MessageType::Solicit => "SOLICIT",
            MessageType::Advertise => "ADVERTISE",
            MessageType::Request => "REQUEST",
            MessageType::Confirm => "CONFIRM",
            MessageType::Renew => "RENEW",
            MessageType::Rebind => "REBIND",
            MessageType::Reply => "REPLY",
            MessageType::Release => "RELEASE",
            MessageType::Decline => "DECLINE",
            MessageType::Other(_) => "OTHER",
        }
    }
}

/// Which message to build, with what only that kind needs. Server identifiers are DUIDs as the
/// server sent them (Server Identifier option 2 data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind<'a> {
    /// SOLICIT (§18.2.1): IA_NA with `hint` as IA Address when set (§18.2.1: "MAY include
    /// addresses ... as hints"), ORO, Rapid Commit per [`ClientConfig::rapid_commit`]; no Server
    /// Identifier.
    Solicit {
        /// An address the client would like (the lease it lost or that expired).
        hint: Option<Ipv6Addr>,
    },
    /// REQUEST (§18.2.2): the chosen server's identifier, IA_NA with the advertised address,
    /// ORO.
    Request {
        /// Server Identifier of the ADVERTISE (or REPLY) chosen.
        server_id: &'a [u8],
        /// The address it advertised.
        address: Ipv6Addr,
    },
    /// RENEW (§18.2.4): the lease's server identifier, IA_NA with the address, ORO.
    Renew {
        /// Server Identifier of the lease.
        server_id: &'a [u8],
        /// The leased address.
        address: Ipv6Addr,
    },
    /// REBIND (§18.2.5): IA_NA with the address, ORO; no Server Identifier (any server).
    Rebind {
        /// The leased (or remembered) address.
        address: Ipv6Addr,
    },
    /// RELEASE (§18.2.7): the lease's server identifier, IA_NA with the address.
    Release {
        /// Server Identifier of the lease.
        server_id: &'a [u8],
        /// The address given back.
        address: Ipv6Addr,
    },
    /// DECLINE (§18.2.8): the lease's server identifier, IA_NA with the address found in use.
    Decline {
        /// Server Identifier of the lease.
        server_id: &'a [u8],
        /// The address refused.
        address: Ipv6Addr,
    },
    /// CONFIRM (§18.2.3): IA_NA with the address; no Server Identifier, no ORO.
    Confirm {
        /// The address to check.
        address: Ipv6Addr,
    },
}

impl Kind<'_> {
    /// The msg-type this kind is sent as.
    pub fn message_type(&self) -> MessageType {
        match self {
            Kind::Solicit { .. } => MessageType::Solicit,
            Kind::Request { .. } => MessageType::Request,
            Kind::Renew { .. } => MessageType::Renew,
            Kind::Rebind { .. } => MessageType::Rebind,
            Kind::Release { .. } => MessageType::Release,
            Kind::Decline { .. } => MessageType::Decline,
            Kind::Confirm { .. } => MessageType::Confirm,
        }
    }
}

/// Appends option `code` with `data` (§21.1). `data` longer than 65535 bytes cannot be encoded;
/// nothing we build comes near (a DUID is at most 130 bytes, [`super::identity::MAX_DUID_LEN`],
/// and [`ClientConfig::option_request`] is cut to fit).
fn put_option(out: &mut Vec<u8>, code: u16, data: &[u8]) {
    let len = u16::try_from(data.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&data[..usize::from(len)]);
}

/// The IA_NA option data (§21.4): IAID, T1 0, T2 0, then one IA Address option (§21.6) for
/// `address` with preferred and valid lifetimes 0, when given.
fn ia_na(iaid: u32, address: Option<Ipv6Addr>) -> Vec<u8> {
    let mut ia = Vec::with_capacity(12 + 28);
    ia.extend_from_slice(&iaid.to_be_bytes());
    ia.extend_from_slice(&[0; 8]);
    if let Some(a) = address {
        let mut addr = Vec::with_capacity(24);
        addr.extend_from_slice(&a.octets());
        addr.extend_from_slice(&[0; 8]);
        put_option(&mut ia, code::IAADDR, &addr);
    }
    ia
}

/// The UDP payload of a `kind` message: msg-type, the low 24 bits of `xid` (network order),
/// then options in this order: Client Identifier, Server Identifier (REQUEST, RENEW, RELEASE,
/// DECLINE), IA_NA, Elapsed Time (`elapsed`, in hundredths of a second, §21.9), Option Request
/// (SOLICIT, REQUEST, RENEW, REBIND; omitted when empty), Rapid Commit (SOLICIT, when
/// configured). At most 32767 option codes of [`ClientConfig::option_request`] are sent.
pub fn build(config: &ClientConfig, kind: Kind<'_>, xid: u32, elapsed: u16) -> Vec<u8> {
    let mut m = Vec::with_capacity(128);
    m.push(kind.message_type().code());
    m.extend_from_slice(&xid.to_be_bytes()[1..]);
    put_option(&mut m, code::CLIENTID, &config.duid);
    let (server_id, address, oro) = match kind {
        Kind::Solicit { hint } => (None, hint, true),
        Kind::Request { server_id, address } | Kind::Renew { server_id, address } => {
            (Some(server_id), Some(address), true)
        }
        Kind::Rebind { address } => (None, Some(address), true),
        Kind::Release { server_id, address } | Kind::Decline { server_id, address } => {
            (Some(server_id), Some(address), false)
        }
        Kind::Confirm { address } => (None, Some(address), false),
    };
    if let Some(id) = server_id {
        put_option(&mut m, code::SERVERID, id);
    }
    put_option(&mut m, code::IA_NA, &ia_na(config.iaid, address));
    put_option(&mut m, code::ELAPSED_TIME, &elapsed.to_be_bytes());
    if oro && !config.option_request.is_empty() {
        let codes: Vec<u8> = config
            .option_request
            .iter()
            .take(usize::from(u16::MAX / 2))
            .flat_map(|c| c.to_be_bytes())
            .collect();
        put_option(&mut m, code::ORO, &codes);
    }
    if matches!(kind, Kind::Solicit { .. }) && config.rapid_commit {
        put_option(&mut m, code::RAPID_COMMIT, &[]);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUID: [u8; 4] = [0, 4, 0xaa, 0xbb];
    const SERVER: [u8; 3] = [0, 3, 9];
    const ADDR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);

    fn config() -> ClientConfig {
        ClientConfig::new(DUID.to_vec(), 0x0102_0304)
    }

    /// The IA_NA with ADDR, lifetimes and T1/T2 0, as RFC 8415 §21.4 and §21.6 lay it out.
    fn ia_with_addr() -> Vec<u8> {
        let mut v = vec![0, 3, 0, 40, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 24];
        v.extend_from_slice(&ADDR.octets());
        v.extend_from_slice(&[0; 8]);
        v
    }

    #[test]
    fn solicit_bytes() {
        let mut c = config();
        c.rapid_commit = true;
        let m = build(&c, Kind::Solicit { hint: None }, 0xff12_3456, 0);
        let mut want = vec![1, 0x12, 0x34, 0x56];
        want.extend_from_slice(&[0, 1, 0, 4, 0, 4, 0xaa, 0xbb]); // client id
        want.extend_from_slice(&[0, 3, 0, 12, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0]); // IA_NA
        want.extend_from_slice(&[0, 8, 0, 2, 0, 0]); // elapsed time
        want.extend_from_slice(&[0, 6, 0, 6, 0, 23, 0, 24, 0, 82]); // ORO
        want.extend_from_slice(&[0, 14, 0, 0]); // rapid commit
        assert_eq!(m, want);
        // Without Rapid Commit the option is absent; a hint adds the IA Address.
        let m = build(&config(), Kind::Solicit { hint: Some(ADDR) }, 1, 0x1234);
        assert!(!m.ends_with(&[0, 14, 0, 0]));
        assert_eq!(&m[12..12 + 44], &ia_with_addr()[..]);
        assert!(m.windows(6).any(|w| w == [0, 8, 0, 2, 0x12, 0x34]));
    }

    #[test]
    fn request_renew_release_decline_name_the_server() {
        for (kind, t, oro) in [
            (
                Kind::Request {
                    server_id: &SERVER,
                    address: ADDR,
                },
                3,
                true,
            ),
            (
                Kind::Renew {
                    server_id: &SERVER,
                    address: ADDR,
                },
                5,
                true,
            ),
            (
                Kind::Release {
                    server_id: &SERVER,
                    address: ADDR,
                },
                8,
                false,
            ),
            (
                Kind::Decline {
                    server_id: &SERVER,
                    address: ADDR,
                },
                9,
                false,
            ),
        ] {
            let m = build(&config(), kind, 7, 5);
            let mut want = vec![t, 0, 0, 7, 0, 1, 0, 4, 0, 4, 0xaa, 0xbb];
            want.extend_from_slice(&[0, 2, 0, 3, 0, 3, 9]);
            want.extend_from_slice(&ia_with_addr());
            want.extend_from_slice(&[0, 8, 0, 2, 0, 5]);
            if oro {
                want.extend_from_slice(&[0, 6, 0, 6, 0, 23, 0, 24, 0, 82]);
            }
            assert_eq!(m, want, "{kind:?}");
            assert_eq!(kind.message_type().code(), t);
        }
    }

    #[test]
    fn rebind_and_confirm_name_no_server() {
        let mut c = config();
        c.option_request.clear();
        for (kind, t) in [
            (Kind::Rebind { address: ADDR }, 6),
            (Kind::Confirm { address: ADDR }, 4),
        ] {
            let m = build(&c, kind, 0x00ab_cdef, 0xffff);
            let mut want = vec![t, 0xab, 0xcd, 0xef, 0, 1, 0, 4, 0, 4, 0xaa, 0xbb];
            want.extend_from_slice(&ia_with_addr());
            want.extend_from_slice(&[0, 8, 0, 2, 0xff, 0xff]);
            assert_eq!(m, want, "{kind:?}");
        }
        // CONFIRM never carries the ORO, even when configured.
        let m = build(&config(), Kind::Confirm { address: ADDR }, 1, 0);
        assert_eq!(m.len(), 4 + 8 + 44 + 6);
    }

    #[test]
    fn message_type_codes_round_trip() {
        for b in 0..=255u8 {
            assert_eq!(MessageType::from_code(b).code(), b);
        }
        assert_eq!(MessageType::from_code(7).name(), "REPLY");
        assert_eq!(MessageType::from_code(12).name(), "OTHER");
    }
}
