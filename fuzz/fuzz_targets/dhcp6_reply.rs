//! Raw bytes as a DHCPv6 UDP payload from port 547: `parse_reply`, `to_lease` and `status_for`
//! on the input as is, then the input into a `dhcp6::Client` in SOLICITING (Rapid Commit on),
//! REQUESTING (after a valid ADVERTISE built here), RENEWING (at T1 of a lease bound here),
//! REBINDING and REBOOTING, its transaction id patched to the client's so inputs get past the
//! first filter (the seeds carry the client's DUID, so they get past the second). Each client
//! then runs on for a few timers; a lease goes through a serde round trip (it will be persisted).
#![no_main]

use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use cni_dhcp::dhcp6::identity::{duid, iaid};
use cni_dhcp::dhcp6::{Client, ClientConfig, Event, Lease6, parse_reply};
use libfuzzer_sys::fuzz_target;

/// The seeds' server DUID (a DUID-LLT) and address.
const SERVER: [u8; 14] = [0, 1, 0, 1, 0x2a, 0x4b, 0x5c, 0x6d, 2, 0, 0xc6, 0x12, 0, 1];
const ADDR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);

/// The client the seeds were built for: DUID of `cid-c1/labnet`, IAID of `eth0`.
fn config() -> ClientConfig {
    ClientConfig {
        rapid_commit: true,
        min_lifetime: 0,
        ..ClientConfig::new(duid("cid-c1", "labnet"), iaid("eth0"))
    }
}

fn opt(out: &mut Vec<u8>, code: u16, data: &[u8]) {
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}

/// A valid message of type `t` for `xid`: our Client ID, the server's, one IA_NA granting
/// ADDR (T1 100, T2 160, lifetimes 200/300), Preference 255.
fn valid(t: u8, xid: u32) -> Vec<u8> {
    let mut m = vec![t];
    m.extend_from_slice(&xid.to_be_bytes()[1..]);
    opt(&mut m, 1, &duid("cid-c1", "labnet"));
    opt(&mut m, 2, &SERVER);
    let mut addr = ADDR.octets().to_vec();
    addr.extend_from_slice(&200u32.to_be_bytes());
    addr.extend_from_slice(&300u32.to_be_bytes());
    let mut ia = iaid("eth0").to_be_bytes().to_vec();
    ia.extend_from_slice(&100u32.to_be_bytes());
    ia.extend_from_slice(&160u32.to_be_bytes());
    opt(&mut ia, 5, &addr);
    opt(&mut m, 3, &ia);
    opt(&mut m, 7, &[255]);
    m
}

fn xid_of(payload: &[u8]) -> u32 {
    parse_reply(payload).expect("our own message parses").xid
}

fn patched(data: &[u8], xid: u32) -> Vec<u8> {
    let mut p = data.to_vec();
    if p.len() >= 4 {
        p[1..4].copy_from_slice(&xid.to_be_bytes()[1..]);
    }
    p
}

fn use_lease(lease: &Lease6) {
    let json = serde_json::to_string(lease).expect("a lease serializes");
    let back: Lease6 = serde_json::from_str(&json).expect("and reads back");
    assert_eq!(&back, lease);
    assert!(lease.t1 <= lease.t2 && lease.t2 <= lease.valid_lifetime);
    assert!(lease.preferred_lifetime <= lease.valid_lifetime);
}

/// Takes the events; returns whether a lease was bound or renewed.
fn drain(client: &mut Client) -> bool {
    let mut bound = false;
    while let Some(event) = client.poll_event() {
        match event {
            Event::Bound(lease) | Event::Renewed(lease) => {
                use_lease(&lease);
                bound = true;
            }
            Event::Lost | Event::Expired | Event::Timeout => {}
        }
    }
    bound
}

/// Answers the message due at `now` with `data`, then runs the client through a few timers.
fn answer_and_run(client: &mut Client, now: Instant, data: &[u8]) {
    if let Some(tx) = client.poll_transmit(now) {
        let _ = client.handle(now, &patched(data, xid_of(&tx.payload)));
    }
    drain(client);
    let mut now = now;
    for _ in 0..8 {
        while client.poll_transmit(now).is_some() {}
        drain(client);
        match client.poll_at() {
            Some(t) if t > now => now = t,
            Some(_) => panic!("poll_at in the past after poll_transmit returned None"),
            None => break,
        }
    }
    let _ = client.release();
}

fuzz_target!(|data: &[u8]| {
    if let Ok(reply) = parse_reply(data) {
        let _ = reply.status_for(iaid("eth0"));
        if let Ok(lease) = reply.to_lease(iaid("eth0"), None) {
            use_lease(&lease);
        }
    }
    let now = Instant::now();

    // SOLICITING: the input as an ADVERTISE or a Rapid Commit REPLY.
    let mut client = Client::new(config(), now, 1);
    answer_and_run(&mut client, now, data);

    // REQUESTING: a valid ADVERTISE first, then the input as the REPLY to the REQUEST.
    let mut client = Client::new(config(), now, 2);
    let solicit = client.poll_transmit(now).expect("SOLICIT at once");
    let _ = client.handle(now, &valid(2, xid_of(&solicit.payload)));
    answer_and_run(&mut client, now, data);

    // RENEWING and REBINDING: a lease bound here, then the input as the REPLY at T1 / T2.
    for rebind in [false, true] {
        let mut client = Client::new(config(), now, 3);
        let solicit = client.poll_transmit(now).expect("SOLICIT at once");
        let _ = client.handle(now, &valid(2, xid_of(&solicit.payload)));
        let request = client.poll_transmit(now).expect("REQUEST after preference 255");
        let _ = client.handle(now, &valid(7, xid_of(&request.payload)));
        assert!(drain(&mut client), "the valid REPLY binds");
        let at = if rebind {
            client.rebind_at()
        } else {
            client.renew_at()
        };
        let later = at.expect("finite lease") + Duration::from_millis(1);
        answer_and_run(&mut client, later, data);
    }

    // REBOOTING: the input as the REPLY to the REBIND for a remembered lease.
    if let Ok(reply) = parse_reply(&valid(7, 0)) {
        if let Ok(lease) = reply.to_lease(iaid("eth0"), None) {
            let mut client = Client::reboot(config(), lease, now, 4);
            answer_and_run(&mut client, now, data);
        }
    }
});
