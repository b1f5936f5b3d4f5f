//! What one client is configured with: [`ClientConfig`] and its defaults. Both the send side
//! ([`message`](super::message), which builds what the configuration says to send) and the state
//! machine ([`client`](super::client), which keeps its timeouts and lease floor) read it, so it
//! lives here, below both of them.

use std::time::Duration;

/// Options the client asks for (option 55, RFC 2132 §9.8) unless configured otherwise: subnet
/// mask 1, router 3, DNS 6, domain name 15, MTU 26, broadcast 28, static routes 33, lease time 51,
/// server id 54, T1 58, T2 59, domain search 119 (RFC 3397), classless routes 121 (RFC 3442).
pub const DEFAULT_PARAMETER_REQUEST_LIST: &[u8] =
    &[1, 3, 6, 15, 26, 28, 33, 51, 54, 58, 59, 119, 121];

/// Shortest lease the client keeps, in seconds: a shorter one (0 and 1 s included) is kept as
/// this long, with T1 and T2 at their default fractions of it. A 0-second lease would
/// otherwise make bind, expire and acquire again loop at the server's round-trip rate. dhcpcd
/// uses the same floor (`DHCP_MIN_LEASE`, 20 s).
pub const MIN_LEASE_SECS: u32 = 20;

/// What the client sends and how long it tries; one per container interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Option 61 data (RFC 2132 §9.14), e.g. from [`client_id`](super::message::client_id); sent in every message
    /// (omitted when empty) and required to match in replies that echo it (RFC 6842).
    pub client_id: Vec<u8>,
    /// chaddr (RFC 2131 §2): the interface's MAC (on ipvlan, the master's), or one derived from
    /// the client identifier ([`crate::dhcp::message::derived_chaddr`]). Replies must carry it.
    pub chaddr: [u8; 6],
    /// Set the BOOTP broadcast flag on DHCPDISCOVER and SELECTING DHCPREQUEST (RFC 2131 §4.1) so
    /// the server broadcasts its replies: needed on ipvlan (docs/design.md, *ipvlan and DHCP*).
    pub broadcast: bool,
    /// Also set the broadcast flag on RENEWING and REBINDING DHCPREQUESTs (ciaddr set). For a
    /// chaddr that is no interface's MAC (docs/design.md, *A chaddr per container*): RFC 2131
    /// §4.1 has the server answer such a request at ciaddr, and dnsmasq does, but busybox
    /// udhcpd sends a flag-clear reply to chaddr's Ethernet address, and a relay forwards a
    /// flag-clear REBINDING reply there, where no NIC accepts it. Off by default.
    pub broadcast_renewals: bool,
    /// Option 55 codes (RFC 2132 §9.8); omitted when empty.
    pub parameter_request_list: Vec<u8>,
    /// Option 12 host name (RFC 2132 §3.14), sent when set and non-empty.
    pub hostname: Option<String>,
    /// Further options to send in DHCPDISCOVER and DHCPREQUEST, as (code, data): the ipam
    /// config's `provide` list (e.g. 60 vendor class identifier, 77 user class). Codes this
    /// client manages itself (0, 12, 50, 51, 53, 54, 55, 57, 61, 255) are skipped.
    pub provided: Vec<(u8, Vec<u8>)>,
    /// Budget for one acquisition, from INIT (or INIT-REBOOT) to BOUND, NAK restarts included
    /// (the daemon's `-timeout`, default 10 s). Ignored by acquisitions after a lost lease in
    /// [`Client::keep_trying`](super::client::Client::keep_trying) mode, except that it still bounds the INIT-REBOOT phase (half of
    /// it).
    pub timeout: Duration,
    /// Cap on the SELECTING/REQUESTING retransmission interval (the daemon's `-resendmax`,
    /// default 62 s).
    pub resend_max: Duration,
    /// Floor on the lease time in seconds ([`MIN_LEASE_SECS`] by default): a DHCPACK granting
    /// less is kept as this long (T1 and T2 at 1/2 and 7/8 of it), and a T1 or T2 of 0 means
    /// the default fraction. 0 keeps whatever the server says (for tests of the timers).
    pub min_lease: u32,
}

impl ClientConfig {
    /// A configuration with the reference's defaults: broadcast flag set,
    /// [`DEFAULT_PARAMETER_REQUEST_LIST`], no host name, 10 s timeout, 62 s resend cap.
    pub fn new(client_id: Vec<u8>, chaddr: [u8; 6]) -> ClientConfig {
        ClientConfig {
            client_id,
            chaddr,
            broadcast: true,
            broadcast_renewals: false,
            parameter_request_list: DEFAULT_PARAMETER_REQUEST_LIST.to_vec(),
            hostname: None,
            provided: Vec::new(),
            timeout: Duration::from_secs(10),
            resend_max: Duration::from_secs(62),
            min_lease: MIN_LEASE_SECS,
        }
    }
}
