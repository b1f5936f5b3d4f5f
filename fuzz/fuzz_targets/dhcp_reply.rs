//! Raw bytes as the daemon's packet socket delivers them (an IPv4 packet, SOCK_DGRAM): the IPv4 +
//! UDP checks, then the UDP payload into a `Client` in SELECTING, in REQUESTING (after a valid
//! OFFER built here) and in RENEWING. The payload's xid (and chaddr) are patched to the client's
//! so inputs get past the first filters. A resulting lease goes through the CNI result in every
//! supported version. `parse_reply` and `to_lease` are also run on the raw input.
#![no_main]

use std::time::{Duration, Instant};

use cni_dhcp::cni::SUPPORTED_VERSIONS;
use cni_dhcp::daemon::parse_datagram;
use cni_dhcp::dhcp::{Client, ClientConfig, Event, Lease, parse_reply};
use cni_dhcp::ipam::result_from_lease;
use libfuzzer_sys::fuzz_target;

/// The client's MAC; the corpus was captured from a client with this MAC and the client
/// identifier `01` + MAC (busybox udhcpc's default), so dnsmasq's echoed option 61 matches.
const MAC: [u8; 6] = [0x02, 0x00, 0xc6, 0x12, 0x00, 0x02];
const SERVER: [u8; 4] = [198, 18, 0, 1];
const OFFERED: [u8; 4] = [198, 18, 0, 152];

fn client_id() -> Vec<u8> {
    let mut id = vec![1];
    id.extend_from_slice(&MAC);
    id
}

fn xid_of(payload: &[u8]) -> u32 {
    parse_reply(payload).expect("our own message parses").xid
}

fn patched(payload: &[u8], xid: u32) -> Vec<u8> {
    let mut p = payload.to_vec();
    if p.len() >= 8 {
        p[4..8].copy_from_slice(&xid.to_be_bytes());
    }
    if p.len() >= 34 {
        p[28..34].copy_from_slice(&MAC);
    }
    p
}

/// A minimal valid DHCPOFFER for `xid`.
fn offer(xid: u32) -> Vec<u8> {
    let mut m = vec![0u8; 240];
    m[0] = 2;
    m[1] = 1;
    m[2] = 6;
    m[4..8].copy_from_slice(&xid.to_be_bytes());
    m[16..20].copy_from_slice(&OFFERED);
    m[28..34].copy_from_slice(&MAC);
    m[236..240].copy_from_slice(&[99, 130, 83, 99]);
    m.extend_from_slice(&[53, 1, 2]);
    m.extend_from_slice(&[54, 4]);
    m.extend_from_slice(&SERVER);
    m.extend_from_slice(&[51, 4, 0, 0, 0x0e, 0x10]);
    m.extend_from_slice(&[1, 4, 255, 255, 255, 0]);
    let id = client_id();
    m.push(61);
    m.push(id.len() as u8);
    m.extend_from_slice(&id);
    m.push(255);
    m.resize(300, 0);
    m
}

fn use_lease(lease: &Lease) {
    let _ = lease.routes();
    let _ = lease.gateway();
    let _ = lease.address_net();
    let result = result_from_lease(lease, "1.1.0", Some(100));
    for v in SUPPORTED_VERSIONS {
        let _ = result.to_version(v);
    }
}

fn drain(client: &mut Client) -> Option<Lease> {
    let mut bound = None;
    while let Some(event) = client.poll_event() {
        match event {
            Event::Bound(lease) | Event::Renewed(lease) => {
                use_lease(&lease);
                bound = Some(lease);
            }
            Event::Nak | Event::Expired | Event::Timeout => {}
        }
    }
    bound
}

fn config() -> ClientConfig {
    ClientConfig::new(client_id(), MAC)
}

fuzz_target!(|data: &[u8]| {
    // The raw input as a UDP payload, too.
    if let Ok(reply) = parse_reply(data) {
        if let Ok(lease) = reply.to_lease() {
            use_lease(&lease);
        }
    }
    let Some((_src, payload)) = parse_datagram(data) else {
        return;
    };
    let now = Instant::now();

    // SELECTING: the payload as a reply to our DHCPDISCOVER.
    let mut client = Client::new(config(), now, 1);
    let discover = client.poll_transmit(now).expect("DISCOVER at once");
    let p = patched(payload, xid_of(&discover.payload));
    let _ = client.handle(now, &p);
    drain(&mut client);
    // If it was taken as an OFFER, the same bytes as the answer to the REQUEST.
    if let Some(request) = client.poll_transmit(now) {
        let p = patched(payload, xid_of(&request.payload));
        let _ = client.handle(now, &p);
        drain(&mut client);
    }

    // REQUESTING: a valid OFFER first, then the payload as the answer to our DHCPREQUEST.
    let mut client = Client::new(config(), now, 2);
    let discover = client.poll_transmit(now).expect("DISCOVER at once");
    let _ = client.handle(now, &offer(xid_of(&discover.payload)));
    let Some(request) = client.poll_transmit(now) else {
        return;
    };
    let p = patched(payload, xid_of(&request.payload));
    let _ = client.handle(now, &p);
    if drain(&mut client).is_none() {
        return;
    }

    // RENEWING: at T1 the unicast DHCPREQUEST, and the payload as its answer.
    let Some(t1) = client.poll_at() else {
        return;
    };
    let later = t1 + Duration::from_millis(1);
    if let Some(renew) = client.poll_transmit(later) {
        let p = patched(payload, xid_of(&renew.payload));
        let _ = client.handle(later, &p);
        drain(&mut client);
    }
});
