//! 802.1q trunk parents for the `ipvlan` plugin: a `master` named `PARENT.VID` (or `master`
//! plus `vlanId`) that does not exist yet is created as the VLAN link with id VID on PARENT,
//! and deleted again when its last ipvlan slave goes, as Docker's ipvlan driver does with
//! `parent=eth0.50` (docs/design.md, *802.1q trunk parents*).
//!
//! Three facts of the kernel shape this module:
//! - the host namespace cannot list the ipvlan slaves that live in container namespaces, so
//!   "the last slave is gone" needs bookkeeping of its own: one file per attachment (container
//!   ID and interface name) in a directory per VLAN link under [`STATE_DIR`];
//! - deleting a VLAN link deletes every ipvlan slave on it in every namespace, so the link is
//!   deleted only after its last slave's lease was released and the slave deleted (the plugin's
//!   DEL order), and never while another ADD has registered;
//! - a link we did not make must never be deleted: ours carry the interface alias [`MARK`],
//!   set right after creation, and only a link of kind `vlan` with that alias is ever deleted.
//!
//! All changes to one parent's VLAN links and their users happen under an exclusive
//! `flock(2)` on `STATE_DIR/PARENT.lock`, so two ADDs never both create and a DEL never deletes
//! under a new slave. The lock is held for milliseconds (a lookup, maybe a create, a file
//! write), never across DHCP.
//!
//! [`Trunk::parse`] and [`Users`] need no netlink; [`acquire`] and [`release`] do the rest.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use crate::link::{self, LinkInfo, is_not_found};

/// Where the plugin keeps its trunk bookkeeping: on tmpfs, like the links themselves gone at
/// reboot.
pub const STATE_DIR: &str = "/run/cni/ipvlan-trunks";

/// The interface alias (`IFLA_IFALIAS`) of every VLAN link this plugin made; `ip link show`
/// prints it. A link without it is never deleted.
pub const MARK: &str = "cni-dhcp ipvlan: VLAN link made for ipvlan slaves";

/// The largest 802.1q VLAN id (IEEE 802.1Q: 0 and 4095 are reserved).
pub const MAX_VID: u16 = 4094;

/// A VLAN link the configuration asks for: `name` = `PARENT.VID`, 802.1q id `vid` on `parent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trunk {
    /// The VLAN link's name, at most 15 bytes (IFNAMSIZ).
    pub name: String,
    /// The parent (trunk) link's name in the host namespace.
    pub parent: String,
    /// The 802.1q VLAN id, 1-4094.
    pub vid: u16,
    /// Whether the configuration named the VLAN explicitly (`vlanId`): then a link of that name
    /// that is not this VLAN is an error, where a `master` that exists is always used as is.
    pub explicit: bool,
}

impl Trunk {
    /// The VLAN a `master` name may stand for: `Some` when it has the form `PARENT.VID` (VID
    /// decimal digits only), with `Err` naming the problem when VID is out of 1-4094. `None`:
    /// not of that form (the master is an ordinary link). Whether a link of that name exists
    /// is the caller's question: an existing one is used as it is, whatever its name says.
    pub fn parse(master: &str) -> Option<Result<Trunk, String>> {
        let (parent, vid) = master.rsplit_once('.')?;
        if parent.is_empty() || vid.is_empty() || !vid.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(match vid.parse::<u16>() {
            Ok(v) if (1..=MAX_VID).contains(&v) => Ok(Trunk {
                name: master.to_owned(),
                parent: parent.to_owned(),
                vid: v,
                explicit: false,
            }),
            _ => Err(format!(
                "master {master:?}: VLAN id {vid} out of range 1-{MAX_VID}"
            )),
        })
    }

    /// The VLAN link of an explicit `vlanId` on `parent`: named `PARENT.VID`, as `ip link`
    /// and Docker name them.
    ///
    /// Errors: VID out of 1-4094; the name longer than 15 bytes.
    pub fn explicit(parent: &str, vid: i64) -> Result<Trunk, String> {
        let vid = u16::try_from(vid)
            .ok()
            .filter(|v| (1..=MAX_VID).contains(v))
            .ok_or_else(|| format!("vlanId: {vid} out of range 1-{MAX_VID}"))?;
        let name = format!("{parent}.{vid}");
        if name.len() > 15 {
            return Err(format!(
                "vlanId: the VLAN link's name {name:?} is longer than 15 bytes"
            ));
        }
        Ok(Trunk {
            name,
            parent: parent.to_owned(),
            vid,
            explicit: true,
        })
    }

    /// Whether `l` (the link named [`Trunk::name`]) is this VLAN on `parent_index`.
    pub fn matches(&self, l: &LinkInfo, parent_index: u32) -> bool {
        l.kind.as_deref() == Some("vlan")
            && l.vlan_id == Some(self.vid)
            && l.link == Some(parent_index)
    }
}

/// Whether `l` is a VLAN link this plugin made (kind `vlan`, alias [`MARK`]).
pub fn made_by_us(l: &LinkInfo) -> bool {
    l.kind.as_deref() == Some("vlan") && l.alias.as_deref() == Some(MARK)
}

/// One attachment (container and interface) using a VLAN link: what a user file holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct User {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_NETNS`: an entry whose namespace path no longer exists is stale (the container and
    /// its slave are gone without a DEL) and no longer keeps the link.
    pub netns: String,
}

impl User {
    /// The file name of this attachment: container ID and interface name with every byte
    /// outside `[A-Za-z0-9_.-]` written `%XX`, joined by `@` (so distinct pairs never share a
    /// name, and no name is `.`, `..` or contains `/`).
    pub fn file_name(&self) -> String {
        fn esc(s: &str, out: &mut String) {
            for b in s.bytes() {
                if b.is_ascii_alphanumeric()
                    || b == b'_'
                    || b == b'-'
                    || (b == b'.' && !out.is_empty())
                {
                    out.push(b as char);
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
        }
        let mut out = String::new();
        esc(&self.container_id, &mut out);
        out.push('@');
        esc(&self.ifname, &mut out);
        out
    }
}

/// The users of one VLAN link: the directory `STATE_DIR/NAME/`, one JSON file per [`User`].
/// Callers hold the parent's [`ParentLock`].
#[derive(Debug)]
pub struct Users {
    dir: PathBuf,
}

impl Users {
    /// The users of VLAN link `name` under `state_dir`.
    pub fn new(state_dir: &Path, name: &str) -> Users {
        Users {
            dir: state_dir.join(name),
        }
    }

    /// Records `u` (creating the directory; replacing an entry of the same attachment).
    ///
    /// Errors: the directory or file cannot be written.
    pub fn add(&self, u: &User) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let path = self.dir.join(u.file_name());
        let tmp = self.dir.join(format!(".{}.tmp", u.file_name()));
        fs::write(&tmp, serde_json::to_vec(u)?)?;
        fs::rename(tmp, path)
    }

    /// Forgets the attachment of `u` (its container ID and ifname); absent is fine.
    pub fn remove(&self, u: &User) -> io::Result<()> {
        match fs::remove_file(self.dir.join(u.file_name())) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The recorded users whose namespace still exists, after deleting the files of those
    /// whose namespace path is gone (and of unreadable or damaged entries, which cannot
    /// prove a live slave). An absent directory is no users.
    pub fn live(&self) -> io::Result<Vec<User>> {
        let entries = match fs::read_dir(&self.dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            other => other?,
        };
        let mut live = Vec::new();
        for e in entries {
            let e = e?;
            let path = e.path();
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let user = fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<User>(&b).ok());
            match user {
                Some(u) if Path::new(&u.netns).exists() => live.push(u),
                _ => {
                    let _ = fs::remove_file(&path);
                }
            }
        }
        Ok(live)
    }

    /// Removes the (empty) directory once the link is gone; leftovers are harmless.
    pub fn forget(&self) {
        let _ = fs::remove_dir(&self.dir);
    }
}

/// An exclusive `flock(2)` on `STATE_DIR/PARENT.lock`, released on drop (or by the kernel when
/// the process dies).
pub struct ParentLock {
    _lock: nix::fcntl::Flock<File>,
}

impl ParentLock {
    /// Blocks until this process holds the lock of `parent`'s VLAN links.
    ///
    /// Errors: the state directory or lock file cannot be created.
    pub fn take(state_dir: &Path, parent: &str) -> io::Result<ParentLock> {
        fs::create_dir_all(state_dir)?;
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(state_dir.join(format!("{parent}.lock")))?;
        let lock = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| io::Error::from(e))?;
        Ok(ParentLock { _lock: lock })
    }
}

/// Why [`acquire`] failed; each maps to its own CNI error (the plugin decides the codes).
#[derive(Debug)]
pub enum AcquireError {
    /// The parent link does not exist (and neither does the VLAN link).
    ParentMissing(String),
    /// The name is taken by a link that is not this VLAN (with an explicit `vlanId`).
    NameTaken(String),
    /// The kernel has no 802.1q support.
    NoVlanSupport(io::Error),
    /// Anything else: bookkeeping or netlink.
    Other(String, io::Error),
}

/// Makes sure the VLAN link `t` exists and is up, and records `user` as one of its users when
/// the link is ours (made now or earlier by this plugin). Runs in the calling thread's (host)
/// namespace. Returns the link, ready to be an ipvlan master.
///
/// An existing link of that name is used as it is and never recorded (so never deleted),
/// unless `t.explicit` and it is not VLAN `t.vid` on `t.parent`: [`AcquireError::NameTaken`].
pub fn acquire(state_dir: &Path, t: &Trunk, user: &User) -> Result<LinkInfo, AcquireError> {
    let _lock = ParentLock::take(state_dir, &t.parent)
        .map_err(|e| AcquireError::Other(format!("failed to lock {}", t.parent), e))?;
    let t2 = t.clone();
    let found = link::with_handle(|h| async move {
        let parent = match link::link_by_name(&h, &t2.parent).await {
            Ok(p) => Some(p),
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(e),
        };
        let existing = match link::link_by_name(&h, &t2.name).await {
            Ok(l) => Some(l),
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(e),
        };
        Ok((parent, existing))
    })
    .map_err(|e| AcquireError::Other(format!("failed to look up {:?}", t.name), e))?;
    let link = match found {
        (parent, Some(l)) => {
            if t.explicit && !parent.as_ref().is_some_and(|p| t.matches(&l, p.index)) {
                return Err(AcquireError::NameTaken(format!(
                    "link {:?} exists but is not VLAN {} on {:?} (kind {}, VLAN id {:?})",
                    t.name,
                    t.vid,
                    t.parent,
                    l.kind.as_deref().unwrap_or("none"),
                    l.vlan_id
                )));
            }
            if !made_by_us(&l) {
                return Ok(l);
            }
            l
        }
        (None, None) => {
            return Err(AcquireError::ParentMissing(format!(
                "neither {:?} nor its parent {:?} exists in the host namespace",
                t.name, t.parent
            )));
        }
        (Some(p), None) => create(t, p.index)?,
    };
    Users::new(state_dir, &t.name)
        .add(user)
        .map_err(|e| AcquireError::Other(format!("failed to record a user of {:?}", t.name), e))?;
    Ok(link)
}

/// Creates, marks and brings up VLAN `t` on `parent` (the caller holds the lock).
fn create(t: &Trunk, parent: u32) -> Result<LinkInfo, AcquireError> {
    let t2 = t.clone();
    link::with_handle(|h| async move {
        link::create_vlan(&h, &t2.name, parent, t2.vid).await?;
        let l = link::link_by_name(&h, &t2.name).await?;
        link::set_alias_and_up(&h, l.index, MARK).await?;
        link::link_by_index(&h, l.index).await
    })
    .map_err(|e| {
        let unsupported = e.raw_os_error() == Some(libc::EOPNOTSUPP)
            || e.to_string().contains("Operation not supported");
        if unsupported {
            AcquireError::NoVlanSupport(e)
        } else if e.kind() == io::ErrorKind::AlreadyExists {
            AcquireError::NameTaken(format!(
                "{:?} already has a VLAN link with id {} under another name: {e}",
                t.parent, t.vid
            ))
        } else {
            AcquireError::Other(format!("failed to create VLAN link {:?}", t.name), e)
        }
    })
}

/// Forgets `user` as a user of VLAN link `t.name`, and deletes the link when it is ours and
/// no live user is left. Call it after the slave is deleted (and its lease released). Returns
/// whether it deleted the link. A missing link, or one we did not make, is left alone (and is
/// success): DEL is idempotent.
///
/// Errors: bookkeeping or netlink failures other than "not found".
pub fn release(state_dir: &Path, t: &Trunk, user: &User) -> io::Result<bool> {
    let _lock = ParentLock::take(state_dir, &t.parent)?;
    let users = Users::new(state_dir, &t.name);
    users.remove(user)?;
    if !users.live()?.is_empty() {
        return Ok(false);
    }
    let name = t.name.clone();
    let deleted = link::with_handle(|h| async move {
        match link::link_by_name(&h, &name).await {
            Ok(l) if made_by_us(&l) => match link::delete_link(&h, l.index).await {
                Err(e) if !is_not_found(&e) => Err(e),
                _ => Ok(true),
            },
            Ok(_) => Ok(false),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e),
        }
    })?;
    users.forget();
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_finds_parent_and_vid() {
        let t = Trunk::parse("eth0.50").unwrap().unwrap();
        assert_eq!(
            (t.name.as_str(), t.parent.as_str(), t.vid),
            ("eth0.50", "eth0", 50)
        );
        assert!(!t.explicit);
        let t = Trunk::parse("bond0.10.4094").unwrap().unwrap();
        assert_eq!((t.parent.as_str(), t.vid), ("bond0.10", 4094));
        for not_vlan in ["eth0", "eth0.", ".50", "eth0.5a", "eth0.+5", "eth0.-5", ""] {
            assert!(Trunk::parse(not_vlan).is_none(), "{not_vlan}");
        }
        for bad in ["eth0.0", "eth0.4095", "eth0.99999", "eth0.000"] {
            let e = Trunk::parse(bad).unwrap().unwrap_err();
            assert!(e.contains("out of range 1-4094"), "{bad}: {e}");
        }
    }

    #[test]
    fn explicit_names_the_link_and_checks_range_and_length() {
        let t = Trunk::explicit("eth0", 60).unwrap();
        assert_eq!((t.name.as_str(), t.vid, t.explicit), ("eth0.60", 60, true));
        for bad in [0, 4095, -1, 70000] {
            assert!(
                Trunk::explicit("eth0", bad)
                    .unwrap_err()
                    .contains("out of range")
            );
        }
        let e = Trunk::explicit("enp0s31f6abcd", 4000).unwrap_err();
        assert!(e.contains("longer than 15"), "{e}");
    }

    fn link(kind: &str, vid: Option<u16>, parent: u32, alias: Option<&str>) -> LinkInfo {
        LinkInfo {
            index: 9,
            name: "eth0.50".into(),
            mac: None,
            mtu: 1500,
            kind: Some(kind.into()),
            ipvlan_mode: None,
            ipvlan_flag: None,
            link: Some(parent),
            link_netnsid: None,
            up: true,
            vlan_id: vid,
            alias: alias.map(str::to_owned),
        }
    }

    #[test]
    fn only_our_vlan_links_are_ours() {
        let t = Trunk::explicit("eth0", 50).unwrap();
        assert!(t.matches(&link("vlan", Some(50), 2, None), 2));
        assert!(!t.matches(&link("vlan", Some(51), 2, None), 2));
        assert!(!t.matches(&link("vlan", Some(50), 3, None), 2));
        assert!(!t.matches(&link("veth", None, 2, None), 2));
        assert!(made_by_us(&link("vlan", Some(50), 2, Some(MARK))));
        assert!(!made_by_us(&link("vlan", Some(50), 2, None)));
        assert!(!made_by_us(&link(
            "vlan",
            Some(50),
            2,
            Some("uplink to rack 4")
        )));
        assert!(!made_by_us(&link("veth", None, 2, Some(MARK))));
    }

    #[test]
    fn file_names_are_distinct_and_safe() {
        let u = |c: &str, i: &str| User {
            container_id: c.into(),
            ifname: i.into(),
            netns: String::new(),
        };
        assert_eq!(u("abc123", "eth0").file_name(), "abc123@eth0");
        assert_eq!(u("..", "x/y").file_name(), "%2E.@x%2Fy");
        assert_ne!(u("a@b", "c").file_name(), u("a", "b@c").file_name());
        assert!(!u(".hidden", "e").file_name().starts_with('.'));
    }

    #[test]
    fn users_are_added_removed_and_stale_ones_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let users = Users::new(dir.path(), "eth0.50");
        assert!(users.live().unwrap().is_empty(), "no directory yet");
        let netns = dir.path().join("ns-a");
        fs::write(&netns, "").unwrap();
        let a = User {
            container_id: "a".into(),
            ifname: "eth0".into(),
            netns: netns.display().to_string(),
        };
        let gone = User {
            container_id: "b".into(),
            ifname: "eth0".into(),
            netns: dir.path().join("ns-b-gone").display().to_string(),
        };
        users.add(&a).unwrap();
        users.add(&a).unwrap();
        users.add(&gone).unwrap();
        fs::write(dir.path().join("eth0.50/damaged"), "{").unwrap();
        assert_eq!(users.live().unwrap(), vec![a.clone()]);
        let left: Vec<_> = fs::read_dir(dir.path().join("eth0.50")).unwrap().collect();
        assert_eq!(left.len(), 1, "stale and damaged entries deleted");
        users.remove(&a).unwrap();
        users.remove(&a).unwrap();
        assert!(users.live().unwrap().is_empty());
        users.forget();
        assert!(!dir.path().join("eth0.50").exists());
    }

    #[test]
    fn the_parent_lock_excludes_a_second_holder() {
        let dir = tempfile::tempdir().unwrap();
        let held = ParentLock::take(dir.path(), "eth0").unwrap();
        let f = File::open(dir.path().join("eth0.lock")).unwrap();
        let second = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock);
        assert!(second.is_err(), "a second flock got the lock");
        drop(held);
        let f = File::open(dir.path().join("eth0.lock")).unwrap();
        assert!(nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).is_ok());
    }
}
