//! Entering a container's network namespace without moving a runtime thread into it.
//!
//! A socket (packet, UDP or netlink) belongs to the network namespace of the thread that created
//! it, for its whole life, whatever that thread does afterwards. So the daemon never calls
//! `setns(2)` on a tokio worker: [`NetNs::run`] starts a short-lived OS thread, moves only that thread
//! into the namespace (`setns(fd, CLONE_NEWNET)`), runs a closure there (typically: open a socket
//! and return its fd) and lets the thread end. The returned descriptors are then driven from the
//! shared runtime. This keeps the number of threads independent of the number of leases
//! (docs/design.md, *Sockets, namespaces and threads*).
//!
//! The daemon's form, `NetNs::run_async`, uses a fixed pool of [`MAX_NAMESPACE_THREADS`]
//! threads instead of a thread per call: each job enters the container's namespace, runs, and
//! returns the thread to the namespace it started in before the next job. A thread that cannot
//! return ends rather than run another job in the wrong namespace, and a fresh thread (which
//! enters the home namespace first) takes its place. So a thousand ADDs at once start no thread
//! at all, and the daemon's thread count has a hard bound.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use nix::sched::{CloneFlags, setns};

/// `statfs(2)` `f_type` of nsfs, the filesystem behind every namespace file (`/proc/PID/ns/*`
/// and their bind mounts such as `/var/run/netns/NAME`) since Linux 3.19.
pub(crate) const NSFS_MAGIC: i64 = 0x6e73_6673;

/// `statfs(2)` `f_type` of procfs. Before Linux 3.19 namespace files were procfs inodes; a
/// procfs file is accepted by the filesystem check and then judged by its namespace type, so
/// `/proc/self/status` still fails.
pub(crate) const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// `ioctl(2)` request `NS_GET_NSTYPE` = `_IO(0xb7, 0x3)` (linux/nsfs.h, Linux 4.11): returns the
/// namespace's `CLONE_NEW*` flag.
const NS_GET_NSTYPE: u32 = 0xb7 << 8 | 0x3;

/// The (device, inode) that `path` names now, following symlinks, without opening it: one
/// `stat(2)`, cheap enough to look at a thousand namespaces every few seconds. Compare with
/// [`NetNs::identity`] to tell whether a namespace path still names the same namespace.
///
/// Errors: the `stat(2)` error (`NotFound` once `ip netns del` or the runtime removed it).
pub(crate) fn identity_of(path: &Path) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

/// `SO_NETNS_COOKIE` (Linux 5.14, `include/uapi/asm-generic/socket.h`; the same value on
/// x86 and arm): a socket option that reads the cookie of the socket's network namespace.
const SO_NETNS_COOKIE: libc::c_int = 71;

/// The cookie of the calling thread's network namespace: a 64-bit number the kernel gives each
/// namespace once per boot and never to another one (unlike nsfs inode numbers, which are
/// reused once a namespace is freed). Read with `SO_NETNS_COOKIE` on a throw-away UDP socket,
/// so it must run on a thread inside the namespace ([`NetNs::run_async`]).
///
/// Returns `Ok(None)` on kernels older than 5.14 (`ENOPROTOOPT`). Errors: `socket(2)` or
/// `getsockopt(2)` failing otherwise.
pub(crate) fn cookie_here() -> io::Result<Option<u64>> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: a valid socket, and a buffer of `len` writable bytes for the option value.
    let r = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOPROTOOPT) => Ok(None),
            _ => Err(e),
        };
    }
    Ok((len as usize == std::mem::size_of::<u64>()).then_some(cookie))
}

/// Checks that `path` is a network namespace file (what `CNI_NETNS` must name): a file on nsfs
/// whose namespace type is `CLONE_NEWNET`. Follows symlinks, as `/proc/PID/ns/net` is one.
///
/// Errors: `NotFound` (and the other `open(2)` errors) as they are; `InvalidInput` with a message
/// naming what the file is instead, e.g. "`/tmp/x` is not a network namespace (it is a regular
/// file)" or "(it is a mount namespace)".
#[cfg(test)]
pub(crate) fn check_net_namespace(path: &Path) -> io::Result<()> {
    let file = File::open(path)?;
    check_net_namespace_fd(file.as_fd(), path)
}

/// [`check_net_namespace`] on an already open descriptor (no race between check and use);
/// `path` only names the file in the error message.
pub(crate) fn check_net_namespace_fd(fd: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    let not_net = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is not a network namespace (it is {what})",
                path.display()
            ),
        )
    };
    let fs = nix::sys::statfs::fstatfs(fd).map_err(io::Error::from)?;
    let fs_type = fs.filesystem_type().0 as i64;
    if fs_type != NSFS_MAGIC && fs_type != PROC_SUPER_MAGIC {
        let stat = nix::sys::stat::fstat(fd).map_err(io::Error::from)?;
        return Err(not_net(&format!(
            "{} on a filesystem of type {fs_type:#x}, not nsfs",
            file_kind(stat.st_mode)
        )));
    }
    match namespace_type(fd)? {
        Some(t) if t == libc::CLONE_NEWNET => Ok(()),
        Some(t) => Err(not_net(&format!("{} namespace", namespace_name(t)))),
        None => {
            let stat = nix::sys::stat::fstat(fd).map_err(io::Error::from)?;
            Err(not_net(&format!(
                "{} that is no namespace",
                file_kind(stat.st_mode)
            )))
        }
    }
}

/// The namespace type (`CLONE_NEW*`) of `fd`, or `None` when `fd` is not a namespace file.
/// Uses `NS_GET_NSTYPE`; on kernels without it (before 4.11) falls back to the name the kernel
/// gives the descriptor (`net:[4026531840]` in `/proc/self/fd`).
fn namespace_type(fd: BorrowedFd<'_>) -> io::Result<Option<i32>> {
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the descriptor, which is valid for
    // the borrow.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _) };
    if r >= 0 {
        return Ok(Some(r));
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        // ENOTTY: not an nsfs file (e.g. a procfs file) or a kernel without the ioctl.
        Some(libc::ENOTTY) | Some(libc::EINVAL) => {}
        _ => return Err(err),
    }
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
    let link = link.to_string_lossy();
    let Some((name, rest)) = link.split_once(":[") else {
        return Ok(None);
    };
    if !rest.ends_with(']') {
        return Ok(None);
    }
    Ok(NAMESPACES
        .iter()
        .find(|(_, _, n)| *n == name)
        .map(|(t, _, _)| *t))
}

/// Namespace types: flag, name in error messages (with its article), name in `/proc/PID/ns/`.
const NAMESPACES: &[(i32, &str, &str)] = &[
    (libc::CLONE_NEWNET, "a network", "net"),
    (libc::CLONE_NEWNS, "a mount", "mnt"),
    (libc::CLONE_NEWUTS, "a UTS", "uts"),
    (libc::CLONE_NEWIPC, "an IPC", "ipc"),
    (libc::CLONE_NEWUSER, "a user", "user"),
    (libc::CLONE_NEWPID, "a PID", "pid"),
    (libc::CLONE_NEWCGROUP, "a cgroup", "cgroup"),
    (0x80, "a time", "time"), // CLONE_NEWTIME, Linux 5.6
];

fn namespace_name(t: i32) -> String {
    NAMESPACES
        .iter()
        .find(|(f, _, _)| *f == t)
        .map(|(_, n, _)| n.to_string())
        .unwrap_or_else(|| format!("an unknown ({t:#x})"))
}

fn file_kind(mode: libc::mode_t) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFREG => "a regular file",
        libc::S_IFDIR => "a directory",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFIFO => "a FIFO",
        libc::S_IFSOCK => "a socket",
        libc::S_IFLNK => "a symbolic link",
        _ => "a file of unknown type",
    }
}

/// An open handle on a network namespace: the fd of a file such as `/var/run/netns/NAME` or
/// `/proc/PID/ns/net`. Holding it keeps the namespace alive.
#[derive(Debug)]
pub struct NetNs {
    fd: OwnedFd,
    path: PathBuf,
}

/// Threads of `NetNs::run_async`'s pool: opening a socket in a namespace takes tens of
/// microseconds of work, so a few threads keep up with a thousand ADDs.
pub const MAX_NAMESPACE_THREADS: usize = 4;

/// Starts [`NetNs::run_async`]'s thread pool now, in the calling thread's namespace (which the
/// pool's threads return to after each job), instead of at the first job. The daemon calls it
/// at start-up so a failure shows then, and so the pool's descriptor (the home namespace) is
/// there from the start rather than appearing at the first ADD.
///
/// Errors: the home namespace cannot be opened or no thread can be started.
pub(crate) fn start_pool() -> io::Result<()> {
    Pool::get().map(|_| ())
}

/// A job for the pool: the namespace to enter and the work, which reports its own result.
struct Job {
    ns: OwnedFd,
    work: Box<dyn FnOnce(io::Result<()>) + Send>,
}

/// The pool's shared end: jobs go in here; the threads share the receiver.
struct Pool {
    jobs: Mutex<mpsc::Sender<Job>>,
    queue: Arc<Mutex<mpsc::Receiver<Job>>>,
    /// The namespace the pool's threads live in between jobs (the daemon's own).
    home: Arc<OwnedFd>,
}

impl Pool {
    fn get() -> io::Result<&'static Pool> {
        static POOL: OnceLock<Result<Pool, String>> = OnceLock::new();
        POOL.get_or_init(|| {
            let home: OwnedFd = File::open("/proc/thread-self/ns/net")
                .map_err(|e| format!("cannot open this thread's network namespace: {e}"))?
                .into();
            let (tx, rx) = mpsc::channel();
            let pool = Pool {
                jobs: Mutex::new(tx),
                queue: Arc::new(Mutex::new(rx)),
                home: Arc::new(home),
            };
            for _ in 0..MAX_NAMESPACE_THREADS {
                pool.spawn_thread()
                    .map_err(|e| format!("cannot start a namespace thread: {e}"))?;
            }
            Ok(pool)
        })
        .as_ref()
        .map_err(|e| io::Error::other(e.clone()))
    }

    fn spawn_thread(&self) -> io::Result<()> {
        let queue = self.queue.clone();
        let home = self.home.clone();
        let jobs = self.jobs.lock().clone();
        std::thread::Builder::new()
            .name("netns".into())
            .spawn(move || {
                // A replacement may have been started by a thread stuck in a container's namespace.
                if setns(home.as_fd(), CloneFlags::CLONE_NEWNET).is_err() {
                    return;
                }
                loop {
                    let next = queue.lock().recv();
                    let Ok(job) = next else { return };
                    let entered =
                        setns(job.ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from);
                    let ok = entered.is_ok();
                    (job.work)(entered);
                    if ok && setns(home.as_fd(), CloneFlags::CLONE_NEWNET).is_err() {
                        // Never run another job from here: hand over to a fresh thread and end.
                        let replacement = Pool {
                            jobs: Mutex::new(jobs.clone()),
                            queue: queue.clone(),
                            home: home.clone(),
                        };
                        let _ = replacement.spawn_thread();
                        return;
                    }
                }
            })?;
        Ok(())
    }
}

impl NetNs {
    /// Opens the namespace file at `path` read-only and checks, on the open descriptor, that it
    /// is a network namespace (`check_net_namespace_fd`), so a wrong `CNI_NETNS` fails here
    /// with a clear message instead of later as an `EINVAL` from `setns(2)`.
    ///
    /// Errors: the `open(2)` error (`NotFound` when the container's namespace is already gone);
    /// `InvalidInput` when the file is not a network namespace (e.g. the empty file left at
    /// `/var/run/netns/NAME` once its bind mount is gone, or another namespace type).
    pub fn open(path: impl AsRef<Path>) -> io::Result<NetNs> {
        Self::open_with(path, false)
    }

    /// [`NetNs::open`], refusing a symbolic link as the last component when `no_follow` (a
    /// namespace bind mount such as `/run/netns/NAME` is never one; `/proc/PID/ns/net` always
    /// is, so it needs `no_follow` false).
    ///
    /// The file is opened `O_NONBLOCK`: opening a FIFO for reading would otherwise wait for a
    /// writer forever (nsfs ignores the flag). Errors: as [`NetNs::open`]; `ELOOP` for a
    /// symbolic link with `no_follow`.
    pub(crate) fn open_with(path: impl AsRef<Path>, no_follow: bool) -> io::Result<NetNs> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = path.as_ref().to_path_buf();
        let mut flags = libc::O_NONBLOCK;
        if no_follow {
            flags |= libc::O_NOFOLLOW;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags)
            .open(&path)?;
        check_net_namespace_fd(file.as_fd(), &path)?;
        Ok(NetNs {
            fd: file.into(),
            path,
        })
    }

    /// The namespace's identity: the (device, inode) of its nsfs file, the same for every path
    /// that names it (`/proc/PID/ns/net`, a bind mount under `/var/run/netns`).
    ///
    /// Errors: `fstat(2)` failing.
    pub fn identity(&self) -> io::Result<(u64, u64)> {
        let st = nix::sys::stat::fstat(&self.fd).map_err(io::Error::from)?;
        Ok((st.st_dev, st.st_ino))
    }

    /// The path this handle was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The namespace file descriptor (for `IFLA_NET_NS_FD` and `setns(2)`).
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Runs `f` on a new OS thread that has entered this namespace, blocks until it returns,
    /// and returns its result. The thread ends right after, so nothing else ever runs in the
    /// namespace by accident.
    ///
    /// Errors: `setns(2)` failing (e.g. `EINVAL` when the fd is not a network namespace,
    /// `EPERM` without CAP_SYS_ADMIN), or whatever `f` returns. A panic in `f` is reported as
    /// an `io::Error` of kind `Other`, never propagated.
    pub fn run<T, F>(&self, f: F) -> io::Result<T>
    where
        T: Send,
        F: FnOnce() -> io::Result<T> + Send,
    {
        let fd = self.fd.as_fd();
        std::thread::scope(|scope| {
            let handle = scope.spawn(move || {
                setns(fd, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                f()
            });
            handle
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("thread in network namespace panicked")))
        })
    }

    /// Async form of [`NetNs::run`] for use on the runtime: the work happens on one of the
    /// [`MAX_NAMESPACE_THREADS`] threads of a pool that is never a runtime or blocking-pool
    /// thread (see the module doc), and the caller's task waits without blocking a worker. Jobs
    /// beyond the pool's size wait their turn in order.
    ///
    /// Errors: as [`NetNs::run`]; also `Other` when the pool cannot be started.
    pub(crate) async fn run_async<T, F>(&self, f: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> io::Result<T> + Send + 'static,
    {
        let ns = self.fd.try_clone()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let work = Box::new(move |entered: io::Result<()>| {
            // A panic in `f` must not take the pool thread with it.
            let result = entered.and_then(|()| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                    .unwrap_or_else(|_| Err(io::Error::other("work in network namespace panicked")))
            });
            let _ = tx.send(result);
        });
        Pool::get()?
            .jobs
            .lock()
            .send(Job { ns, work })
            .map_err(|_| io::Error::other("namespace threads are gone"))?;
        rx.await
            .unwrap_or_else(|_| Err(io::Error::other("namespace thread ended without an answer")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_in_own_namespace_sees_loopback() {
        // Entering our own namespace is allowed for root and must find `lo`.
        let ns = NetNs::open("/proc/self/ns/net").unwrap();
        let idx = ns
            .run(|| nix::net::if_::if_nametoindex("lo").map_err(io::Error::from))
            .unwrap();
        assert!(idx > 0);
    }

    #[test]
    fn open_missing_namespace_is_not_found() {
        let err = NetNs::open("/nonexistent/netns/x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn own_network_namespace_passes_the_check() {
        check_net_namespace(Path::new("/proc/self/ns/net")).unwrap();
        // What this kernel reports for it: nsfs (procfs only before Linux 3.19).
        let fs = nix::sys::statfs::statfs("/proc/self/ns/net").unwrap();
        assert_eq!(fs.filesystem_type().0 as i64, NSFS_MAGIC);
    }

    #[test]
    fn identity_by_path_matches_the_open_namespace_and_tells_namespaces_apart() {
        let ns = NetNs::open("/proc/self/ns/net").unwrap();
        let id = ns.identity().unwrap();
        // The same namespace through another path (thread-self) has the same identity.
        assert_eq!(
            identity_of(Path::new("/proc/thread-self/ns/net")).unwrap(),
            id
        );
        // Another namespace file (the mount namespace) is another inode.
        assert_ne!(identity_of(Path::new("/proc/self/ns/mnt")).unwrap(), id);
        assert_eq!(
            identity_of(Path::new("/nonexistent/netns"))
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn mount_namespace_is_not_a_network_namespace() {
        let err = check_net_namespace(Path::new("/proc/self/ns/mnt")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(
            err.to_string()
                .ends_with("is not a network namespace (it is a mount namespace)"),
            "{err}"
        );
        let err = NetNs::open("/proc/self/ns/uts").unwrap_err();
        assert!(err.to_string().contains("(it is a UTS namespace)"), "{err}");
    }

    #[test]
    fn regular_files_and_directories_are_not_namespaces() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let err = check_net_namespace(file.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("(it is a regular file"), "{err}");
        let err = NetNs::open(file.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);

        let dir = tempfile::tempdir().unwrap();
        let err = check_net_namespace(dir.path()).unwrap_err();
        assert!(err.to_string().contains("(it is a directory"), "{err}");
        // A procfs file passes the filesystem check and fails the namespace one.
        let err = check_net_namespace(Path::new("/proc/self/status")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("that is no namespace"), "{err}");
    }

    #[test]
    fn missing_path_is_not_found() {
        let err = check_net_namespace(Path::new("/nonexistent/netns/x")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn the_fallback_names_namespaces_like_the_ioctl() {
        for ns in ["net", "mnt", "uts", "ipc", "pid", "user", "cgroup"] {
            let file = File::open(format!("/proc/self/ns/{ns}")).unwrap();
            let by_ioctl = namespace_type(file.as_fd()).unwrap().unwrap();
            let link = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).unwrap();
            let name = link.to_string_lossy();
            let (short, _) = name.split_once(":[").unwrap();
            let by_name = NAMESPACES.iter().find(|(_, _, n)| *n == short).unwrap().0;
            assert_eq!(by_ioctl, by_name, "{ns}");
        }
    }

    /// A namespace made by `ip netns add` (a bind mount of nsfs onto `/run/netns/NAME`) passes;
    /// once deleted, the path is gone. Needs root and iproute2; skipped otherwise.
    #[test]
    fn ip_netns_add_namespace_passes() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let name = format!("cni-dhcp-nscheck-{}", std::process::id());
        let ip = |args: &[&str]| std::process::Command::new("ip").args(args).status();
        match ip(&["netns", "add", &name]) {
            Ok(s) if s.success() => {}
            other => {
                eprintln!("skipped: ip netns add failed: {other:?}");
                return;
            }
        }
        struct Cleanup<'a>(&'a str);
        impl Drop for Cleanup<'_> {
            fn drop(&mut self) {
                let _ = std::process::Command::new("ip")
                    .args(["netns", "del", self.0])
                    .status();
            }
        }
        let cleanup = Cleanup(&name);
        let path = PathBuf::from(format!("/run/netns/{name}"));
        let result = check_net_namespace(&path);
        let opened = NetNs::open(&path).map(|_| ());
        drop(cleanup);
        result.unwrap();
        opened.unwrap();
        assert_eq!(
            check_net_namespace(&path).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}
