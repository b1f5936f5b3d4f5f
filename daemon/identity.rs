//! What a lease was granted on, and whether a namespace path still names it.
//!
//! The daemon acts inside a container's network namespace long after the ADD that named it: at
//! T1, when a lease is lost or comes back, at DEL, after its own restart. A path names whatever
//! is there *now*: `/proc/PID/ns/net` the namespace of whichever process has that PID today,
//! `/run/netns/NAME` whatever was last bound there. A root daemon that trusted the path could
//! bring up a host interface, send DHCP from it and install a container's address and default
//! route in the host's namespace once the PID is reused. So each lease keeps an [`Identity`] of
//! what it was granted on, and nothing is done in a namespace before it is checked:
//!
//! - While the daemon runs, every lease holds its namespace open (one descriptor, no thread;
//!   the reference keeps a thread per lease inside the namespace for the same effect). A held
//!   namespace cannot be freed, so its nsfs inode number cannot go to another namespace, and
//!   "does the path still name it" is one `stat(2)` against the held descriptor
//!   ([`still_named`]). Holding it also lets the daemon send DHCPRELEASE (RFC 2131 §4.4.6)
//!   after the runtime tore the namespace down but before DEL, which containerd does
//!   (docs/reliability.md).
//! - After a restart the descriptor is gone and the path must be opened again. It is the
//!   lease's namespace only if the boot, the nsfs device and inode, the namespace cookie, the
//!   creating process's start time (for `/proc/PID/...`) and the interface's index and MAC all
//!   agree ([`reopen`]). Any mismatch means the container is gone: the lease is dropped and the
//!   namespace is not touched.
//!
//! This is the choice systemd-networkd and dhcpcd make by construction: they manage one
//! interface (by ifindex) in their own namespace and drop their lease state when that
//! interface goes away, never re-binding a lease to another interface that has the same name.
//!
//! Errors are of two kinds. "Gone" (`ENOENT`, `ESRCH`, a mismatch) is final and drops the lease.
//! Anything else (`EMFILE`, a netlink hiccup, `EACCES`) is transient: the lease is kept and the
//! check retried (docs/reliability.md).

use std::io;
use std::path::{Path, PathBuf};

use crate::lease_file::{Identity, mac, read_boot_id};
use crate::netns::NetNs;

/// The directories a `CNI_NETNS` bind mount may live in (iproute2 and every CRI runtime use
/// one of them); `/var/run` is a symbolic link to `/run` on current systems.
pub(crate) const NETNS_DIRS: [&str; 2] = ["/run/netns", "/var/run/netns"];

/// The shape of an accepted `CNI_NETNS` (before `-hostprefix`), see [`parse_cni_netns`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NetnsForm {
    /// `/run/netns/NAME` or `/var/run/netns/NAME`: a bind mount of an nsfs file (`ip netns
    /// add`, containerd's CRI, CRI-O, podman).
    Named,
    /// `/proc/PID/ns/net`: the namespace of a running process (cri-dockerd, containerd's `ctr`).
    Proc {
        /// The process whose namespace it is.
        pid: u32,
    },
}

/// Checks `CNI_NETNS` against the forms the daemon accepts: `/run/netns/NAME`,
/// `/var/run/netns/NAME` (NAME one path component, not `.` or `..`) or `/proc/PID/ns/net`
/// (PID decimal, not 0). The check is on the text, so no `..` or symbolic-link directory can
/// lead elsewhere; the file itself is then opened without following a symbolic link (except
/// the magic link of the `/proc` form) and must be an nsfs network namespace
/// ([`NetNs::open_with`]). A member of the daemon's `-socket-group` can therefore not make the
/// root daemon open an arbitrary file.
///
/// Errors: a one-line reason naming the accepted forms.
pub(crate) fn parse_cni_netns(cni_netns: &str) -> Result<NetnsForm, String> {
    let refuse = || {
        Err(format!(
            "CNI_NETNS {cni_netns:?} is not of a form the daemon accepts: /run/netns/NAME, /var/run/netns/NAME or /proc/PID/ns/net"
        ))
    };
    if cni_netns.chars().any(char::is_control) {
        return refuse();
    }
    for dir in NETNS_DIRS {
        if let Some(name) = cni_netns
            .strip_prefix(dir)
            .and_then(|rest| rest.strip_prefix('/'))
        {
            return if name.is_empty() || name == "." || name == ".." || name.contains('/') {
                refuse()
            } else {
                Ok(NetnsForm::Named)
            };
        }
    }
    let pid = cni_netns
        .strip_prefix("/proc/")
        .and_then(|rest| rest.strip_suffix("/ns/net"))
        .filter(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|pid| pid.parse::<u32>().ok())
        .filter(|pid| *pid != 0);
    match pid {
        Some(pid) => Ok(NetnsForm::Proc { pid }),
        None => refuse(),
    }
}

/// The outcome of a check that did not fail: the namespace (and interface) is the lease's, or
/// it is gone, with why in words for the log and the lease record.
#[derive(Debug)]
pub(crate) enum Verdict<T> {
    /// Still the lease's.
    Same(T),
    /// Gone for good: drop the lease, touch nothing in whatever the path names now.
    Gone(String),
}

/// Whether an error means the thing looked for no longer exists (`ENOENT`, `ESRCH`, `ENODEV`),
/// rather than a transient failure.
pub(crate) fn is_gone(e: &io::Error) -> bool {
    crate::link::is_not_found(e)
}

/// The start time of process `pid` in clock ticks after boot (field 22 of `/proc/PID/stat`,
/// proc(5)), read under `host_prefix` (the daemon's `-hostprefix`, empty on the host).
///
/// Errors: `NotFound` when no such process exists; `InvalidData` when the file does not parse.
pub(crate) fn proc_start_time(host_prefix: &Path, pid: u32) -> io::Result<u64> {
    let path = crate::daemon::under_prefix(host_prefix, &format!("/proc/{pid}/stat"));
    let text = std::fs::read_to_string(path)?;
    parse_start_time(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/proc/{pid}/stat: no start time"),
        )
    })
}

/// Field 22 of a `/proc/PID/stat` line. The command name (field 2) is in parentheses and may
/// hold spaces and parentheses itself, so the fields are counted after the last `)`.
fn parse_start_time(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    // Fields 3 onwards; the start time is field 22, the 20th of them.
    after.split_whitespace().nth(19)?.parse().ok()
}

/// While the lease holds `held`: does `path` (as the daemon sees it, `-hostprefix` included)
/// still name it, and for a `/proc/PID/ns/net` path is PID still the process it was? One
/// `stat(2)` and, for the `/proc` form, one small read; no namespace is entered.
///
/// Errors: transient failures of those calls (not `ENOENT`, which is [`Verdict::Gone`]).
pub(crate) fn still_named(
    path: &Path,
    form: NetnsForm,
    identity: &Identity,
    host_prefix: &Path,
) -> io::Result<Verdict<()>> {
    if let (NetnsForm::Proc { pid }, Some(start)) = (form, identity.pid_start) {
        match proc_start_time(host_prefix, pid) {
            Ok(now) if now == start => {}
            Ok(_) => {
                return Ok(Verdict::Gone(format!(
                    "process {pid} whose namespace the lease was granted in has exited (its PID now belongs to another process)"
                )));
            }
            Err(e) if is_gone(&e) => {
                return Ok(Verdict::Gone(format!(
                    "process {pid} whose namespace the lease was granted in has exited"
                )));
            }
            Err(e) => return Err(e),
        }
    }
    match crate::netns::identity_of(path) {
        Ok(id) if id == (identity.netns_dev, identity.netns_ino) => Ok(Verdict::Same(())),
        Ok(_) => Ok(Verdict::Gone(format!(
            "{} now names another network namespace than the lease's",
            path.display()
        ))),
        Err(e) if is_gone(&e) => Ok(Verdict::Gone(format!(
            "network namespace {} is gone",
            path.display()
        ))),
        Err(e) => Err(e),
    }
}

/// Opens `path` (a `CNI_NETNS` of form `form`, `-hostprefix` applied) for the daemon: never
/// blocking on a FIFO, not following a symbolic link for the named form, and only if it is a
/// network namespace. Blocking: call it through `spawn_blocking`.
///
/// Errors: the `open(2)` error (`NotFound` when gone); `InvalidInput` when it is not a network
/// namespace; `ELOOP` for a symbolic link where none is allowed.
pub(crate) fn open(path: &Path, form: NetnsForm) -> io::Result<NetNs> {
    NetNs::open_with(path, form == NetnsForm::Named)
}

/// [`open`], and for a `/proc/PID/ns/net` path the process's start time
/// ([`proc_start_time`], under `host_prefix`): what an ADD records, and what a resume of a lease
/// file written before identities were kept fills in. Blocking: call it through
/// `spawn_blocking`.
///
/// Errors: as [`open`] and [`proc_start_time`].
pub(crate) fn open_with_start(
    path: &Path,
    form: NetnsForm,
    host_prefix: &Path,
) -> io::Result<(NetNs, Option<u64>)> {
    let ns = open(path, form)?;
    let pid_start = match form {
        NetnsForm::Proc { pid } => Some(proc_start_time(host_prefix, pid)?),
        NetnsForm::Named => None,
    };
    Ok((ns, pid_start))
}

/// What a namespace path leads to now ([`enter`]): the namespace, opened, and what the checks
/// of a lease compare.
#[derive(Debug)]
pub(crate) struct Entered {
    /// The namespace, to hold for the lease's life.
    pub(crate) ns: NetNs,
    /// nsfs (device, inode) of the open descriptor.
    pub(crate) netns_id: (u64, u64),
    /// For a `/proc/PID` path, the process's start time ([`proc_start_time`]).
    pub(crate) pid_start: Option<u64>,
    /// The namespace's cookie ([`crate::netns::cookie_here`]); `None` before Linux 5.14.
    pub(crate) cookie: Option<u64>,
    /// The interface as netlink reports it now.
    pub(crate) link: crate::link::LinkInfo,
}

/// Opens `path` ([`open_with_start`], on the blocking pool) and, on one of
/// [`NetNs::run_async`]'s threads inside it, reads its cookie and the link `ifname`: what a
/// persisted lease's checks need. Touches nothing.
///
/// Errors: transient failures only; a path that is gone or no network namespace, or an
/// interface that is gone, is [`Verdict::Gone`] with the reason.
pub(crate) async fn enter(
    path: PathBuf,
    form: NetnsForm,
    ifname: String,
    host_prefix: PathBuf,
) -> io::Result<Verdict<Entered>> {
    let opened = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || open_with_start(&path, form, &host_prefix))
            .await
            .map_err(io::Error::other)?
    };
    let (ns, pid_start) = match opened {
        Ok(found) => found,
        Err(e) if is_gone(&e) => {
            return Ok(Verdict::Gone(format!(
                "network namespace {} is gone",
                path.display()
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
            return Ok(Verdict::Gone(format!(
                "{} is no longer a network namespace: {e}",
                path.display()
            )));
        }
        Err(e) => return Err(e),
    };
    let netns_id = ns.identity()?;
    let name = ifname.clone();
    let (cookie, link) = ns
        .run_async(move || {
            let cookie = crate::netns::cookie_here()?;
            let link = match crate::link::link_info_here(&name) {
                Ok(link) => Some(link),
                Err(e) if is_gone(&e) => None,
                Err(e) => return Err(e),
            };
            Ok((cookie, link))
        })
        .await?;
    let Some(link) = link else {
        return Ok(Verdict::Gone(format!(
            "interface {ifname} is gone from {}",
            path.display()
        )));
    };
    Ok(Verdict::Same(Entered {
        ns,
        netns_id,
        pid_start,
        cookie,
        link,
    }))
}

/// After a restart: enters the lease's namespace again by `path` ([`enter`]) and checks that
/// the boot is the one the lease was granted in, that the open file is the same nsfs inode,
/// that a `/proc/PID` path still belongs to the same process, that the namespace has the same
/// cookie, and that `ifname` inside it has the same index and MAC. Acts on nothing: opening a
/// path that names another namespace does it no harm.
///
/// Errors: transient failures only (`EMFILE`, netlink errors...); every "gone" or mismatch is
/// [`Verdict::Gone`] with the reason.
pub(crate) async fn reopen(
    path: PathBuf,
    form: NetnsForm,
    ifname: String,
    identity: Identity,
    host_prefix: PathBuf,
) -> io::Result<Verdict<Entered>> {
    // A boot ID that cannot be read is a transient error, never a reboot.
    let boot = read_boot_id()?;
    if identity.boot_id != boot {
        return Ok(Verdict::Gone(format!(
            "the machine has rebooted since the lease was granted (boot {} then, {} now): its network namespace cannot have survived",
            short(&identity.boot_id),
            short(&boot)
        )));
    }
    let entered = match enter(path.clone(), form, ifname, host_prefix).await? {
        Verdict::Same(entered) => entered,
        Verdict::Gone(why) => return Ok(Verdict::Gone(why)),
    };
    if entered.netns_id != (identity.netns_dev, identity.netns_ino) {
        return Ok(Verdict::Gone(format!(
            "{} now names another network namespace than the lease's",
            path.display()
        )));
    }
    if let (NetnsForm::Proc { pid }, Some(then), Some(now)) =
        (form, identity.pid_start, entered.pid_start)
        && then != now
    {
        return Ok(Verdict::Gone(format!(
            "process {pid} whose namespace the lease was granted in has exited (its PID now belongs to another process)"
        )));
    }
    if let (Some(then), Some(now)) = (identity.netns_cookie, entered.cookie)
        && then != now
    {
        return Ok(Verdict::Gone(format!(
            "{} names a network namespace that reuses the lease's inode number but is another one (cookie {now}, the lease's {then})",
            path.display()
        )));
    }
    if let Some(why) = link_mismatch(&entered.link, &identity) {
        return Ok(Verdict::Gone(why));
    }
    Ok(Verdict::Same(entered))
}

/// Why `link` is not the interface the lease was granted on (another index or MAC: it was
/// deleted and another one made under its name), or `None` when it is.
fn link_mismatch(link: &crate::link::LinkInfo, identity: &Identity) -> Option<String> {
    let mac = link.mac.unwrap_or([0; 6]);
    if link.index != identity.ifindex || mac != identity.mac {
        Some(format!(
            "interface {} is another one than the lease's (index {} MAC {}, the lease's index {} MAC {})",
            link.name,
            link.index,
            mac::to_string(&mac),
            identity.ifindex,
            mac::to_string(&identity.mac),
        ))
    } else {
        None
    }
}

/// The first 8 characters of a boot ID, for messages.
fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_netns_forms() {
        assert_eq!(parse_cni_netns("/run/netns/c1"), Ok(NetnsForm::Named));
        assert_eq!(
            parse_cni_netns("/var/run/netns/cni-1234-abcd"),
            Ok(NetnsForm::Named)
        );
        assert_eq!(
            parse_cni_netns("/proc/4242/ns/net"),
            Ok(NetnsForm::Proc { pid: 4242 })
        );
        for bad in [
            "/run/netns/../../etc/shadow",
            "/run/netns/..",
            "/run/netns/.",
            "/run/netns/",
            "/run/netns/a/b",
            "/run/netnsx/a",
            "/var/run/netns/../netns/x",
            "/tmp/x",
            "relative/netns",
            "/proc/self/ns/net",
            "/proc/0/ns/net",
            "/proc/12/ns/mnt",
            "/proc/12/../1/ns/net",
            "/proc/12/task/13/ns/net",
            "/proc//ns/net",
            "/proc/99999999999/ns/net",
            "/run/netns/a\u{1b}[2J",
            "/run/netns/a\nb",
            "",
        ] {
            let err = parse_cni_netns(bad).unwrap_err();
            assert!(err.contains("/proc/PID/ns/net"), "{bad}: {err}");
        }
    }

    #[test]
    fn start_time_is_field_22_even_with_odd_command_names() {
        // From proc(5): pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt
        // majflt cmajflt utime stime cutime cstime priority nice num_threads itrealvalue
        // starttime ...
        let line =
            "4242 (a) b) (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1234 56";
        assert_eq!(parse_start_time(line), Some(987654));
        assert_eq!(parse_start_time("4242 (x) S 1"), None);
        assert_eq!(parse_start_time("garbage"), None);
        // Our own process: present, and stable between two reads.
        let me = std::process::id();
        let a = proc_start_time(Path::new(""), me).unwrap();
        assert_eq!(proc_start_time(Path::new(""), me).unwrap(), a);
        let missing = proc_start_time(Path::new(""), u32::MAX).unwrap_err();
        assert!(is_gone(&missing), "{missing}");
    }

    fn own_identity() -> (Identity, PathBuf) {
        let path = PathBuf::from(format!("/proc/{}/ns/net", std::process::id()));
        let (dev, ino) = crate::netns::identity_of(&path).unwrap();
        let identity = Identity {
            boot_id: crate::lease_file::boot_id(),
            netns_dev: dev,
            netns_ino: ino,
            netns_cookie: crate::netns::cookie_here().unwrap(),
            pid_start: Some(proc_start_time(Path::new(""), std::process::id()).unwrap()),
            ifindex: 1,
            mac: [0; 6],
        };
        (identity, path)
    }

    #[test]
    fn still_named_tells_same_from_gone() {
        let (identity, path) = own_identity();
        let form = NetnsForm::Proc {
            pid: std::process::id(),
        };
        assert!(matches!(
            still_named(&path, form, &identity, Path::new("")).unwrap(),
            Verdict::Same(())
        ));
        // Another inode at the same path: another namespace.
        let mut other = identity.clone();
        other.netns_ino += 1;
        let Verdict::Gone(why) = still_named(&path, form, &other, Path::new("")).unwrap() else {
            panic!("another inode passed");
        };
        assert!(why.contains("another network namespace"), "{why}");
        // The PID now belongs to a process that started at another time.
        let mut reused = identity.clone();
        reused.pid_start = reused.pid_start.map(|s| s + 1);
        let Verdict::Gone(why) = still_named(&path, form, &reused, Path::new("")).unwrap() else {
            panic!("a reused PID passed");
        };
        assert!(why.contains("has exited"), "{why}");
        // A path that is gone.
        let Verdict::Gone(why) = still_named(
            Path::new("/run/netns/cni-dhcp-no-such-namespace"),
            NetnsForm::Named,
            &identity,
            Path::new(""),
        )
        .unwrap() else {
            panic!("a missing path passed");
        };
        assert!(why.contains("is gone"), "{why}");
    }

    #[tokio::test]
    async fn reopen_checks_boot_cookie_and_interface() {
        let (identity, path) = own_identity();
        let form = NetnsForm::Proc {
            pid: std::process::id(),
        };
        let reopen_with =
            |identity: Identity| reopen(path.clone(), form, "lo".into(), identity, PathBuf::new());
        // `lo` is index 1 with an all-zero MAC in every namespace.
        let Verdict::Same(entered) = reopen_with(identity.clone()).await.unwrap() else {
            panic!("our own namespace and lo did not pass");
        };
        assert_eq!(entered.link.index, 1);
        assert_eq!(entered.netns_id, (identity.netns_dev, identity.netns_ino));
        let mut rebooted = identity.clone();
        rebooted.boot_id = "00000000-another-boot".into();
        let Verdict::Gone(why) = reopen_with(rebooted).await.unwrap() else {
            panic!("another boot passed");
        };
        assert!(why.contains("rebooted"), "{why}");
        if let Some(cookie) = identity.netns_cookie {
            let mut other = identity.clone();
            other.netns_cookie = Some(cookie.wrapping_add(1));
            let Verdict::Gone(why) = reopen_with(other).await.unwrap() else {
                panic!("another cookie passed");
            };
            assert!(why.contains("cookie"), "{why}");
        }
        let mut reused = identity.clone();
        reused.pid_start = reused.pid_start.map(|s| s + 1);
        let Verdict::Gone(why) = reopen_with(reused).await.unwrap() else {
            panic!("a reused PID passed");
        };
        assert!(why.contains("has exited"), "{why}");
        let mut other_ns = identity.clone();
        other_ns.netns_ino += 1;
        let Verdict::Gone(why) = reopen_with(other_ns).await.unwrap() else {
            panic!("another inode passed");
        };
        assert!(why.contains("another network namespace"), "{why}");
        let mut replaced = identity.clone();
        replaced.ifindex = 77;
        let Verdict::Gone(why) = reopen_with(replaced).await.unwrap() else {
            panic!("another ifindex passed");
        };
        assert!(why.contains("another one than the lease's"), "{why}");
        let Verdict::Gone(why) = reopen(
            path.clone(),
            form,
            "nosuch0".into(),
            identity,
            PathBuf::new(),
        )
        .await
        .unwrap() else {
            panic!("a missing interface passed");
        };
        assert!(why.contains("is gone"), "{why}");
    }
}
