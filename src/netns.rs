//! Entering a container's network namespace without moving a runtime thread into it.
//!
//! A socket (packet, UDP or netlink) belongs to the network namespace of the thread that created
//! it, for its whole life, whatever that thread does afterwards. So the daemon never calls
//! `setns(2)` on a tokio worker: [`NetNs::run`] starts a short-lived OS thread, moves only that thread
//! into the namespace (`setns(fd, CLONE_NEWNET)`), runs a closure there (typically: open a socket
//! and return its fd) and lets the thread end. The returned descriptors are then driven from the
//! shared runtime. This keeps the number of threads independent of the number of leases
//! (shared NOTES §3).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};

/// An open handle on a network namespace: the fd of a file such as `/var/run/netns/NAME` or
/// `/proc/PID/ns/net`. Holding it keeps the namespace alive.
#[derive(Debug)]
pub struct NetNs {
    fd: OwnedFd,
    path: PathBuf,
}

impl NetNs {
    /// Opens the namespace file at `path` read-only.
    ///
    /// Errors: the `open(2)` error (`NotFound` when the container's namespace is already gone).
    pub fn open(path: impl AsRef<Path>) -> io::Result<NetNs> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path)?;
        Ok(NetNs {
            fd: file.into(),
            path,
        })
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

    /// Async form of [`NetNs::run`] for use on the runtime: the work happens on its own
    /// short-lived thread (never a runtime or blocking-pool thread, which would stay in the
    /// namespace), and the caller's task waits without blocking a worker.
    pub async fn run_async<T, F>(&self, f: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> io::Result<T> + Send + 'static,
    {
        let fd = self.fd.try_clone()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("netns".into())
            .spawn(move || {
                let result = setns(&fd, CloneFlags::CLONE_NEWNET)
                    .map_err(io::Error::from)
                    .and_then(|()| f());
                let _ = tx.send(result);
            })?;
        rx.await
            .unwrap_or_else(|_| Err(io::Error::other("thread in network namespace panicked")))
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
}
