//! The Unix-socket listener and one task per connection.
//!
//! Each connection carries one request frame and one response frame ([`crate::rpc`]). A client
//! that connects and sends nothing, or sends more than [`MAX_REQUEST_BYTES`] without a newline,
//! or garbage, gets an error (or is dropped) after [`REQUEST_DEADLINE`] and cannot hold the
//! daemon: every connection is its own task and the accept loop never waits on one.
//!
//! The socket is created mode 0600 in a directory made if missing; a stale socket file left by a
//! crashed daemon is replaced, a live daemon's socket is not. Under systemd socket activation
//! (`LISTEN_PID`/`LISTEN_FDS`, sd_listen_fds(3)) the passed fd 3 is used instead.

use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::{debug, info, warn};

use super::Config;
use super::command;
use super::metrics;
use super::peer::{peer_allowed, peer_groups};
use super::shared::Shared;
use super::store::Store;
use crate::cni::code;
use crate::rpc::{self, FrameError, MAX_REQUEST_BYTES, Response};

/// How often [`trim_after_bursts`] looks whether a burst has ended.
pub(crate) const TRIM_CHECK: Duration = Duration::from_secs(5);

/// Read buffer per connection, bytes: a request is one line of JSON, usually under 1 KiB. (The
/// default 8 KiB made a thousand simultaneous ADDs hold 8 MB of buffers, measured with heaptrack.)
const READ_BUFFER: usize = 1024;

/// Time a client has to send its whole request.
pub(crate) const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// Time a client has to read the daemon's answer (a client that never reads would otherwise
/// hold its connection, and a connection slot, for ever).
pub(crate) const RESPONSE_DEADLINE: Duration = Duration::from_secs(5);

/// Writes one response frame to `write` within `deadline`, then shuts the write side down.
///
/// Errors: the write failed, or `TimedOut` when the peer did not take it in time.
pub(crate) async fn write_response<W>(
    write: &mut W,
    frame: &[u8],
    deadline: Duration,
) -> io::Result<()>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    match tokio::time::timeout(deadline, async {
        write.write_all(frame).await?;
        write.shutdown().await
    })
    .await
    {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the client did not read its answer within {}s",
                deadline.as_secs()
            ),
        )),
    }
}

/// Gives memory freed after a burst back to the kernel. A thousand ADDs at once allocate
/// buffers, frames and task state for each request in flight; glibc keeps what was freed in its
/// arenas, so the daemon's RSS would stay at the burst's peak while it holds a thousand quiet
/// leases (measured: 24.2 MB, 20.8 MB after `malloc_trim(3)`). Every [`TRIM_CHECK`], if requests
/// came since the last look and none is being served now, `malloc_trim(0)` runs on the
/// blocking pool (it takes about a millisecond).
async fn trim_after_bursts(shared: Arc<Shared>) {
    let mut seen = shared.accepted.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(TRIM_CHECK).await;
        let accepted = shared.accepted.load(Ordering::Relaxed);
        if accepted != seen && shared.connections.load(Ordering::Relaxed) == 0 {
            seen = accepted;
            #[cfg(target_env = "gnu")]
            // SAFETY: malloc_trim has no preconditions; it only walks the allocator's arenas.
            let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
        }
    }
}

/// Binds the socket (or takes the activated one), writes the PID file, and serves until
/// SIGTERM/SIGINT. Leases are not released on exit: containers outlive a daemon restart.
pub(crate) async fn serve(config: Config) -> io::Result<()> {
    crate::netns::start_pool()?;
    let listener = listen(&config)?;
    // Bound before anything else happens, so a taken address stops the daemon at once.
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(metrics::bind(addr).await?),
        None => None,
    };
    if let Some(pid_file) = &config.pid_file {
        std::fs::write(pid_file, format!("{}\n", std::process::id()))?;
    }
    let store = Store::open(&config.state_dir).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("state directory {}: {e}", config.state_dir.display()),
        )
    })?;
    // Read once now, before descriptors can run short: leases are checked against it.
    crate::lease_file::read_boot_id()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot read the boot ID: {e}")))?;
    let (records, errors) = store.load_all();
    for e in &errors {
        warn!(error = %e, "persisted lease skipped");
    }
    let shared = Arc::new(Shared::new(config, store));
    // Read the clocks' offset now, before any lease's times are computed.
    let _ = super::clock::now();
    tokio::spawn(super::clock::watch_suspend(shared.suspend.clone()));
    if let Some(listener) = metrics_listener {
        info!(address = %listener.local_addr()?, "metrics served at /metrics");
        let scrape = shared.clone();
        tokio::spawn(metrics::serve(listener, move || {
            scrape.metrics.render(metrics::lease_states(&scrape.table))
        }));
    }
    resume_all(&shared, records).await;
    let socket = match activated_fd() {
        Some(fd) => format!("fd {fd} (systemd socket activation)"),
        None => shared.config.socket_path.display().to_string(),
    };
    info!(%socket, leases = shared.table.len(), "dhcp daemon listening");
    tokio::spawn(trim_after_bursts(shared.clone()));
    tokio::spawn(super::driver::sweep_lost_namespaces(shared.clone()));
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let slots = Arc::new(tokio::sync::Semaphore::new(shared.config.max_connections));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    shared.accepted.fetch_add(1, Ordering::Relaxed);
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        refuse_busy(stream, shared.config.max_connections);
                        continue;
                    };
                    let shared = shared.clone();
                    shared.connections.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(async move {
                        let _permit = permit;
                        connection(shared.clone(), stream).await;
                        shared.connections.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = sigterm.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    if shared.config.release_on_exit {
        info!(
            leases = shared.table.len(),
            "dhcp daemon stopping; releasing every lease"
        );
        // One after the other: a burst of releases overflows dnsmasq's socket (docs/design.md,
        // *DHCP servers*).
        for slot in shared.table.all() {
            command::release_slot(&shared, &slot).await;
        }
    } else {
        info!(
            leases = shared.table.len(),
            "dhcp daemon stopping; leases are kept"
        );
    }
    if let Some(pid_file) = &shared.config.pid_file {
        let _ = std::fs::remove_file(pid_file);
    }
    Ok(())
}

/// Resumes every persisted lease, a few at a time (each enters a namespace and asks netlink
/// about its link): drops those whose container is gone, and their files; keeps those that
/// cannot be resumed for a transient reason, whose tasks try again ([`driver::resume`]).
async fn resume_all(shared: &Arc<Shared>, records: Vec<crate::lease_file::Stored>) {
    use super::driver::{self, Resumed};
    use futures::StreamExt;
    let total = records.len();
    let results: Vec<Resumed> = futures::stream::iter(records)
        .map(|record| {
            let shared = shared.clone();
            async move {
                let attachment = record.attachment().clone();
                let outcome = driver::resume(&shared, record).await;
                if let Resumed::Dropped(why) = &outcome {
                    info!(%attachment, reason = %why, "persisted lease dropped: container gone");
                }
                outcome
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let count = |f: fn(&Resumed) -> bool| results.iter().filter(|r| f(r)).count();
    if total > 0 {
        info!(
            resumed = count(|r| matches!(r, Resumed::Running)),
            dropped = count(|r| matches!(r, Resumed::Dropped(_))),
            retrying = count(|r| matches!(r, Resumed::Retrying)),
            "persisted leases reloaded"
        );
    }
}

fn listen(config: &Config) -> io::Result<UnixListener> {
    if let Some(fd) = activated_fd() {
        // SAFETY: systemd passed us fd 3 as a listening Unix socket (sd_listen_fds(3)).
        let std_listener =
            std::os::unix::net::UnixListener::from(unsafe { OwnedFd::from_raw_fd(fd) });
        std_listener.set_nonblocking(true)?;
        return UnixListener::from_std(std_listener);
    }
    let path = &config.socket_path;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is in use by a running daemon", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    match config.socket_group {
        Some(gid) => {
            std::os::unix::fs::chown(path, None, Some(gid))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
        }
        None => std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?,
    }
    Ok(listener)
}

/// A connection beyond `-max-connections`: an error answer if the socket takes it at once
/// (never waiting), then closed.
fn refuse_busy(stream: UnixStream, max: usize) {
    warn!(max, "connection refused: too many connections");
    let frame = rpc::encode(&Response::error(
        code::TRY_AGAIN_LATER,
        "the DHCP daemon is serving too many connections",
        format!("at most {max} at once (-max-connections); try again"),
    ));
    let _ = stream.try_write(&frame);
}

/// The socket passed by systemd, if this process is the one it was meant for.
fn activated_fd() -> Option<i32> {
    let pid: u32 = std::env::var("LISTEN_PID").ok()?.parse().ok()?;
    let fds: u32 = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
    (pid == std::process::id() && fds >= 1).then_some(3)
}

async fn connection(shared: Arc<Shared>, stream: UnixStream) {
    let group = shared.config.socket_group;
    let denied = match stream.peer_cred() {
        Ok(cred) => match peer_allowed(cred.uid(), cred.gid(), group, || {
            peer_groups(stream.as_fd())
        }) {
            Ok(true) => None,
            Ok(false) => Some(format!(
                "uid {} gid {} may not use the DHCP daemon (allowed: root, the daemon's user{})",
                cred.uid(),
                cred.gid(),
                if group.is_some() {
                    ", its -socket-group"
                } else {
                    ""
                }
            )),
            Err(e) => Some(format!(
                "cannot read the supplementary groups of uid {} (SO_PEERGROUPS): {e}",
                cred.uid()
            )),
        },
        Err(e) => Some(format!("cannot read the peer's credentials: {e}")),
    };
    if let Some(why) = denied {
        warn!(reason = %why, "connection refused");
        let (_, mut write) = stream.into_split();
        let frame = rpc::encode(&Response::error(code::IO_FAILURE, "permission denied", why));
        let _ = write_response(&mut write, &frame, RESPONSE_DEADLINE).await;
        return;
    }
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::with_capacity(READ_BUFFER, read).take(MAX_REQUEST_BYTES as u64);
    let mut frame = Vec::new();
    let read = tokio::time::timeout(REQUEST_DEADLINE, reader.read_until(b'\n', &mut frame)).await;
    let response = match read {
        Err(_) => Some(Response::error(
            code::DECODING_FAILURE,
            "request not received in time",
            format!(
                "send the whole request within {}s",
                REQUEST_DEADLINE.as_secs()
            ),
        )),
        Ok(Err(e)) => {
            debug!(error = %e, "connection read failed");
            None
        }
        Ok(Ok(_)) if frame.last() != Some(&b'\n') => {
            let e = if frame.len() >= MAX_REQUEST_BYTES {
                FrameError::TooLarge(MAX_REQUEST_BYTES)
            } else {
                FrameError::Truncated
            };
            Some(Response::error(
                code::DECODING_FAILURE,
                "bad request frame",
                e.to_string(),
            ))
        }
        Ok(Ok(_)) => Some(match rpc::decode_request(&frame) {
            Ok(request) => command::apply(&shared, request).await,
            Err(e @ FrameError::Version(_)) => Response::error(
                code::INCOMPATIBLE_VERSION,
                "plugin and daemon versions differ",
                e.to_string(),
            ),
            Err(e) => Response::error(code::DECODING_FAILURE, "bad request", e.to_string()),
        }),
    };
    if let Some(response) = response
        && let Err(e) = write_response(&mut write, &rpc::encode(&response), RESPONSE_DEADLINE).await
    {
        debug!(error = %e, "answer not delivered");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client that never reads a large answer cannot hold the connection past the deadline.
    #[tokio::test]
    async fn an_answer_nobody_reads_times_out() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let (_read, mut write) = ours.into_split();
        let frame = vec![b'x'; 8 * 1024 * 1024];
        let started = tokio::time::Instant::now();
        let err = write_response(&mut write, &frame, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));
        drop(theirs);
        // A reader that reads gets the whole frame in time.
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let (_read, mut write) = ours.into_split();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            theirs.read_to_end(&mut got).await.map(|_| got.len())
        });
        write_response(&mut write, &frame, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(reader.await.unwrap().unwrap(), frame.len());
    }
}
