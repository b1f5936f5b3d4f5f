//! The DHCPv4 server each CNI network was last heard from, by link-layer address, so that the
//! next acquisition on that network can send its first DHCPDISCOVER straight to it as an
//! Ethernet unicast instead of a broadcast that a macvlan (bridge) or ipvlan (l2) master copies
//! to every other slave (docs/design.md, *Ethernet unicast to a known server*).
//!
//! An entry is the source MAC of the last DHCPOFFER, DHCPACK or DHCPNAK any lease of the network
//! accepted: the server's own MAC, or the relay's when the server is behind one (the frame's
//! source is the last hop either way, which is where a unicast must go). It is a hint and never
//! authority: a stale entry costs one retransmission timeout, because every retransmission is a
//! broadcast (see [`crate::daemon::driver`]'s `ethernet_destination`). Kept in memory only; the
//! lease files keep each lease's own server MAC for its INIT-REBOOT.

use std::collections::HashMap;

use parking_lot::Mutex;

/// Server MACs by CNI network name: what the pacer calls one broadcast domain
/// ([`crate::daemon::pacer`]).
#[derive(Debug, Default)]
pub(crate) struct KnownServers {
    by_network: Mutex<HashMap<String, [u8; 6]>>,
}

impl KnownServers {
    /// Notes `mac` (a reply's Ethernet source) as `network`'s server; the latest reply wins,
    /// so a server that moved (failover, new NIC) is followed by the first reply it sends.
    pub(crate) fn learn(&self, network: &str, mac: [u8; 6]) {
        let mut map = self.by_network.lock();
        match map.get_mut(network) {
            Some(known) => *known = mac,
            None => {
                map.insert(network.to_string(), mac);
            }
        }
    }

    /// The MAC `network`'s server last answered from, if any lease of it was answered since
    /// the daemon started.
    pub(crate) fn get(&self, network: &str) -> Option<[u8; 6]> {
        self.by_network.lock().get(network).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_reply_of_a_network_wins_and_networks_are_apart() {
        let k = KnownServers::default();
        assert_eq!(k.get("net-a"), None, "nothing heard yet");
        k.learn("net-a", [2, 0, 0, 0, 0, 1]);
        k.learn("net-b", [2, 0, 0, 0, 0, 2]);
        assert_eq!(k.get("net-a"), Some([2, 0, 0, 0, 0, 1]));
        k.learn("net-a", [2, 0, 0, 0, 0, 3]);
        assert_eq!(
            k.get("net-a"),
            Some([2, 0, 0, 0, 0, 3]),
            "a moved server is followed"
        );
        assert_eq!(k.get("net-b"), Some([2, 0, 0, 0, 0, 2]));
    }
}
