//! What one DHCPv6 client is configured with: [`ClientConfig`] and its defaults. The send side
//! ([`message`](super::message)) and the state machine ([`client`](super::client)) both read it,
//! so it lives below both, as [`crate::dhcp::config`] does for DHCPv4.

use std::time::Duration;

use super::identity;

/// Options the client asks for in its Option Request option (6, RFC 8415 §21.7) unless
/// configured otherwise: DNS recursive name servers 23 and domain search list 24 (RFC 3646 §3,
/// §4), and SOL_MAX_RT 82 (§21.24), which §18.2.1 says a Solicit MUST request.
pub const DEFAULT_OPTION_REQUEST: &[u16] = &[23, 24, 82];

/// Shortest valid lifetime the client keeps, in seconds: a shorter one is kept as this long
/// (and the preferred lifetime raised to it when shorter), so that a server granting 0 or 1 s
/// cannot make bind, expire and acquire again loop at its round-trip rate. The DHCPv4 floor
/// ([`crate::dhcp::MIN_LEASE_SECS`]) has the same value for the same reason.
pub const MIN_LIFETIME_SECS: u32 = 20;

/// What the client sends and how long it tries; one per container interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Our DUID, the Client Identifier option 1 data (RFC 8415 §21.2): sent in every message and
    /// required in every reply we accept (§16.3, §16.10). [`identity::duid`] by default, or raw
    /// bytes from the ipam config ([`identity::check_duid`]).
    pub duid: Vec<u8>,
    /// The IAID of our one IA_NA (§12.1, §21.4), [`identity::iaid`] of the interface name by
    /// default; a reply's IA_NA with another IAID is not ours.
    pub iaid: u32,
    /// Send Rapid Commit (option 14, §21.14) in SOLICIT, so a server that allows it answers
    /// with a REPLY that binds at once (§18.2.1).
    pub rapid_commit: bool,
    /// Option codes of the Option Request option (§21.7), sent in SOLICIT, REQUEST, RENEW and
    /// REBIND; omitted when empty.
    pub option_request: Vec<u16>,
    /// Budget for one acquisition, from the first SOLICIT (or the REBIND after a restart) to a
    /// binding, restarts included (the daemon's `-timeout`, default 10 s). Waived for the
    /// acquisitions after a lost lease in [`keep_trying`](super::client::Client::keep_trying) mode.
    pub timeout: Duration,
    /// Floor on the valid lifetime in seconds ([`MIN_LIFETIME_SECS`] by default); 0 keeps
    /// whatever the server says (for tests of the timers).
    pub min_lifetime: u32,
}

impl ClientConfig {
    /// A configuration sending `duid` with one IA_NA `iaid`: no Rapid Commit,
    /// [`DEFAULT_OPTION_REQUEST`], 10 s budget, [`MIN_LIFETIME_SECS`].
    pub fn new(duid: Vec<u8>, iaid: u32) -> ClientConfig {
        ClientConfig {
            duid,
            iaid,
            rapid_commit: false,
            option_request: DEFAULT_OPTION_REQUEST.to_vec(),
            timeout: Duration::from_secs(10),
            min_lifetime: MIN_LIFETIME_SECS,
        }
    }

    /// [`ClientConfig::new`] with the derived identity of a container interface
    /// ([`identity::duid`] of `container_id` and `network`, [`identity::iaid`] of `ifname`), or
    /// the raw DUID `duid_override` when given.
    ///
    /// Errors: the override's length when it is not a DUID's ([`identity::check_duid`]).
    pub fn for_container(
        container_id: &str,
        network: &str,
        ifname: &str,
        duid_override: Option<&[u8]>,
    ) -> Result<ClientConfig, usize> {
        let duid = match duid_override {
            Some(raw) => {
                identity::check_duid(raw)?;
                raw.to_vec()
            }
            None => identity::duid(container_id, network),
        };
        Ok(ClientConfig::new(duid, identity::iaid(ifname)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_or_overridden_identity() {
        let c = ClientConfig::for_container("cid-c1", "labnet", "eth0", None).unwrap();
        assert_eq!(c.duid, identity::duid("cid-c1", "labnet"));
        assert_eq!(c.iaid, identity::iaid("eth0"));
        let raw = [0, 2, 0, 0, 0x7f, 0xff, 1, 2];
        let c = ClientConfig::for_container("cid-c1", "labnet", "eth0", Some(&raw)).unwrap();
        assert_eq!(c.duid, raw);
        assert_eq!(
            ClientConfig::for_container("c", "n", "eth0", Some(&[0, 4])),
            Err(2)
        );
    }
}
