//! An ICMPv6 message as a raw ICMPv6 socket delivers it (from the type byte) into `ra::parse`,
//! from a link-local source and from a global one (always an error); a parsed RA goes through
//! both decisions (`on_link_prefix_len` for an address inside each of its prefixes and for one
//! outside them all, `default_router`) and must survive `to_bytes` and a second parse unchanged.
#![no_main]

use std::net::Ipv6Addr;

use cni_dhcp::ra::{default_router, on_link_prefix_len, parse};
use libfuzzer_sys::fuzz_target;

const ROUTER: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x200, 0xc6ff, 0xfe12, 1);
const GLOBAL: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1);

fuzz_target!(|data: &[u8]| {
    assert!(parse(data, GLOBAL).is_err());
    let Ok(ra) = parse(data, ROUTER) else {
        return;
    };
    if let Some((router, _lifetime)) = default_router(&ra) {
        assert_eq!(router, ROUTER);
    }
    let _ = on_link_prefix_len(&ra, GLOBAL);
    let _ = on_link_prefix_len(&ra, Ipv6Addr::UNSPECIFIED);
    for p in &ra.prefixes {
        // The last address of the prefix: inside it whatever its length.
        let last = u128::from(p.prefix.network()) | !u128::from(p.prefix.netmask());
        if let Some(len) = on_link_prefix_len(&ra, Ipv6Addr::from(last)) {
            assert!(len <= 128);
        }
    }
    let mut clean = ra.clone();
    clean.malformed.clear();
    let again = parse(&ra.to_bytes(), ROUTER).expect("an encoded RA parses");
    assert_eq!(again, clean);
});
