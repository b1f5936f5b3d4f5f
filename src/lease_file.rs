//! The lease files: the format of one persisted lease ([`Record`]), the layout of the state
//! directory they live in, and the read-only loader an inspector uses ([`read_all`]).
//!
//! The daemon writes one file per lease so that, restarted, it keeps renewing the leases it
//! held (the reference forgets them all: containernetworking/plugins #235, #767). The locked,
//! durable side of that (the directory lock, atomic writes, `fsync(2)`, moving bad files
//! aside) is the daemon's store, `daemon/store.rs`. This module is what every reader of the
//! files needs and depends on nothing of the daemon: `dhcp-leases --state-dir`
//! ([`crate::leases_view`]) and the `lease_file` fuzz target read the files through it, and
//! the daemon's store writes and loads them with it.
//!
//! # Layout
//!
//! One small JSON file per lease in the state directory (`dhcp daemon --state-dir`, default
//! [`DEFAULT_STATE_DIR`]), created mode 0700 if missing:
//!
//! - `<32 hex digits>.json`: one [`Record`]. The name is [`file_name`]: a 128-bit FNV-1a hash
//!   of the attachment (container ID, network name, ifname, each length-prefixed), so no
//!   container ID or name, however odd, ever becomes a path component. The file's own
//!   `attachment` field is what counts; a file whose name does not match its attachment is
//!   refused on load (otherwise DEL could not find it to remove).
//! - `.<name>.<pid>.<n>.tmp`: a write in progress (the store writes a temp file and renames it
//!   over the record); one left by a crash is deleted when the daemon next loads the directory.
//! - `<name>.json.corrupt` (`CORRUPT_SUFFIX`): a file the daemon could not use, moved aside
//!   for inspection and never read again.
//!
//! Every write is atomic: a reader (or a daemon restarted after a crash or power cut) sees the
//! old file or the new one, never a mix.
//!
//! # Format, version 1
//!
//! ```json
//! {
//!   "version": 1,
//!   "attachment": {"container_id": "c1", "network": "labnet", "ifname": "eth0"},
//!   "netns": "/var/run/netns/c1",
//!   "client_id": "0063312f6c61626e65742f65746830",
//!   "chaddr": "02:00:00:00:00:01",
//!   "broadcast": true,
//!   "broadcast_reason": "auto: link kind ipvlan",
//!   "hostname": "pod-a",
//!   "lease": { "address": "198.18.0.10", "prefix_len": 24, "...": "see crate::dhcp::Lease" },
//!   "granted": {"boot_id": "ef47de3c-...", "boottime_ms": 1983710, "unix_ms": 1795000000000},
//!   "state": "BOUND",
//!   "renewals": 3,
//!   "server_mac": "02:00:00:00:00:fe",
//!   "identity": {"boot_id": "ef47de3c-...", "netns_dev": 4, "netns_ino": 4026532178,
//!                "netns_cookie": 4097, "pid_start": 123456, "ifindex": 2,
//!                "mac": "02:00:00:00:00:01"},
//!   "priority": 100
//! }
//! ```
//!
//! - `version` (integer): [`FORMAT_VERSION`]. A file with another version is reported and left
//!   alone (a newer daemon may still read it). Fields may be added without a version bump when
//!   older daemons can ignore them: unknown fields are ignored on load.
//! - `attachment` (object): container ID, network name, ifname ([`Attachment`]).
//! - `netns` (string): `CNI_NETNS` as the runtime gave it at ADD, without `-hostprefix`.
//! - `client_id` (string): option 61 bytes as sent, lower-case hex, no separators, at most 255
//!   bytes.
//! - `chaddr` (string): the interface's MAC, `aa:bb:cc:dd:ee:ff`; also what chaddr carries
//!   unless `derived_chaddr` says otherwise.
//! - `derived_chaddr` (string, optional): the chaddr sent when it is not the interface's MAC
//!   (the `derived` chaddr policy, docs/design.md, *A chaddr per container*). Added without a
//!   version bump: an older daemon ignores it and sends the interface's MAC, and the server
//!   still finds the lease by option 61.
//! - `broadcast` (bool): the BOOTP broadcast flag in use; `broadcast_reason` (string): why.
//! - `hostname` (string, optional): option 12 sent with renewals.
//! - `provided` (array of `[code, [bytes]]`, optional): other options sent with renewals.
//! - `parameter_request_list` (array of codes, optional): option 55 when not the default.
//! - `lease` (object): the last DHCPACK's lease, [`Lease`]'s serde form (lease, T1, T2 in
//!   seconds relative to `granted`).
//! - `granted` (object): when the lease's times count from (RFC 2131 §4.4.1: when the
//!   DHCPREQUEST that got the ACK was sent), on two clocks ([`Granted`]): `boot_id`, the kernel's
//!   `/proc/sys/kernel/random/boot_id` at that time; `boottime_ms`, `CLOCK_BOOTTIME` in
//!   milliseconds (time since boot, suspend included, immune to wall-clock changes); `unix_ms`,
//!   the wall clock in milliseconds since the Unix epoch (used only after a reboot, when
//!   `boottime_ms` means nothing any more).
//! - `state` (string): RFC 2131 client state when written (`BOUND`, `RENEWING`, `REBINDING`),
//!   a [`LeaseState`] name; any other string is kept as read.
//! - `renewals` (integer): DHCPACKs received in RENEWING or REBINDING.
//! - `server_mac` (string, optional): the MAC of the server's last reply, the link-layer
//!   destination for unicast renewals.
//! - `identity` (object, optional; absent in files written before it existed): what the lease
//!   was granted on ([`Identity`], checked by daemon/identity.rs): `boot_id` of that boot;
//!   `netns_dev` and `netns_ino`, the nsfs device and inode of the namespace; `netns_cookie`, its
//!   `SO_NETNS_COOKIE` (absent before Linux 5.14); `pid_start`, for a `/proc/PID/ns/net` path
//!   the process's start time in clock ticks after boot; `ifindex` and `mac` of the interface.
//!   A restarted daemon resumes the lease only when all of them still hold.
//! - `priority` (integer, optional): the ipam `priority`, the metric of the routes the daemon
//!   puts back on the interface after a lost lease comes back.
//! - `no_unicast_discover` (bool, optional, written only when `true`): the ipam
//!   `"unicastDiscover": false`, every DHCPDISCOVER and DHCPREQUEST of the lease an Ethernet
//!   broadcast (docs/design.md, *Ethernet unicast to a known server*). Added without a version
//!   bump: an older daemon ignores it and unicasts.
//!
//! A DHCPv6 lease ([`Record6`], format version 2) lives in `<hash>.v6.json` ([`file_name_of`])
//! beside its attachment's DHCPv4 record: `version` 2, `family` `"ipv6"`, `attachment`,
//! `netns`, `duid` (hex), `iaid`, `lease` (a [`crate::dhcp6::Leased6`]: the [`crate::dhcp6::Lease6`]
//! fields with `prefix_len` and `router` from the link's RA), `granted`, `state`, `renewals`,
//! `identity`, `priority`, as above. DHCPv4 records are still written as version 1.
//!
//! Reading is blocking `std::fs`; the daemon calls it through `spawn_blocking`.

use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::dhcp::Lease;
use crate::dhcp6::Leased6;
use crate::lease_state::LeaseState;
use crate::rpc::{Attachment, Family};

/// Version of the file format described in the module documentation: 2 since DHCPv6. A
/// DHCPv4 record is still written as version 1 (its bytes are unchanged, so a daemon of before
/// DHCPv6 reads it after a rollback); a DHCPv6 record ([`Record6`]) is version 2. This build
/// reads both.
pub const FORMAT_VERSION: u32 = 2;

/// The version DHCPv4 records are written with ([`FORMAT_VERSION`]).
pub const FORMAT_VERSION_V4: u32 = 1;

/// Default state directory (`dhcp daemon --state-dir`, `dhcp-leases --state-dir`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/cni/dhcp";

/// Largest state file accepted, in bytes; a record is about 1 KiB. Larger files are corrupt.
pub(crate) const MAX_FILE_BYTES: u64 = 256 * 1024;

/// Where the kernel publishes the id of the current boot.
const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// Suffix of a record file the daemon could not use and moved aside (`<name>.json.corrupt`).
pub(crate) const CORRUPT_SUFFIX: &str = ".corrupt";

/// One lease as stored. See the module documentation for the JSON form of each field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Whose lease: container ID, network name, ifname.
    pub attachment: Attachment,
    /// `CNI_NETNS` as given at ADD (without the daemon's `-hostprefix`).
    pub netns: String,
    /// Option 61 bytes as sent (RFC 2132 §9.14). On disk: lower-case hex.
    #[serde(with = "hex_bytes")]
    pub client_id: Vec<u8>,
    /// The interface's MAC (on ipvlan, the master's), which the lease's interface must still
    /// have at resume; also the chaddr sent unless [`Record::derived_chaddr`] is set. On
    /// disk: `aa:bb:cc:dd:ee:ff`.
    #[serde(with = "mac")]
    pub chaddr: [u8; 6],
    /// The chaddr sent instead of [`Record::chaddr`] when the lease's chaddr policy is
    /// `derived` ([`crate::rpc::ChaddrPolicy`]); absent otherwise, and in files of before the
    /// policy (a daemon of then ignores it and sends the interface's MAC: the server still
    /// finds the lease by option 61). On disk: `aa:bb:cc:dd:ee:ff`.
    #[serde(default, with = "opt_mac", skip_serializing_if = "Option::is_none")]
    pub derived_chaddr: Option<[u8; 6]>,
    /// Whether requests carry the BOOTP broadcast flag.
    pub broadcast: bool,
    /// Why [`Record::broadcast`] has its value (ipam config, daemon flag, auto).
    pub broadcast_reason: String,
    /// Option 12 host name sent with requests, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Further options sent with requests (ipam `provide`), as (code, data); empty when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provided: Vec<(u8, Vec<u8>)>,
    /// Option 55 codes sent with requests when not the default list (ipam `request`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter_request_list: Option<Vec<u8>>,
    /// The lease of the last DHCPACK; its times are seconds counted from [`Record::granted`].
    pub lease: Lease,
    /// When the lease's times count from, on the boot-time and wall clocks.
    pub granted: Granted,
    /// The client's RFC 2131 state when written: `BOUND`, `RENEWING`, `REBINDING`. On disk: its
    /// name ([`LeaseState::as_str`]); any other string is kept as read.
    pub state: LeaseState,
    /// DHCPACKs received in RENEWING or REBINDING.
    pub renewals: u32,
    /// Source MAC of the server's last reply (unicast destination for renewals), if known.
    /// On disk: `aa:bb:cc:dd:ee:ff` or absent.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_mac")]
    pub server_mac: Option<[u8; 6]>,
    /// What the lease was granted on: namespace, interface, boot ([`Identity`]). Absent in
    /// files of daemons before it was added; such a lease is checked on what the file does
    /// hold (boot, MAC) and gets its identity when resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    /// The ipam `priority`: metric of the routes the daemon puts back after a lost lease comes
    /// back, as in the ADD result. Absent: the kernel's default metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// The ipam key `unicastDiscover: false`: this lease's first DHCPDISCOVER and DHCPREQUEST
    /// are broadcast like their retransmissions. Absent (the default, and every older file):
    /// they go as Ethernet unicasts to a known server.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_unicast_discover: bool,
}

/// What a lease was granted on: persisted with the lease (field `identity`) and compared by
/// the daemon (daemon/identity.rs) before every action in the namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// `/proc/sys/kernel/random/boot_id` at ADD. Namespaces do not survive a reboot, so a
    /// lease from another boot has lost its namespace whatever its path names now.
    pub boot_id: String,
    /// `st_dev` of the namespace's nsfs file.
    pub netns_dev: u64,
    /// `st_ino` of the namespace's nsfs file: unique among living namespaces, but reused once
    /// a namespace is freed (so never enough on its own after a restart).
    pub netns_ino: u64,
    /// The namespace's cookie (`crate::netns::cookie_here`): never reused within a boot.
    /// `None` on kernels before 5.14.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns_cookie: Option<u64>,
    /// For a `/proc/PID/ns/net` path: the process's start time, clock ticks after boot (field
    /// 22 of `/proc/PID/stat`, proc(5)), which tells a reused PID from the original process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start: Option<u64>,
    /// The interface's index inside the namespace.
    pub ifindex: u32,
    /// The interface's MAC (`aa:bb:cc:dd:ee:ff`); on an ipvlan slave, the master's.
    #[serde(with = "mac")]
    pub mac: [u8; 6],
}

/// One DHCPv6 lease as stored (format version 2, `"family": "ipv6"`; its file is
/// [`file_name_of`] with [`Family::Ipv6`]). See the module documentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record6 {
    /// Whose lease.
    pub attachment: Attachment,
    /// `CNI_NETNS` as given at ADD, without `-hostprefix`.
    pub netns: String,
    /// Always [`Family::Ipv6`]: what tells a version-2 reader which record this is.
    pub family: Family,
    /// The DUID sent in the Client Identifier option (RFC 8415 §21.2), lower-case hex.
    #[serde(with = "hex_bytes")]
    pub duid: Vec<u8>,
    /// The IAID of the IA_NA (RFC 8415 §21.4).
    pub iaid: u32,
    /// The lease with its on-link prefix length and router.
    pub lease: Leased6,
    /// When its lifetimes count from: when the message its REPLY answered was sent.
    pub granted: Granted,
    /// The client's state when written (`BOUND`, `RENEWING`, `REBINDING`).
    pub state: LeaseState,
    /// REPLYs received in RENEWING or REBINDING.
    pub renewals: u32,
    /// What the lease was granted on (as for DHCPv4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    /// The ipam `priority`, metric of the default route put back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
}

impl Record6 {
    /// Whether the valid lifetime has run out by now (never for an infinite one).
    pub fn is_expired(&self) -> bool {
        let valid = self.lease.lease.valid_lifetime;
        valid != u32::MAX
            && self.granted.elapsed_until(&Granted::now()) >= Duration::from_secs(valid.into())
    }

    fn validate(&self) -> Result<(), String> {
        let a = &self.attachment;
        if a.container_id.is_empty() || a.network.is_empty() || a.ifname.is_empty() {
            return Err("attachment has an empty field".into());
        }
        if self.family != Family::Ipv6 {
            return Err("a version 2 record of another family than ipv6".into());
        }
        if self.duid.is_empty() || self.duid.len() > crate::dhcp6::identity::MAX_DUID_LEN {
            return Err(format!("duid is {} bytes", self.duid.len()));
        }
        let l = &self.lease;
        if l.prefix_len > 128 {
            return Err(format!("lease prefix_len {} > 128", l.prefix_len));
        }
        let w = &l.lease;
        if w.address.is_unspecified() || w.address.is_multicast() {
            return Err(format!("lease address {} is not unicast", w.address));
        }
        if !(w.t1 <= w.t2 && w.t2 <= w.valid_lifetime && w.preferred_lifetime <= w.valid_lifetime) {
            return Err("lease times out of order (t1 <= t2 <= valid, preferred <= valid)".into());
        }
        if w.server_id.is_empty() || w.server_id.len() > crate::dhcp6::identity::MAX_DUID_LEN {
            return Err(format!("server_id is {} bytes", w.server_id.len()));
        }
        if w.dns_servers.len() > 64 || w.domain_search.len() > 64 {
            return Err("more than 64 DNS servers or search domains".into());
        }
        Ok(())
    }

    /// The bytes of the record's file, version 2.
    pub(crate) fn to_file_bytes(&self) -> serde_json::Result<Vec<u8>> {
        #[derive(Serialize)]
        struct OnDisk<'a> {
            version: u32,
            #[serde(flatten)]
            record: &'a Record6,
        }
        let mut json = serde_json::to_vec_pretty(&OnDisk {
            version: FORMAT_VERSION,
            record: self,
        })?;
        json.push(b'\n');
        Ok(json)
    }
}

/// A record of either family, as the state directory holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored {
    /// A DHCPv4 lease (version 1).
    V4(Record),
    /// A DHCPv6 lease (version 2).
    V6(Record6),
}

impl Stored {
    /// Whose lease.
    pub fn attachment(&self) -> &Attachment {
        match self {
            Stored::V4(r) => &r.attachment,
            Stored::V6(r) => &r.attachment,
        }
    }

    /// Which family.
    pub fn family(&self) -> Family {
        match self {
            Stored::V4(_) => Family::Ipv4,
            Stored::V6(_) => Family::Ipv6,
        }
    }

    /// Its file name in the state directory ([`file_name_of`]).
    pub fn file_name(&self) -> String {
        file_name_of(self.attachment(), self.family())
    }

    /// The bytes of its file.
    pub(crate) fn to_file_bytes(&self) -> serde_json::Result<Vec<u8>> {
        match self {
            Stored::V4(r) => r.to_file_bytes(),
            Stored::V6(r) => r.to_file_bytes(),
        }
    }
}

/// A point in time on two clocks, so lease timers survive both wall-clock jumps (NTP steps,
/// an operator's `date -s`) and reboots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Granted {
    /// `/proc/sys/kernel/random/boot_id` at that time (a UUID, different at every boot);
    /// empty when it could not be read, which makes `Granted::elapsed_until` use `unix_ms`.
    pub boot_id: String,
    /// `CLOCK_BOOTTIME` in milliseconds: time since this boot, suspend included; meaningful
    /// only while `boot_id` is the current boot's.
    pub boottime_ms: u64,
    /// Wall-clock time, milliseconds since 1970-01-01T00:00:00Z (0 if the clock was set
    /// before the epoch).
    pub unix_ms: u64,
}

impl Granted {
    /// Now, on both clocks.
    pub fn now() -> Granted {
        Granted {
            boot_id: boot_id(),
            boottime_ms: duration_ms(boottime()),
            unix_ms: duration_ms(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default(),
            ),
        }
    }

    /// `ago` before now, on both clocks (saturating at 0). The daemon places a lease-clock
    /// `Instant` with it (`Granted::from_instant`, daemon/store.rs).
    pub(crate) fn before_now(ago: Duration) -> Granted {
        let ago = duration_ms(ago);
        let now = Granted::now();
        Granted {
            boot_id: now.boot_id,
            boottime_ms: now.boottime_ms.saturating_sub(ago),
            unix_ms: now.unix_ms.saturating_sub(ago),
        }
    }

    /// How long before `now` this point was: by `CLOCK_BOOTTIME` when both are from the same
    /// (known) boot, which no wall-clock jump affects and which counts time suspended; else by
    /// the wall clock. Zero if `now` is earlier (a clock that went backwards).
    pub(crate) fn elapsed_until(&self, now: &Granted) -> Duration {
        let ms = if !self.boot_id.is_empty() && self.boot_id == now.boot_id {
            now.boottime_ms.saturating_sub(self.boottime_ms)
        } else {
            now.unix_ms.saturating_sub(self.unix_ms)
        };
        Duration::from_millis(ms)
    }
}

impl Record {
    /// Time since the lease was granted, by `Granted::elapsed_until` against
    /// [`Granted::now`].
    pub fn elapsed_since_granted(&self) -> Duration {
        self.granted.elapsed_until(&Granted::now())
    }

    /// The chaddr the lease's messages carry: [`Record::derived_chaddr`] when set, else the
    /// interface's MAC ([`Record::chaddr`]).
    pub fn sent_chaddr(&self) -> [u8; 6] {
        self.derived_chaddr.unwrap_or(self.chaddr)
    }

    /// Whether the lease has run out by now (never for an infinite lease, `u32::MAX`). An
    /// expired lease must not be resumed: the address may belong to someone else.
    pub fn is_expired(&self) -> bool {
        self.expired_after(self.elapsed_since_granted())
    }

    /// Whether the lease has run out `elapsed` after its grant (never for an infinite lease).
    pub(crate) fn expired_after(&self, elapsed: Duration) -> bool {
        self.lease.lease_time != u32::MAX
            && elapsed >= Duration::from_secs(self.lease.lease_time.into())
    }

    /// Checks what serde cannot: values that would be wrong to act on, and a lease over the
    /// size bounds of [`Lease::check_bounds`] (e.g. a hand-edited route list of 10,000 entries:
    /// every LIST answer would carry it), which no lease from [`crate::dhcp::Reply::to_lease`]
    /// exceeds.
    fn validate(&self) -> Result<(), String> {
        let a = &self.attachment;
        if a.container_id.is_empty() || a.network.is_empty() || a.ifname.is_empty() {
            return Err("attachment has an empty field".into());
        }
        if self.client_id.len() > 255 {
            return Err(format!(
                "client_id is {} bytes, more than an option holds (255)",
                self.client_id.len()
            ));
        }
        if self.lease.prefix_len > 32 {
            return Err(format!("lease prefix_len {} > 32", self.lease.prefix_len));
        }
        self.lease
            .check_bounds()
            .map_err(|e| format!("lease has {e}"))
    }

    /// The bytes of the record's file: `version` ([`FORMAT_VERSION`]) first, then the fields,
    /// as pretty-printed JSON with a final newline.
    ///
    /// Errors: serde_json's (none for a record: every key is a string).
    pub(crate) fn to_file_bytes(&self) -> serde_json::Result<Vec<u8>> {
        #[derive(Serialize)]
        struct OnDisk<'a> {
            version: u32,
            #[serde(flatten)]
            record: &'a Record,
        }
        let mut json = serde_json::to_vec_pretty(&OnDisk {
            version: FORMAT_VERSION_V4,
            record: self,
        })?;
        json.push(b'\n');
        Ok(json)
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The current boot's id, or an empty string when it cannot be read.
pub(crate) fn boot_id() -> String {
    read_boot_id().unwrap_or_default()
}

/// The current boot's id (`/proc/sys/kernel/random/boot_id`), read once and then remembered:
/// it cannot change while this process lives, and a later read could fail for reasons that say
/// nothing about the boot (`EMFILE`), which must never look like a reboot.
///
/// Errors: the file cannot be read or is empty (the next call tries again).
pub(crate) fn read_boot_id() -> io::Result<String> {
    static BOOT_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(id) = BOOT_ID.get() {
        return Ok(id.clone());
    }
    let id = fs::read_to_string(BOOT_ID_PATH)?.trim().to_string();
    if id.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{BOOT_ID_PATH} is empty"),
        ));
    }
    Ok(BOOT_ID.get_or_init(|| id).clone())
}

/// `CLOCK_BOOTTIME`: time since boot, suspend included.
pub(crate) fn boottime() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_BOOTTIME exists since Linux 2.6.39.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if r != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// The file name (no directory) of `attachment`'s record: 32 lower-case hex digits of the
/// 128-bit FNV-1a hash of the attachment, then `.json`. Only `[0-9a-f.json]`, so it never names
/// another directory, whatever the attachment holds.
///
/// The hash input is each of container ID, network name and ifname as its length in bytes
/// (8 bytes, little endian) followed by its bytes, so that no two attachments share an input:
/// `a/b`,`c`,`d` and `a`,`b/c`,`d` (one and the same `containerID/network/ifname` string, as in
/// option 61) get different files. FNV is not collision resistant against an adversary; the
/// inputs come from the container runtime, which CNI trusts anyway, and an accidental 128-bit
/// collision is out of reach.
pub fn file_name(attachment: &Attachment) -> String {
    let mut h = Fnv1a128::default();
    for field in [
        &attachment.container_id,
        &attachment.network,
        &attachment.ifname,
    ] {
        h.write(&(field.len() as u64).to_le_bytes());
        h.write(field.as_bytes());
    }
    format!("{:032x}.json", h.0)
}

/// The file name of `attachment`'s record of `family`: [`file_name`] for IPv4 (as before
/// DHCPv6), the same hash with `.v6.json` for IPv6.
pub fn file_name_of(attachment: &Attachment, family: Family) -> String {
    let name = file_name(attachment);
    match family {
        Family::Ipv4 => name,
        Family::Ipv6 => format!("{}.v6.json", name.trim_end_matches(".json")),
    }
}

/// FNV-1a, 128 bits (draft-eastlake-fnv): stable across Rust versions, unlike `DefaultHasher`,
/// which matters because file names are part of the format.
struct Fnv1a128(u128);

impl Default for Fnv1a128 {
    fn default() -> Self {
        Fnv1a128(0x6c62272e07bb014262b821756295c58d)
    }
}

impl Fnv1a128 {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u128::from(b);
            self.0 = self.0.wrapping_mul(0x0000000001000000000000000000013b);
        }
    }
}

/// A state file that could not be used ([`read_all`]; the daemon's store loads with the same
/// reasons).
#[derive(Debug)]
pub struct LoadError {
    /// The file, as found.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
    /// Where it was moved aside to (`<path>.corrupt`), when it was.
    pub moved_to: Option<PathBuf>,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)?;
        if let Some(to) = &self.moved_to {
            write!(f, " (moved to {})", to.display())?;
        }
        Ok(())
    }
}

/// What a file in the state directory is, by its name ([`classify`]).
pub(crate) enum Entry {
    /// `<32 hex digits>.json`: a record (or what claims to be one).
    Record,
    /// `.<name>.<pid>.<n>.tmp`: a write in progress, by the process `pid` when it parses.
    Temp {
        /// The writer's PID.
        pid: Option<u32>,
    },
    /// Anything else: not the daemon's, left alone.
    Other,
}

/// Classifies a directory entry by its `name`, as [`Entry`].
pub(crate) fn classify(name: &str) -> Entry {
    if let Some(rest) = name.strip_prefix('.') {
        if let Some(rest) = rest.strip_suffix(".tmp") {
            // `.<name>.<pid>.<n>.tmp`
            let mut parts = rest.rsplitn(3, '.');
            let _n = parts.next();
            let pid = parts.next().and_then(|p| p.parse().ok());
            return Entry::Temp { pid };
        }
        return Entry::Other;
    }
    if name.ends_with(".json") {
        Entry::Record
    } else {
        Entry::Other
    }
}

/// Why a record file was not used ([`read_record_file`]).
#[derive(Debug)]
pub(crate) struct Refused {
    /// What is wrong with it, for [`LoadError::reason`].
    pub(crate) reason: String,
    /// Whether it is corrupt (empty, truncated, unparsable, invalid, misnamed), to move aside,
    /// rather than unreadable or of another format version, to leave alone.
    pub(crate) corrupt: bool,
}

/// Reads the record file `path`, whose name in the directory is `name`: at most
/// [`MAX_FILE_BYTES`], a regular file (no symbolic link followed, no FIFO waited on), of
/// [`FORMAT_VERSION`], a valid [`Record`] ([`Record::validate`]) whose [`file_name`] is `name`.
pub(crate) fn read_record_file(path: &Path, name: &str) -> Result<Stored, Refused> {
    let refused = |reason: String, corrupt: bool| Refused { reason, corrupt };
    let unreadable = |e: io::Error| refused(format!("cannot read: {e}"), false);
    // Neither follow a symlink nor block on a FIFO: only a regular file is a record.
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(refused(
                "not a regular file (a symbolic link)".into(),
                false,
            ));
        }
        other => other.map_err(unreadable)?,
    };
    if !file.metadata().map_err(unreadable)?.is_file() {
        return Err(refused("not a regular file".into(), false));
    }
    let mut buf = Vec::new();
    Read::take(&mut file, MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(unreadable)?;
    if buf.is_empty() {
        return Err(refused("empty file".into(), true));
    }
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(refused(format!("larger than {MAX_FILE_BYTES} bytes"), true));
    }
    // The version first, so that another version is reported as such, not as a field error.
    #[derive(Deserialize)]
    struct Versioned {
        version: u32,
    }
    let corrupt = |e: serde_json::Error| refused(format!("corrupt: {e}"), true);
    let v: Versioned = serde_json::from_slice(&buf).map_err(corrupt)?;
    let invalid = |r: String| refused(format!("invalid: {r}"), true);
    let record = match v.version {
        FORMAT_VERSION_V4 => {
            let record: Record = serde_json::from_slice(&buf).map_err(corrupt)?;
            record.validate().map_err(invalid)?;
            Stored::V4(record)
        }
        FORMAT_VERSION => {
            let record: Record6 = serde_json::from_slice(&buf).map_err(corrupt)?;
            record.validate().map_err(invalid)?;
            Stored::V6(record)
        }
        other => {
            return Err(refused(
                format!(
                    "format version {other} not supported (this build reads {FORMAT_VERSION_V4} and {FORMAT_VERSION})"
                ),
                false,
            ));
        }
    };
    let expected = record.file_name();
    if name != expected {
        return Err(refused(
            format!(
                "holds the record of {} whose file is {expected}",
                record.attachment()
            ),
            true,
        ));
    }
    Ok(record)
}

/// Reads every record in `dir` for an inspector (`dhcp-leases --state-dir`), safely beside a
/// running daemon: the directory is not locked, and nothing is created, moved aside or
/// deleted (temp files and other files are skipped; every unusable record file is reported in
/// the second list, `moved_to` always `None`). Saves are atomic renames, so each file read is
/// one complete version. Records are sorted by attachment. Fails only when `dir` cannot be
/// listed.
pub fn read_all(dir: &Path) -> io::Result<(Vec<Stored>, Vec<LoadError>)> {
    let mut records = Vec::new();
    let mut errors = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if let Entry::Record = classify(&name) {
            let path = entry.path();
            match read_record_file(&path, &name) {
                Ok(record) => records.push(record),
                Err(refused) => errors.push(LoadError {
                    path,
                    reason: refused.reason,
                    moved_to: None,
                }),
            }
        }
    }
    sort(&mut records, &mut errors);
    Ok((records, errors))
}

/// Sorts records by attachment (container ID, network name, ifname) and errors by path: the
/// order [`read_all`] and the daemon's load return.
pub(crate) fn sort(records: &mut [Stored], errors: &mut [LoadError]) {
    records.sort_by(|a, b| (a.attachment(), a.family()).cmp(&(b.attachment(), b.family())));
    errors.sort_by(|a, b| a.path.cmp(&b.path));
}

/// Serde for `Vec<u8>` as lower-case hex without separators.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(&s).map_err(|e| D::Error::custom(format!("not hex: {e}")))
    }
}

/// Serde for a MAC address as `aa:bb:cc:dd:ee:ff`.
pub mod mac {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// `aa:bb:cc:dd:ee:ff`.
    pub fn to_string(mac: &[u8; 6]) -> String {
        let [a, b, c, d, e, f] = mac;
        format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
    }

    /// The inverse of [`to_string`]; `None` unless six two-digit hex bytes.
    pub fn parse(s: &str) -> Option<[u8; 6]> {
        let mut mac = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut mac {
            let p = parts.next()?;
            hex::decode_to_slice(p, std::slice::from_mut(byte)).ok()?;
        }
        parts.next().is_none().then_some(mac)
    }

    /// Serde `serialize_with`.
    pub fn serialize<S: Serializer>(mac: &[u8; 6], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&to_string(mac))
    }

    /// Serde `deserialize_with`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 6], D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).ok_or_else(|| D::Error::custom(format!("not a MAC address: {s:?}")))
    }
}

/// Serde for `Option<[u8; 6]>` (absent or a MAC string).
mod opt_mac {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(mac: &Option<[u8; 6]>, s: S) -> Result<S::Ok, S::Error> {
        match mac {
            Some(m) => s.serialize_some(&super::mac::to_string(m)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 6]>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => super::mac::parse(&s)
                .map(Some)
                .ok_or_else(|| D::Error::custom(format!("not a MAC address: {s:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn att(c: &str, n: &str, i: &str) -> Attachment {
        Attachment {
            container_id: c.into(),
            network: n.into(),
            ifname: i.into(),
        }
    }

    /// MACs are six two-digit hex bytes, written lower-case; anything else is refused, a sign
    /// (`+a`, which `u8::from_str_radix` would take) included.
    #[test]
    fn macs_round_trip_and_bad_ones_are_refused() {
        let mac = [0x02, 0x00, 0xab, 0x01, 0x02, 0xff];
        assert_eq!(mac::to_string(&mac), "02:00:ab:01:02:ff");
        assert_eq!(mac::parse("02:00:AB:01:02:ff"), Some(mac));
        for bad in [
            "",
            "02:00:ab:01:02",
            "02:00:ab:01:02:ff:00",
            "2:00:ab:01:02:ff",
            "+2:00:ab:01:02:ff",
            "02:00:ab:01:02:fg",
            "02-00-ab-01-02-ff",
        ] {
            assert_eq!(mac::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn file_names_are_stable() {
        // The name is part of the format: a daemon upgrade must find the old files.
        let fnv = |bytes: &[u8]| {
            let mut h = Fnv1a128::default();
            h.write(bytes);
            h.0
        };
        // Published FNV-1a 128 values: the empty input is the offset basis.
        assert_eq!(fnv(b""), 0x6c62272e07bb014262b821756295c58d);
        assert_eq!(fnv(b"a"), 0xd228cb696f1a8caf78912b704e4a8964);
        let mut input = Vec::new();
        for f in ["c1", "labnet", "eth0"] {
            input.extend_from_slice(&(f.len() as u64).to_le_bytes());
            input.extend_from_slice(f.as_bytes());
        }
        assert_eq!(
            file_name(&att("c1", "labnet", "eth0")),
            format!("{:032x}.json", fnv(&input))
        );
        assert_eq!(
            file_name(&att("c1", "labnet", "eth0")),
            "0c7e0f6c9decc254cf4214f06068d1ee.json" // computed independently (Python)
        );
    }

    fn at(boot: &str, boottime_ms: u64, unix_ms: u64) -> Granted {
        Granted {
            boot_id: boot.into(),
            boottime_ms,
            unix_ms,
        }
    }

    #[test]
    fn elapsed_in_the_same_boot_ignores_wall_clock_jumps() {
        let granted = at("b1", 10_000, 1_795_000_000_000);
        // 90 s later by boot time; the wall clock was stepped back an hour meanwhile.
        let now = at("b1", 100_000, 1_795_000_000_000 - 3_600_000 + 90_000);
        assert_eq!(granted.elapsed_until(&now), Duration::from_secs(90));
        // ... or forward a day.
        let now = at("b1", 100_000, 1_795_000_000_000 + 86_400_000);
        assert_eq!(granted.elapsed_until(&now), Duration::from_secs(90));
        // A boot time before the grant (impossible unless the file lies) saturates at 0.
        let now = at("b1", 5_000, 1_795_000_100_000);
        assert_eq!(granted.elapsed_until(&now), Duration::ZERO);
    }

    #[test]
    fn elapsed_across_a_reboot_uses_the_wall_clock() {
        let granted = at("b1", 10_000_000, 1_795_000_000_000);
        // New boot: boot time restarted near 0; the wall clock says 20 minutes passed.
        let now = at("b2", 30_000, 1_795_000_000_000 + 1_200_000);
        assert_eq!(granted.elapsed_until(&now), Duration::from_secs(1200));
        // A wall clock behind the grant saturates at 0.
        let now = at("b2", 30_000, 1_794_000_000_000);
        assert_eq!(granted.elapsed_until(&now), Duration::ZERO);
        // An unknown boot id is never "the same boot".
        let granted = at("", 10_000, 1_795_000_000_000);
        let now = at("", 70_000, 1_795_000_000_000 + 5_000);
        assert_eq!(granted.elapsed_until(&now), Duration::from_secs(5));
    }
}
