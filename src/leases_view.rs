//! What `dhcp-leases` shows: one record type ([`LeaseView`]) built from either source, the
//! live daemon ([`LeaseView::from_live`], a [`LeaseRecord`] of `LIST`/`SHOW`) or the state
//! directory of a stopped daemon (`LeaseView::from_stored`, a [`lease_file::Record`]), and the
//! renderings of it: the table, the detail of `show`, and JSON.
//!
//! # JSON schema, version 1 ([`SCHEMA_VERSION`])
//!
//! `dhcp-leases --json` and `dhcp-leases show ID --json` print a JSON **array** with one object
//! per lease (an empty array when there is none), sorted by container ID, network, ifname.
//! Every key below is always present (`null` when unknown or not applicable); keys may be added
//! in later versions of the same `schema_version`, never removed or changed in meaning.
//!
//! | key | type | meaning |
//! | --- | --- | --- |
//! | `schema_version` | integer | `1` |
//! | `source` | string | `"daemon"` (live) or `"state-dir"` (offline, read from the files) |
//! | `attachment` | object | `container_id` (full), `network`, `ifname` |
//! | `netns` | string | `CNI_NETNS` given at ADD |
//! | `family` | string | `"ipv4"` (DHCPv4) or `"ipv6"` (DHCPv6); an attachment with both has one record of each, IPv4 first |
//! | `client_id` | string | lower-case hex, no separators: option 61 as sent (IPv4), the DUID (IPv6) |
//! | `state` | string | the client's state, upper case (RFC 2131's `BOUND`, `RENEWING`, ...; DHCPv6 uses the same names, plus `SOLICITING`); offline: as last saved, or `EXPIRED` when the lease has run out since |
//! | `chaddr` | string or absent | DHCPv4: the chaddr sent, `aa:bb:cc:dd:ee:ff` (the interface's MAC, or one derived from the client identifier on ipvlan); absent for IPv6 and from daemons of before it |
//! | `broadcast` | bool | the BOOTP broadcast flag in use |
//! | `broadcast_reason` | string | why (`ipam`, `daemon`, `auto: ...`) |
//! | `lease` | object or null | the last DHCPACK: `address`, `prefix_len`, `routers`, `dns_servers`, `domain_name`, `domain_search`, `classless_routes`, `static_routes`, `mtu`, `broadcast_address`, `server_id`, `lease_time`, `renewal_time`, `rebinding_time` (seconds) |
//! | `lease6` | object or null | the last DHCPv6 lease: `address`, `prefix_len` (from the RA, 128 without one), `router` (the RA's link-local source, or absent), `preferred_lifetime`, `valid_lifetime`, `t1`, `t2` (seconds), `iaid`, `server_id` (hex bytes as an array), `dns_servers`, `domain_search` |
//! | `granted` | string or null | RFC 3339 UTC, milliseconds (`2025-06-01T12:00:00.000Z`): when the lease's times count from |
//! | `t1`, `t2`, `expiry` | string or null | RFC 3339 UTC: T1 (renew), T2 (rebind), expiry; `null` when not bound or infinite. Live: the daemon's schedule (with its random fuzz); offline: from the lease times |
//! | `t1_in`, `t2_in`, `expires_in` | integer or null | seconds from the listing to T1, T2, expiry (0 once passed) |
//! | `renewals` | integer | DHCPACKs (DHCPv6: REPLYs) received in RENEWING or REBINDING |
//! | `previous_address` | string or null | the address held before the server gave another one |
//! | `last_error` | string or null | the daemon's last error for this lease (live only) |
//! | `history` | array or null | `show` against a live daemon: the last 32 transactions, oldest first, each `{"at": RFC 3339, "direction": "sent" \| "received" \| "event", "message": string}`; `null` in listings and offline (the daemon keeps it in memory only) |
//!
//! The top level is an array (not an object) so that the records stay what `dhcp-leases
//! --json` printed before versioning; `schema_version` is therefore in every record.
//!
//! # Untrusted text
//!
//! Every string shown comes from the daemon or from state files a person may have edited:
//! container ID, network, ifname, netns, state, client ID, broadcast reason, domain names, last
//! error, history messages. None may reach the terminal raw (an ESC sequence can clear the
//! screen, retitle the window or fake a line; a CR can overwrite a line).
//!
//! - Table and detail: each such string goes through [`escape_text`], the one helper for text
//!   output: `\` becomes `\\`; newline, CR and tab become `\n`, `\r`, `\t`; every other
//!   control character ([`char::is_control`]: U+0000 to U+001F, DEL, U+0080 to U+009F) and the
//!   invisible characters that reorder or break lines (bidirectional controls U+061C, U+200E,
//!   U+200F, U+202A to U+202E, U+2066 to U+2069; U+2028, U+2029) become `\u{X}` with X in
//!   lower-case hex, as Rust's `char::escape_debug` writes them (ESC is `\u{1b}`). Quotes are
//!   left alone. The output's own newlines (between lines) are the only raw control characters.
//! - JSON: serde_json escapes U+0000 to U+001F, `"` and `\`; [`to_json`] also writes the
//!   characters above that JSON allows raw (DEL, U+0080 to U+009F, the bidirectional controls,
//!   U+2028, U+2029) as `\uXXXX`, which every JSON parser reads back as the same characters.

use std::net::Ipv4Addr;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::dhcp::client::State;
use crate::lease_file::{self, Granted};
use crate::lease_state::LeaseState;
use crate::rpc::{Direction, LeaseCore, LeaseRecord, Transaction};

/// Version of the JSON schema documented above.
pub const SCHEMA_VERSION: u32 = 1;

/// Longest `last_error` shown in the table, in characters.
pub(crate) const ERROR_WIDTH: usize = 40;

/// Where a [`LeaseView`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// The running daemon, over its socket.
    Daemon,
    /// The state directory of a stopped daemon.
    StateDir,
}

/// One history entry as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// RFC 3339 UTC, milliseconds.
    pub at: String,
    /// Which way.
    pub direction: Direction,
    /// What.
    pub message: String,
}

/// One lease as `dhcp-leases` shows it; its serde form is the JSON schema of the module docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseView {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Live or offline.
    pub source: Source,
    /// Whose lease, where, its state and last DHCPACK: the same keys as the protocol's.
    #[serde(flatten)]
    pub core: LeaseCore,
    /// Grant time, RFC 3339.
    pub granted: Option<String>,
    /// T1, RFC 3339.
    pub t1: Option<String>,
    /// T2, RFC 3339.
    pub t2: Option<String>,
    /// Expiry, RFC 3339.
    pub expiry: Option<String>,
    /// Seconds to T1.
    pub t1_in: Option<u64>,
    /// Seconds to T2.
    pub t2_in: Option<u64>,
    /// Seconds to expiry.
    pub expires_in: Option<u64>,
    /// Renewals done.
    pub renewals: u32,
    /// Address held before.
    pub previous_address: Option<std::net::IpAddr>,
    /// Last error.
    pub last_error: Option<String>,
    /// Recent transactions (`show`, live only).
    pub history: Option<Vec<HistoryEntry>>,
}

/// RFC 3339 UTC with milliseconds of a Unix time in milliseconds.
pub(crate) fn rfc3339(unix_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(unix_ms)).to_string()
}

impl LeaseView {
    /// From the daemon's answer.
    pub fn from_live(r: LeaseRecord) -> LeaseView {
        LeaseView {
            schema_version: SCHEMA_VERSION,
            source: Source::Daemon,
            core: r.core,
            granted: r.granted_unix_ms.map(rfc3339),
            t1: r.t1_unix_ms.map(rfc3339),
            t2: r.t2_unix_ms.map(rfc3339),
            expiry: r.expires_unix_ms.map(rfc3339),
            t1_in: r.t1_in,
            t2_in: r.t2_in,
            expires_in: r.expires_in,
            renewals: r.renewals,
            previous_address: r.previous_address,
            last_error: r.last_error,
            history: r
                .history
                .map(|h| h.into_iter().map(history_entry).collect()),
        }
    }

    /// From a saved record, with times as of `now` ([`Granted::now`]): the grant is placed on
    /// the wall clock by how long ago it was (boot time when the boot is the same, so a stepped
    /// wall clock does not skew it), T1/T2/expiry from the lease's own times (no fuzz). A lease
    /// that has run out shows as `EXPIRED` with no time left; an infinite one has no T1, T2,
    /// expiry.
    pub(crate) fn from_stored(stored: &lease_file::Stored, now: &Granted) -> LeaseView {
        // (granted, T1, T2, lifetime in seconds) and the family's own part of the core.
        let (granted, t1, t2, lifetime) = match stored {
            lease_file::Stored::V4(r) => (
                &r.granted,
                r.lease.renewal_time,
                r.lease.rebinding_time,
                r.lease.lease_time,
            ),
            lease_file::Stored::V6(r) => (
                &r.granted,
                r.lease.lease.t1,
                r.lease.lease.t2,
                r.lease.lease.valid_lifetime,
            ),
        };
        let elapsed = granted.elapsed_until(now);
        let granted_ms = now
            .unix_ms
            .saturating_sub(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
        let infinite = lifetime == u32::MAX;
        let expired = !infinite && elapsed >= Duration::from_secs(lifetime.into());
        let at = |secs: u32| {
            (!infinite).then(|| granted_ms.saturating_add(u64::from(secs).saturating_mul(1000)))
        };
        let left = |secs: u32| {
            (!infinite && !expired).then(|| {
                Duration::from_secs(secs.into())
                    .saturating_sub(elapsed)
                    .as_secs()
            })
        };
        let state = |saved: &LeaseState| {
            if expired {
                LeaseState::Client(State::Expired)
            } else {
                saved.clone()
            }
        };
        let (core, renewals) = match stored {
            lease_file::Stored::V4(r) => (
                LeaseCore {
                    attachment: r.attachment.clone(),
                    family: crate::rpc::Family::Ipv4,
                    netns: r.netns.clone(),
                    client_id: hex::encode(&r.client_id),
                    chaddr: Some(lease_file::mac::to_string(&r.sent_chaddr())),
                    state: state(&r.state),
                    broadcast: r.broadcast,
                    broadcast_reason: r.broadcast_reason.clone(),
                    lease: Some(r.lease.clone()),
                    lease6: None,
                },
                r.renewals,
            ),
            lease_file::Stored::V6(r) => (
                LeaseCore {
                    attachment: r.attachment.clone(),
                    family: crate::rpc::Family::Ipv6,
                    netns: r.netns.clone(),
                    client_id: hex::encode(&r.duid),
                    chaddr: None,
                    state: state(&r.state),
                    broadcast: false,
                    broadcast_reason: String::new(),
                    lease: None,
                    lease6: Some(r.lease.clone()),
                },
                r.renewals,
            ),
        };
        LeaseView {
            schema_version: SCHEMA_VERSION,
            source: Source::StateDir,
            core,
            granted: Some(rfc3339(granted_ms)),
            t1: at(t1).map(rfc3339),
            t2: at(t2).map(rfc3339),
            expiry: at(lifetime).map(rfc3339),
            t1_in: left(t1),
            t2_in: left(t2),
            expires_in: left(lifetime),
            renewals,
            previous_address: None,
            last_error: None,
            history: None,
        }
    }

    /// The gateway: the default route's next hop (DHCPv4: option 121 when sent, else option
    /// 3; DHCPv6: the router of the link's RA).
    pub fn gateway(&self) -> Option<std::net::IpAddr> {
        if let Some(l6) = &self.core.lease6 {
            return l6.router.map(std::net::IpAddr::V6);
        }
        let lease = self.core.lease.as_ref()?;
        lease
            .routes()
            .iter()
            .find(|r| r.dst.prefix_len() == 0)
            .map(|r| std::net::IpAddr::V4(r.gateway))
    }
}

fn history_entry(t: Transaction) -> HistoryEntry {
    HistoryEntry {
        at: rfc3339(t.at_unix_ms),
        direction: t.direction,
        message: t.message,
    }
}

/// Reads a state directory without disturbing a daemon that may run on it
/// ([`lease_file::read_all`]). Returns the leases and one line per file that could not be used
/// (path and reason, through [`escape_text`]: a reason can quote the file's contents); fails
/// when the directory cannot be listed.
pub fn load_state_dir(
    dir: &std::path::Path,
    now: &Granted,
) -> std::io::Result<(Vec<LeaseView>, Vec<String>)> {
    let (records, errors) = lease_file::read_all(dir)?;
    Ok((
        records
            .iter()
            .map(|r| LeaseView::from_stored(r, now))
            .collect(),
        errors
            .iter()
            .map(|e| escape_text(&e.to_string()).into_owned())
            .collect(),
    ))
}

/// The listing filters; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Container ID prefix.
    pub container: Option<String>,
    /// Network name, exact.
    pub network: Option<String>,
    /// State, case-insensitive.
    pub state: Option<String>,
}

impl Filter {
    /// Whether `v` passes every filter given.
    pub fn matches(&self, v: &LeaseView) -> bool {
        self.container
            .as_ref()
            .is_none_or(|c| v.core.attachment.container_id.starts_with(c.as_str()))
            && self
                .network
                .as_ref()
                .is_none_or(|n| v.core.attachment.network == *n)
            && self
                .state
                .as_ref()
                .is_none_or(|s| v.core.state.as_str().eq_ignore_ascii_case(s))
    }
}

/// The leases `show ID` means: those whose container ID is `id`, else those whose container ID
/// starts with `id` if they all belong to one container. `Err` explains none or ambiguous (the
/// IDs in it through [`escape_text`]).
pub fn select<'a>(views: &'a [LeaseView], id: &str) -> Result<Vec<&'a LeaseView>, String> {
    let exact: Vec<_> = views
        .iter()
        .filter(|v| v.core.attachment.container_id == id)
        .collect();
    if !exact.is_empty() {
        return Ok(exact);
    }
    let matching: Vec<_> = views
        .iter()
        .filter(|v| v.core.attachment.container_id.starts_with(id))
        .collect();
    let mut ids: Vec<&str> = matching
        .iter()
        .map(|v| v.core.attachment.container_id.as_str())
        .collect();
    ids.dedup();
    match ids.len() {
        0 => Err(format!("no lease for a container ID starting with {id:?}")),
        1 => Ok(matching),
        _ => Err(format!(
            "{id:?} is ambiguous: it starts the container IDs {}",
            escape_text(&ids.join(", "))
        )),
    }
}

/// `s` safe to print on a terminal: control and line-reordering characters escaped as the
/// module documentation ("Untrusted text") lists, `\` doubled so that an escape cannot be
/// forged; borrowed unchanged when there is nothing to escape. Every character of the result
/// is printable (no [`char::is_control`]); the result never contains a newline.
pub fn escape_text(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Invisible characters that reorder text or break lines without being [`char::is_control`]:
/// the Unicode bidirectional formatting characters (UAX #9: ALM, LRM, RLM, LRE, RLE, PDF, LRO,
/// RLO, LRI, RLI, FSI, PDI) and the line and paragraph separators.
fn is_reordering(c: char) -> bool {
    matches!(
        c,
        '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
            | '\u{2028}' | '\u{2029}'
    )
}

fn needs_escape(c: char) -> bool {
    c == '\\' || c.is_control() || is_reordering(c)
}

/// A duration in the two largest units that matter: `45s`, `29m59s`, `1h2m`, `3d4h`; a unit
/// whose count is zero is left out (`30m`, `1h`).
pub fn human(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let pair = |a: u64, ua: &str, b: u64, ub: &str| {
        if b == 0 {
            format!("{a}{ua}")
        } else {
            format!("{a}{ua}{b}{ub}")
        }
    };
    if d > 0 {
        pair(d, "d", h, "h")
    } else if h > 0 {
        pair(h, "h", m, "m")
    } else if m > 0 {
        pair(m, "m", s, "s")
    } else {
        format!("{s}s")
    }
}

fn left(secs: Option<u64>) -> String {
    secs.map_or_else(|| "-".into(), human)
}

/// `s` cut to `max` characters, the last three replaced by `...` when cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(3)).collect();
    out.push_str("...");
    out
}

/// Column titles of [`table`].
pub(crate) const COLUMNS: [&str; 12] = [
    "CONTAINER",
    "NETWORK",
    "IFNAME",
    "ADDRESS",
    "GATEWAY",
    "SERVER",
    "STATE",
    "T1",
    "T2",
    "EXPIRY",
    "RENEWALS",
    "LAST ERROR",
];

/// The aligned table: a header line and one line per lease, columns separated by two spaces,
/// each as wide as its widest cell (in characters), trailing spaces trimmed. Every cell goes
/// through [`escape_text`]; in the last error a newline is shown as a space, then the error is
/// cut to `ERROR_WIDTH` characters.
pub fn table(views: &[LeaseView]) -> String {
    let dash = || "-".to_string();
    let rows: Vec<[String; 12]> = views
        .iter()
        .map(|v| {
            let (address, server) = match (&v.core.lease, &v.core.lease6) {
                (Some(l), _) => (
                    format!("{}/{}", l.address, l.prefix_len),
                    l.server_id.to_string(),
                ),
                // A DUID is long: its first bytes tell servers apart in a table.
                (None, Some(l)) => (
                    format!("{}/{}", l.lease.address, l.prefix_len),
                    truncate(&hex::encode(&l.lease.server_id), 16),
                ),
                (None, None) => (dash(), dash()),
            };
            let text = |s: &str| escape_text(s).into_owned();
            [
                text(
                    &v.core
                        .attachment
                        .container_id
                        .chars()
                        .take(12)
                        .collect::<String>(),
                ),
                text(&v.core.attachment.network),
                text(&v.core.attachment.ifname),
                address,
                v.gateway().map_or_else(dash, |g| g.to_string()),
                server,
                text(v.core.state.as_str()),
                left(v.t1_in),
                left(v.t2_in),
                left(v.expires_in),
                v.renewals.to_string(),
                v.last_error.as_deref().map_or_else(dash, |e| {
                    truncate(&escape_text(&e.replace('\n', " ")), ERROR_WIDTH)
                }),
            ]
        })
        .collect();
    let mut widths = COLUMNS.map(|c| c.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (cell, w) in cells.zip(widths) {
            l.push_str(&format!("{cell:<w$}  "));
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut COLUMNS.iter().copied());
    for row in &rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// One lease in full, for `show`, as `key: value` lines, then the history. Every value and
/// history message goes through [`escape_text`], so each line is one line.
pub fn detail(v: &LeaseView) -> String {
    let opt = |s: Option<String>| s.unwrap_or_else(|| "-".into());
    let when = |t: &Option<String>, secs: Option<u64>| match (t, secs) {
        (Some(t), Some(s)) => format!("{t} (in {})", human(s)),
        (Some(t), None) => t.clone(),
        (None, _) => "-".into(),
    };
    let join = |v: Vec<String>| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(", ")
        }
    };
    let mut rows: Vec<(&str, String)> = vec![
        ("container", v.core.attachment.container_id.clone()),
        ("network", v.core.attachment.network.clone()),
        ("ifname", v.core.attachment.ifname.clone()),
        ("netns", v.core.netns.clone()),
        (
            "source",
            match v.source {
                Source::Daemon => "daemon (live)".into(),
                Source::StateDir => "state directory (offline: the daemon is not asked)".into(),
            },
        ),
        ("family", v.core.family.protocol().to_string()),
        ("state", v.core.state.to_string()),
    ];
    if let Some(l) = &v.core.lease6 {
        let ips = |a: &[std::net::Ipv6Addr]| join(a.iter().map(ToString::to_string).collect());
        rows.extend([
            ("duid", v.core.client_id.clone()),
            ("iaid", format!("{:#010x}", l.lease.iaid)),
            ("address", format!("{}/{}", l.lease.address, l.prefix_len)),
            ("gateway", opt(v.gateway().map(|g| g.to_string()))),
            ("server duid", hex::encode(&l.lease.server_id)),
            ("dns servers", ips(&l.lease.dns_servers)),
            ("search", join(l.lease.domain_search.clone())),
            (
                "lifetimes",
                if l.lease.valid_lifetime == u32::MAX {
                    "infinite".into()
                } else {
                    format!(
                        "valid {}, preferred {} (T1 {}, T2 {})",
                        human(l.lease.valid_lifetime.into()),
                        human(l.lease.preferred_lifetime.into()),
                        human(l.lease.t1.into()),
                        human(l.lease.t2.into())
                    )
                },
            ),
        ]);
    } else if v.core.family == crate::rpc::Family::Ipv6 {
        rows.push(("duid", v.core.client_id.clone()));
        rows.push(("address", "- (no REPLY yet)".into()));
    }
    if v.core.family == crate::rpc::Family::Ipv4 {
        rows.extend([
            ("client id", v.core.client_id.clone()),
            ("chaddr", opt(v.core.chaddr.clone())),
            (
                "broadcast",
                format!("{} ({})", v.core.broadcast, v.core.broadcast_reason),
            ),
        ]);
    }
    match (&v.core.lease, v.core.family) {
        (_, crate::rpc::Family::Ipv6) => {}
        (Some(l), _) => {
            let ips = |a: &[Ipv4Addr]| join(a.iter().map(ToString::to_string).collect());
            rows.extend([
                ("address", format!("{}/{}", l.address, l.prefix_len)),
                ("gateway", opt(v.gateway().map(|g| g.to_string()))),
                ("server", l.server_id.to_string()),
                ("routers", ips(&l.routers)),
                (
                    "routes",
                    join(
                        l.routes()
                            .iter()
                            .map(|r| format!("{} via {}", r.dst, r.gateway))
                            .collect(),
                    ),
                ),
                ("dns servers", ips(&l.dns_servers)),
                ("domain", opt(l.domain_name.clone())),
                ("search", join(l.domain_search.clone())),
                ("mtu", opt(l.mtu.map(|m| m.to_string()))),
                (
                    "lease time",
                    if l.lease_time == u32::MAX {
                        "infinite".into()
                    } else {
                        format!(
                            "{} (T1 {}, T2 {})",
                            human(l.lease_time.into()),
                            human(l.renewal_time.into()),
                            human(l.rebinding_time.into())
                        )
                    },
                ),
            ]);
        }
        (None, _) => rows.push(("address", "- (no DHCPACK yet)".into())),
    }
    rows.extend([
        ("granted", opt(v.granted.clone())),
        ("T1", when(&v.t1, v.t1_in)),
        ("T2", when(&v.t2, v.t2_in)),
        ("expiry", when(&v.expiry, v.expires_in)),
        ("renewals", v.renewals.to_string()),
        (
            "previous address",
            opt(v.previous_address.map(|a| a.to_string())),
        ),
        ("last error", opt(v.last_error.clone())),
    ]);
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    let mut out = String::new();
    for (k, val) in rows {
        out.push_str(&format!(
            "{:<width$} {}\n",
            format!("{k}:"),
            escape_text(&val)
        ));
    }
    match &v.history {
        Some(h) if h.is_empty() => out.push_str("history: none recorded\n"),
        Some(h) => {
            out.push_str(&format!("history (last {}, oldest first):\n", h.len()));
            for e in h {
                let dir = match e.direction {
                    Direction::Sent => "sent",
                    Direction::Received => "received",
                    Direction::Event => "event",
                };
                out.push_str(&format!(
                    "  {}  {dir:<8}  {}\n",
                    escape_text(&e.at),
                    escape_text(&e.message)
                ));
            }
        }
        None if v.source == Source::StateDir => {
            out.push_str("history: not available offline (the daemon keeps it in memory only)\n")
        }
        None => out.push_str("history: not available from this daemon\n"),
    }
    out
}

/// The JSON of the module docs: an array of [`LeaseView`], pretty-printed, with the characters
/// JSON allows raw but a terminal would act on (DEL, U+0080 to U+009F, bidirectional controls,
/// U+2028, U+2029) written as `\uXXXX` escapes (module docs, "Untrusted text").
pub fn to_json<'a>(views: impl IntoIterator<Item = &'a LeaseView>) -> String {
    let views: Vec<&LeaseView> = views.into_iter().collect();
    // Serializing plain structs with string keys cannot fail.
    let json = serde_json::to_string_pretty(&views).unwrap_or_default();
    // serde_json has escaped U+0000 to U+001F, so what is left to escape is only ever inside a
    // string; a `\uXXXX` escape there means the same character. All are in the BMP.
    if !json.chars().any(|c| c.is_control() || is_reordering(c)) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if (c.is_control() && c != '\n') || is_reordering(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::Lease;
    use crate::lease_file::Record;
    use crate::rpc::Attachment;

    fn lease(address: &str) -> Lease {
        crate::dhcp::reply::test_lease(address)
    }

    fn live(id: &str, network: &str, state: &str) -> LeaseView {
        LeaseView::from_live(LeaseRecord {
            core: LeaseCore {
                family: Default::default(),
                lease6: None,
                attachment: Attachment {
                    container_id: id.into(),
                    network: network.into(),
                    ifname: "eth0".into(),
                },
                netns: "/var/run/netns/x".into(),
                client_id: "0063".into(),
                chaddr: Some("02:00:00:00:00:01".into()),
                state: state.into(),
                broadcast: true,
                broadcast_reason: "auto: ipvlan slave".into(),
                lease: Some(lease("198.18.0.100")),
            },
            t1_in: Some(1799),
            t2_in: Some(3149),
            expires_in: Some(3599),
            renewals: 2,
            previous_address: None,
            last_error: None,
            warnings: vec![],
            granted_unix_ms: Some(1_750_000_000_000),
            t1_unix_ms: Some(1_750_000_000_000 + 1_800_000),
            t2_unix_ms: Some(1_750_000_000_000 + 3_150_000),
            expires_unix_ms: Some(1_750_000_000_000 + 3_600_000),
            history: None,
        })
    }

    #[test]
    fn human_durations() {
        for (secs, text) in [
            (0, "0s"),
            (59, "59s"),
            (60, "1m"),
            (1799, "29m59s"),
            (3600, "1h"),
            (3720, "1h2m"),
            (3721, "1h2m"),
            (86_400, "1d"),
            (90_061, "1d1h"),
            (u64::from(u32::MAX), "49710d6h"),
        ] {
            assert_eq!(human(secs), text, "{secs}");
        }
        assert_eq!(left(None), "-");
    }

    #[test]
    fn filters() {
        let views = [
            live("abcdef0123456789", "net1", "BOUND"),
            live("abc999", "net2", "RENEWING"),
            live("zzz", "net1", "BOUND"),
        ];
        let ids = |f: Filter| -> Vec<&str> {
            views
                .iter()
                .filter(|v| f.matches(v))
                .map(|v| v.core.attachment.container_id.as_str())
                .collect()
        };
        assert_eq!(ids(Filter::default()).len(), 3);
        let f = |c: Option<&str>, n: Option<&str>, s: Option<&str>| Filter {
            container: c.map(Into::into),
            network: n.map(Into::into),
            state: s.map(Into::into),
        };
        assert_eq!(
            ids(f(Some("abc"), None, None)),
            ["abcdef0123456789", "abc999"]
        );
        assert_eq!(
            ids(f(None, Some("net1"), None)),
            ["abcdef0123456789", "zzz"]
        );
        assert!(
            ids(f(None, Some("net"), None)).is_empty(),
            "network is exact"
        );
        assert_eq!(ids(f(None, None, Some("renewing"))), ["abc999"]);
        assert_eq!(
            ids(f(Some("abc"), Some("net1"), Some("Bound"))),
            ["abcdef0123456789"]
        );
        // show: exact, unique prefix, ambiguous, none.
        assert_eq!(select(&views, "abc999").unwrap().len(), 1);
        assert_eq!(
            select(&views, "abcd").unwrap()[0]
                .core
                .attachment
                .container_id,
            "abcdef0123456789"
        );
        let err = select(&views, "abc").unwrap_err();
        assert!(err.contains("ambiguous") && err.contains("abc999"), "{err}");
        assert!(select(&views, "q").unwrap_err().contains("no lease"));
    }

    #[test]
    fn table_is_aligned() {
        let mut long = live("0123456789abcdef0123", "a-long-network-name", "BOUND");
        long.last_error = Some("x".repeat(100));
        let mut unbound = live("c2", "n", "SELECTING");
        unbound.core.lease = None;
        (unbound.t1_in, unbound.t2_in, unbound.expires_in) = (None, None, None);
        let out = table(&[long, unbound]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("CONTAINER     NETWORK "), "{out}");
        assert!(
            lines[1].starts_with("0123456789ab  a-long-network-name  eth0 "),
            "{out}"
        );
        // Every column starts at the same offset on every line.
        for title in [
            "NETWORK",
            "ADDRESS",
            "GATEWAY",
            "STATE",
            "T1",
            "EXPIRY",
            "LAST ERROR",
        ] {
            let col = lines[0].find(title).unwrap();
            for l in &lines[1..] {
                assert_eq!(&l[col - 2..col], "  ", "{title}\n{out}");
                assert_ne!(&l[col..=col], " ", "{title}\n{out}");
            }
        }
        let cell = |l: &str, title: &str| {
            let col = lines[0].find(title).unwrap();
            l[col..].split("  ").next().unwrap().trim().to_string()
        };
        let row1: Vec<String> = COLUMNS.iter().map(|t| cell(lines[1], t)).collect();
        assert_eq!(
            row1[3..11],
            [
                "198.18.0.100/24",
                "198.18.0.1",
                "198.18.0.1",
                "BOUND",
                "29m59s",
                "52m29s",
                "59m59s",
                "2"
            ],
            "{out}"
        );
        assert_eq!(row1[11], format!("{}...", "x".repeat(ERROR_WIDTH - 3)));
        let row2: Vec<String> = COLUMNS.iter().map(|t| cell(lines[2], t)).collect();
        assert_eq!(
            row2[3..],
            ["-", "-", "-", "SELECTING", "-", "-", "-", "2", "-"],
            "{out}"
        );
        assert!(!out.lines().any(|l| l.ends_with(' ')));
    }

    #[test]
    fn json_schema() {
        let mut v = live("c1", "n", "BOUND");
        v.history = Some(vec![history_entry(Transaction {
            at_unix_ms: 1_750_000_000_123,
            direction: Direction::Sent,
            message: "DHCPREQUEST to 198.18.0.1 (RENEWING)".into(),
        })]);
        let json: serde_json::Value = serde_json::from_str(&to_json([&v])).unwrap();
        let r = &json.as_array().unwrap()[0];
        let keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = vec![
            "schema_version",
            "source",
            "attachment",
            "family",
            "netns",
            "client_id",
            "chaddr",
            "state",
            "broadcast",
            "broadcast_reason",
            "lease",
            "lease6",
            "granted",
            "t1",
            "t2",
            "expiry",
            "t1_in",
            "t2_in",
            "expires_in",
            "renewals",
            "previous_address",
            "last_error",
            "history",
        ];
        expected.sort();
        let mut keys = keys;
        keys.sort();
        assert_eq!(keys, expected);
        assert_eq!(r["schema_version"], 1);
        assert_eq!(r["source"], "daemon");
        assert_eq!(r["attachment"]["container_id"], "c1");
        assert_eq!(r["lease"]["address"], "198.18.0.100");
        assert_eq!(r["client_id"], "0063");
        assert_eq!(r["previous_address"], serde_json::Value::Null);
        let t = |k: &str| humantime::parse_rfc3339(r[k].as_str().unwrap()).unwrap();
        assert_eq!(
            t("granted"),
            UNIX_EPOCH + Duration::from_millis(1_750_000_000_000)
        );
        assert_eq!(
            t("t1").duration_since(t("granted")).unwrap(),
            Duration::from_secs(1800)
        );
        assert_eq!(
            t("expiry").duration_since(t("granted")).unwrap(),
            Duration::from_secs(3600)
        );
        assert_eq!(r["granted"], "2025-06-15T15:06:40.000Z");
        let h = &r["history"][0];
        assert_eq!(h["direction"], "sent");
        assert_eq!(h["at"], "2025-06-15T15:06:40.123Z");
        humantime::parse_rfc3339(h["at"].as_str().unwrap()).unwrap();
        // The view parses back into itself.
        let back: Vec<LeaseView> = serde_json::from_value(json).unwrap();
        assert_eq!(back, vec![v]);
        assert_eq!(to_json([]), "[]");
    }

    /// Writes `r` into `dir` as the daemon's store does (its file name, its bytes); the path.
    fn save(dir: &std::path::Path, r: &Record) -> std::path::PathBuf {
        let path = dir.join(lease_file::file_name(&r.attachment));
        std::fs::write(&path, r.to_file_bytes().unwrap()).unwrap();
        path
    }

    /// Holds `dir` locked as a running daemon does (an exclusive `flock(2)` on the directory,
    /// daemon/store.rs) until dropped.
    fn lock(dir: &std::path::Path) -> std::fs::File {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(dir).unwrap();
        // SAFETY: flock on a valid descriptor we own.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
        f
    }

    fn record(id: &str, granted: Granted, lease_time: u32) -> Record {
        let mut l = lease("198.18.0.7");
        l.lease_time = lease_time;
        Record {
            attachment: Attachment {
                container_id: id.into(),
                network: "n".into(),
                ifname: "eth0".into(),
            },
            netns: "/x".into(),
            client_id: vec![0, 0x63],
            chaddr: [2, 0, 0, 0, 0, 1],
            derived_chaddr: None,
            broadcast: false,
            broadcast_reason: "auto: not ipvlan".into(),
            hostname: None,
            provided: vec![],
            parameter_request_list: None,
            lease: l,
            granted,
            state: "BOUND".into(),
            renewals: 4,
            server_mac: None,
            identity: None,
            priority: None,
            no_unicast_discover: false,
        }
    }

    fn record6(id: &str, granted: Granted) -> lease_file::Record6 {
        lease_file::Record6 {
            attachment: Attachment {
                container_id: id.into(),
                network: "n".into(),
                ifname: "eth0".into(),
            },
            netns: "/x".into(),
            family: crate::rpc::Family::Ipv6,
            duid: crate::dhcp6::identity::duid(id, "n"),
            iaid: 7,
            lease: crate::dhcp6::Leased6 {
                lease: crate::dhcp6::Lease6 {
                    address: "fd00:cd::105".parse().unwrap(),
                    preferred_lifetime: 1800,
                    valid_lifetime: 3600,
                    t1: 900,
                    t2: 1440,
                    iaid: 7,
                    server_id: vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 6],
                    dns_servers: vec!["fd00:cd::53".parse().unwrap()],
                    domain_search: vec!["lab6.test".into()],
                },
                prefix_len: 64,
                router: Some("fe80::1".parse().unwrap()),
            },
            granted,
            state: "RENEWING".into(),
            renewals: 2,
            identity: None,
            priority: None,
        }
    }

    /// A DHCPv6 record beside a DHCPv4 one of the same attachment: both read offline, each
    /// with its family's times, shown in the table and in detail.
    #[test]
    fn offline_dhcpv6_records_show_their_family() {
        let dir = tempfile::tempdir().unwrap();
        let now = Granted::now();
        let ago = Granted {
            unix_ms: now.unix_ms.saturating_sub(100_000),
            boot_id: "an-earlier-boot".into(),
            boottime_ms: 0,
        };
        save(dir.path(), &record("dual", ago.clone(), 3600));
        let r6 = record6("dual", ago);
        let path = dir.path().join(lease_file::file_name_of(
            &r6.attachment,
            crate::rpc::Family::Ipv6,
        ));
        std::fs::write(&path, r6.to_file_bytes().unwrap()).unwrap();
        let (views, errors) = load_state_dir(dir.path(), &now).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(views.len(), 2);
        let v6 = &views[1];
        assert_eq!(v6.core.family, crate::rpc::Family::Ipv6);
        assert_eq!(v6.core.state, "RENEWING");
        assert_eq!(v6.core.client_id, hex::encode(&r6.duid));
        assert_eq!(
            (v6.t1_in, v6.t2_in, v6.expires_in),
            (Some(800), Some(1340), Some(3500))
        );
        assert_eq!(v6.gateway(), Some("fe80::1".parse().unwrap()));
        let table = table(&views);
        let row = table.lines().nth(2).unwrap();
        assert!(
            row.contains("fd00:cd::105/64") && row.contains("fe80::1"),
            "{table}"
        );
        let shown = detail(v6);
        for want in [
            "family:",
            "DHCPv6",
            "iaid:",
            "0x00000007",
            "fd00:cd::105/64",
            "fd00:cd::53",
            "lab6.test",
            "valid 1h, preferred 30m",
        ] {
            assert!(shown.contains(want), "{want:?} not in\n{shown}");
        }
        assert!(!shown.contains("broadcast:"), "{shown}");
        // The JSON: family and lease6, no DHCPv4 lease.
        let json = serde_json::to_value(v6).unwrap();
        assert_eq!(json["family"], "ipv6");
        assert_eq!(json["lease6"]["prefix_len"], 64);
        assert!(json["lease"].is_null());
    }

    #[test]
    fn offline_loading_from_a_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let store = lock(dir.path());
        let now = Granted::now();
        // A grant `secs` ago: on this boot's clock when the machine has been up that long,
        // else (a machine booted a minute ago) in an earlier boot, dated by the wall clock.
        let ago = |secs: u64| {
            let ms = secs.saturating_mul(1000);
            match now.boottime_ms.checked_sub(ms) {
                Some(boottime_ms) => Granted {
                    boot_id: now.boot_id.clone(),
                    boottime_ms,
                    unix_ms: now.unix_ms.saturating_sub(ms),
                },
                None => Granted {
                    boot_id: "an-earlier-boot".into(),
                    boottime_ms: 0,
                    unix_ms: now.unix_ms.saturating_sub(ms),
                },
            }
        };
        save(dir.path(), &record("fresh", ago(100), 3600));
        save(dir.path(), &record("gone", ago(4000), 3600));
        save(dir.path(), &record("forever", ago(100), u32::MAX));
        std::fs::write(dir.path().join("0123.json"), b"nonsense").unwrap();
        // The daemon's store stays open: offline loading must not need its lock.
        let (views, errors) = load_state_dir(dir.path(), &now).unwrap();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("0123.json"), "{errors:?}");
        let ids: Vec<_> = views
            .iter()
            .map(|v| v.core.attachment.container_id.as_str())
            .collect();
        assert_eq!(ids, ["forever", "fresh", "gone"]);
        let fresh = &views[1];
        assert_eq!(fresh.source, Source::StateDir);
        assert_eq!(fresh.core.state, "BOUND");
        assert_eq!(fresh.core.client_id, "0063");
        assert_eq!(
            (fresh.t1_in, fresh.t2_in, fresh.expires_in),
            (Some(1700), Some(3050), Some(3500))
        );
        assert_eq!(
            fresh.granted.as_deref(),
            Some(rfc3339(now.unix_ms.saturating_sub(100_000)).as_str())
        );
        assert_eq!(
            fresh.expiry.as_deref(),
            Some(rfc3339(now.unix_ms + 3_500_000).as_str())
        );
        assert_eq!(fresh.renewals, 4);
        assert_eq!(fresh.history, None);
        assert!(detail(fresh).contains("history: not available offline"));
        let gone = &views[2];
        assert_eq!(gone.core.state, "EXPIRED");
        assert_eq!(gone.expires_in, None);
        assert!(gone.expiry.is_some());
        let forever = &views[0];
        assert_eq!((forever.t1.clone(), forever.expires_in), (None, None));
        assert!(
            detail(forever).contains("lease time:       infinite"),
            "{}",
            detail(forever)
        );
        // A missing directory is an error, not created.
        assert!(load_state_dir(&dir.path().join("nope"), &now).is_err());
        assert!(!dir.path().join("nope").exists());
        drop(store);
    }

    /// A raw control character other than the newlines that end lines.
    fn raw_control(text: &str) -> Option<char> {
        text.chars()
            .find(|&c| (c.is_control() && c != '\n') || is_reordering(c))
    }

    #[test]
    fn escape_text_escapes_controls_and_backslashes_only() {
        for (raw, shown) in [
            (
                "plain é text \"quoted\" it's",
                "plain é text \"quoted\" it's",
            ),
            ("\u{1b}[2J", "\\u{1b}[2J"),
            ("a\nb\rc\td", "a\\nb\\rc\\td"),
            ("\u{0}\u{7f}\u{9b}", "\\u{0}\\u{7f}\\u{9b}"),
            ("rtl\u{202e}txt", "rtl\\u{202e}txt"),
            ("line\u{2028}sep", "line\\u{2028}sep"),
            // A literal backslash escape in the input cannot pass for an escaped ESC.
            ("\\u{1b}", "\\\\u{1b}"),
        ] {
            let got = escape_text(raw);
            assert_eq!(got, shown, "{raw:?}");
            assert_eq!(raw_control(&got), None, "{raw:?}");
        }
        assert!(matches!(escape_text("eth0"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn untrusted_text_in_a_state_file_is_shown_escaped() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = record("evil\u{1b}[2J\u{1b}]0;title\u{7}", Granted::now(), 3600);
        r.attachment.network = "net\r\nFAKE  LINE".into();
        r.attachment.ifname = "eth\u{1b}0".into();
        r.netns = "/run/netns/\u{1b}[31mred".into();
        r.broadcast_reason = "auto: \u{9b}31m".into();
        r.state = "BOUND\r".into();
        r.lease.domain_name = Some("ex\u{1b}ample.test".into());
        r.lease.domain_search = vec!["a\nb".into(), "back\\slash".into()];
        let saved = save(dir.path(), &r);
        // The same record under a name that does not match it: the error quotes the attachment.
        let misnamed = dir.path().join(format!("{}.json", "0".repeat(32)));
        std::fs::copy(&saved, &misnamed).unwrap();

        let (views, errors) = load_state_dir(dir.path(), &Granted::now()).unwrap();
        assert_eq!(views.len(), 1);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("evil\\u{1b}[2J"), "{errors:?}");
        assert_eq!(raw_control(&errors[0]), None, "{errors:?}");
        let v = &views[0];

        let out = table(std::slice::from_ref(v));
        assert_eq!(raw_control(&out), None, "{out:?}");
        assert_eq!(out.lines().count(), 2, "one header, one row: {out:?}");
        for shown in [
            "evil\\u{1b}[2",
            "net\\r\\nFAKE  LINE",
            "eth\\u{1b}0",
            "BOUND\\r",
        ] {
            assert!(out.contains(shown), "{shown:?} not in {out:?}");
        }

        let text = detail(v);
        assert_eq!(raw_control(&text), None, "{text:?}");
        // Every line is still a `key: value` line (or the history note): nothing forged one.
        for line in text.lines() {
            assert!(
                line.starts_with("history") || line.split_once(": ").is_some(),
                "{line:?} in {text:?}"
            );
        }
        for shown in [
            "container:        evil\\u{1b}[2J\\u{1b}]0;title\\u{7}",
            "network:          net\\r\\nFAKE  LINE",
            "ifname:           eth\\u{1b}0",
            "netns:            /run/netns/\\u{1b}[31mred",
            "state:            BOUND\\r",
            "broadcast:        false (auto: \\u{9b}31m)",
            "domain:           ex\\u{1b}ample.test",
            "search:           a\\nb, back\\\\slash",
        ] {
            assert!(text.contains(shown), "{shown:?} not in\n{text}");
        }

        // JSON keeps the exact strings, escaped by JSON's rules, with nothing raw on the wire.
        let json = to_json([v]);
        assert_eq!(raw_control(&json), None, "{json}");
        assert!(
            json.contains("\\u001b") && json.contains("\\u009b"),
            "{json}"
        );
        let back: Vec<LeaseView> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, vec![v.clone()]);
    }

    #[test]
    fn untrusted_text_from_the_daemon_is_shown_escaped() {
        let mut v = live("c1\u{1b}c", "n", "BOUND");
        v.last_error = Some("no reply\u{1b}[1A\u{1b}[2K all is well\r\nmore".into());
        v.history = Some(vec![history_entry(Transaction {
            at_unix_ms: 1,
            direction: Direction::Received,
            message: "DHCPNAK \u{1b}]0;x\u{7}\nforged".into(),
        })]);
        let out = table(std::slice::from_ref(&v));
        assert_eq!(raw_control(&out), None, "{out:?}");
        assert_eq!(out.lines().count(), 2, "{out:?}");
        assert!(out.contains("no reply\\u{1b}[1A"), "{out:?}");
        let text = detail(&v);
        assert_eq!(raw_control(&text), None, "{text:?}");
        assert!(
            text.contains("  received  DHCPNAK \\u{1b}]0;x\\u{7}\\nforged\n"),
            "{text}"
        );
        assert!(text.contains("all is well\\r\\nmore\n"), "{text}");
        // `show`'s ambiguity message quotes container IDs.
        let views = [
            live("ab\u{1b}1", "n", "BOUND"),
            live("ab\u{1b}2", "n", "BOUND"),
        ];
        let err = select(&views, "ab").unwrap_err();
        assert_eq!(raw_control(&err), None, "{err:?}");
    }

    #[test]
    fn detail_lists_everything_and_the_history() {
        let mut v = live("c1", "n", "BOUND");
        assert!(detail(&v).contains("history: not available from this daemon"));
        v.history = Some(vec![]);
        assert!(detail(&v).contains("history: none recorded"));
        v.history = Some(vec![
            history_entry(Transaction {
                at_unix_ms: 1,
                direction: Direction::Sent,
                message: "DHCPDISCOVER".into(),
            }),
            history_entry(Transaction {
                at_unix_ms: 2,
                direction: Direction::Received,
                message: "DHCPACK 198.18.0.100 lease 3600s".into(),
            }),
        ]);
        let out = detail(&v);
        for needle in [
            "container:        c1",
            "address:          198.18.0.100/24",
            "gateway:          198.18.0.1",
            "T1:               2025-06-15T15:36:40.000Z (in 29m59s)",
            "lease time:       1h (T1 30m, T2 52m30s)",
            "history (last 2, oldest first):",
            "  1970-01-01T00:00:00.002Z  received  DHCPACK 198.18.0.100 lease 3600s",
        ] {
            assert!(out.contains(needle), "{needle:?} not in\n{out}");
        }
    }
}
