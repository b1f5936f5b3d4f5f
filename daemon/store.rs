//! The lease daemon's state on disk, so that a restarted daemon keeps renewing the leases it
//! held (the reference forgets them all: containernetworking/plugins #235, #767).
//!
//! # Layout
//!
//! One small JSON file per lease in the state directory (`dhcp daemon --state-dir`, default
//! [`DEFAULT_STATE_DIR`]), created mode 0700 if missing:
//!
//! - `<32 hex digits>.json`: one [`Record`]. The name is [`file_name`]: a 128-bit FNV-1a hash
//!   of the attachment (container ID, network name, ifname, each length-prefixed), so no
//!   container ID or name, however odd, ever becomes a path component. The file's own `attachment` field is what counts; a file whose name does
//!   not match its attachment is refused on load (otherwise DEL could not find it to remove).
//! - `.<name>.<pid>.<n>.tmp`: a write in progress (see [`Store::save`]); one left by a crash is
//!   deleted by [`Store::load_all`].
//! - `<name>.json.corrupt`: a file [`Store::load_all`] could not use, moved aside for
//!   inspection and never read again.
//!
//! Every write is atomic: a reader (or a daemon restarted after a crash or power cut) sees the
//! old file or the new one, never a mix. The directory is locked (`flock(2)` on the directory,
//! exclusive) while a [`Store`] is open, so two daemons never share one state directory.
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
//! - `chaddr` (string): the interface's MAC as sent in chaddr, `aa:bb:cc:dd:ee:ff`.
//! - `broadcast` (bool): the BOOTP broadcast flag in use; `broadcast_reason` (string): why.
//! - `hostname` (string, optional): option 12 sent with renewals.
//! - `provided` (array of [code, [bytes]], optional): other options sent with renewals.
//! - `parameter_request_list` (array of codes, optional): option 55 when not the default.
//! - `lease` (object): the last DHCPACK's lease, [`Lease`]'s serde form (lease, T1, T2 in
//!   seconds relative to `granted`).
//! - `granted` (object): when the lease's times count from (RFC 2131 §4.4.1: when the
//!   DHCPREQUEST that got the ACK was sent), on two clocks ([`Granted`]): `boot_id`, the kernel's
//!   `/proc/sys/kernel/random/boot_id` at that time; `boottime_ms`, `CLOCK_BOOTTIME` in
//!   milliseconds (time since boot, suspend included, immune to wall-clock changes); `unix_ms`,
//!   the wall clock in milliseconds since the Unix epoch (used only after a reboot, when
//!   `boottime_ms` means nothing any more).
//! - `state` (string): RFC 2131 client state when written (`BOUND`, `RENEWING`, `REBINDING`).
//! - `renewals` (integer): DHCPACKs received in RENEWING or REBINDING.
//! - `server_mac` (string, optional): the MAC of the server's last reply, the link-layer
//!   destination for unicast renewals.
//! - `identity` (object, optional; absent in files written before it existed): what the lease
//!   was granted on ([`Identity`], daemon/identity.rs): `boot_id` of that boot; `netns_dev`
//!   and `netns_ino`, the nsfs device and inode of the namespace; `netns_cookie`, its
//!   `SO_NETNS_COOKIE` (absent before Linux 5.14); `pid_start`, for a `/proc/PID/ns/net` path
//!   the process's start time in clock ticks after boot; `ifindex` and `mac` of the interface.
//!   A restarted daemon resumes the lease only when all of them still hold.
//! - `priority` (integer, optional): the ipam `priority`, the metric of the routes the daemon
//!   puts back on the interface after a lost lease comes back.
//!
//! All of it is blocking `std::fs`; the daemon calls it through `spawn_blocking`. A write is one
//! file of about 1 KiB plus two `fsync(2)`s.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::identity::Identity;
use crate::dhcp::Lease;
use crate::lease_state::LeaseState;
use crate::rpc::Attachment;

/// Version of the file format described in the module documentation.
pub const FORMAT_VERSION: u32 = 1;

/// Default state directory (`--state-dir`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/cni/dhcp";

/// Largest state file accepted, in bytes; a record is about 1 KiB. Larger files are corrupt.
pub const MAX_FILE_BYTES: u64 = 256 * 1024;

/// Where the kernel publishes the id of the current boot.
const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// Suffix of a file moved aside by [`Store::load_all`].
pub const CORRUPT_SUFFIX: &str = ".corrupt";

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
    /// chaddr: the interface's MAC (on ipvlan, the master's). On disk: `aa:bb:cc:dd:ee:ff`.
    #[serde(with = "mac")]
    pub chaddr: [u8; 6],
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
}

/// A point in time on two clocks, so lease timers survive both wall-clock jumps (NTP steps,
/// an operator's `date -s`) and reboots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Granted {
    /// `/proc/sys/kernel/random/boot_id` at that time (a UUID, different at every boot);
    /// empty when it could not be read, which makes [`Granted::elapsed_until`] use `unix_ms`.
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

    /// The point that was `at` on the lease clock ([`super::clock::now`], e.g.
    /// [`crate::dhcp::client::Client::granted_at`]): now on both clocks, minus how long ago
    /// `at` was (0 if `at` is in the future).
    pub fn from_instant(at: Instant) -> Granted {
        let ago = duration_ms(super::clock::now().saturating_duration_since(at));
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
    pub fn elapsed_until(&self, now: &Granted) -> Duration {
        let ms = if !self.boot_id.is_empty() && self.boot_id == now.boot_id {
            now.boottime_ms.saturating_sub(self.boottime_ms)
        } else {
            now.unix_ms.saturating_sub(self.unix_ms)
        };
        Duration::from_millis(ms)
    }
}

impl Record {
    /// Time since the lease was granted, by [`Granted::elapsed_until`] against
    /// [`Granted::now`].
    pub fn elapsed_since_granted(&self) -> Duration {
        self.granted.elapsed_until(&Granted::now())
    }

    /// The lease-clock `Instant` ([`super::clock::now`]) the lease was granted at, for
    /// [`Client::resume`](crate::dhcp::client::Client::resume): now minus
    /// [`Record::elapsed_since_granted`], saturating at the earliest `Instant` representable.
    pub fn granted_instant(&self) -> Instant {
        instant_before(super::clock::now(), self.elapsed_since_granted())
    }

    /// Whether the lease has run out by now (never for an infinite lease, `u32::MAX`). An
    /// expired lease must not be resumed: the address may belong to someone else.
    pub fn is_expired(&self) -> bool {
        self.expired_after(self.elapsed_since_granted())
    }

    fn expired_after(&self, elapsed: Duration) -> bool {
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
}

/// `now - d`, or the earliest `Instant` that can be represented if that is out of range.
fn instant_before(now: Instant, d: Duration) -> Instant {
    if let Some(t) = now.checked_sub(d) {
        return t;
    }
    // Find (by halving) how far back Instants go; at most 64 + 30 steps.
    let (mut t, mut step) = (now, d);
    while step > Duration::from_nanos(0) {
        match t.checked_sub(step) {
            Some(earlier) => t = earlier,
            None => step /= 2,
        }
    }
    t
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The current boot's id, or an empty string when it cannot be read.
pub fn boot_id() -> String {
    read_boot_id().unwrap_or_default()
}

/// The current boot's id (`/proc/sys/kernel/random/boot_id`), read once and then remembered:
/// it cannot change while this process lives, and a later read could fail for reasons that say
/// nothing about the boot (`EMFILE`), which must never look like a reboot.
///
/// Errors: the file cannot be read or is empty (the next call tries again).
pub fn read_boot_id() -> io::Result<String> {
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
pub fn boottime() -> Duration {
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

/// A state file [`Store::load_all`] could not use.
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

/// The state directory, open and locked.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    /// The directory itself: fsync'd after every rename and unlink, and flock'ed.
    dir_file: File,
    /// Makes temp file names unique within this process.
    seq: AtomicU64,
    /// Renames and unlinks done in the directory so far (see [`Store::sync_dir`]).
    changes: AtomicU64,
    /// The value of `changes` that the last completed directory fsync covers.
    synced: std::sync::Mutex<u64>,
}

/// What a file in the state directory is, by its name.
enum Entry {
    Record,
    Temp { pid: Option<u32> },
    Other,
}

fn classify(name: &str) -> Entry {
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

impl Store {
    /// Opens the state directory `dir`, creating it (mode 0700; missing parents with the
    /// default mode) if it does not exist, and locks it against other daemons.
    ///
    /// Errors: the directory cannot be created or opened; `WouldBlock` when another process
    /// (or another open `Store`) holds it.
    pub fn open(dir: impl AsRef<Path>) -> io::Result<Store> {
        let dir = dir.as_ref().to_path_buf();
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)?;
        }
        match DirBuilder::new().mode(0o700).create(&dir) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            other => other?,
        }
        let dir_file = File::open(&dir)?;
        if !dir_file.metadata()?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("state directory {} is not a directory", dir.display()),
            ));
        }
        // SAFETY: flock on a valid descriptor we own.
        if unsafe { libc::flock(dir_file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            return Err(if e.kind() == io::ErrorKind::WouldBlock {
                io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "state directory {} is in use by another daemon",
                        dir.display()
                    ),
                )
            } else {
                e
            });
        }
        Ok(Store {
            dir,
            dir_file,
            seq: AtomicU64::new(0),
            changes: AtomicU64::new(0),
            synced: std::sync::Mutex::new(0),
        })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of `attachment`'s record.
    pub fn path_of(&self, attachment: &Attachment) -> PathBuf {
        self.dir.join(file_name(attachment))
    }

    /// Writes `record` (replacing the attachment's previous one) atomically and durably: a
    /// temp file in the same directory, written and fsync'd, renamed over the target, then the
    /// directory fsync'd when the file is new (a replaced file's rename needs no directory sync:
    /// losing it leaves the previous record of the same lease). A crash at any point leaves the
    /// old record or the new one.
    pub fn save(&self, record: &Record) -> io::Result<()> {
        #[derive(Serialize)]
        struct OnDisk<'a> {
            version: u32,
            #[serde(flatten)]
            record: &'a Record,
        }
        let mut json = serde_json::to_vec_pretty(&OnDisk {
            version: FORMAT_VERSION,
            record,
        })
        .map_err(io::Error::other)?;
        json.push(b'\n');
        let name = file_name(&record.attachment);
        let target = self.dir.join(&name);
        let tmp = self.dir.join(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            self.seq.fetch_add(1, Ordering::Relaxed)
        ));
        let create = || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)
        };
        let written = (|| {
            let mut f = match create() {
                // Only a crashed earlier process can have left this name (this process's
                // sequence numbers are unique, and the lock keeps other daemons out): its PID
                // was reused, as happens to a daemon that is PID 1 in its container.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    fs::remove_file(&tmp)?;
                    create()?
                }
                other => other?,
            };
            f.write_all(&json)?;
            f.sync_all()?;
            drop(f);
            let replaced = fs::symlink_metadata(&target).is_ok();
            fs::rename(&tmp, &target).map(|()| replaced)
        })();
        match written {
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
            // A new lease's file must survive a crash: sync the directory entry. A renewal
            // replaces an existing file; if a crash loses that rename, the old file (same lease,
            // older times) is still there and a restarted daemon just renews sooner, so the
            // second fsync, one per renewal, is skipped.
            Ok(false) => self.sync_dir(),
            Ok(true) => Ok(()),
        }
    }

    /// Whether the directory can take a lease now (CNI STATUS): writes a record-sized temp
    /// file (4 KiB), fsyncs and deletes it. `access(2)` alone says yes on a full or quota-bound
    /// filesystem, where the next save would fail.
    ///
    /// Errors: the first failing call (`ENOSPC`, `EROFS`, `EDQUOT`, `EIO`...).
    pub fn probe_write(&self) -> io::Result<()> {
        let tmp = self.dir.join(format!(
            ".status-probe.{}.{}.tmp",
            std::process::id(),
            self.seq.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)?;
            f.write_all(&[0u8; 4096])?;
            f.sync_all()
        })();
        let removed = fs::remove_file(&tmp);
        result?;
        match removed {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Deletes `attachment`'s record, durably. A missing record is not an error.
    pub fn remove(&self, attachment: &Attachment) -> io::Result<()> {
        match fs::remove_file(self.path_of(attachment)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            other => other?,
        }
        self.sync_dir()
    }

    /// Makes a rename or unlink the caller has just done in the directory durable, sharing
    /// the `fsync(2)` of the directory with concurrent callers (group commit): a directory
    /// fsync covers every change completed before it started, so a caller whose change an
    /// fsync begun after it already covered returns at once. A thousand ADDs at once then cost
    /// a few directory fsyncs instead of a thousand.
    ///
    /// Errors: the `fsync(2)` this caller ran failed.
    fn sync_dir(&self) -> io::Result<()> {
        // Our change is complete before it is counted.
        let mine = self.changes.fetch_add(1, Ordering::SeqCst) + 1;
        let mut synced = self.synced.lock().unwrap_or_else(|e| e.into_inner());
        if *synced >= mine {
            return Ok(());
        }
        // Every change counted up to here completed before this fsync starts.
        let covers = self.changes.load(Ordering::SeqCst);
        self.dir_file.sync_all()?;
        *synced = covers;
        Ok(())
    }

    /// Reads every record, for a daemon that starts up. Never fails as a whole: each file that
    /// cannot be used is reported in the second list and skipped. Empty, truncated, unparsable,
    /// invalid and misnamed files are moved aside to `<name>.json.corrupt` so they are kept for
    /// inspection but not read again; files of another format version, or that cannot be read
    /// (permissions, I/O error), are left in place. Temp files left by a crash during
    /// [`Store::save`] are deleted, except this process's own (call this before saving
    /// anything). Records are sorted by attachment.
    pub fn load_all(&self) -> (Vec<Record>, Vec<LoadError>) {
        let mut records = Vec::new();
        let mut errors = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) => {
                errors.push(LoadError {
                    path: self.dir.clone(),
                    reason: format!("cannot list the state directory: {e}"),
                    moved_to: None,
                });
                return (records, errors);
            }
        };
        let mut removed_temp = false;
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    errors.push(LoadError {
                        path: self.dir.clone(),
                        reason: format!("cannot list the state directory: {e}"),
                        moved_to: None,
                    });
                    continue;
                }
            };
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            match classify(&name) {
                Entry::Other => {}
                Entry::Temp { pid } => {
                    if pid != Some(std::process::id()) && fs::remove_file(&path).is_ok() {
                        removed_temp = true;
                    }
                }
                Entry::Record => match Store::load_one(&path, &name) {
                    Ok(record) => records.push(record),
                    Err((reason, corrupt)) => {
                        let moved_to = if corrupt {
                            let to = self.dir.join(format!("{name}{CORRUPT_SUFFIX}"));
                            fs::rename(&path, &to).ok().map(|()| to)
                        } else {
                            None
                        };
                        errors.push(LoadError {
                            path,
                            reason,
                            moved_to,
                        });
                    }
                },
            }
        }
        if removed_temp || errors.iter().any(|e| e.moved_to.is_some()) {
            let _ = self.dir_file.sync_all();
        }
        records.sort_by(|a, b| {
            let key = |r: &Record| {
                (
                    r.attachment.container_id.clone(),
                    r.attachment.network.clone(),
                    r.attachment.ifname.clone(),
                )
            };
            key(a).cmp(&key(b))
        });
        errors.sort_by(|a, b| a.path.cmp(&b.path));
        (records, errors)
    }

    /// One record file. On failure: the reason, and whether the file is corrupt (to move aside)
    /// rather than unreadable or of another version (to leave alone).
    fn load_one(path: &Path, name: &str) -> Result<Record, (String, bool)> {
        let unreadable = |e: io::Error| (format!("cannot read: {e}"), false);
        // Neither follow a symlink nor block on a FIFO: only a regular file is a record.
        let mut file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
        {
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(("not a regular file (a symbolic link)".into(), false));
            }
            other => other.map_err(unreadable)?,
        };
        if !file.metadata().map_err(unreadable)?.is_file() {
            return Err(("not a regular file".into(), false));
        }
        let mut buf = Vec::new();
        Read::take(&mut file, MAX_FILE_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(unreadable)?;
        if buf.is_empty() {
            return Err(("empty file".into(), true));
        }
        if buf.len() as u64 > MAX_FILE_BYTES {
            return Err((format!("larger than {MAX_FILE_BYTES} bytes"), true));
        }
        // The version first, so that another version is reported as such, not as a field error.
        #[derive(Deserialize)]
        struct Versioned {
            version: u32,
        }
        let corrupt = |e: serde_json::Error| (format!("corrupt: {e}"), true);
        let v: Versioned = serde_json::from_slice(&buf).map_err(corrupt)?;
        if v.version != FORMAT_VERSION {
            return Err((
                format!(
                    "format version {} not supported (this build reads {FORMAT_VERSION})",
                    v.version
                ),
                false,
            ));
        }
        let record: Record = serde_json::from_slice(&buf).map_err(corrupt)?;
        record
            .validate()
            .map_err(|r| (format!("invalid: {r}"), true))?;
        let expected = file_name(&record.attachment);
        if name != expected {
            return Err((
                format!(
                    "holds the record of {} whose file is {expected}",
                    record.attachment
                ),
                true,
            ));
        }
        Ok(record)
    }
}

/// Reads every record in `dir` for an inspector (`dhcp-leases --state-dir`), safely beside a
/// running daemon: no [`Store`] is opened, so nothing is locked, created, moved aside or
/// deleted (temp files and other files are skipped; every unusable record file is reported in
/// the second list, `moved_to` always `None`). Saves are atomic renames, so each file read is
/// one complete version. Records are sorted by attachment. Fails only when `dir` cannot be
/// listed.
pub fn read_all(dir: &Path) -> io::Result<(Vec<Record>, Vec<LoadError>)> {
    let mut records = Vec::new();
    let mut errors = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if let Entry::Record = classify(&name) {
            let path = entry.path();
            match Store::load_one(&path, &name) {
                Ok(record) => records.push(record),
                Err((reason, _)) => errors.push(LoadError {
                    path,
                    reason,
                    moved_to: None,
                }),
            }
        }
    }
    records.sort_by(|a, b| {
        let key = |r: &Record| {
            let a = &r.attachment;
            (a.container_id.clone(), a.network.clone(), a.ifname.clone())
        };
        key(a).cmp(&key(b))
    });
    errors.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((records, errors))
}

/// Serde for `Vec<u8>` as lower-case hex without separators.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() % 2 != 0 || !s.is_ascii() {
            return Err(D::Error::custom("hex string of odd length or not ASCII"));
        }
        (0..s.len())
            .step_by(2)
            .map(|i| {
                u8::from_str_radix(&s[i..i + 2], 16)
                    .map_err(|_| D::Error::custom(format!("not hex: {:?}", &s[i..i + 2])))
            })
            .collect()
    }
}

/// Serde for a MAC address as `aa:bb:cc:dd:ee:ff`.
pub(crate) mod mac {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// `aa:bb:cc:dd:ee:ff`.
    pub fn to_string(mac: &[u8; 6]) -> String {
        mac.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// The inverse of [`to_string`]; `None` unless six two-digit hex bytes.
    pub fn parse(s: &str) -> Option<[u8; 6]> {
        let mut mac = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut mac {
            let p = parts.next()?;
            if p.len() != 2 {
                return None;
            }
            *byte = u8::from_str_radix(p, 16).ok()?;
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

    fn lease() -> Lease {
        Lease {
            dns_servers: vec!["198.18.0.1".parse().unwrap()],
            domain_name: Some("lab.example".into()),
            domain_search: vec!["lab.example".into()],
            mtu: Some(1500),
            ..crate::dhcp::options::test_lease("198.18.0.10")
        }
    }

    fn record(a: Attachment) -> Record {
        Record {
            client_id: crate::dhcp::message::client_id(&a.container_id, &a.network, &a.ifname),
            attachment: a,
            netns: "/var/run/netns/c1".into(),
            chaddr: [0x02, 0, 0, 0, 0, 0x01],
            broadcast: true,
            broadcast_reason: "auto: link kind ipvlan".into(),
            hostname: Some("pod-a".into()),
            provided: vec![(60, b"vendor".to_vec())],
            parameter_request_list: None,
            lease: lease(),
            granted: Granted {
                boot_id: "b1".into(),
                boottime_ms: 5_000,
                unix_ms: 1_795_000_000_000,
            },
            state: "BOUND".into(),
            renewals: 2,
            server_mac: Some([0x02, 0, 0, 0, 0, 0xfe]),
            identity: None,
            priority: None,
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("state")).unwrap();
        let r1 = record(att("c1", "labnet", "eth0"));
        let mut r2 = record(att("c2", "labnet", "eth0"));
        r2.server_mac = None;
        r2.hostname = None;
        store.save(&r1).unwrap();
        store.save(&r2).unwrap();
        // Saving again replaces.
        let mut r1b = r1.clone();
        r1b.renewals = 3;
        r1b.state = "RENEWING".into();
        store.save(&r1b).unwrap();
        drop(store);
        let store = Store::open(dir.path().join("state")).unwrap();
        let (records, errors) = store.load_all();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(records, vec![r1b, r2]);
        assert_eq!(names(store.dir()).len(), 2);
    }

    #[test]
    fn the_documented_format() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let r = record(att("c1", "labnet", "eth0"));
        store.save(&r).unwrap();
        let text = fs::read_to_string(store.path_of(&r.attachment)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["attachment"]["container_id"], "c1");
        assert_eq!(v["client_id"], "0063312f6c61626e65742f65746830");
        assert_eq!(v["chaddr"], "02:00:00:00:00:01");
        assert_eq!(v["server_mac"], "02:00:00:00:00:fe");
        assert_eq!(v["granted"]["boot_id"], "b1");
        assert_eq!(v["granted"]["boottime_ms"], 5000);
        assert_eq!(v["granted"]["unix_ms"], 1_795_000_000_000u64);
        assert_eq!(v["lease"]["address"], "198.18.0.10");
        assert_eq!(v["state"], "BOUND");
        assert_eq!(v["renewals"], 2);
        assert!(text.starts_with("{\n  \"version\": 1,"), "{text}");
        // Optional fields are omitted when absent, and absent ones load as None.
        let mut r2 = r.clone();
        r2.server_mac = None;
        store.save(&r2).unwrap();
        let text = fs::read_to_string(store.path_of(&r.attachment)).unwrap();
        assert!(!text.contains("server_mac"));
        // Unknown fields (added later without a version bump) are ignored.
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["future_field"] = serde_json::json!(42);
        fs::write(store.path_of(&r.attachment), v.to_string()).unwrap();
        let (records, errors) = store.load_all();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(records, vec![r2]);
    }

    #[test]
    fn state_dir_is_created_private_and_locked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/dhcp");
        let store = Store::open(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let err = Store::open(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(
            err.to_string().contains("in use by another daemon"),
            "{err}"
        );
        drop(store);
        Store::open(&path).unwrap();
        // A file where the directory should be.
        let file = dir.path().join("file");
        fs::write(&file, b"x").unwrap();
        assert!(Store::open(&file).is_err());
    }

    #[test]
    fn crash_mid_write_leaves_old_or_new_never_a_mix() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let good = record(att("c1", "n", "eth0"));
        let torn = record(att("c2", "n", "eth0"));
        store.save(&good).unwrap();
        store.save(&torn).unwrap();
        // A crash during a save: the temp file of the new version is half written (what
        // rename-over protects the target from) ...
        let full = fs::read(store.path_of(&good.attachment)).unwrap();
        let tmp_name = format!(".{}.999999.0.tmp", file_name(&good.attachment));
        fs::write(dir.path().join(&tmp_name), &full[..full.len() / 2]).unwrap();
        // ... and a file truncated by something else (a filesystem without ordered writes).
        let torn_path = store.path_of(&torn.attachment);
        let bytes = fs::read(&torn_path).unwrap();
        fs::write(&torn_path, &bytes[..bytes.len() - 40]).unwrap();
        drop(store);

        let store = Store::open(dir.path()).unwrap();
        let (records, errors) = store.load_all();
        assert_eq!(records, vec![good.clone()]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, torn_path);
        assert!(errors[0].reason.starts_with("corrupt:"), "{}", errors[0]);
        let aside = PathBuf::from(format!("{}.corrupt", torn_path.display()));
        assert_eq!(errors[0].moved_to.as_deref(), Some(aside.as_path()));
        // The temp file is gone, the torn one kept aside, and nothing is reported twice.
        assert_eq!(
            names(dir.path()),
            vec![
                file_name(&good.attachment),
                format!("{}.corrupt", file_name(&torn.attachment)),
            ]
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
        );
        let (records, errors) = store.load_all();
        assert_eq!(records, vec![good]);
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn read_all_reads_beside_a_running_daemon_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let good = record(att("c1", "n", "eth0"));
        store.save(&good).unwrap();
        fs::write(store.path_of(&att("bad", "n", "eth0")), b"{").unwrap();
        fs::write(dir.path().join(".x.json.1.0.tmp"), b"{").unwrap();
        let before = names(dir.path());
        // The store stays open (locked): read_all neither waits for nor takes the lock.
        let (records, errors) = read_all(dir.path()).unwrap();
        assert_eq!(records, vec![good]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].moved_to.is_none());
        assert_eq!(names(dir.path()), before);
        assert!(read_all(&dir.path().join("missing")).is_err());
        assert!(!dir.path().join("missing").exists());
    }

    #[test]
    fn a_stale_temp_file_with_a_reused_pid_does_not_block_saving() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let r = record(att("c1", "n", "eth0"));
        // A crashed daemon with our PID (PID 1 in a container, twice) left its first temp file.
        let stale = format!(".{}.{}.0.tmp", file_name(&r.attachment), std::process::id());
        fs::write(dir.path().join(&stale), b"{\"half").unwrap();
        store.load_all();
        store.save(&r).unwrap();
        assert_eq!(names(dir.path()), vec![file_name(&r.attachment)]);
        assert_eq!(store.load_all().0, vec![r]);
    }

    #[test]
    fn symlinks_and_fifos_are_not_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("state")).unwrap();
        let r = record(att("c1", "n", "eth0"));
        let outside = dir.path().join("outside.json");
        fs::write(&outside, b"{}").unwrap();
        let link = store.path_of(&r.attachment);
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        let fifo = store.path_of(&att("fifo", "n", "eth0"));
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let (records, errors) = store.load_all();
        assert!(records.is_empty());
        assert_eq!(errors.len(), 2, "{errors:?}");
        for e in &errors {
            assert!(e.reason.starts_with("not a regular file"), "{e}");
            assert!(e.moved_to.is_none());
        }
        // Saving replaces the link itself, not the file it points to.
        store.save(&r).unwrap();
        assert_eq!(fs::read(&outside).unwrap(), b"{}");
        fs::remove_file(&fifo).unwrap();
        assert_eq!(store.load_all().0, vec![r]);
    }

    #[test]
    fn own_temp_files_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let own = format!(".x.json.{}.7.tmp", std::process::id());
        fs::write(dir.path().join(&own), b"{").unwrap();
        let (records, errors) = store.load_all();
        assert!(records.is_empty() && errors.is_empty());
        assert_eq!(names(dir.path()), vec![own]);
    }

    #[test]
    fn bad_files_are_reported_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let good = record(att("c1", "n", "eth0"));
        store.save(&good).unwrap();
        let valid = fs::read_to_string(store.path_of(&good.attachment)).unwrap();
        let write = |a: &str, content: &str| {
            let path = store.path_of(&att(a, "n", "eth0"));
            fs::write(&path, content).unwrap();
            path
        };
        let empty = write("empty", "");
        let garbage = write("garbage", "\u{0}\u{1}not json at all");
        let not_object = write("array", "[1,2,3]");
        let newer = write("newer", &valid.replace("\"version\": 1", "\"version\": 2"));
        let bad_mac = write(
            "badmac",
            &valid
                .replace("\"c1\"", "\"badmac\"")
                .replace("02:00:00:00:00:01", "02:00:00:00:01"),
        );
        let bad_prefix = write(
            "prefix",
            &valid
                .replace("\"c1\"", "\"prefix\"")
                .replace("\"prefix_len\": 24", "\"prefix_len\": 40"),
        );
        // A valid record under another attachment's name (e.g. copied by hand).
        let misnamed = write("copy", &valid);
        let huge = write("huge", &" ".repeat(MAX_FILE_BYTES as usize + 10));
        // Not a .json file, and a directory with a .json name: neither is a record.
        fs::write(dir.path().join("README"), b"hello").unwrap();
        let dir_json = dir.path().join("ffff.json");
        fs::create_dir(&dir_json).unwrap();

        let (records, errors) = store.load_all();
        assert_eq!(records, vec![good]);
        let reason = |p: &Path| {
            errors
                .iter()
                .find(|e| e.path == p)
                .unwrap_or_else(|| panic!("{} not reported: {errors:?}", p.display()))
        };
        for (path, starts, moved) in [
            (&empty, "empty file", true),
            (&garbage, "corrupt:", true),
            (&not_object, "corrupt:", true),
            (&newer, "format version 2 not supported", false),
            (&bad_mac, "corrupt:", true),
            (&bad_prefix, "invalid: lease prefix_len 40", true),
            (&misnamed, "holds the record of c1/n/eth0", true),
            (&huge, "larger than", true),
            (&dir_json, "not a regular file", false),
        ] {
            let e = reason(path);
            assert!(e.reason.starts_with(starts), "{e}");
            assert_eq!(e.moved_to.is_some(), moved, "{e}");
            assert_eq!(path.exists(), !moved, "{e}");
        }
        assert_eq!(errors.len(), 9, "{errors:?}");
        // Moved-aside files are not read again; the others are reported again.
        let (_, errors) = store.load_all();
        assert_eq!(errors.len(), 2, "{errors:?}");
    }

    #[test]
    fn oversized_lease_lists_are_invalid_and_moved_aside() {
        use crate::dhcp::Route;
        use crate::dhcp::options::{MAX_ADDRESSES, MAX_ROUTES, MAX_SEARCH_NAMES};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let route = Route {
            dst: "10.0.0.0/8".parse().unwrap(),
            gateway: "198.18.0.1".parse().unwrap(),
        };
        // Each record as a person would hand-edit it, in compact JSON: all but the first fit
        // under MAX_FILE_BYTES, so only validate can refuse them.
        let write = |id: &str, edit: &dyn Fn(&mut Lease)| {
            let mut r = record(att(id, "n", "eth0"));
            edit(&mut r.lease);
            let mut v = serde_json::to_value(&r).unwrap();
            v["version"] = FORMAT_VERSION.into();
            let path = store.path_of(&r.attachment);
            fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
            path
        };
        let cases = [
            (
                write("routes10k", &|l| {
                    l.classless_routes = vec![route.clone(); 10_000]
                }),
                "larger than",
            ),
            (
                write("routes5k", &|l| {
                    l.classless_routes = vec![route.clone(); 5000]
                }),
                "invalid: lease has 5000 classless routes, more than 64",
            ),
            (
                write("routes", &|l| {
                    l.static_routes = vec![route.clone(); MAX_ROUTES + 1]
                }),
                "invalid: lease has 65 static routes, more than 64",
            ),
            (
                write("dns", &|l| {
                    l.dns_servers = vec!["198.18.0.53".parse().unwrap(); MAX_ADDRESSES + 1]
                }),
                "invalid: lease has 17 DNS servers",
            ),
            (
                write("search", &|l| {
                    l.domain_search = vec!["a.example".into(); MAX_SEARCH_NAMES + 1]
                }),
                "invalid: lease has 33 search domains",
            ),
            (
                write("domain", &|l| l.domain_name = Some("a".repeat(300))),
                "invalid: lease has a domain name of 300 bytes",
            ),
        ];
        // At the bounds: still a good record.
        let at_bounds = write("full", &|l| {
            l.classless_routes = vec![route.clone(); MAX_ROUTES];
            l.static_routes = vec![route.clone(); MAX_ROUTES];
        });
        let (records, errors) = store.load_all();
        assert_eq!(records.len(), 1, "{errors:?}");
        assert_eq!(records[0].attachment.container_id, "full");
        assert!(at_bounds.exists());
        assert_eq!(errors.len(), cases.len(), "{errors:?}");
        for (path, starts) in &cases {
            let e = errors.iter().find(|e| &e.path == path).unwrap();
            // 10,000 routes do not even fit in MAX_FILE_BYTES; the others are invalid.
            assert!(e.reason.starts_with(starts), "{e}");
            assert!(e.moved_to.is_some(), "moved aside as corrupt: {e}");
            assert!(!path.exists(), "{e}");
        }
    }

    #[test]
    fn unreadable_files_are_reported_and_left_in_place() {
        use std::os::unix::fs::PermissionsExt;
        if nix::unistd::geteuid().is_root() {
            // Root reads a 0000 file anyway; an unreadable file needs an unprivileged user.
            eprintln!("skipped: root ignores file permissions");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let r = record(att("c1", "n", "eth0"));
        store.save(&r).unwrap();
        let path = store.path_of(&r.attachment);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).unwrap();
        let (records, errors) = store.load_all();
        assert!(records.is_empty());
        assert!(errors[0].reason.starts_with("cannot read"), "{}", errors[0]);
        assert!(path.exists());
    }

    #[test]
    fn concurrent_saves_share_directory_fsyncs_and_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(dir.path()).unwrap());
        std::thread::scope(|s| {
            for t in 0..8 {
                let store = store.clone();
                s.spawn(move || {
                    for i in 0..25 {
                        store
                            .save(&record(att(&format!("c{t}-{i}"), "n", "eth0")))
                            .unwrap();
                    }
                });
            }
        });
        // Every new file was followed by a directory sync that covers it.
        let changes = store.changes.load(Ordering::SeqCst);
        assert_eq!(changes, 200);
        assert_eq!(*store.synced.lock().unwrap(), changes);
        let (records, errors) = store.load_all();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(records.len(), 200);
    }

    #[test]
    fn remove_is_durable_and_a_missing_file_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let r = record(att("c1", "n", "eth0"));
        store.remove(&r.attachment).unwrap();
        store.save(&r).unwrap();
        store.remove(&r.attachment).unwrap();
        store.remove(&r.attachment).unwrap();
        assert!(names(dir.path()).is_empty());
        assert!(store.load_all().0.is_empty());
    }

    #[test]
    fn odd_attachments_never_escape_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("state")).unwrap();
        let odd = [
            att("../../etc/passwd", "..", "eth0"),
            att("/", "/", "/"),
            att("a/b", "c", "d"),
            att("a", "b/c", "d"),
            att(".", ".", "."),
            att("x\0y", "\n", "é"),
            att(&"c".repeat(5000), &"n".repeat(5000), "eth0"),
        ];
        let mut seen = std::collections::HashSet::new();
        for a in &odd {
            let name = file_name(a);
            assert_eq!(name.len(), 32 + 5, "{name}");
            assert!(name.ends_with(".json"));
            assert!(name[..32].bytes().all(|b| b.is_ascii_hexdigit()));
            assert!(seen.insert(name.clone()), "collision for {a}");
            assert_eq!(store.path_of(a).parent(), Some(store.dir()));
            store.save(&record(a.clone())).unwrap();
        }
        // Same fields, different split: different files.
        assert_ne!(
            file_name(&att("a/b", "c", "d")),
            file_name(&att("a", "b/c", "d"))
        );
        assert!(!dir.path().join("etc").exists());
        assert_eq!(names(dir.path()), vec!["state".to_string()]);
        let (records, errors) = store.load_all();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(records.len(), odd.len());
        for a in &odd {
            store.remove(a).unwrap();
        }
        assert!(names(store.dir()).is_empty());
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

    #[test]
    fn granted_now_and_from_instant_use_this_boot() {
        let now = Granted::now();
        assert_eq!(now.boot_id, boot_id());
        assert!(!now.boot_id.is_empty(), "no boot id on this machine");
        assert!(now.boottime_ms > 0 && now.unix_ms > 1_600_000_000_000);
        // Ten seconds ago, or as long ago as the monotonic clock goes on a machine booted
        // less than ten seconds ago (an Instant before the clock's start does not exist).
        let wanted = Duration::from_secs(10);
        let (ten_ago, back) = match Instant::now().checked_sub(wanted) {
            Some(t) => (t, wanted),
            None => (Instant::now(), Duration::ZERO),
        };
        let g = Granted::from_instant(ten_ago);
        let elapsed = g.elapsed_until(&Granted::now());
        assert!(
            elapsed >= back && elapsed < back.saturating_add(Duration::from_secs(2)),
            "{elapsed:?}"
        );
        let mut r = record(att("c1", "n", "eth0"));
        r.granted = g;
        let back = r.granted_instant();
        let diff = if back > ten_ago {
            back - ten_ago
        } else {
            ten_ago - back
        };
        assert!(diff < Duration::from_secs(1), "{diff:?}");
        assert!(!r.is_expired());
        assert!(r.expired_after(Duration::from_secs(3600)));
        assert!(!r.expired_after(Duration::from_secs(3599)));
        r.lease.lease_time = u32::MAX;
        assert!(!r.expired_after(Duration::from_secs(u64::from(u32::MAX) + 1)));
    }

    #[test]
    fn granted_instant_saturates() {
        let now = Instant::now();
        if let Some(five_ago) = now.checked_sub(Duration::from_secs(5)) {
            assert_eq!(instant_before(now, Duration::from_secs(5)), five_ago);
        }
        let earliest = instant_before(now, Duration::MAX);
        assert!(earliest < now);
        assert!(earliest.checked_sub(Duration::from_secs(1)).is_none());
    }
}
