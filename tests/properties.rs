//! Properties checked with proptest over generated inputs:
//! - every message our client builds decodes back to the same fields;
//! - option 121 (RFC 3442) and option 119 (RFC 3397) survive a round trip through a real
//!   encoder (dhcproto, as servers encode them) and our decoder;
//! - the state machine keeps T1 <= T2 <= expiry and never leaves BOUND before T1, whatever
//!   the lease times (0 and u32::MAX included).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use cni_dhcp::dhcp::message::{Kind, MANAGED_OPTIONS, build};
use cni_dhcp::dhcp::{Client, ClientConfig, Event, State, parse_reply};
use dhcproto::v4::{self, DhcpOption, MessageType};
use dhcproto::{Encodable, Name};
use proptest::prelude::*;

fn config_strategy() -> impl Strategy<Value = ClientConfig> {
    (
        proptest::collection::vec(any::<u8>(), 1..64),
        any::<[u8; 6]>(),
        any::<bool>(),
        proptest::collection::vec(1u8..=254, 0..20),
        proptest::option::of("[a-z][a-z0-9-]{0,30}"),
        proptest::collection::vec(
            (60u8..=80, proptest::collection::vec(any::<u8>(), 1..40)),
            0..3,
        ),
    )
        .prop_map(|(client_id, chaddr, broadcast, prl, hostname, provided)| {
            let mut c = ClientConfig::new(client_id, chaddr);
            c.broadcast = broadcast;
            c.parameter_request_list = prl;
            c.hostname = hostname;
            c.provided = provided;
            c
        })
}

proptest! {
    #[test]
    fn built_messages_decode_to_the_same_fields(
        config in config_strategy(),
        xid in any::<u32>(),
        secs in any::<u16>(),
        addr in any::<[u8; 4]>(),
        server in any::<[u8; 4]>(),
    ) {
        let requested = Ipv4Addr::from(addr);
        let server_id = Ipv4Addr::from(server);
        for (kind, mtype) in [
            (Kind::Discover { requested: None }, MessageType::Discover),
            (Kind::Select { requested, server_id }, MessageType::Request),
            (Kind::Renew { ciaddr: requested }, MessageType::Request),
            (Kind::Release { ciaddr: requested, server_id }, MessageType::Release),
        ] {
            let bytes = build(&config, kind, xid, secs);
            let r = parse_reply(&bytes).unwrap();
            prop_assert_eq!(r.xid, xid);
            prop_assert_eq!(r.message_type, Some(mtype));
            prop_assert_eq!(&r.chaddr[..6], &config.chaddr[..]);
            prop_assert_eq!(r.client_id.as_deref(), Some(&config.client_id[..]));
            if mtype != MessageType::Release {
                prop_assert_eq!(r.broadcast(), config.broadcast && !matches!(kind, Kind::Renew { .. }));
                let prl = r.option(55).map(<[u8]>::to_vec).unwrap_or_default();
                prop_assert_eq!(prl, config.parameter_request_list.clone());
                let host = r.option(12).map(|h| String::from_utf8_lossy(h).into_owned());
                prop_assert_eq!(host, config.hostname.clone());
                for (code, _) in &config.provided {
                    // Codes the client manages (e.g. 61) cannot be overridden; a code given
                    // twice sends its last value.
                    let want = config.provided.iter().rev().find(|(c, _)| c == code).map(|(_, d)| d);
                    // Managed codes (61, 12, 55...) keep our values, checked above.
                    if !MANAGED_OPTIONS.contains(code) {
                        prop_assert_eq!(r.option(*code), want.map(|d| &d[..]));
                    }
                }
            }
        }
    }

    #[test]
    fn option_121_round_trips(
        routes in proptest::collection::vec((any::<[u8; 4]>(), 0u8..=32, any::<[u8; 4]>()), 1..12)
    ) {
        let routes: Vec<(ipnet::Ipv4Net, Ipv4Addr)> = routes
            .into_iter()
            .map(|(d, p, g)| (ipnet::Ipv4Net::new(Ipv4Addr::from(d), p).unwrap().trunc(), Ipv4Addr::from(g)))
            .collect();
        let bytes = reply_with(DhcpOption::ClasslessStaticRoute(routes.clone()));
        let lease = parse_reply(&bytes).unwrap().to_lease().unwrap();
        let got: Vec<(ipnet::Ipv4Net, Ipv4Addr)> =
            lease.classless_routes.iter().map(|r| (r.dst, r.gateway)).collect();
        prop_assert_eq!(got, routes);
    }

    #[test]
    fn option_119_round_trips(names in proptest::collection::vec("[a-z]{1,12}(\\.[a-z]{1,12}){0,3}", 1..6)) {
        let encoded: Vec<Name> = names.iter().map(|n| Name::from_ascii(n).unwrap()).collect();
        let bytes = reply_with(DhcpOption::DomainSearch(encoded));
        let lease = parse_reply(&bytes).unwrap().to_lease().unwrap();
        prop_assert_eq!(lease.domain_search, names);
    }

    #[test]
    fn timers_stay_ordered_and_bound_holds_until_t1(
        lease_time in prop_oneof![Just(0u32), Just(1), Just(u32::MAX), Just(u32::MAX - 1), any::<u32>()],
        t1 in proptest::option::of(any::<u32>()),
        t2 in proptest::option::of(any::<u32>()),
        seed in any::<u64>(),
    ) {
        let now = Instant::now();
        let cid = b"\x00prop/net/eth0".to_vec();
        let mut client = Client::new(ClientConfig::new(cid.clone(), [2, 0, 0, 0, 0, 1]), now, seed);
        let xid = parse_reply(&client.poll_transmit(now).unwrap().payload).unwrap().xid;
        let reply = |mtype| {
            let mut m = v4::Message::new_with_id(
                xid, Ipv4Addr::UNSPECIFIED, Ipv4Addr::new(198, 18, 0, 100),
                Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, &[2, 0, 0, 0, 0, 1]);
            m.set_opcode(v4::Opcode::BootReply);
            let o = m.opts_mut();
            o.insert(DhcpOption::MessageType(mtype));
            o.insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(198, 18, 0, 1)));
            o.insert(DhcpOption::ClientIdentifier(cid.clone()));
            o.insert(DhcpOption::AddressLeaseTime(lease_time));
            if let Some(t1) = t1 { o.insert(DhcpOption::Renewal(t1)); }
            if let Some(t2) = t2 { o.insert(DhcpOption::Rebinding(t2)); }
            m.to_vec().unwrap()
        };
        client.handle(now, &reply(MessageType::Offer)).unwrap();
        client.poll_transmit(now).unwrap();
        client.handle(now, &reply(MessageType::Ack)).unwrap();
        prop_assert!(matches!(client.poll_event(), Some(Event::Bound(_))));
        prop_assert_eq!(client.state(), State::Bound);
        if let (Some(r), Some(b), Some(e)) = (client.renew_at(), client.rebind_at(), client.expires_at()) {
            prop_assert!(r <= b && b <= e, "T1 {:?} T2 {:?} expiry {:?}", r - now, b - now, e - now);
            // Just before T1 nothing happens: BOUND is left only for a reason.
            if let Some(before) = r.checked_sub(Duration::from_millis(1)).filter(|t| *t >= now) {
                prop_assert!(client.poll_transmit(before).is_none());
                prop_assert!(client.poll_event().is_none());
                prop_assert_eq!(client.state(), State::Bound);
            }
        } else {
            // No timers only for an infinite lease.
            prop_assert_eq!(lease_time, u32::MAX);
        }
    }
}

/// A DHCPACK (as a server encodes it with dhcproto) carrying `extra`.
fn reply_with(extra: DhcpOption) -> Vec<u8> {
    let z = Ipv4Addr::UNSPECIFIED;
    let mut m = v4::Message::new_with_id(
        1,
        z,
        Ipv4Addr::new(198, 18, 0, 100),
        z,
        z,
        &[2, 0, 0, 0, 0, 1],
    );
    m.set_opcode(v4::Opcode::BootReply);
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(MessageType::Ack));
    o.insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(198, 18, 0, 1)));
    o.insert(DhcpOption::AddressLeaseTime(3600));
    o.insert(extra);
    m.to_vec().unwrap()
}
