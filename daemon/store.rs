//! The state directory, open and locked: the lease daemon's side of the lease files
//! ([`crate::lease_file`], which holds their format and layout).
//!
//! The directory is locked (`flock(2)` on the directory, exclusive) while a [`Store`] is open,
//! so two daemons never share one state directory. Every write is atomic and durable
//! ([`Store::save`]: a temp file, fsync'd, renamed over the record; a new file's directory
//! entry fsync'd too, one directory fsync shared by concurrent saves). At start
//! [`Store::load_all`] reads every record, moves the files it cannot use aside
//! ([`CORRUPT_SUFFIX`]) and deletes temp files a crash left. [`Store::probe_write`] answers
//! CNI STATUS.
//!
//! Here too are the conversions between a record's times and the daemon's lease clock
//! ([`super::clock`]): [`Granted::from_instant`] and [`Record::granted_instant`].
//!
//! All of it is blocking `std::fs`; the daemon calls it through `spawn_blocking`. A write is one
//! file of about 1 KiB plus two `fsync(2)`s.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::lease_file::{
    self, CORRUPT_SUFFIX, Entry, Granted, LoadError, Record, Record6, Stored, classify,
    file_name_of, read_record_file,
};
use crate::rpc::{Attachment, Family};

impl Granted {
    /// The point that was `at` on the lease clock ([`super::clock::now`], e.g.
    /// [`crate::dhcp::client::Client::granted_at`]): now on both clocks, minus how long ago
    /// `at` was (0 if `at` is in the future).
    pub(crate) fn from_instant(at: Instant) -> Granted {
        Granted::before_now(super::clock::now().saturating_duration_since(at))
    }
}

impl Record {
    /// The lease-clock `Instant` ([`super::clock::now`]) the lease was granted at, for
    /// [`Client::resume`](crate::dhcp::client::Client::resume): now minus
    /// [`Record::elapsed_since_granted`], saturating at the earliest `Instant` representable.
    pub(crate) fn granted_instant(&self) -> Instant {
        instant_before(super::clock::now(), self.elapsed_since_granted())
    }
}

impl Record6 {
    /// The lease-clock `Instant` the lease was granted at (as [`Record::granted_instant`]).
    pub(crate) fn granted_instant(&self) -> Instant {
        instant_before(
            super::clock::now(),
            self.granted.elapsed_until(&Granted::now()),
        )
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

/// The state directory, open and locked.
#[derive(Debug)]
pub(crate) struct Store {
    dir: PathBuf,
    /// The directory itself: fsync'd after every rename and unlink, and flock'ed.
    dir_file: File,
    /// Makes temp file names unique within this process.
    seq: AtomicU64,
    /// Renames and unlinks done in the directory so far (see [`Store::sync_dir`]).
    changes: AtomicU64,
    /// The value of `changes` that the last completed directory fsync covers.
    synced: parking_lot::Mutex<u64>,
}

impl Store {
    /// Opens the state directory `dir`, creating it (mode 0700; missing parents with the
    /// default mode) if it does not exist, and locks it against other daemons.
    ///
    /// Errors: the directory cannot be created or opened; `WouldBlock` when another process
    /// (or another open `Store`) holds it.
    pub(crate) fn open(dir: impl AsRef<Path>) -> io::Result<Store> {
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
            synced: parking_lot::Mutex::new(0),
        })
    }

    /// The state directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of `attachment`'s record of `family`.
    pub(crate) fn path_of(&self, attachment: &Attachment, family: Family) -> PathBuf {
        self.dir.join(file_name_of(attachment, family))
    }

    /// Writes `record` (replacing the attachment's previous one) atomically and durably: a
    /// temp file in the same directory, written and fsync'd, renamed over the target, then the
    /// directory fsync'd when the file is new (a replaced file's rename needs no directory sync:
    /// losing it leaves the previous record of the same lease). A crash at any point leaves the
    /// old record or the new one.
    pub(crate) fn save(&self, record: &Stored) -> io::Result<()> {
        let json = record.to_file_bytes().map_err(io::Error::other)?;
        let name = record.file_name();
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
    pub(crate) fn probe_write(&self) -> io::Result<()> {
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

    /// Deletes `attachment`'s record of `family`, durably. A missing record is not an error.
    pub(crate) fn remove(&self, attachment: &Attachment, family: Family) -> io::Result<()> {
        match fs::remove_file(self.path_of(attachment, family)) {
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
        let mut synced = self.synced.lock();
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
    pub(crate) fn load_all(&self) -> (Vec<Stored>, Vec<LoadError>) {
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
                Entry::Record => match read_record_file(&path, &name) {
                    Ok(record) => records.push(record),
                    Err(refused) => {
                        let moved_to = if refused.corrupt {
                            let to = self.dir.join(format!("{name}{CORRUPT_SUFFIX}"));
                            fs::rename(&path, &to).ok().map(|()| to)
                        } else {
                            None
                        };
                        errors.push(LoadError {
                            path,
                            reason: refused.reason,
                            moved_to,
                        });
                    }
                },
            }
        }
        if removed_temp || errors.iter().any(|e| e.moved_to.is_some()) {
            let _ = self.dir_file.sync_all();
        }
        lease_file::sort(&mut records, &mut errors);
        (records, errors)
    }
}

#[cfg(test)]
impl Store {
    /// [`Store::save`] of a DHCPv4 record.
    pub(crate) fn save4(&self, record: &Record) -> io::Result<()> {
        self.save(&Stored::V4(record.clone()))
    }

    /// [`Store::load_all`], DHCPv4 records only.
    pub(crate) fn load_all4(&self) -> (Vec<Record>, Vec<LoadError>) {
        let (records, errors) = self.load_all();
        (v4_only(records), errors)
    }
}

/// The DHCPv4 records of `records`.
#[cfg(test)]
pub(crate) fn v4_only(records: Vec<Stored>) -> Vec<Record> {
    records
        .into_iter()
        .filter_map(|r| match r {
            Stored::V4(r) => Some(r),
            Stored::V6(_) => None,
        })
        .collect()
}

/// [`lease_file::read_all`], DHCPv4 records only, unwrapped.
#[cfg(test)]
fn read_all4(dir: &Path) -> (Vec<Record>, Vec<LoadError>) {
    let (records, errors) = lease_file::read_all(dir).unwrap();
    (v4_only(records), errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::Lease;
    use crate::lease_file::{FORMAT_VERSION_V4, MAX_FILE_BYTES, boot_id, read_all};

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
            ..crate::dhcp::reply::test_lease("198.18.0.10")
        }
    }

    fn record(a: Attachment) -> Record {
        Record {
            client_id: crate::dhcp::message::client_id(&a.container_id, &a.network, &a.ifname),
            attachment: a,
            netns: "/var/run/netns/c1".into(),
            chaddr: [0x02, 0, 0, 0, 0, 0x01],
            derived_chaddr: Some([0x0a, 0x11, 0x22, 0x33, 0x44, 0x55]),
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
            no_unicast_discover: false,
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
        store.save4(&r1).unwrap();
        store.save4(&r2).unwrap();
        // Saving again replaces.
        let mut r1b = r1.clone();
        r1b.renewals = 3;
        r1b.state = "RENEWING".into();
        store.save4(&r1b).unwrap();
        drop(store);
        let store = Store::open(dir.path().join("state")).unwrap();
        let (records, errors) = store.load_all4();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(records, vec![r1b, r2]);
        assert_eq!(names(store.dir()).len(), 2);
    }

    fn record6(a: Attachment) -> Record6 {
        Record6 {
            netns: "/run/netns/c".into(),
            family: Family::Ipv6,
            duid: crate::dhcp6::identity::duid(&a.container_id, &a.network),
            iaid: crate::dhcp6::identity::iaid(&a.ifname),
            attachment: a,
            lease: crate::dhcp6::Leased6::without_ra(crate::dhcp6::Lease6 {
                address: "fd00:cd::105".parse().unwrap(),
                preferred_lifetime: 1800,
                valid_lifetime: 3600,
                t1: 900,
                t2: 1440,
                iaid: 1,
                server_id: vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 6],
                dns_servers: vec![],
                domain_search: vec![],
            }),
            granted: Granted::now(),
            state: "BOUND".into(),
            renewals: 0,
            identity: None,
            priority: Some(5),
        }
    }

    /// A DHCPv6 record lives beside its attachment's DHCPv4 one (`.v6.json`, version 2), both
    /// load back, DEL of one family leaves the other; a damaged or misnamed one is moved aside.
    #[test]
    fn dhcpv6_records_beside_dhcpv4_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("state")).unwrap();
        let a = att("c1", "labnet", "eth0");
        let r4 = record(a.clone());
        let r6 = record6(a.clone());
        store.save4(&r4).unwrap();
        store.save(&Stored::V6(r6.clone())).unwrap();
        let v6_name = lease_file::file_name_of(&a, Family::Ipv6);
        assert!(v6_name.ends_with(".v6.json"), "{v6_name}");
        assert_eq!(names(store.dir()), {
            let mut n = vec![lease_file::file_name(&a), v6_name.clone()];
            n.sort();
            n
        });
        let text = fs::read_to_string(store.path_of(&a, Family::Ipv6)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (v["version"].as_u64(), v["family"].as_str()),
            (Some(2), Some("ipv6"))
        );
        // The DHCPv4 file is still version 1, as before DHCPv6.
        let text4 = fs::read_to_string(store.path_of(&a, Family::Ipv4)).unwrap();
        assert!(text4.starts_with("{\n  \"version\": 1,"), "{text4}");
        let (records, errors) = store.load_all();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(records, vec![Stored::V4(r4), Stored::V6(r6.clone())]);
        store.remove(&a, Family::Ipv4).unwrap();
        let (records, _) = store.load_all();
        assert_eq!(records, vec![Stored::V6(r6.clone())]);
        // Damaged: times out of order. Misnamed: a v6 record in a DHCPv4 file name.
        let mut bad = r6.clone();
        bad.attachment = att("c2", "labnet", "eth0");
        bad.lease.lease.t1 = 5000;
        let bad_path = store.path_of(&bad.attachment, Family::Ipv6);
        fs::write(&bad_path, bad.to_file_bytes().unwrap()).unwrap();
        let mut misnamed = r6.clone();
        misnamed.attachment = att("c3", "labnet", "eth0");
        let misnamed_path = store.path_of(&misnamed.attachment, Family::Ipv4);
        fs::write(&misnamed_path, misnamed.to_file_bytes().unwrap()).unwrap();
        let (records, errors) = store.load_all();
        assert_eq!(records, vec![Stored::V6(r6)]);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().all(|e| e.moved_to.is_some()), "{errors:?}");
        assert!(!bad_path.exists() && !misnamed_path.exists());
    }

    #[test]
    fn the_documented_format() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let r = record(att("c1", "labnet", "eth0"));
        store.save4(&r).unwrap();
        let text = fs::read_to_string(store.path_of(&r.attachment, Family::Ipv4)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["attachment"]["container_id"], "c1");
        assert_eq!(v["client_id"], "0063312f6c61626e65742f65746830");
        assert_eq!(v["chaddr"], "02:00:00:00:00:01");
        assert_eq!(v["derived_chaddr"], "0a:11:22:33:44:55");
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
        store.save4(&r2).unwrap();
        let text = fs::read_to_string(store.path_of(&r.attachment, Family::Ipv4)).unwrap();
        assert!(!text.contains("server_mac"));
        // Unknown fields (added later without a version bump) are ignored.
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["future_field"] = serde_json::json!(42);
        fs::write(store.path_of(&r.attachment, Family::Ipv4), v.to_string()).unwrap();
        let (records, errors) = store.load_all4();
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
        store.save4(&good).unwrap();
        store.save4(&torn).unwrap();
        // A crash during a save: the temp file of the new version is half written (what
        // rename-over protects the target from) ...
        let full = fs::read(store.path_of(&good.attachment, Family::Ipv4)).unwrap();
        let tmp_name = format!(".{}.999999.0.tmp", lease_file::file_name(&good.attachment));
        fs::write(dir.path().join(&tmp_name), &full[..full.len() / 2]).unwrap();
        // ... and a file truncated by something else (a filesystem without ordered writes).
        let torn_path = store.path_of(&torn.attachment, Family::Ipv4);
        let bytes = fs::read(&torn_path).unwrap();
        fs::write(&torn_path, &bytes[..bytes.len() - 40]).unwrap();
        drop(store);

        let store = Store::open(dir.path()).unwrap();
        let (records, errors) = store.load_all4();
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
                lease_file::file_name(&good.attachment),
                format!("{}.corrupt", lease_file::file_name(&torn.attachment)),
            ]
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
        );
        let (records, errors) = store.load_all4();
        assert_eq!(records, vec![good]);
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn read_all_reads_beside_a_running_daemon_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let good = record(att("c1", "n", "eth0"));
        store.save4(&good).unwrap();
        fs::write(store.path_of(&att("bad", "n", "eth0"), Family::Ipv4), b"{").unwrap();
        fs::write(dir.path().join(".x.json.1.0.tmp"), b"{").unwrap();
        let before = names(dir.path());
        // The store stays open (locked): read_all neither waits for nor takes the lock.
        let (records, errors) = read_all4(dir.path());
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
        let stale = format!(
            ".{}.{}.0.tmp",
            lease_file::file_name(&r.attachment),
            std::process::id()
        );
        fs::write(dir.path().join(&stale), b"{\"half").unwrap();
        store.load_all4();
        store.save4(&r).unwrap();
        assert_eq!(
            names(dir.path()),
            vec![lease_file::file_name(&r.attachment)]
        );
        assert_eq!(store.load_all4().0, vec![r]);
    }

    #[test]
    fn symlinks_and_fifos_are_not_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("state")).unwrap();
        let r = record(att("c1", "n", "eth0"));
        let outside = dir.path().join("outside.json");
        fs::write(&outside, b"{}").unwrap();
        let link = store.path_of(&r.attachment, Family::Ipv4);
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        let fifo = store.path_of(&att("fifo", "n", "eth0"), Family::Ipv4);
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let (records, errors) = store.load_all4();
        assert!(records.is_empty());
        assert_eq!(errors.len(), 2, "{errors:?}");
        for e in &errors {
            assert!(e.reason.starts_with("not a regular file"), "{e}");
            assert!(e.moved_to.is_none());
        }
        // Saving replaces the link itself, not the file it points to.
        store.save4(&r).unwrap();
        assert_eq!(fs::read(&outside).unwrap(), b"{}");
        fs::remove_file(&fifo).unwrap();
        assert_eq!(store.load_all4().0, vec![r]);
    }

    #[test]
    fn own_temp_files_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let own = format!(".x.json.{}.7.tmp", std::process::id());
        fs::write(dir.path().join(&own), b"{").unwrap();
        let (records, errors) = store.load_all4();
        assert!(records.is_empty() && errors.is_empty());
        assert_eq!(names(dir.path()), vec![own]);
    }

    #[test]
    fn bad_files_are_reported_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let good = record(att("c1", "n", "eth0"));
        store.save4(&good).unwrap();
        let valid = fs::read_to_string(store.path_of(&good.attachment, Family::Ipv4)).unwrap();
        let write = |a: &str, content: &str| {
            let path = store.path_of(&att(a, "n", "eth0"), Family::Ipv4);
            fs::write(&path, content).unwrap();
            path
        };
        let empty = write("empty", "");
        let garbage = write("garbage", "\u{0}\u{1}not json at all");
        let not_object = write("array", "[1,2,3]");
        let newer = write("newer", &valid.replace("\"version\": 1", "\"version\": 3"));
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

        let (records, errors) = store.load_all4();
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
            (&newer, "format version 3 not supported", false),
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
        let (_, errors) = store.load_all4();
        assert_eq!(errors.len(), 2, "{errors:?}");
    }

    #[test]
    fn oversized_lease_lists_are_invalid_and_moved_aside() {
        use crate::dhcp::Route;
        use crate::dhcp::reply::{MAX_ADDRESSES, MAX_ROUTES, MAX_SEARCH_NAMES};
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
            v["version"] = FORMAT_VERSION_V4.into();
            let path = store.path_of(&r.attachment, Family::Ipv4);
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
        let (records, errors) = store.load_all4();
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
        store.save4(&r).unwrap();
        let path = store.path_of(&r.attachment, Family::Ipv4);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).unwrap();
        let (records, errors) = store.load_all4();
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
                            .save4(&record(att(&format!("c{t}-{i}"), "n", "eth0")))
                            .unwrap();
                    }
                });
            }
        });
        // Every new file was followed by a directory sync that covers it.
        let changes = store.changes.load(Ordering::SeqCst);
        assert_eq!(changes, 200);
        assert_eq!(*store.synced.lock(), changes);
        let (records, errors) = store.load_all4();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(records.len(), 200);
    }

    #[test]
    fn remove_is_durable_and_a_missing_file_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let r = record(att("c1", "n", "eth0"));
        store.remove(&r.attachment, Family::Ipv4).unwrap();
        store.save4(&r).unwrap();
        store.remove(&r.attachment, Family::Ipv4).unwrap();
        store.remove(&r.attachment, Family::Ipv4).unwrap();
        assert!(names(dir.path()).is_empty());
        assert!(store.load_all4().0.is_empty());
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
            let name = lease_file::file_name(a);
            assert_eq!(name.len(), 32 + 5, "{name}");
            assert!(name.ends_with(".json"));
            assert!(name[..32].bytes().all(|b| b.is_ascii_hexdigit()));
            assert!(seen.insert(name.clone()), "collision for {a}");
            assert_eq!(store.path_of(a, Family::Ipv4).parent(), Some(store.dir()));
            store.save4(&record(a.clone())).unwrap();
        }
        // Same fields, different split: different files.
        assert_ne!(
            lease_file::file_name(&att("a/b", "c", "d")),
            lease_file::file_name(&att("a", "b/c", "d"))
        );
        assert!(!dir.path().join("etc").exists());
        assert_eq!(names(dir.path()), vec!["state".to_string()]);
        let (records, errors) = store.load_all4();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(records.len(), odd.len());
        for a in &odd {
            store.remove(a, Family::Ipv4).unwrap();
        }
        assert!(names(store.dir()).is_empty());
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
