//! The options area: a valid BOOTREPLY header (DHCPOFFER for 198.18.0.150) and magic cookie,
//! followed by the fuzz bytes as options, so the fuzzer spends its time on option decoding
//! (1, 3, 6, 15, 26, 33, 51, 52, 54, 58, 59, 61, 119, 121, RFC 3396 concatenation, overload).
//! The first input byte, when present, picks what goes in `sname`/`file`: further option bytes
//! from the input (for option 52) or nothing.
#![no_main]

use cni_dhcp::dhcp::parse_reply;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut m = vec![0u8; 240];
    m[0] = 2;
    m[1] = 1;
    m[2] = 6;
    m[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    m[16..20].copy_from_slice(&[198, 18, 0, 150]);
    m[28..34].copy_from_slice(&[0x02, 0x00, 0xc6, 0x12, 0x00, 0x02]);
    m[236..240].copy_from_slice(&[99, 130, 83, 99]);
    let (mode, rest) = match data.split_first() {
        Some((&mode, rest)) => (mode, rest),
        None => (0, data),
    };
    // mode & 1: the tail of the input also fills sname (64 bytes at 44); mode & 2: file (128 at
    // 108). Each takes the last bytes of the input, so option 52 can point at real options.
    let mut options = rest;
    if mode & 1 != 0 {
        let n = options.len().min(64);
        let (head, tail) = options.split_at(options.len() - n);
        m[44..44 + n].copy_from_slice(tail);
        options = head;
    }
    if mode & 2 != 0 {
        let n = options.len().min(128);
        let (head, tail) = options.split_at(options.len() - n);
        m[108..108 + n].copy_from_slice(tail);
        options = head;
    }
    m.extend_from_slice(options);
    let Ok(reply) = parse_reply(&m) else {
        panic!("a valid header and cookie must parse");
    };
    let _ = reply.broadcast();
    for code in [1u8, 3, 6, 15, 26, 33, 51, 52, 53, 54, 58, 59, 61, 119, 121] {
        let _ = reply.option(code);
    }
    // Option 119 is decoded lazily (not by parse_reply): decode it whether or not a lease
    // results, and hold it to its bounds.
    let (names, _problem) = reply.domain_search();
    assert!(names.len() <= cni_dhcp::dhcp::reply::MAX_SEARCH_NAMES);
    assert!(
        names.iter().map(String::len).sum::<usize>() <= cni_dhcp::dhcp::reply::MAX_SEARCH_BYTES
    );
    if let Ok(lease) = reply.to_lease() {
        assert_eq!(
            lease.check_bounds(),
            Ok(()),
            "to_lease keeps a lease within its bounds"
        );
        let _ = lease.routes();
        let _ = lease.gateway();
        let _ = lease.address_net();
        // A lease must survive its persisted form (the daemon writes it to disk).
        let json = serde_json::to_vec(&lease).expect("a lease serializes");
        let _: cni_dhcp::dhcp::Lease = serde_json::from_slice(&json).expect("and reads back");
    }
});
