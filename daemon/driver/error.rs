//! Why an acquisition failed, as the lease's driver knows it.
//!
//! The driver reports what went wrong in its own terms; which CNI error code an ADD answers
//! with is decided in one place, by the request's command ([`crate::daemon::command`]), which
//! turns an [`AcquireError`] into a [`crate::cni::Error`]. The same value's message is what a
//! background re-acquisition records in the lease's `last_error` and history, so an operator
//! reads the same words whether an ADD or a renewal hit the problem.

use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Why an ADD got no lease (or a background acquisition gave one up). `Display` is the
/// one-line message (CNI `msg`); [`AcquireError::details`] is the CNI `details`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum AcquireError {
    /// The ipam `provide` of `dhcp-client-identifier` is empty or longer than the 255 bytes
    /// an option holds (RFC 2132 §9.14). The length in bytes.
    #[error("dhcp-client-identifier is {0} bytes; option 61 holds 1 to 255")]
    ClientIdLength(usize),
    /// The ipam `provide` of `dhcp6-duid` is shorter or longer than a DUID (RFC 8415 §11.1:
    /// 3 to 130 bytes). The length in bytes.
    #[error("dhcp6-duid is {0} bytes; a DUID has 3 to 130")]
    DuidLength(usize),
    /// The interface cannot speak DHCPv6: IPv6 is off on it (no link-local address), or its
    /// link-local address failed duplicate address detection, or stayed tentative beyond the
    /// wait (RFC 4862 §5.4; DHCPv6 messages leave from the link-local address, RFC 8415 §13).
    #[error("no usable IPv6 link-local address on {ifname}: {reason}")]
    NoLinkLocal {
        /// The lease's interface.
        ifname: String,
        /// What was found.
        reason: String,
    },
    /// `CNI_NETNS` is not of a form the daemon accepts (`identity::parse_cni_netns`): why.
    #[error("{0}")]
    NetnsForm(String),
    /// `CNI_NETNS` (as the daemon sees it, with `-hostprefix`) cannot be opened as a network
    /// namespace.
    #[error("CNI_NETNS {} is not usable", path.display())]
    NetnsUnusable {
        /// The path opened.
        path: PathBuf,
        /// The error of opening it.
        error: String,
    },
    /// The namespace holds no interface of the attachment's ifname.
    #[error("no interface {ifname} in {}", netns.display())]
    NoInterface {
        /// The attachment's ifname.
        ifname: String,
        /// The namespace path.
        netns: PathBuf,
        /// The netlink error.
        error: String,
    },
    /// The container's namespace went away while the ADD waited for its lease: why.
    #[error("the container went away during ADD: {0}")]
    ContainerGone(String),
    /// No DHCPACK within the acquisition budget (`-timeout`).
    #[error("{}", timeout_message(*secs, ifname, *ipvlan_without_broadcast))]
    Timeout {
        /// The budget, seconds.
        secs: f64,
        /// The lease's interface.
        ifname: String,
        /// The interface is an ipvlan slave and the broadcast flag was off: the likely cause
        /// is the configuration (replies unicast to an address no slave owns yet).
        ipvlan_without_broadcast: bool,
        /// What was sent, ignored and failed, for the CNI `details`.
        details: String,
    },
    /// The server keys leases by MAC (chaddr) and ignores option 61, and a sibling sharing
    /// our chaddr holds its lease: nothing was requested or declined.
    #[error(
        "DHCP server {server} keys leases by MAC address (chaddr) and ignores the client identifier (option 61): {holder} already holds this server's lease for MAC {}, which every ipvlan slave of the master shares, so {attachment} cannot get a lease of its own; configure the server to identify clients by option 61 (dnsmasq does by default), or let each container send a chaddr of its own (ipam \"chaddr\": \"derived\", the default on ipvlan, unless DHCP snooping on the LAN checks chaddr)",
        crate::lease_file::mac::to_string(chaddr)
    )]
    MacKeyed {
        /// The server's identifier (option 54).
        server: Ipv4Addr,
        /// The shared chaddr.
        chaddr: [u8; 6],
        /// The attachment that holds the server's binding for that chaddr.
        holder: String,
        /// Ours.
        attachment: String,
    },
    /// The server acknowledged an address another live lease holds on the same master: it
    /// was declined (DHCPDECLINE, RFC 2131 §4.4.1).
    #[error(
        "DHCP server {server} offered {address} to {attachment}, but {holder} already holds it on the same master: either the server keys leases by MAC address (chaddr), which all ipvlan slaves share, and ignores the client identifier (option 61), so configure it to identify clients by option 61 (dnsmasq does by default); or two servers on this LAN hand out the same addresses"
    )]
    Declined {
        /// The server's identifier.
        server: Ipv4Addr,
        /// The address acknowledged.
        address: Ipv4Addr,
        /// Ours.
        attachment: String,
        /// The attachment that holds the address.
        holder: String,
    },
    /// The first DHCPACK could not be written to the state directory; the lease was released.
    #[error("cannot keep the DHCP lease: the daemon's state directory {} refused the write", dir.display())]
    NotPersisted {
        /// The state directory.
        dir: PathBuf,
        /// The write's error.
        error: String,
    },
    /// Anything else the daemon could not do on the host (stat, enter the namespace, read
    /// its cookie or the boot ID, open or register a packet socket; the driver task ended).
    #[error("{what}")]
    Io {
        /// What could not be done.
        what: String,
        /// The error, or the attachment.
        error: String,
    },
}

fn timeout_message(secs: f64, ifname: &str, ipvlan_without_broadcast: bool) -> String {
    if ipvlan_without_broadcast {
        format!(
            "no DHCP lease within {secs}s on ipvlan slave {ifname}: likely cause: the BOOTP broadcast flag is off, so the server unicasts its reply to the offered address, which the ipvlan master drops because no slave owns that address yet; set \"broadcast\": true in ipam (or remove the key to let the daemon decide)"
        )
    } else {
        format!(
            "no DHCP lease within {secs}s on {ifname}: no server answered; is a DHCP server reachable on the master's LAN, and does it answer clients with option 61?"
        )
    }
}

impl AcquireError {
    /// The CNI `details`: the underlying error or what was tried; empty when the message says
    /// it all.
    pub(crate) fn details(&self) -> String {
        match self {
            AcquireError::ClientIdLength(_) => "ipam provide: dhcp-client-identifier".into(),
            AcquireError::DuidLength(_) => "ipam provide: dhcp6-duid".into(),
            AcquireError::NoLinkLocal { .. } => {
                "is IPv6 disabled in the container (net.ipv6.conf.<if>.disable_ipv6)? On ipvlan, does each slave have its own link-local (addrgenmode random)?".into()
            }
            AcquireError::NetnsForm(_) | AcquireError::ContainerGone(_) => String::new(),
            AcquireError::NetnsUnusable { error, .. }
            | AcquireError::NoInterface { error, .. }
            | AcquireError::Io { error, .. } => error.clone(),
            AcquireError::Timeout { details, .. } => details.clone(),
            AcquireError::MacKeyed { holder, .. } => format!(
                "nothing was requested or declined: the server's only binding for that MAC is {holder}'s, which keeps it"
            ),
            AcquireError::Declined { .. } => {
                "the address was declined (DHCPDECLINE); no duplicate was handed out".into()
            }
            AcquireError::NotPersisted { error, .. } => {
                format!("{error}; the lease was released (DHCPRELEASE), nothing is configured")
            }
        }
    }

    /// An [`AcquireError::Io`].
    pub(crate) fn io(what: impl Into<String>, error: impl std::fmt::Display) -> AcquireError {
        AcquireError::Io {
            what: what.into(),
            error: error.to_string(),
        }
    }
}
