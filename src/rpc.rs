//! The protocol between the `dhcp` IPAM plugin (and `dhcp-leases`) and `dhcp daemon`.
//!
//! The plugin is a short-lived process started by the container runtime for every CNI command;
//! the daemon is long-lived and owns the leases. They talk over a Unix stream socket (default
//! [`DEFAULT_SOCKET_PATH`]) with one request and one response per connection, each a single
//! JSON object followed by a newline (`\n`). Every frame carries [`PROTOCOL_VERSION`]; a peer that
//! receives another version answers with an error rather than guessing. Frames are bounded:
//! requests by [`MAX_REQUEST_BYTES`], responses by `MAX_RESPONSE_BYTES` (a lease list of a busy
//! node is larger than any request), so neither side can be made to buffer without limit.
//!
//! The protocol is ours, not the reference plugin's Go net/rpc: the plugin and daemon ship together.

use std::io::{self, BufRead, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::dhcp::Lease;
use crate::dhcp6::Leased6;
use crate::lease_state::LeaseState;

/// Version of this protocol. Bumped on any incompatible change to [`Request`] or [`Response`].
pub const PROTOCOL_VERSION: u32 = 1;

/// Default path of the daemon's socket, the reference daemon's default (`-socketpath`).
pub const DEFAULT_SOCKET_PATH: &str = "/run/cni/dhcp.sock";

/// Largest request frame in bytes, newline included. A request is an attachment plus a few
/// options, well under 1 KiB in practice.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Largest response frame in bytes, newline included (a lease list of thousands of leases).
pub(crate) const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// One container interface, the unit a lease belongs to (CNI spec §"Attachment": container ID,
/// network name and interface name identify it).
///
/// Ordered by container ID, then network name, then ifname: the order of every lease list.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Attachment {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// The network configuration's `name`.
    pub network: String,
    /// `CNI_IFNAME`, the interface inside the container.
    pub ifname: String,
}

impl std::fmt::Display for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.container_id, self.network, self.ifname)
    }
}

/// The IP family of a lease: DHCPv4 (RFC 2131) or DHCPv6 (RFC 8415). An attachment holds at
/// most one lease of each; JSON `"ipv4"` / `"ipv6"`, absent (meaning `ipv4`) where records
/// predate DHCPv6.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// DHCPv4, the default.
    #[default]
    Ipv4,
    /// DHCPv6 IA_NA.
    Ipv6,
}

impl Family {
    /// Whether this is [`Family::Ipv4`] (for `skip_serializing_if`).
    pub fn is_ipv4(&self) -> bool {
        *self == Family::Ipv4
    }

    /// The protocol's name, `DHCPv4` or `DHCPv6`.
    pub fn protocol(self) -> &'static str {
        match self {
            Family::Ipv4 => "DHCPv4",
            Family::Ipv6 => "DHCPv6",
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        })
    }
}

/// What a DHCPv4 lease puts in the BOOTP `chaddr` field (RFC 2131 §2): the ipam key `chaddr`
/// and the daemon's `-chaddr` flag. JSON and flag values `"link"` / `"derived"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ChaddrPolicy {
    /// The interface's MAC, as the reference plugin sends (on ipvlan, the master's, shared by
    /// every slave). The default except on ipvlan slaves.
    Link,
    /// An address of the lease's own derived from its client identifier
    /// ([`crate::dhcp::message::derived_chaddr`]); Ethernet frames still carry the link's
    /// MAC. The default on ipvlan slaves: servers that choose or key by chaddr then treat each
    /// container apart (docs/design.md, *A chaddr per container*).
    Derived,
}

/// DHCPv6 parameters of an ADD (the ipam keys `dhcp6` and `provide`'s DHCPv6 entries).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dhcp6Options {
    /// DUID bytes replacing the per-container DUID-UUID (ipam `provide` of `dhcp6-duid`; at
    /// most 130 bytes, RFC 8415 §11.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duid: Option<Vec<u8>>,
    /// IAID replacing the one derived from the ifname (ipam `provide` of `dhcp6-iaid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iaid: Option<u32>,
}

/// One entry of `cni.dev/valid-attachments` (CNI spec 1.1.0 §"GC"): an attachment still in use.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ValidAttachment {
    /// `containerID` of the entry.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// `ifname` of the entry.
    pub ifname: String,
}

/// What the plugin passes for an ADD besides the attachment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AddOptions {
    /// `CNI_NETNS`: path of the container's network namespace file.
    pub netns: String,
    /// The ipam key `broadcast`: `Some` overrides the daemon's policy (see the daemon's docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcast: Option<bool>,
    /// The ipam key `chaddr`: `Some` overrides the daemon's chaddr policy ([`ChaddrPolicy`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chaddr: Option<ChaddrPolicy>,
    /// Host name to send as option 12 (RFC 2132 §3.14), when configured (ipam `provide` of
    /// `host-name`, e.g. from CNI_ARGS `K8S_POD_NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Option 61 bytes replacing the default client identifier (ipam `provide` of
    /// `dhcp-client-identifier`), when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<Vec<u8>>,
    /// Further options to send, as (code, data) (ipam `provide`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provided: Vec<(u8, Vec<u8>)>,
    /// Option 55 codes replacing the default list (ipam `request`), when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter_request_list: Option<Vec<u8>>,
    /// The ipam `priority`: metric of every route in the ADD result, so that the routes the
    /// daemon puts back after a lost lease returns are the same ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// The ipam key `unicastDiscover: false`: send every DHCPDISCOVER and DHCPREQUEST as an
    /// Ethernet broadcast, also the first one to a server the daemon knows.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_unicast_discover: bool,
    /// The ipam key `dhcp4: false`: no DHCPv4 lease (an IPv6-only network).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_dhcp4: bool,
    /// The ipam key `dhcp6: true`: a DHCPv6 lease too, with these parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp6: Option<Dhcp6Options>,
}

impl AddOptions {
    /// The families the ADD asks for, IPv4 first.
    pub fn families(&self) -> Vec<Family> {
        let mut families = Vec::new();
        if !self.no_dhcp4 {
            families.push(Family::Ipv4);
        }
        if self.dhcp6.is_some() {
            families.push(Family::Ipv6);
        }
        families
    }
}

/// A request from a plugin. Serialized with a `command` tag, e.g.
/// `{"version":1,"command":"add","attachment":{...},"options":{...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "lowercase", deny_unknown_fields)]
pub enum Request {
    /// CNI ADD: acquire (or return the already held) lease for the attachment.
    Add {
        /// Protocol version, [`PROTOCOL_VERSION`].
        version: u32,
        /// The attachment.
        attachment: Attachment,
        /// ADD parameters.
        options: AddOptions,
    },
    /// CNI DEL: send DHCPRELEASE and forget the lease. Unknown attachments succeed.
    Del {
        /// Protocol version.
        version: u32,
        /// The attachment.
        attachment: Attachment,
    },
    /// CNI CHECK: the lease is held. Never acquires one.
    Check {
        /// Protocol version.
        version: u32,
        /// The attachment.
        attachment: Attachment,
        /// The families whose leases must be held; empty means IPv4 alone (what plugins
        /// before DHCPv6 sent).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        families: Vec<Family>,
    },
    /// CNI STATUS: is the daemon able to serve ADDs.
    Status {
        /// Protocol version.
        version: u32,
    },
    /// CNI GC (spec 1.1.0 §"GC"): release every lease of `network` whose attachment is not in
    /// `valid` (the runtime's `cni.dev/valid-attachments`).
    Gc {
        /// Protocol version.
        version: u32,
        /// The network configuration's `name`.
        network: String,
        /// Attachments still in use on that network.
        valid: Vec<ValidAttachment>,
    },
    /// All leases, for `dhcp-leases`. The records carry no [`LeaseRecord::history`].
    List {
        /// Protocol version.
        version: u32,
    },
    /// One attachment's lease with its [`LeaseRecord::history`], for `dhcp-leases show`.
    /// Answered with [`Response::Lease`], or an error (code 3) when the daemon has no slot
    /// for the attachment. Never acquires or changes anything.
    Show {
        /// Protocol version.
        version: u32,
        /// The attachment.
        attachment: Attachment,
    },
}

impl Request {
    /// The request's protocol version field.
    pub fn version(&self) -> u32 {
        match self {
            Request::Add { version, .. }
            | Request::Del { version, .. }
            | Request::Check { version, .. }
            | Request::Status { version }
            | Request::Gc { version, .. }
            | Request::List { version }
            | Request::Show { version, .. } => *version,
        }
    }
}

/// What every view of a lease starts with, whatever its source: whose lease it is, where, its
/// state and the lease itself. The first keys of both [`LeaseRecord`] (the protocol) and
/// [`crate::leases_view::LeaseView`] (`dhcp-leases --json`), each of which flattens it
/// (`#[serde(flatten)]`) where these keys have always been, so that the two versioned schemas
/// share these fields without copying them one by one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseCore {
    /// Whose lease.
    pub attachment: Attachment,
    /// `CNI_NETNS` at ADD time.
    pub netns: String,
    /// Which protocol the lease is of (`"ipv4"`, `"ipv6"`); read as IPv4 when absent (from a
    /// daemon of before DHCPv6).
    #[serde(default)]
    pub family: Family,
    /// Lower-case hex without separators: option 61 bytes as sent (IPv4), the DUID of the
    /// Client Identifier option 1 (IPv6, RFC 8415 §21.2).
    pub client_id: String,
    /// DHCPv4: the chaddr sent (`aa:bb:cc:dd:ee:ff`), the interface's MAC or one derived
    /// from the client identifier ([`ChaddrPolicy`]); absent for IPv6 and from daemons of
    /// before the chaddr policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chaddr: Option<String>,
    /// The lease's state: the client's RFC 2131 state (`SELECTING`, `REQUESTING`, `BOUND`,
    /// `RENEWING`, `REBINDING`, `EXPIRED`, ...) or the daemon's own (`LOST`); read offline
    /// from a lease file, as last saved or `EXPIRED` once run out. JSON: its name, a string
    /// ([`LeaseState`]).
    pub state: LeaseState,
    /// Whether DISCOVER/REQUEST carry the BOOTP broadcast flag, and why (`ipam`, `daemon`, or
    /// `auto: ipvlan slave` / `auto: not ipvlan`).
    pub broadcast: bool,
    /// Where [`LeaseCore::broadcast`] came from.
    pub broadcast_reason: String,
    /// The DHCPv4 lease as last acknowledged by the server; `None` before the first DHCPACK
    /// (and for IPv6).
    pub lease: Option<Lease>,
    /// The DHCPv6 lease as last granted, with what Router Advertisements told of its link;
    /// `None` before the first REPLY (and for IPv4).
    #[serde(default)]
    pub lease6: Option<Leased6>,
}

/// What the daemon knows of one lease: the payload of ADD, CHECK and LIST responses. JSON: the
/// keys of [`LeaseCore`] first, then the rest in field order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Whose lease, where, its state and lease.
    #[serde(flatten)]
    pub core: LeaseCore,
    /// Seconds from the response until T1, T2 and expiry; `None` when not bound.
    pub t1_in: Option<u64>,
    /// Seconds until T2.
    pub t2_in: Option<u64>,
    /// Seconds until the lease expires.
    pub expires_in: Option<u64>,
    /// Successful renewals (RENEWING or REBINDING answered with DHCPACK).
    pub renewals: u32,
    /// The address held before the server moved this attachment to another one (after a
    /// DHCPNAK or an expiry), if that happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_address: Option<std::net::IpAddr>,
    /// The last error met, for operators.
    pub last_error: Option<String>,
    /// Routes of the lease worth an operator's attention ([`Lease::route_warnings`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// When the lease's times count from (RFC 2131 §4.4.1), wall clock, milliseconds since the
    /// Unix epoch; `None` when not bound or the lease is infinite. The daemon converts its
    /// monotonic timers at response time: `now_wall - (now_monotonic - instant)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_unix_ms: Option<u64>,
    /// T1 (with the client's fuzz), wall clock, milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t1_unix_ms: Option<u64>,
    /// T2 (with fuzz), milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t2_unix_ms: Option<u64>,
    /// Expiry, milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_unix_ms: Option<u64>,
    /// The last `HISTORY_LEN` transactions of this attachment, oldest first: only in the
    /// answer to [`Request::Show`] (`None` in ADD, CHECK and LIST answers, to keep them small).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<Transaction>>,
}

/// How many [`Transaction`]s the daemon keeps per attachment.
pub(crate) const HISTORY_LEN: usize = 32;

/// One entry of a lease's history: a message sent or received, or something that happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// When, wall clock, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// Which way.
    pub direction: Direction,
    /// What, for operators: `DHCPREQUEST to 198.18.0.1 (RENEWING)`, `DHCPACK 198.18.0.100 lease
    /// 3600s`, `DHCPNAK from 198.18.0.1`, `address withdrawn`, ...
    pub message: String,
}

/// [`Transaction::direction`]. JSON: `"sent"`, `"received"`, `"event"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// A message the daemon sent to a server.
    Sent,
    /// A message the daemon received from a server.
    Received,
    /// Anything else: a timer fired, the lease expired, the address was removed, ...
    Event,
}

/// The daemon's answer. `{"version":1,"result":"lease","record":{...}}` and so on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum Response {
    /// ADD, CHECK and SHOW: the attachment's lease.
    Lease {
        /// Protocol version.
        version: u32,
        /// The lease: the IPv4 one when the attachment has one, else the IPv6 one.
        record: Box<LeaseRecord>,
        /// The attachment's other lease (IPv6 beside IPv4), if it has one.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        also: Vec<LeaseRecord>,
    },
    /// DEL and STATUS: done.
    Ok {
        /// Protocol version.
        version: u32,
    },
    /// LIST.
    Leases {
        /// Protocol version.
        version: u32,
        /// Every lease the daemon holds, sorted by attachment.
        records: Vec<LeaseRecord>,
    },
    /// Any failure, as a CNI error (code per the CNI spec's table: 7 bad config, 11 try again
    /// later, 50 plugin not available, ...).
    Error {
        /// Protocol version.
        version: u32,
        /// CNI error code.
        code: u32,
        /// One-line message.
        msg: String,
        /// Longer explanation.
        details: String,
    },
}

impl Response {
    /// An error response with the current version.
    pub fn error(code: u32, msg: impl Into<String>, details: impl Into<String>) -> Response {
        Response::Error {
            version: PROTOCOL_VERSION,
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Transport error, including a read timeout.
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    /// The peer sent more than the limit without a newline.
    #[error("frame larger than {0} bytes")]
    TooLarge(usize),
    /// The peer closed the connection before a complete frame.
    #[error("connection closed before a complete frame")]
    Truncated,
    /// The frame is not the JSON we expect.
    #[error("malformed frame: {0}")]
    Malformed(#[from] serde_json::Error),
    /// The peer speaks another version of this protocol.
    #[error("protocol version {0} not supported (this build speaks {PROTOCOL_VERSION})")]
    Version(u32),
}

/// Serializes `value` as one frame: compact JSON and a newline.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing our own types cannot fail: they hold no maps with non-string keys.
    let mut out = serde_json::to_vec(value).unwrap_or_default();
    out.push(b'\n');
    out
}

/// Decodes one frame (with or without its trailing newline) and checks its version.
pub fn decode_request(frame: &[u8]) -> Result<Request, FrameError> {
    if frame.len() > MAX_REQUEST_BYTES {
        return Err(FrameError::TooLarge(MAX_REQUEST_BYTES));
    }
    // Read the version first so that a newer peer gets a clear version error, not a field error.
    #[derive(Deserialize)]
    struct Versioned {
        version: u32,
    }
    let v: Versioned = serde_json::from_slice(frame)?;
    if v.version != PROTOCOL_VERSION {
        return Err(FrameError::Version(v.version));
    }
    Ok(serde_json::from_slice(frame)?)
}

/// Reads one newline-terminated frame of at most `limit` bytes from a blocking reader.
pub fn read_frame(reader: &mut impl BufRead, limit: usize) -> Result<Vec<u8>, FrameError> {
    let mut buf = Vec::new();
    let n = io::Read::take(reader, limit as u64).read_until(b'\n', &mut buf)?;
    if buf.last() != Some(&b'\n') {
        return Err(if n >= limit {
            FrameError::TooLarge(limit)
        } else {
            FrameError::Truncated
        });
    }
    Ok(buf)
}

/// Error of [`call`]: could not reach the daemon, or it failed to answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// `connect(2)` failed: the daemon is not running or the path is wrong.
    #[error(
        "cannot reach the DHCP daemon at {path}: {source}; start it with `dhcp daemon -socketpath {path}` (or enable the cni-dhcp.socket systemd unit)"
    )]
    Connect {
        /// The socket path tried.
        path: String,
        /// The connect error.
        source: io::Error,
    },
    /// Sending or receiving failed after connecting.
    #[error("talking to the DHCP daemon at {path}: {source}")]
    Frame {
        /// The socket path.
        path: String,
        /// What went wrong.
        source: FrameError,
    },
}

/// Sends `request` to the daemon at `socket_path` and waits up to `timeout` for its response.
///
/// Blocking; used by the short-lived plugin processes.
pub fn call(
    socket_path: &Path,
    request: &Request,
    timeout: Duration,
) -> Result<Response, CallError> {
    let path = socket_path.display().to_string();
    let mut stream = UnixStream::connect(socket_path).map_err(|source| CallError::Connect {
        path: path.clone(),
        source,
    })?;
    let frame_err = |source: FrameError| CallError::Frame {
        path: path.clone(),
        source,
    };
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| frame_err(e.into()))?;
    // A daemon that refuses us (SO_PEERCRED) answers and closes before reading: our write may
    // then fail with EPIPE while its explanation waits in our receive buffer. Read it anyway.
    let written = stream.write_all(&encode(request));
    let mut reader = io::BufReader::new(stream);
    let frame = match (read_frame(&mut reader, MAX_RESPONSE_BYTES), written) {
        (Ok(frame), _) => frame,
        (Err(_), Err(write_error)) => return Err(frame_err(write_error.into())),
        (Err(read_error), Ok(())) => return Err(frame_err(read_error)),
    };
    let response: Response = serde_json::from_slice(&frame).map_err(|e| frame_err(e.into()))?;
    let version = match &response {
        Response::Lease { version, .. }
        | Response::Ok { version }
        | Response::Leases { version, .. }
        | Response::Error { version, .. } => *version,
    };
    if version != PROTOCOL_VERSION {
        return Err(frame_err(FrameError::Version(version)));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attachment() -> Attachment {
        Attachment {
            container_id: "c1".into(),
            network: "net".into(),
            ifname: "eth0".into(),
        }
    }

    #[test]
    fn request_round_trip() {
        let req = Request::Add {
            version: PROTOCOL_VERSION,
            attachment: attachment(),
            options: AddOptions {
                no_unicast_discover: true,
                no_dhcp4: false,
                dhcp6: None,
                netns: "/var/run/netns/x".into(),
                broadcast: Some(true),
                chaddr: Some(ChaddrPolicy::Derived),
                hostname: Some("web-0".into()),
                client_id: None,
                provided: vec![(60, b"acme".to_vec())],
                parameter_request_list: Some(vec![1, 3, 42]),
                priority: Some(100),
            },
        };
        let frame = encode(&req);
        assert_eq!(frame.last(), Some(&b'\n'));
        assert_eq!(decode_request(&frame).unwrap(), req);
    }

    #[test]
    fn show_round_trip_and_old_records_still_parse() {
        let req = Request::Show {
            version: PROTOCOL_VERSION,
            attachment: attachment(),
        };
        assert_eq!(decode_request(&encode(&req)).unwrap(), req);
        // A record from a daemon without the absolute times and history.
        let old = r#"{"attachment":{"container_id":"c1","network":"net","ifname":"eth0"},
            "netns":"/x","client_id":"00","state":"BOUND","broadcast":false,
            "broadcast_reason":"auto","lease":null,"t1_in":1,"t2_in":2,"expires_in":3,
            "renewals":0,"last_error":null}"#;
        let r: LeaseRecord = serde_json::from_str(old).unwrap();
        assert_eq!((r.t1_unix_ms, r.history), (None, None));
        let t = Transaction {
            at_unix_ms: 5,
            direction: Direction::Received,
            message: "DHCPACK".into(),
        };
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"at_unix_ms":5,"direction":"received","message":"DHCPACK"}"#
        );
    }

    #[test]
    fn lease_record_keys_keep_their_order() {
        // The core's keys are flattened where they have always been: first, in field order.
        let r = LeaseRecord {
            core: LeaseCore {
                family: Default::default(),
                lease6: None,
                attachment: attachment(),
                netns: "/x".into(),
                client_id: "00".into(),
                chaddr: Some("02:00:00:00:00:01".into()),
                state: "BOUND".into(),
                broadcast: false,
                broadcast_reason: "auto".into(),
                lease: None,
            },
            t1_in: Some(1),
            t2_in: Some(2),
            expires_in: Some(3),
            renewals: 0,
            previous_address: Some("198.18.0.9".parse().unwrap()),
            last_error: None,
            warnings: vec!["w".into()],
            granted_unix_ms: Some(4),
            t1_unix_ms: Some(5),
            t2_unix_ms: Some(6),
            expires_unix_ms: Some(7),
            history: Some(vec![]),
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"attachment":{"container_id":"c1","network":"net","ifname":"eth0"},"#,
                r#""netns":"/x","family":"ipv4","client_id":"00","chaddr":"02:00:00:00:00:01","#,
                r#""state":"BOUND","#,
                r#""broadcast":false,"broadcast_reason":"auto","lease":null,"lease6":null,"#,
                r#""t1_in":1,"t2_in":2,"expires_in":3,"#,
                r#""renewals":0,"previous_address":"198.18.0.9","last_error":null,"#,
                r#""warnings":["w"],"granted_unix_ms":4,"t1_unix_ms":5,"t2_unix_ms":6,"#,
                r#""expires_unix_ms":7,"history":[]}"#
            )
        );
        assert_eq!(serde_json::from_str::<LeaseRecord>(&json).unwrap(), r);
    }

    #[test]
    fn other_version_is_refused_by_version() {
        let frame = br#"{"command":"status","version":2}"#;
        assert!(matches!(decode_request(frame), Err(FrameError::Version(2))));
    }

    #[test]
    fn unknown_command_and_garbage_are_malformed() {
        assert!(matches!(
            decode_request(br#"{"command":"format-disk","version":1}"#),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            decode_request(b"\x00\xff garbage"),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn read_frame_enforces_limit() {
        let big = vec![b'a'; 100];
        let mut r = io::Cursor::new(big);
        assert!(matches!(
            read_frame(&mut r, 10),
            Err(FrameError::TooLarge(10))
        ));
        let mut r = io::Cursor::new(b"abc".to_vec());
        assert!(matches!(read_frame(&mut r, 10), Err(FrameError::Truncated)));
        let mut r = io::Cursor::new(b"abc\nrest".to_vec());
        assert_eq!(read_frame(&mut r, 10).unwrap(), b"abc\n");
    }

    #[test]
    fn connect_error_names_path_and_how_to_start() {
        let err = call(
            Path::new("/nonexistent/dhcp.sock"),
            &Request::Status {
                version: PROTOCOL_VERSION,
            },
            Duration::from_secs(1),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("/nonexistent/dhcp.sock"), "{text}");
        assert!(text.contains("dhcp daemon"), "{text}");
    }
}
