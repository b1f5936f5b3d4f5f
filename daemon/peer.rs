//! Who may talk to the daemon: the check of a connecting peer's credentials.
//!
//! The daemon runs as root and acts on network namespaces, so its Unix socket is its trust
//! boundary. The socket's file mode (0600, or 0660 with `-socket-group`) keeps others out when
//! the daemon makes the socket itself; this check also covers a socket passed by systemd with
//! looser permissions. It asks the kernel, never the user database: SO_PEERCRED gives the peer's
//! uid and primary gid and SO_PEERGROUPS its supplementary groups, both as they were when the
//! peer called connect(2) (socket(7), unix(7)). That is the same set of groups the kernel itself
//! checks the socket file's mode against, and it needs no NSS lookup: no LDAP round trip on a
//! connection, and nothing a statically linked binary cannot do (static glibc would have to
//! dlopen the NSS modules; see docs/performance.md, *The plugin process*).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The peer's supplementary group IDs as the kernel recorded them at connect(2), in this
/// process's user namespace (SO_PEERGROUPS, socket(7), Linux 4.13 and later). The primary gid is
/// not included; SO_PEERCRED gives it.
///
/// Errors: the getsockopt(2) error, for example `ENOPROTOOPT` on a kernel before 4.13 or
/// `ENOTCONN` on a socket with no peer.
pub(crate) fn peer_groups(fd: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    const GID: usize = std::mem::size_of::<libc::gid_t>();
    // Most users are in a handful of groups; the kernel says how much room it needs if not.
    let mut groups: Vec<libc::gid_t> = vec![0; 32];
    loop {
        let offered = groups.len().saturating_mul(GID);
        let mut len = libc::socklen_t::try_from(offered)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "too many peer groups"))?;
        // SAFETY: `groups` is valid for writes of `len` bytes and outlives the call; `fd` is a
        // borrowed, open descriptor.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let len = len as usize;
        if rc == 0 {
            groups.truncate(len.min(offered) / GID);
            return Ok(groups);
        }
        let error = io::Error::last_os_error();
        // ERANGE: the buffer was too small and `len` now holds the size needed. The peer's
        // groups were fixed at connect(2), so the second call fits; insist on growth so a
        // misbehaving kernel cannot loop us.
        if error.raw_os_error() == Some(libc::ERANGE) && len > offered {
            groups.resize(len.div_ceil(GID), 0);
            continue;
        }
        return Err(error);
    }
}

/// Whether a peer may use the daemon: root, the daemon's own effective user, or, with
/// `-socket-group` (`group`), a process whose primary gid or one of whose supplementary
/// `groups` is that group. `uid`, `gid` from SO_PEERCRED (unix(7)); `groups` from
/// [`peer_groups`], called only when the answer depends on it.
pub(crate) fn peer_allowed(
    uid: u32,
    gid: u32,
    group: Option<u32>,
    groups: impl FnOnce() -> io::Result<Vec<u32>>,
) -> Result<bool, io::Error> {
    if uid == 0 || uid == nix::unistd::geteuid().as_raw() {
        return Ok(true);
    }
    let Some(group) = group else {
        return Ok(false);
    };
    if gid == group {
        return Ok(true);
    }
    Ok(groups()?.contains(&group))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn root_own_user_and_the_group_only() {
        let me = nix::unistd::geteuid().as_raw();
        let none = || -> io::Result<Vec<u32>> { panic!("groups asked for needlessly") };
        assert!(peer_allowed(0, 0, None, none).unwrap());
        assert!(peer_allowed(me, 12345, None, none).unwrap());
        // Some other unprivileged uid (not ours, not root).
        let other = if me == 4242 { 4243 } else { 4242 };
        assert!(!peer_allowed(other, 4242, None, none).unwrap());
        assert!(
            peer_allowed(other, 777, Some(777), none).unwrap(),
            "primary group"
        );
        let supplementary = || Ok(vec![10, 777, 20]);
        assert!(peer_allowed(other, 4242, Some(777), supplementary).unwrap());
        let elsewhere = || Ok(vec![10, 20]);
        assert!(!peer_allowed(other, 4242, Some(777), elsewhere).unwrap());
        let unreadable = || Err(io::Error::from_raw_os_error(libc::ENOPROTOOPT));
        assert!(peer_allowed(other, 4242, Some(777), unreadable).is_err());
    }

    #[test]
    fn peer_groups_are_the_connecting_process_groups() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut ours: Vec<u32> = nix::unistd::getgroups()
            .unwrap()
            .iter()
            .map(|g| g.as_raw())
            .collect();
        for end in [a.as_fd(), b.as_fd()] {
            let mut theirs = peer_groups(end).unwrap();
            theirs.sort_unstable();
            ours.sort_unstable();
            assert_eq!(theirs, ours);
        }
        // A socket with no peer has no peer groups: the error, not an empty list.
        let lone = std::os::unix::net::UnixDatagram::unbound().unwrap();
        assert!(peer_groups(lone.as_fd()).is_err());
    }
}
