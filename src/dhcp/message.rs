//! Send side: the client identifier and the DHCP messages the client builds (DHCPDISCOVER,
//! DHCPREQUEST in its SELECTING / INIT-REBOOT / RENEWING / REBINDING forms, DHCPDECLINE,
//! DHCPRELEASE), encoded with dhcproto.
//!
//! Every message carries option 61 (RFC 2132 §9.14) because on ipvlan all slaves share the
//! master's MAC, so the interface's MAC cannot tell containers apart (there chaddr is one
//! derived from option 61 by default, [`derived_chaddr`]); and, when configured, the BOOTP broadcast
//! flag (RFC 2131 §4.1) because a unicast reply to a not-yet-configured slave never reaches it
//! (docs/design.md, *ipvlan and DHCP*). The output is a UDP payload (client port 68 to server
//! port 67), padded to the 300-byte BOOTP minimum (RFC 1542 §2.1) some relays and servers want.

use std::net::Ipv4Addr;

use dhcproto::Encodable;
use dhcproto::v4::{self, DhcpOption, Flags, MessageType, OptionCode, UnknownOption};

use super::config::ClientConfig;

/// Options this client sets itself; a `provide` entry cannot override them (RFC 2132: pad,
/// host name, requested address, lease time, message type, server identifier, parameter request
/// list, maximum message size, client identifier, end).
pub const MANAGED_OPTIONS: &[u8] = &[0, 12, 50, 51, 53, 54, 55, 57, 61, 255];

/// Option 57 (RFC 2132 §9.10) value we send: the largest DHCP message, IP and UDP headers included,
/// we accept. 1500 = a full Ethernet frame; a reply that big on a link with a smaller MTU would be
/// fragmented, which packet sockets do not reassemble.
pub const MAX_MESSAGE_SIZE: u16 = 1500;

/// Minimum BOOTP message length (RFC 1542 §2.1, RFC 951's 64-byte vend field): we pad to it.
pub(crate) const MIN_MESSAGE_LEN: usize = 300;

/// Client identifier (option 61 data) for one container interface, byte-identical to the
/// reference Go plugin (docs/design.md, *The reference plugin*): 0x00 (type "not a hardware
/// address", RFC 2132 §9.14) followed by the ASCII string `containerID/networkName/ifName`,
/// truncated to 255 bytes in all (the longest an option can be without RFC 3396 splitting).
pub fn client_id(container_id: &str, network: &str, ifname: &str) -> Vec<u8> {
    let mut id = Vec::with_capacity(256);
    id.push(0);
    id.extend_from_slice(container_id.as_bytes());
    id.push(b'/');
    id.extend_from_slice(network.as_bytes());
    id.push(b'/');
    id.extend_from_slice(ifname.as_bytes());
    id.truncate(255);
    id
}

/// Name space of [`derived_chaddr`]'s UUIDv5 (RFC 9562 §5.5): a fixed random UUID, so the
/// derivation never changes between releases.
pub const CHADDR_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x1160eb7f_652e_4f61_a6d1_6e05b119a70e);

/// A chaddr of this client's own for a link whose MAC it shares with others (ipvlan slaves
/// all carry the master's MAC): the first six bytes of the UUIDv5 of `client_id` (the option 61
/// data) in [`CHADDR_NAMESPACE`], with the locally administered bit set and the group bit clear
/// (IEEE 802 §8.4: a unicast address no vendor assigns). The Ethernet source of every frame
/// stays the link's real MAC; only the BOOTP `chaddr` field (RFC 2131 §2) carries this.
///
/// Why: servers pick the address they offer from a hash of chaddr (dnsmasq) or key leases by
/// it (udhcpd), so clients sharing a chaddr are all offered the same address at once and all
/// but one are NAKed (docs/design.md, *A chaddr per container*). Deterministic: the same
/// client identifier gives the same chaddr after a daemon restart, so the server's binding
/// stays the same.
pub fn derived_chaddr(client_id: &[u8]) -> [u8; 6] {
    let uuid = uuid::Uuid::new_v5(&CHADDR_NAMESPACE, client_id);
    let b = uuid.as_bytes();
    [(b[0] | 0x02) & !0x01, b[1], b[2], b[3], b[4], b[5]]
}

/// Which of the client's messages to build, with what only that kind needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// DHCPDISCOVER (RFC 2131 §4.4.1): ciaddr 0, broadcast flag per config.
    Discover {
        /// Option 50, when set: an address the client would like back (RFC 2131 §4.4.1: "the
        /// client MAY suggest a network address"), e.g. the one of a lease it lost.
        requested: Option<Ipv4Addr>,
    },
    /// DHCPREQUEST in SELECTING (RFC 2131 §4.3.2): ciaddr 0, option 50 = the offered yiaddr,
    /// option 54 = the offering server, broadcast flag per config.
    Select {
        /// Option 50: the address being requested (the offer's yiaddr).
        requested: Ipv4Addr,
        /// Option 54: the server whose offer is accepted.
        server_id: Ipv4Addr,
    },
    /// DHCPREQUEST in INIT-REBOOT (RFC 2131 §4.3.2, §4.4.2): ciaddr 0, option 50 = the address of
    /// the lease remembered from before, NO option 54 (any server on the link may answer),
    /// broadcast flag per config.
    Reboot {
        /// Option 50: the previously leased address.
        requested: Ipv4Addr,
    },
    /// DHCPREQUEST in RENEWING or REBINDING (RFC 2131 §4.3.2): ciaddr = the leased address, no
    /// option 50 or 54, broadcast flag clear (the server unicasts the ACK to ciaddr, §4.1).
    Renew {
        /// ciaddr: the leased address.
        ciaddr: Ipv4Addr,
    },
    /// DHCPDECLINE (RFC 2131 §4.4.1, table 5): ciaddr 0, option 50 = the address found to be in
    /// use, option 54 = the server that offered it; no option 55, 57 or 12, secs 0, flags 0.
    Decline {
        /// Option 50: the declined address.
        requested: Ipv4Addr,
        /// Option 54: the server that offered or granted it.
        server_id: Ipv4Addr,
    },
    /// DHCPRELEASE (RFC 2131 §4.4.6): ciaddr = the leased address, option 54 = the lease's
    /// server; no option 50 or 55, secs 0.
    Release {
        /// ciaddr: the leased address.
        ciaddr: Ipv4Addr,
        /// Option 54: the server that granted the lease.
        server_id: Ipv4Addr,
    },
}

impl Kind {
    /// Option 53 of this kind of message (RFC 2132 §9.6): DHCPDISCOVER, DHCPREQUEST (SELECTING,
    /// INIT-REBOOT, RENEWING and REBINDING alike), DHCPDECLINE or DHCPRELEASE.
    pub fn message_type(self) -> MessageType {
        match self {
            Kind::Discover { .. } => MessageType::Discover,
            Kind::Select { .. } | Kind::Reboot { .. } | Kind::Renew { .. } => MessageType::Request,
            Kind::Decline { .. } => MessageType::Decline,
            Kind::Release { .. } => MessageType::Release,
        }
    }
}

/// Build one client message as a UDP payload.
///
/// `xid` is the transaction id, `secs` the seconds since the acquisition or renewal started
/// (RFC 2131 §2). Options: 53, 61 (skipped when `config.client_id` is empty), 57 and 55 (except on
/// DHCPRELEASE and DHCPDECLINE), 12 when `config.hostname` is set (except on DHCPRELEASE and
/// DHCPDECLINE), and what `kind` adds.
pub fn build(config: &ClientConfig, kind: Kind, xid: u32, secs: u16) -> Vec<u8> {
    let ciaddr = match kind {
        Kind::Renew { ciaddr } | Kind::Release { ciaddr, .. } => ciaddr,
        Kind::Discover { .. }
        | Kind::Select { .. }
        | Kind::Reboot { .. }
        | Kind::Decline { .. } => Ipv4Addr::UNSPECIFIED,
    };
    let unspecified = Ipv4Addr::UNSPECIFIED;
    let mut msg = v4::Message::new_with_id(
        xid,
        ciaddr,
        unspecified,
        unspecified,
        unspecified,
        &config.chaddr,
    );
    msg.set_opcode(v4::Opcode::BootRequest);
    msg.set_secs(secs);
    let broadcast = config.broadcast
        && match kind {
            Kind::Discover { .. } | Kind::Select { .. } | Kind::Reboot { .. } => true,
            Kind::Renew { .. } => config.broadcast_renewals,
            Kind::Decline { .. } | Kind::Release { .. } => false,
        };
    msg.set_flags(if broadcast {
        Flags::default().set_broadcast()
    } else {
        Flags::default()
    });
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::MessageType(kind.message_type()));
    if !config.client_id.is_empty() {
        opts.insert(DhcpOption::ClientIdentifier(config.client_id.clone()));
    }
    match kind {
        Kind::Select {
            requested,
            server_id,
        }
        | Kind::Decline {
            requested,
            server_id,
        } => {
            opts.insert(DhcpOption::RequestedIpAddress(requested));
            opts.insert(DhcpOption::ServerIdentifier(server_id));
        }
        Kind::Reboot { requested }
        | Kind::Discover {
            requested: Some(requested),
        } => {
            opts.insert(DhcpOption::RequestedIpAddress(requested));
        }
        Kind::Release { server_id, .. } => {
            opts.insert(DhcpOption::ServerIdentifier(server_id));
        }
        Kind::Discover { requested: None } | Kind::Renew { .. } => {}
    }
    if !matches!(kind, Kind::Release { .. } | Kind::Decline { .. }) {
        opts.insert(DhcpOption::MaxMessageSize(MAX_MESSAGE_SIZE));
        if !config.parameter_request_list.is_empty() {
            opts.insert(DhcpOption::ParameterRequestList(
                config
                    .parameter_request_list
                    .iter()
                    .map(|&c| OptionCode::from(c))
                    .collect(),
            ));
        }
        if let Some(hostname) = config.hostname.as_ref().filter(|h| !h.is_empty()) {
            opts.insert(DhcpOption::Hostname(hostname.clone()));
        }
        for (code, data) in &config.provided {
            if !MANAGED_OPTIONS.contains(code) {
                opts.insert(DhcpOption::Unknown(UnknownOption::new(
                    OptionCode::from(*code),
                    data.clone(),
                )));
            }
        }
    }
    // Encoding into a Vec cannot fail for these options (long ones are split per RFC 3396); an
    // empty payload would only mean a dhcproto bug, and sending nothing is the safe answer.
    let mut bytes = msg.to_vec().unwrap_or_default();
    if !bytes.is_empty() && bytes.len() < MIN_MESSAGE_LEN {
        // Pad octets (code 0) after the end option (RFC 2132 §3.1).
        bytes.resize(MIN_MESSAGE_LEN, 0);
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::config::DEFAULT_PARAMETER_REQUEST_LIST;
    use crate::dhcp::reply::{code, parse_reply};
    use dhcproto::Decodable;

    fn config() -> ClientConfig {
        let mut c = ClientConfig::new(client_id("cid-c1", "labnet", "eth0"), [2, 0, 0, 0, 0, 1]);
        c.hostname = Some("pod-a".into());
        c
    }

    #[test]
    fn client_id_matches_reference_bytes() {
        // As seen in dnsmasq's lease file for the reference: 00:63:69:64:2d:... = "cid-c1/labnet/eth0".
        let id = client_id("cid-c1", "labnet", "eth0");
        let mut expected = vec![0x00];
        expected.extend_from_slice(b"cid-c1/labnet/eth0");
        assert_eq!(id, expected);
        assert_eq!(&id[..5], &[0x00, 0x63, 0x69, 0x64, 0x2d]);
    }

    #[test]
    fn client_id_is_truncated_to_255_bytes() {
        let long = "c".repeat(300);
        let id = client_id(&long, "net", "eth0");
        assert_eq!(id.len(), 255);
        assert_eq!(id[0], 0);
        assert!(id[1..].iter().all(|&b| b == b'c'));
        let id = client_id(&"x".repeat(250), "net", "eth0");
        assert_eq!(id.len(), 255);
        assert_eq!(&id[251..], b"/net");
    }

    #[test]
    fn derived_chaddrs_are_stable_local_unicast_and_distinct() {
        let a = derived_chaddr(&client_id("cid-1", "net", "eth0"));
        // Part of what servers see: a release that changed it would make every server see
        // new hardware after an upgrade. Pinned; the same value as SHA-1 over the name space's
        // bytes and the client identifier, computed apart (Python's hashlib), with RFC 9562's
        // version and variant bits, then bit 1 set and bit 0 cleared in the first byte.
        assert_eq!(a, derived_chaddr(&client_id("cid-1", "net", "eth0")));
        assert_eq!(crate::lease_file::mac::to_string(&a), "32:ec:79:7a:58:2d");
        let mut seen = std::collections::HashSet::new();
        for i in 0..10_000 {
            let c = derived_chaddr(&client_id(&format!("cid-{i}"), "net", "eth0"));
            assert_eq!(c[0] & 0x03, 0x02, "{c:02x?}: locally administered unicast");
            assert!(seen.insert(c), "collision at {i}");
        }
        // Network and ifname are part of the client identifier, so of the chaddr.
        assert_ne!(a, derived_chaddr(&client_id("cid-1", "net2", "eth0")));
        assert_ne!(a, derived_chaddr(&client_id("cid-1", "net", "eth1")));
    }

    #[test]
    fn discover_contents() {
        let bytes = build(
            &config(),
            Kind::Discover { requested: None },
            0xdead_beef,
            3,
        );
        assert!(bytes.len() >= MIN_MESSAGE_LEN);
        let r = parse_reply(&bytes).unwrap();
        assert_eq!(r.op, 1);
        assert_eq!(r.xid, 0xdead_beef);
        assert_eq!(r.secs, 3);
        assert!(r.broadcast());
        assert_eq!(r.ciaddr, Ipv4Addr::UNSPECIFIED);
        assert_eq!(&r.chaddr[..6], &[2, 0, 0, 0, 0, 1]);
        assert_eq!((r.htype, r.hlen), (1, 6), "Ethernet");
        assert_eq!(r.message_type, Some(MessageType::Discover));
        assert_eq!(r.client_id, Some(client_id("cid-c1", "labnet", "eth0")));
        assert_eq!(
            r.option(code::PARAMETER_REQUEST_LIST),
            Some(DEFAULT_PARAMETER_REQUEST_LIST)
        );
        assert_eq!(r.option(code::MAX_MESSAGE_SIZE), Some(&[0x05, 0xdc][..]));
        assert_eq!(r.option(code::HOSTNAME), Some(&b"pod-a"[..]));
        assert_eq!(r.option(code::REQUESTED_IP), None);
        assert_eq!(r.option(code::SERVER_ID), None);
        // dhcproto's own decoder agrees (a second, independent reading).
        let m = v4::Message::decode(&mut dhcproto::Decoder::new(&bytes)).unwrap();
        assert!(m.flags().broadcast());
        assert_eq!(m.opts().msg_type(), Some(MessageType::Discover));
    }

    #[test]
    fn provided_options_are_sent_but_cannot_override_managed_ones() {
        let mut c = config();
        c.provided = vec![
            (60, b"my-vendor".to_vec()),
            (77, b"gold".to_vec()),
            (61, b"hijack".to_vec()),
            (53, vec![7]),
        ];
        let r = parse_reply(&build(&c, Kind::Discover { requested: None }, 1, 0)).unwrap();
        assert_eq!(r.option(60), Some(&b"my-vendor"[..]));
        assert_eq!(r.option(77), Some(&b"gold"[..]));
        // Option 61 stays ours, and the message is still a DHCPDISCOVER.
        assert_eq!(r.client_id.as_deref(), Some(&c.client_id[..]));
        assert_eq!(r.message_type, Some(MessageType::Discover));
        // Not on DHCPRELEASE.
        let kind = Kind::Release {
            ciaddr: "198.18.0.5".parse().unwrap(),
            server_id: "198.18.0.1".parse().unwrap(),
        };
        let r = parse_reply(&build(&c, kind, 1, 0)).unwrap();
        assert_eq!(r.option(60), None);
    }

    #[test]
    fn discover_may_suggest_an_address() {
        let kind = Kind::Discover {
            requested: Some(Ipv4Addr::new(198, 18, 0, 10)),
        };
        let r = parse_reply(&build(&config(), kind, 1, 0)).unwrap();
        assert_eq!(r.message_type, Some(MessageType::Discover));
        assert_eq!(r.option(code::REQUESTED_IP), Some(&[198, 18, 0, 10][..]));
        assert_eq!(r.server_id, None);
        assert_eq!(r.ciaddr, Ipv4Addr::UNSPECIFIED);
        assert!(r.broadcast());
    }

    #[test]
    fn broadcast_flag_follows_config() {
        let mut c = config();
        c.broadcast = false;
        let r = parse_reply(&build(&c, Kind::Discover { requested: None }, 1, 0)).unwrap();
        assert!(!r.broadcast());
        assert_eq!(r.flags, 0);
    }

    #[test]
    fn select_request_contents() {
        let kind = Kind::Select {
            requested: Ipv4Addr::new(198, 18, 0, 10),
            server_id: Ipv4Addr::new(198, 18, 0, 1),
        };
        let r = parse_reply(&build(&config(), kind, 7, 0)).unwrap();
        assert_eq!(r.message_type, Some(MessageType::Request));
        assert!(r.broadcast());
        assert_eq!(r.ciaddr, Ipv4Addr::UNSPECIFIED);
        assert_eq!(r.option(code::REQUESTED_IP), Some(&[198, 18, 0, 10][..]));
        assert_eq!(r.server_id, Some(Ipv4Addr::new(198, 18, 0, 1)));
        assert!(r.client_id.is_some());
    }

    #[test]
    fn renew_request_contents() {
        let kind = Kind::Renew {
            ciaddr: Ipv4Addr::new(198, 18, 0, 10),
        };
        let r = parse_reply(&build(&config(), kind, 7, 0)).unwrap();
        assert_eq!(r.message_type, Some(MessageType::Request));
        assert!(!r.broadcast(), "the ACK is unicast to ciaddr");
        assert_eq!(r.ciaddr, Ipv4Addr::new(198, 18, 0, 10));
        assert_eq!(r.option(code::REQUESTED_IP), None);
        assert_eq!(r.server_id, None);
        assert!(r.option(code::PARAMETER_REQUEST_LIST).is_some());
        // With a derived chaddr the reply must not go to chaddr's Ethernet address.
        let mut derived = config();
        derived.chaddr = derived_chaddr(&derived.client_id);
        derived.broadcast_renewals = true;
        let r = parse_reply(&build(&derived, kind, 7, 0)).unwrap();
        assert!(
            r.broadcast(),
            "broadcast flag on a renewal with a derived chaddr"
        );
        assert_eq!(&r.chaddr[..6], &derived.chaddr);
        derived.broadcast = false;
        let r = parse_reply(&build(&derived, kind, 7, 0)).unwrap();
        assert!(!r.broadcast(), "never without the broadcast policy");
    }

    #[test]
    fn reboot_request_contents() {
        let kind = Kind::Reboot {
            requested: Ipv4Addr::new(198, 18, 0, 10),
        };
        let r = parse_reply(&build(&config(), kind, 7, 2)).unwrap();
        assert_eq!(r.message_type, Some(MessageType::Request));
        assert!(r.broadcast(), "no address yet: the reply must be broadcast");
        assert_eq!(r.ciaddr, Ipv4Addr::UNSPECIFIED);
        assert_eq!(r.option(code::REQUESTED_IP), Some(&[198, 18, 0, 10][..]));
        assert_eq!(
            r.server_id, None,
            "RFC 2131 §4.3.2: no option 54 in INIT-REBOOT"
        );
        assert_eq!(r.client_id, Some(client_id("cid-c1", "labnet", "eth0")));
        assert!(r.option(code::PARAMETER_REQUEST_LIST).is_some());
        assert_eq!(r.secs, 2);
        let mut c = config();
        c.broadcast = false;
        assert!(!parse_reply(&build(&c, kind, 7, 0)).unwrap().broadcast());
    }

    #[test]
    fn decline_contents() {
        let kind = Kind::Decline {
            requested: Ipv4Addr::new(198, 18, 0, 10),
            server_id: Ipv4Addr::new(198, 18, 0, 1),
        };
        let bytes = build(&config(), kind, 9, 0);
        let r = parse_reply(&bytes).unwrap();
        assert_eq!(r.message_type, Some(MessageType::Decline));
        assert_eq!(r.ciaddr, Ipv4Addr::UNSPECIFIED);
        assert_eq!(r.option(code::REQUESTED_IP), Some(&[198, 18, 0, 10][..]));
        assert_eq!(r.server_id, Some(Ipv4Addr::new(198, 18, 0, 1)));
        assert_eq!(r.client_id, Some(client_id("cid-c1", "labnet", "eth0")));
        assert_eq!((r.flags, r.secs), (0, 0));
        // RFC 2131 table 5: MUST NOT carry 55 or 57; no host name either.
        assert_eq!(r.option(code::PARAMETER_REQUEST_LIST), None);
        assert_eq!(r.option(code::MAX_MESSAGE_SIZE), None);
        assert_eq!(r.option(code::HOSTNAME), None);
        let m = v4::Message::decode(&mut dhcproto::Decoder::new(&bytes)).unwrap();
        assert_eq!(m.opts().msg_type(), Some(MessageType::Decline));
    }

    #[test]
    fn release_contents() {
        let kind = Kind::Release {
            ciaddr: Ipv4Addr::new(198, 18, 0, 10),
            server_id: Ipv4Addr::new(198, 18, 0, 1),
        };
        let r = parse_reply(&build(&config(), kind, 9, 5)).unwrap();
        assert_eq!(r.message_type, Some(MessageType::Release));
        assert_eq!(r.ciaddr, Ipv4Addr::new(198, 18, 0, 10));
        assert_eq!(r.server_id, Some(Ipv4Addr::new(198, 18, 0, 1)));
        assert_eq!(r.client_id, Some(client_id("cid-c1", "labnet", "eth0")));
        assert_eq!(r.flags, 0);
        assert_eq!(r.option(code::REQUESTED_IP), None);
        assert_eq!(r.option(code::PARAMETER_REQUEST_LIST), None);
        assert_eq!(r.option(code::HOSTNAME), None);
    }

    #[test]
    fn empty_client_id_and_list_are_omitted() {
        let mut c = config();
        c.client_id.clear();
        c.parameter_request_list.clear();
        c.hostname = None;
        let r = parse_reply(&build(&c, Kind::Discover { requested: None }, 1, 0)).unwrap();
        assert_eq!(r.client_id, None);
        assert_eq!(r.option(code::PARAMETER_REQUEST_LIST), None);
        assert_eq!(r.option(code::HOSTNAME), None);
    }

    #[test]
    fn default_request_list_covers_what_the_lease_uses() {
        for c in [1, 3, 6, 15, 26, 28, 33, 51, 54, 58, 59, 119, 121] {
            assert!(
                DEFAULT_PARAMETER_REQUEST_LIST.contains(&c),
                "option {c} not requested"
            );
        }
    }
}
