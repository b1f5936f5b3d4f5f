//! Who the DHCPv6 client is: the DUID of its Client Identifier option (RFC 8415 §11, §21.2) and
//! the IAID of its IA_NA (§12.1), one pair per container interface.
//!
//! On ipvlan every slave has its master's MAC, so a DUID built from the MAC (DUID-LL, DUID-LLT),
//! or one machine-wide DUID, is the same for every container and a server gives them all one
//! binding (issue 12; docs/design.md, *DHCPv6 identity*). We use DUID-UUID (RFC 6355) with a
//! UUID derived from the container ID and the network name, as option 61 is derived for DHCPv4:
//! distinct per container, independent of the MAC, and the same after every daemon restart, so
//! the server finds the binding again. Both derivations below are part of the on-wire format:
//! the unit tests pin their bytes, and changing them would orphan every binding at the servers.

use uuid::Uuid;

/// DUID type code of DUID-UUID (RFC 6355 §4; RFC 8415 §11.1 lists it), the first 2 bytes of
/// [`duid`]'s output, network order.
pub const DUID_TYPE_UUID: u16 = 4;

/// The fixed namespace UUID of this project (d0e4ef73-b53f-4aff-b94d-d8a279e43a78, a random
/// version 4 UUID drawn once for cni-dhcp). Only the UUIDv5 of [`duid_uuid`] uses it.
pub const NAMESPACE: Uuid = Uuid::from_u128(0xd0e4ef73_b53f_4aff_b94d_d8a279e43a78);

/// Longest DUID in bytes, type code included (RFC 8415 §11.1: "no more than 130 octets").
pub const MAX_DUID_LEN: usize = 130;

/// Shortest DUID in bytes we accept: a 2-byte type code and at least 1 byte of identifier.
pub const MIN_DUID_LEN: usize = 3;

/// The UUID of a container's DUID-UUID: UUIDv5 (RFC 9562 §5.5: SHA-1 over the namespace's 16
/// bytes then the name, first 16 bytes of the digest, version nibble 5, variant bits 10) with
/// namespace [`NAMESPACE`] and name the UTF-8 bytes of `containerID/network` (one `/`, no
/// terminator). The interface name is not part of it: one container has one DUID, and its
/// interfaces are told apart by their IAIDs ([`iaid`]), as RFC 8415 §11 intends.
pub fn duid_uuid(container_id: &str, network: &str) -> Uuid {
    let mut name = Vec::with_capacity(container_id.len() + 1 + network.len());
    name.extend_from_slice(container_id.as_bytes());
    name.push(b'/');
    name.extend_from_slice(network.as_bytes());
    Uuid::new_v5(&NAMESPACE, &name)
}

/// The DUID (Client Identifier option 1 data, RFC 8415 §21.2) of a container on a network:
/// 18 bytes, `00 04` ([`DUID_TYPE_UUID`], network order) then the 16 bytes of
/// [`duid_uuid`]`(container_id, network)` in RFC 9562 byte order.
pub fn duid(container_id: &str, network: &str) -> Vec<u8> {
    let mut d = Vec::with_capacity(18);
    d.extend_from_slice(&DUID_TYPE_UUID.to_be_bytes());
    d.extend_from_slice(duid_uuid(container_id, network).as_bytes());
    d
}

/// The IAID (RFC 8415 §12.1, 4 bytes, sent in network order) of the IA_NA for interface
/// `ifname`: 32-bit FNV-1a over the name's UTF-8 bytes (offset basis 0x811c9dc5, prime
/// 0x01000193: for each byte, `h = (h ^ byte) * prime` modulo 2^32). Stable for a name, distinct
/// per interface of one container in practice (IAIDs need only be unique within the DUID).
pub fn iaid(ifname: &str) -> u32 {
    ifname.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Checks a DUID given raw (the `provide` override of the ipam config): between
/// [`MIN_DUID_LEN`] and [`MAX_DUID_LEN`] bytes (RFC 8415 §11.1). Its content is the operator's
/// business: any type code is sent as is.
///
/// Errors: the length, in bytes, when out of range.
pub fn check_duid(duid: &[u8]) -> Result<(), usize> {
    if (MIN_DUID_LEN..=MAX_DUID_LEN).contains(&duid.len()) {
        Ok(())
    } else {
        Err(duid.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The derivation is a wire format: these bytes must never change (servers key bindings by
    /// them, across daemon restarts and upgrades).
    #[test]
    fn duid_bytes_are_pinned() {
        let d = duid("cid-c1", "labnet");
        assert_eq!(
            hex::encode(&d),
            "000432efe19cc57157ec906d9d070e8623ab",
            "DUID-UUID of cid-c1/labnet (cross-checked with Python's uuid.uuid5)"
        );
        assert_eq!(d.len(), 18);
        let u = duid_uuid("cid-c1", "labnet");
        assert_eq!(u.get_version_num(), 5);
        assert_eq!(&d[2..], u.as_bytes());
        check_duid(&d).unwrap();
    }

    #[test]
    fn duid_is_per_container_and_network() {
        let a = duid("cid-c1", "labnet");
        assert_eq!(a, duid("cid-c1", "labnet"));
        assert_ne!(a, duid("cid-c2", "labnet"));
        assert_ne!(a, duid("cid-c1", "other"));
    }

    #[test]
    fn iaid_is_fnv1a_of_the_ifname() {
        // FNV-1a 32 reference values: "" is the offset basis, "a" is 0xe40c292c.
        assert_eq!(iaid(""), 0x811c_9dc5);
        assert_eq!(iaid("a"), 0xe40c_292c);
        assert_eq!(iaid("eth0"), 0x67b1_9724);
        assert_ne!(iaid("eth0"), iaid("eth1"));
    }

    #[test]
    fn raw_duid_bounds() {
        assert_eq!(check_duid(&[0, 4]), Err(2));
        assert!(check_duid(&[0, 2, 1]).is_ok());
        assert!(check_duid(&[7; 130]).is_ok());
        assert_eq!(check_duid(&[7; 131]), Err(131));
    }
}
