//! One regression test per bad-input class that real DHCP clients have crashed or been fooled on
//! (docs/design.md, *Bad input*: CVEs in dhclient, dhcpcd, busybox udhcpc, systemd-networkd), each
//! a hand-made packet through the same public path the daemon uses: `parse_reply` /
//! `Reply::to_lease` and the client state machine. Nothing may panic; valid options after a
//! malformed one must survive.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use cni_dhcp::dhcp::{Client, ClientConfig, Event, State, client_id, parse_reply};

const XID: u32 = 0x1234_5678;
const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const SERVER: [u8; 4] = [198, 18, 0, 1];
const YIADDR: [u8; 4] = [198, 18, 0, 100];

/// A BOOTREPLY header (236 bytes) + magic cookie, then `options` verbatim.
fn packet(options: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 236];
    p[0] = 2; // BOOTREPLY
    p[1] = 1; // Ethernet
    p[2] = 6;
    p[4..8].copy_from_slice(&XID.to_be_bytes());
    p[16..20].copy_from_slice(&YIADDR);
    p[28..34].copy_from_slice(&MAC);
    p.extend_from_slice(&[99, 130, 83, 99]);
    p.extend_from_slice(options);
    p
}

/// The options of a valid DHCPACK: type, server id, lease time, mask, router.
fn ack_options() -> Vec<u8> {
    let mut o = vec![53, 1, 5];
    o.extend([54, 4]);
    o.extend(SERVER);
    o.extend([51, 4, 0, 0, 0x0e, 0x10]);
    o.extend([1, 4, 255, 255, 255, 0]);
    o.extend([3, 4]);
    o.extend(SERVER);
    o
}

#[test]
fn option_length_past_the_buffer_keeps_what_came_before() {
    let mut o = ack_options();
    o.extend([6, 200, 1, 2, 3, 4]); // claims 200 bytes, has 4
    let r = parse_reply(&packet(&o)).expect("the valid part still parses");
    let lease = r.to_lease().unwrap();
    assert_eq!(lease.routers, vec![Ipv4Addr::from(SERVER)]);
    assert!(lease.dns_servers.is_empty());
}

#[test]
fn option_52_overload_pointing_past_the_end_is_survived() {
    let mut o = ack_options();
    o.extend([52, 1, 3]); // overload file and sname...
    o.push(255);
    let mut p = packet(&o);
    // ...whose areas hold an option that runs past them.
    p[108] = 6;
    p[109] = 250;
    let r = parse_reply(&p).unwrap();
    assert_eq!(r.to_lease().unwrap().address, Ipv4Addr::from(YIADDR));
    // A packet cut inside the header never reads past it.
    for cut in [0, 1, 100, 235, 236, 239] {
        assert!(parse_reply(&p[..cut]).is_err(), "cut at {cut}");
    }
}

#[test]
fn four_byte_options_shorter_than_four_bytes_do_not_hide_later_options() {
    let mut o = vec![53, 1, 5];
    o.extend([54, 4]);
    o.extend(SERVER);
    o.extend([51, 4, 0, 0, 0x0e, 0x10]);
    o.extend([1, 2, 255, 255]); // subnet mask of 2 bytes
    o.extend([3, 3, 198, 18, 0]); // router of 3 bytes
    o.extend([6, 4, 198, 18, 0, 53]); // valid, after the bad ones
    let lease = parse_reply(&packet(&o)).unwrap().to_lease().unwrap();
    assert_eq!(lease.dns_servers, vec![Ipv4Addr::new(198, 18, 0, 53)]);
    assert_eq!(lease.prefix_len, 24, "classful default, not garbage");
    assert!(lease.routers.is_empty());
}

#[test]
fn zero_length_options_are_skipped_not_fatal() {
    let mut o = vec![12, 0, 15, 0];
    o.extend(ack_options());
    o.extend([6, 0, 6, 4, 198, 18, 0, 53]);
    let lease = parse_reply(&packet(&o)).unwrap().to_lease().unwrap();
    assert_eq!(lease.dns_servers, vec![Ipv4Addr::new(198, 18, 0, 53)]);
    assert_eq!(lease.domain_name, None);
}

#[test]
fn malformed_option_119_compression_is_survived() {
    for search in [
        vec![0xc0, 0x00],                      // pointer to itself
        vec![3, b'a', b'b', b'c', 0xc0, 0x04], // pointer into itself, a loop
        vec![0xc0, 0xff],                      // pointer past the end
        vec![3, b'a', b'b'],                   // label longer than the data
        vec![0x80, b'x'],                      // reserved label type
    ] {
        let mut o = ack_options();
        o.push(119);
        o.push(search.len() as u8);
        o.extend(&search);
        o.extend([6, 4, 198, 18, 0, 53]);
        let lease = parse_reply(&packet(&o)).unwrap().to_lease().unwrap();
        assert!(
            lease.domain_search.is_empty(),
            "{search:?}: {:?}",
            lease.domain_search
        );
        assert_eq!(lease.dns_servers.len(), 1, "{search:?}");
    }
}

#[test]
fn option_119_compression_bomb_binds_with_a_bounded_search_list() {
    use cni_dhcp::dhcp::reply::{MAX_SEARCH_BYTES, MAX_SEARCH_NAMES};
    // A 253-character name, then 1000 pointers to it, split over instances of 255 bytes
    // (RFC 3396): about 2.3 KB of option standing for 250 KB of names.
    let mut search = Vec::new();
    for len in [63u8, 63, 63, 61] {
        search.push(len);
        search.extend(std::iter::repeat_n(b'x', usize::from(len)));
    }
    search.push(0);
    for _ in 0..1000 {
        search.extend([0xc0, 0x00]);
    }
    let now = Instant::now();
    let cid = client_id("c1", "net", "eth0");
    let mut client = Client::new(ClientConfig::new(cid.clone(), MAC), now, 7);
    let xid = parse_reply(&client.poll_transmit(now).unwrap().payload)
        .unwrap()
        .xid;
    let reply = |mtype: u8| {
        let mut o = ack_options();
        o[2] = mtype;
        for chunk in search.chunks(255) {
            o.push(119);
            o.push(chunk.len() as u8);
            o.extend(chunk);
        }
        o.push(61);
        o.push(cid.len() as u8);
        o.extend(&cid);
        let mut p = packet(&o);
        p[4..8].copy_from_slice(&xid.to_be_bytes());
        p
    };
    client.handle(now, &reply(2)).unwrap(); // OFFER
    client.poll_transmit(now).unwrap();
    client.handle(now, &reply(5)).unwrap(); // ACK
    let Some(Event::Bound(lease)) = client.poll_event() else {
        panic!("not bound");
    };
    let bytes: usize = lease.domain_search.iter().map(String::len).sum();
    assert!(!lease.domain_search.is_empty());
    assert!(
        lease.domain_search.len() <= MAX_SEARCH_NAMES,
        "{}",
        lease.domain_search.len()
    );
    assert!(bytes <= MAX_SEARCH_BYTES, "{bytes}");
    assert_eq!(lease.check_bounds(), Ok(()));
}

#[test]
fn shell_metacharacters_in_names_never_reach_the_lease() {
    for evil in [
        &b"x.test; rm -rf /"[..],
        b"$(reboot)",
        b"a`id`.test",
        b"a\nb.test",
        b"a b",
    ] {
        let mut o = ack_options();
        o.push(15);
        o.push(evil.len() as u8);
        o.extend(evil);
        let lease = parse_reply(&packet(&o)).unwrap().to_lease().unwrap();
        assert_eq!(
            lease.domain_name,
            None,
            "{:?}",
            String::from_utf8_lossy(evil)
        );
    }
    let mut o = ack_options();
    o.extend([15, 8]);
    o.extend(b"lab.test");
    let lease = parse_reply(&packet(&o)).unwrap().to_lease().unwrap();
    assert_eq!(lease.domain_name.as_deref(), Some("lab.test"));
}

#[test]
fn option_121_routes_that_hijack_traffic_are_reported() {
    // Default route via someone else, and the server itself routed via a gateway.
    let mut o = ack_options();
    o.extend([121, 13, 0, 198, 18, 0, 66, 24, 198, 18, 0, 198, 18, 0, 66]);
    let lease = parse_reply(&packet(&o)).unwrap().to_lease().unwrap();
    let w = lease.route_warnings();
    assert!(
        w.iter().any(|w| w.contains("replaces the default route")),
        "{w:?}"
    );
    assert!(
        w.iter().any(|w| w.contains("covers the DHCP server")),
        "{w:?}"
    );
    // A plain lease has none.
    let lease = parse_reply(&packet(&ack_options()))
        .unwrap()
        .to_lease()
        .unwrap();
    assert!(lease.route_warnings().is_empty());
}

#[test]
fn our_own_persisted_lease_files_are_reparsed_defensively() {
    use cni_dhcp::lease_file as store;
    let dir = tempfile::tempdir().unwrap();
    for (i, body) in [
        &b""[..],
        b"{",
        b"{\"version\": 1}",
        b"{\"version\": 99, \"attachment\": {}}",
        &[0xff; 300],
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(dir.path().join(format!("bad{i}.json")), body).unwrap();
    }
    let (records, errors) = store::read_all(dir.path()).unwrap();
    assert!(records.is_empty());
    assert_eq!(errors.len(), 5, "{errors:?}");
}

#[test]
fn unauthenticated_forcerenew_is_ignored() {
    let now = Instant::now();
    let cid = client_id("c1", "net", "eth0");
    let mut client = Client::new(ClientConfig::new(cid.clone(), MAC), now, 7);
    let discover = client.poll_transmit(now).unwrap();
    let xid = parse_reply(&discover.payload).unwrap().xid;
    let with = |mtype: u8| {
        let mut o = ack_options();
        o[2] = mtype;
        o.push(61);
        o.push(cid.len() as u8);
        o.extend(&cid);
        let mut p = packet(&o);
        p[4..8].copy_from_slice(&xid.to_be_bytes());
        p
    };
    client.handle(now, &with(2)).unwrap(); // OFFER
    let request = client.poll_transmit(now).unwrap();
    assert_eq!(parse_reply(&request.payload).unwrap().xid, xid);
    client.handle(now, &with(5)).unwrap(); // ACK
    assert!(matches!(client.poll_event(), Some(Event::Bound(_))));
    // DHCPFORCERENEW (type 9, RFC 3203) without authentication: ignored, nothing changes.
    assert!(client.handle(now, &with(9)).is_err());
    assert_eq!(client.state(), State::Bound);
    assert!(client.poll_transmit(now + Duration::from_secs(1)).is_none());
    assert!(client.poll_event().is_none());
}
