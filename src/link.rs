//! rtnetlink helpers shared by the lease daemon and the `ipvlan` plugin: look links up (kind,
//! ipvlan mode and flag, master, MAC, MTU, up/down), create an ipvlan slave directly inside a
//! container's network namespace, rename it, bring it up, set its MTU and its IPv6 link-local
//! generation mode, add and list addresses and routes, delete links.
//!
//! Everything here speaks rtnetlink (`NETLINK_ROUTE`, rtnetlink(7)) through the pinned
//! `rtnetlink` 0.24 / `netlink-packet-route` 0.34 crates (docs/design.md, *rtnetlink is pinned*). A
//! netlink socket belongs to the network namespace of the thread that opened it, so code that must
//! look inside a container namespace uses [`with_handle_in`], which opens the connection on a
//! short-lived thread that entered the namespace (see [`crate::netns`]) and drives it with a
//! one-off current-thread tokio runtime. The async building blocks take an [`rtnetlink::Handle`]
//! and act in whatever namespace that handle's socket lives in.
//!
//! Errors are `io::Error`s whose message names the operation and the link. Kernel errno values
//! are kept meaningful through [`io::ErrorKind`]: `ENODEV`/`ENOENT`/`ESRCH` become
//! [`io::ErrorKind::NotFound`] (test with [`is_not_found`]), `EEXIST` becomes
//! [`io::ErrorKind::AlreadyExists`], `EPERM` becomes [`io::ErrorKind::PermissionDenied`].
//!
//! Kernel sources for the ipvlan facts: Documentation/networking/ipvlan.rst (modes l2, l3, l3s;
//! flags bridge, private, vepa; L3 modes carry no broadcast or multicast, §4.2),
//! `include/uapi/linux/if_link.h` (`IFLA_IPVLAN_MODE`, `IFLA_IPVLAN_FLAGS`,
//! `IFLA_INET6_ADDR_GEN_MODE`), drivers/net/ipvlan/ipvlan_main.c (per-slave `dev_id`, see
//! [`kernel_gives_ipvlan_distinct_link_locals`]).

use std::fmt;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::str::FromStr;

use futures::TryStreamExt;
use ipnet::IpNet;
#[cfg(test)]
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoData, InfoIpVlan, InfoVlan, IpVlanFlags,
    LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage,
};
#[cfg(test)]
use netlink_packet_route::route::RouteAddress;
use netlink_packet_route::route::{
    RouteAttribute, RouteHeader, RouteMessage, RouteScope, RouteType,
};
use rtnetlink::{Handle, LinkIpVlan, LinkUnspec, LinkVlan, RouteMessageBuilder};

use crate::netns::NetNs;

/// The ipvlan operating mode (`IFLA_IPVLAN_MODE`, kernel ipvlan doc §4). Names are the
/// lowercase ones of `ip link` and of the CNI plugin's `mode` key: `l2`, `l3`, `l3s`.
///
/// Only [`IpvlanMode::L2`] passes broadcast and multicast to the slaves, so only it can run
/// DHCP (ipvlan doc §4.1 and §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IpvlanMode {
    /// `l2` (`IPVLAN_MODE_L2` = 0): TX in the slave's stack, RX of broadcast and multicast.
    #[default]
    L2,
    /// `l3` (`IPVLAN_MODE_L3` = 1): L2 processing and routing in the master's namespace; no
    /// broadcast or multicast.
    L3,
    /// `l3s` (`IPVLAN_MODE_L3S` = 2): like `l3` with netfilter/conntrack symmetric.
    L3s,
}

impl IpvlanMode {
    /// True for the modes in which slaves neither receive nor send broadcast or multicast
    /// (`l3`, `l3s`; kernel ipvlan doc §4.2), where DHCP cannot work.
    pub fn blocks_broadcast(self) -> bool {
        !matches!(self, IpvlanMode::L2)
    }

    fn to_nl(self) -> netlink_packet_route::link::IpVlanMode {
        use netlink_packet_route::link::IpVlanMode as M;
        match self {
            IpvlanMode::L2 => M::L2,
            IpvlanMode::L3 => M::L3,
            IpvlanMode::L3s => M::L3S,
        }
    }
}

impl fmt::Display for IpvlanMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IpvlanMode::L2 => "l2",
            IpvlanMode::L3 => "l3",
            IpvlanMode::L3s => "l3s",
        })
    }
}

impl FromStr for IpvlanMode {
    type Err = String;

    /// Parses `l2`, `l3` or `l3s` (exactly, lowercase). The error message lists the
    /// accepted values.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "l2" => Ok(IpvlanMode::L2),
            "l3" => Ok(IpvlanMode::L3),
            "l3s" => Ok(IpvlanMode::L3s),
            other => Err(format!(
                "unknown ipvlan mode {other:?}: expected \"l2\", \"l3\" or \"l3s\""
            )),
        }
    }
}

/// The ipvlan port flag (`IFLA_IPVLAN_FLAGS`, kernel ipvlan doc §5; kernel 4.15 and later).
/// Names: `bridge`, `private`, `vepa`. Mode and flag are per master ("port"): the latest
/// slave created or changed sets them for all slaves of that master.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IpvlanFlag {
    /// `bridge` (no flag bits): slaves may talk to each other directly.
    #[default]
    Bridge,
    /// `private` (`IPVLAN_F_PRIVATE` = 0x01): no traffic between slaves.
    Private,
    /// `vepa` (`IPVLAN_F_VEPA` = 0x02): slave-to-slave traffic goes out to the external switch
    /// (802.1Qbg).
    Vepa,
}

impl IpvlanFlag {
    fn to_nl(self) -> IpVlanFlags {
        match self {
            IpvlanFlag::Bridge => IpVlanFlags::empty(),
            IpvlanFlag::Private => IpVlanFlags::Private,
            IpvlanFlag::Vepa => IpVlanFlags::Vepa,
        }
    }

    fn from_nl(flags: IpVlanFlags) -> IpvlanFlag {
        if flags.contains(IpVlanFlags::Private) {
            IpvlanFlag::Private
        } else if flags.contains(IpVlanFlags::Vepa) {
            IpvlanFlag::Vepa
        } else {
            IpvlanFlag::Bridge
        }
    }
}

impl fmt::Display for IpvlanFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IpvlanFlag::Bridge => "bridge",
            IpvlanFlag::Private => "private",
            IpvlanFlag::Vepa => "vepa",
        })
    }
}

impl FromStr for IpvlanFlag {
    type Err = String;

    /// Parses `bridge`, `private` or `vepa` (exactly, lowercase).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bridge" => Ok(IpvlanFlag::Bridge),
            "private" => Ok(IpvlanFlag::Private),
            "vepa" => Ok(IpvlanFlag::Vepa),
            other => Err(format!(
                "unknown ipvlan flag {other:?}: expected \"bridge\", \"private\" or \"vepa\""
            )),
        }
    }
}

/// What rtnetlink reports about one link (an `RTM_NEWLINK` answer), as seen from the
/// namespace the query ran in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index (`ifi_index`), unique within its namespace only.
    pub index: u32,
    /// Interface name (`IFLA_IFNAME`).
    pub name: String,
    /// Hardware address (`IFLA_ADDRESS`) when it is 6 bytes long (Ethernet-like links).
    /// ipvlan slaves report their master's MAC.
    pub mac: Option<[u8; 6]>,
    /// MTU in bytes (`IFLA_MTU`); 0 if the kernel did not say.
    pub mtu: u32,
    /// Link kind from `IFLA_LINKINFO`/`IFLA_INFO_KIND`: `"ipvlan"`, `"macvlan"`, `"veth"`,
    /// `"dummy"`...; `None` for physical devices and loopback.
    pub kind: Option<String>,
    /// `IFLA_IPVLAN_MODE` when `kind` is `"ipvlan"`.
    pub ipvlan_mode: Option<IpvlanMode>,
    /// `IFLA_IPVLAN_FLAGS` when `kind` is `"ipvlan"` and the kernel reports it (4.15+).
    pub ipvlan_flag: Option<IpvlanFlag>,
    /// `IFLA_LINK`: for ipvlan/macvlan/vlan the lower (master) device's index, for veth the
    /// peer's. When [`LinkInfo::link_netnsid`] is set, the index is one of *that* namespace
    /// (e.g. a slave inside a container whose master stayed in the host).
    pub link: Option<u32>,
    /// `IFLA_LINK_NETNSID`: the peer/master's namespace id, relative to the queried namespace,
    /// when it differs from the queried namespace.
    pub link_netnsid: Option<i32>,
    /// Administratively up (`IFF_UP` in `ifi_flags`).
    pub up: bool,
    /// The 802.1q VLAN id (`IFLA_VLAN_ID`, 1-4094) when `kind` is `"vlan"`.
    pub vlan_id: Option<u16>,
    /// The interface alias (`IFLA_IFALIAS`, `ip link set dev X alias TEXT`), when set: the
    /// `ipvlan` plugin marks the VLAN links it makes with one (see [`crate::trunk`]).
    pub alias: Option<String>,
}

impl LinkInfo {
    fn from_message(msg: &LinkMessage) -> LinkInfo {
        let mut info = LinkInfo {
            index: msg.header.index,
            name: String::new(),
            mac: None,
            mtu: 0,
            kind: None,
            ipvlan_mode: None,
            ipvlan_flag: None,
            link: None,
            link_netnsid: None,
            up: msg.header.flags.contains(LinkFlags::Up),
            vlan_id: None,
            alias: None,
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(name) => info.name = name.clone(),
                LinkAttribute::Address(addr) => info.mac = <[u8; 6]>::try_from(&addr[..]).ok(),
                LinkAttribute::Mtu(mtu) => info.mtu = *mtu,
                LinkAttribute::Link(idx) => info.link = Some(*idx),
                LinkAttribute::LinkNetNsId(id) => info.link_netnsid = Some(*id),
                LinkAttribute::IfAlias(a) if !a.is_empty() => info.alias = Some(a.clone()),
                LinkAttribute::LinkInfo(infos) => {
                    for item in infos {
                        match item {
                            NlLinkInfo::Kind(kind) => info.kind = Some(kind.to_string()),
                            NlLinkInfo::Data(InfoData::Vlan(data)) => {
                                info.vlan_id = data.iter().find_map(|d| match d {
                                    InfoVlan::Id(id) => Some(*id),
                                    _ => None,
                                });
                            }
                            NlLinkInfo::Data(InfoData::IpVlan(data)) => {
                                for d in data {
                                    match d {
                                        InfoIpVlan::Mode(m) => {
                                            use netlink_packet_route::link::IpVlanMode as M;
                                            info.ipvlan_mode = match m {
                                                M::L2 => Some(IpvlanMode::L2),
                                                M::L3 => Some(IpvlanMode::L3),
                                                M::L3S => Some(IpvlanMode::L3s),
                                                _ => None,
                                            }
                                        }
                                        InfoIpVlan::Flags(f) => {
                                            info.ipvlan_flag = Some(IpvlanFlag::from_nl(*f))
                                        }
                                        _ => {}
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        info
    }
}

/// One route as this module adds and lists it: destination prefix, optional gateway,
/// optional metric (`RTA_PRIORITY`). Main table, unicast, protocol static.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Destination; `0.0.0.0/0` or `::/0` for a default route.
    pub dst: IpNet,
    /// Next hop; `None` for a directly connected (scope link) route.
    pub gw: Option<IpAddr>,
    /// Route metric (`RTA_PRIORITY`, `ip route ... metric N`); `None` lets the kernel choose
    /// (0 for IPv4, 1024 for IPv6).
    pub metric: Option<u32>,
}

/// IPv6 link-local address generation mode (`IFLA_INET6_ADDR_GEN_MODE`, values of
/// `enum in6_addr_gen_mode` in `include/uapi/linux/if_link.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrGenMode {
    /// 0: modified EUI-64 from the MAC (and `dev_id`) - the kernel default.
    Eui64,
    /// 1: no automatic link-local address at all (kernel 3.17+).
    None,
    /// 2: RFC 7217 stable privacy; needs `stable_secret` set.
    StablePrivacy,
    /// 3: RFC 7217 generator with a random secret (kernel 4.5+, commit cc9da6cc4f56
    /// "ipv6: addrconf: use stable address generator for ARPHRD_NONE").
    Random,
}

impl AddrGenMode {
    fn to_nl(self) -> In6AddrGenMode {
        match self {
            AddrGenMode::Eui64 => In6AddrGenMode::Eui64,
            AddrGenMode::None => In6AddrGenMode::None,
            AddrGenMode::StablePrivacy => In6AddrGenMode::StablePrivacy,
            AddrGenMode::Random => In6AddrGenMode::Random,
        }
    }
}

/// Parameters of a new ipvlan slave for [`create_ipvlan`].
#[derive(Debug, Clone)]
pub struct IpvlanSpec<'a> {
    /// Name the slave is created under (at most 15 bytes). Use a temporary unique name when
    /// the target namespace may already hold a link with the final name, then
    /// [`rename_link`].
    pub name: &'a str,
    /// Index of the master in the namespace of the handle that creates the slave.
    pub master: u32,
    /// ipvlan mode.
    pub mode: IpvlanMode,
    /// ipvlan flag; always sent. Kernels before 4.15 do not know `IFLA_IPVLAN_FLAGS` (their
    /// policy stops at `IFLA_IPVLAN_MODE`) and ignore it: every slave is then `bridge`.
    pub flag: IpvlanFlag,
    /// MTU in bytes; `None` inherits the master's.
    pub mtu: Option<u32>,
    /// Namespace to create the slave in (`IFLA_NET_NS_FD`); `None` keeps it in the handle's
    /// namespace. The slave is born there: it never appears in the host namespace.
    pub netns: Option<&'a NetNs>,
}

/// Maps an rtnetlink error to an `io::Error` whose kind reflects the kernel errno and whose
/// message says what was being done.
fn nl_err(context: impl fmt::Display, err: rtnetlink::Error) -> io::Error {
    match err {
        rtnetlink::Error::NetlinkError(msg) => {
            let errno = msg.raw_code().abs();
            let os = io::Error::from_raw_os_error(errno);
            let kind = match errno {
                libc::ENODEV | libc::ENOENT | libc::ESRCH => io::ErrorKind::NotFound,
                libc::EEXIST => io::ErrorKind::AlreadyExists,
                libc::EPERM | libc::EACCES => io::ErrorKind::PermissionDenied,
                _ => os.kind(),
            };
            io::Error::new(kind, format!("{context}: {os}"))
        }
        other => io::Error::other(format!("{context}: {other}")),
    }
}

/// True when `err` says the link, address, route or namespace does not exist
/// (`ErrorKind::NotFound`, which this module uses for `ENODEV`, `ENOENT` and `ESRCH`).
pub fn is_not_found(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::NotFound
        || matches!(
            err.raw_os_error(),
            Some(libc::ENODEV) | Some(libc::ENOENT) | Some(libc::ESRCH)
        )
}

/// Runs `f` with an rtnetlink handle whose socket lives in the network namespace `ns`, and
/// returns its result. Blocking: the work happens on a short-lived thread that entered `ns`
/// (see [`NetNs::run`]) with its own current-thread tokio runtime, so it may be called from
/// plain threads and from inside a runtime (where it blocks that worker for the duration;
/// prefer `tokio::task::spawn_blocking` there).
///
/// Errors: entering the namespace, opening the netlink socket, or whatever `f` returns.
pub fn with_handle_in<T, F, Fut>(ns: &NetNs, f: F) -> io::Result<T>
where
    T: Send,
    F: FnOnce(Handle) -> Fut + Send,
    Fut: Future<Output = io::Result<T>>,
{
    ns.run(|| run_with_handle(f))
}

/// Like [`with_handle_in`] in the calling thread's own network namespace (a new thread
/// inherits it), for the host side of the `ipvlan` plugin.
pub fn with_handle<T, F, Fut>(f: F) -> io::Result<T>
where
    T: Send,
    F: FnOnce(Handle) -> Fut + Send,
    Fut: Future<Output = io::Result<T>>,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| run_with_handle(f))
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("netlink thread panicked")))
    })
}

fn run_with_handle<T, F, Fut>(f: F) -> io::Result<T>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = io::Result<T>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    rt.block_on(async move {
        // The connection registers its socket with the reactor: create it inside the runtime.
        let (conn, handle, _) = rtnetlink::new_connection()?;
        let task = tokio::spawn(conn);
        let result = f(handle).await;
        task.abort();
        result
    })
}

/// Blocking lookup of the link named `ifname` in the calling thread's network namespace, on
/// the calling thread (with its own current-thread runtime): for a thread that has already
/// entered a container's namespace, such as [`NetNs::run_async`]'s.
///
/// Errors: `NotFound` when the link does not exist; netlink errors otherwise.
pub(crate) fn link_info_here(ifname: &str) -> io::Result<LinkInfo> {
    let name = ifname.to_owned();
    run_with_handle(move |h| async move { link_by_name(&h, &name).await })
}

/// Blocking lookup of the link named `ifname` inside the namespace `ns` (used by the daemon
/// to notice ipvlan slaves and pick its broadcast policy).
///
/// Errors: `NotFound` when the link does not exist; namespace or netlink errors otherwise.
#[cfg(test)]
pub(crate) fn link_info_in(ns: &NetNs, ifname: &str) -> io::Result<LinkInfo> {
    ns.run(|| link_info_here(ifname))
}

async fn first_link(
    req: rtnetlink::LinkGetRequest,
    what: impl fmt::Display,
) -> io::Result<LinkInfo> {
    let mut stream = req.execute();
    match stream.try_next().await {
        Ok(Some(msg)) => Ok(LinkInfo::from_message(&msg)),
        Ok(None) => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("link {what}: not found"),
        )),
        Err(e) => Err(nl_err(format_args!("link {what}"), e)),
    }
}

/// Looks up the link called `name` (`RTM_GETLINK` with `IFLA_IFNAME`).
///
/// Errors: `NotFound` when there is no such link (kernel `ENODEV`).
pub async fn link_by_name(h: &Handle, name: &str) -> io::Result<LinkInfo> {
    if name.is_empty() || name.len() > 15 {
        // IFNAMSIZ is 16 with the NUL; the kernel would answer EINVAL or ENODEV.
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("link {name:?}: not a valid interface name"),
        ));
    }
    first_link(h.link().get().match_name(name), format_args!("{name:?}")).await
}

/// Looks up the link with interface index `index`.
///
/// Errors: `NotFound` when there is no such link.
pub async fn link_by_index(h: &Handle, index: u32) -> io::Result<LinkInfo> {
    first_link(
        h.link().get().match_index(index),
        format_args!("index {index}"),
    )
    .await
}

/// The link that carries the default route of the handle's namespace: the IPv4 default route
/// (`0.0.0.0/0`, main table) with the lowest metric, else the IPv6 one. This is the `ipvlan`
/// plugin's default master.
///
/// Returns `Ok(None)` when there is no default route with an output interface.
pub async fn default_route_link(h: &Handle) -> io::Result<Option<LinkInfo>> {
    for v6 in [false, true] {
        let query = if v6 {
            RouteMessageBuilder::<std::net::Ipv6Addr>::new().build()
        } else {
            RouteMessageBuilder::<std::net::Ipv4Addr>::new().build()
        };
        let routes: Vec<RouteMessage> = h
            .route()
            .get(query)
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl_err("listing routes", e))?;
        let best = routes
            .iter()
            .filter(|r| {
                r.header.destination_prefix_length == 0
                    && r.header.kind == RouteType::Unicast
                    && route_table(r) == u32::from(RouteHeader::RT_TABLE_MAIN)
            })
            .filter_map(|r| {
                let oif = r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Oif(i) => Some(*i),
                    _ => None,
                })?;
                Some((route_priority(r).unwrap_or(0), oif))
            })
            .min();
        if let Some((_, oif)) = best {
            return link_by_index(h, oif).await.map(Some);
        }
    }
    Ok(None)
}

fn route_table(r: &RouteMessage) -> u32 {
    r.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(r.header.table))
}

fn route_priority(r: &RouteMessage) -> Option<u32> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Priority(p) => Some(*p),
        _ => None,
    })
}

/// Creates an ipvlan slave of `spec.master` with the given mode and flag
/// (`ip link add link MASTER name NAME [netns NS] type ipvlan mode MODE FLAG`), optionally
/// directly inside `spec.netns`. Look it up afterwards by name with a handle opened in the
/// target namespace (its index there is not returned by the kernel).
///
/// Errors: `AlreadyExists` when the name is taken in the target namespace; `NotFound` when the
/// master index does not exist; `EOPNOTSUPP`-kind ("operation not supported") when the kernel
/// has no ipvlan driver; `EBUSY`-kind when the master already carries macvlan slaves;
/// `EINVAL`-kind for an MTU above the master's.
pub async fn create_ipvlan(h: &Handle, spec: &IpvlanSpec<'_>) -> io::Result<()> {
    let mut builder =
        LinkIpVlan::new(spec.name, spec.master, spec.mode.to_nl()).flag(spec.flag.to_nl());
    if let Some(mtu) = spec.mtu {
        builder = builder.mtu(mtu);
    }
    if let Some(ns) = spec.netns {
        builder = builder.setns_by_fd(ns.fd().as_raw_fd());
    }
    h.link().add(builder.build()).execute().await.map_err(|e| {
        nl_err(
            format_args!(
                "creating ipvlan {:?} on master index {} (mode {}, flag {})",
                spec.name, spec.master, spec.mode, spec.flag
            ),
            e,
        )
    })
}

/// Creates the 802.1q VLAN link `name` with VLAN id `vid` (1-4094) on the link with index
/// `parent` (`ip link add link PARENT name NAME type vlan id VID`), in the handle's namespace.
/// The kernel starts it down and gives it the parent's MAC.
///
/// Errors: `AlreadyExists` when the name is taken, or the parent already has a VLAN link with
/// this id; `NotFound` when `parent` does not exist; `EOPNOTSUPP`-kind ("operation not
/// supported") when the kernel has no 802.1q support (CONFIG_VLAN_8021Q, module `8021q`, which
/// the kernel loads by itself when it can); `ERANGE`-kind for a VID out of range.
pub async fn create_vlan(h: &Handle, name: &str, parent: u32, vid: u16) -> io::Result<()> {
    h.link()
        .add(LinkVlan::new(name, parent, vid).build())
        .execute()
        .await
        .map_err(|e| {
            nl_err(
                format_args!("creating VLAN link {name:?} (id {vid}) on link index {parent}"),
                e,
            )
        })
}

/// Sets the interface alias of link `index` (`IFLA_IFALIAS`, at most 255 bytes) and brings it
/// up, in one `RTM_SETLINK`.
pub async fn set_alias_and_up(h: &Handle, index: u32, alias: &str) -> io::Result<()> {
    let msg = LinkUnspec::new_with_index(index).alias(alias).up().build();
    set_link(
        h,
        msg,
        format_args!("setting alias {alias:?} and up on link {index}"),
    )
    .await
}

async fn set_link(h: &Handle, msg: LinkMessage, what: impl fmt::Display) -> io::Result<()> {
    h.link()
        .set(msg)
        .execute()
        .await
        .map_err(|e| nl_err(what, e))
}

/// Renames link `index` to `new_name` (`ip link set dev X name NEW`). The link must be down.
///
/// Errors: `AlreadyExists` when the name is taken; `EBUSY`-kind when the link is up.
pub async fn rename_link(h: &Handle, index: u32, new_name: &str) -> io::Result<()> {
    let msg = LinkUnspec::new_with_index(index).name(new_name).build();
    set_link(
        h,
        msg,
        format_args!("renaming link {index} to {new_name:?}"),
    )
    .await
}

/// Sets link `index` administratively up (`ip link set dev X up`).
pub async fn set_link_up(h: &Handle, index: u32) -> io::Result<()> {
    let msg = LinkUnspec::new_with_index(index).up().build();
    set_link(h, msg, format_args!("setting link {index} up")).await
}

/// Sets the MTU of link `index` in bytes (`ip link set dev X mtu N`). For an ipvlan slave it
/// may not exceed the master's.
#[cfg(test)]
pub(crate) async fn set_mtu(h: &Handle, index: u32, mtu: u32) -> io::Result<()> {
    let msg = LinkUnspec::new_with_index(index).mtu(mtu).build();
    set_link(h, msg, format_args!("setting mtu {mtu} on link {index}")).await
}

/// Sets the IPv6 address generation mode of link `index` (`ip link set dev X addrgenmode M`:
/// `IFLA_AF_SPEC` / `AF_INET6` / `IFLA_INET6_ADDR_GEN_MODE`). Takes effect for link-locals
/// generated afterwards, so call it before bringing the link up.
///
/// Errors: `EAFNOSUPPORT`-kind when IPv6 is disabled; `EINVAL`-kind when the kernel does not
/// know the mode (random before 4.5).
pub async fn set_addr_gen_mode(h: &Handle, index: u32, mode: AddrGenMode) -> io::Result<()> {
    let msg = LinkUnspec::new_with_index(index)
        .append_extra_attribute(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
            vec![AfSpecInet6::AddrGenMode(mode.to_nl())],
        )]))
        .build();
    set_link(
        h,
        msg,
        format_args!("setting IPv6 addrgenmode {mode:?} on link {index}"),
    )
    .await
}

/// Deletes link `index` (`ip link del`). Deleting one end of a veth deletes both.
///
/// Errors: `NotFound` when it is already gone (callers that clean up treat that as success).
pub async fn delete_link(h: &Handle, index: u32) -> io::Result<()> {
    h.link()
        .del(index)
        .execute()
        .await
        .map_err(|e| nl_err(format_args!("deleting link {index}"), e))
}

/// Adds `addr` (address and prefix length, e.g. `198.18.0.5/24`) to link `index`
/// (`ip addr add`). For IPv4 the broadcast address is not set; the kernel adds the prefix
/// route.
///
/// Errors: `AlreadyExists` when the link already has it.
pub async fn add_address(h: &Handle, index: u32, addr: IpNet) -> io::Result<()> {
    h.address()
        .add(index, addr.addr(), addr.prefix_len())
        .execute()
        .await
        .map_err(|e| nl_err(format_args!("adding address {addr} to link {index}"), e))
}

/// Lists the addresses of link `index`, both families, in kernel order (IPv6 link-locals
/// included).
pub async fn list_addresses(h: &Handle, index: u32) -> io::Result<Vec<IpNet>> {
    Ok(address_states(h, index)
        .await?
        .into_iter()
        .map(|(net, _)| net)
        .collect())
}

/// Where an IPv6 address stands in Duplicate Address Detection (RFC 4862 §5.4), from its
/// `IFA_F_*` flags (`include/uapi/linux/if_addr.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DadState {
    /// Usable: DAD passed, was never run (`nodad`, IPv4) or is optimistic (RFC 4429).
    Ready,
    /// `IFA_F_TENTATIVE` without `IFA_F_OPTIMISTIC`: DAD is running; the address cannot be a
    /// source and is not answered for.
    Tentative,
    /// `IFA_F_DADFAILED`: another node on the link has it. The kernel keeps an address added
    /// by hand in this state (tentative for ever) rather than removing it.
    Failed,
}

impl DadState {
    /// From the full flag set (`IFA_FLAGS`, or the header's 8 bits on old kernels).
    pub fn from_flags(flags: u32) -> DadState {
        let f = AddressFlags::from_bits_retain(flags);
        if f.contains(AddressFlags::Dadfailed) {
            DadState::Failed
        } else if f.contains(AddressFlags::Tentative) && !f.contains(AddressFlags::Optimistic) {
            DadState::Tentative
        } else {
            DadState::Ready
        }
    }
}

/// The addresses of link `index` with their DAD state (IPv4 ones are always
/// [`DadState::Ready`]).
pub async fn address_states(h: &Handle, index: u32) -> io::Result<Vec<(IpNet, DadState)>> {
    let msgs: Vec<AddressMessage> = h
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(|e| nl_err(format_args!("listing addresses of link {index}"), e))?;
    Ok(msgs
        .iter()
        .filter(|m| m.header.index == index)
        .filter_map(|m| {
            let mut local = None;
            let mut address = None;
            // IFA_FLAGS (Linux 3.14) carries all 32 bits; the header only the low 8.
            let mut flags = u32::from(m.header.flags.bits());
            for a in &m.attributes {
                match a {
                    AddressAttribute::Local(ip) => local = Some(*ip),
                    AddressAttribute::Address(ip) => address = Some(*ip),
                    AddressAttribute::Flags(f) => flags = f.bits(),
                    _ => {}
                }
            }
            let net = IpNet::new(local.or(address)?, m.header.prefix_len).ok()?;
            Some((net, DadState::from_flags(flags)))
        })
        .collect())
}

/// Waits until every IPv6 address of `addrs` on link `index` has finished Duplicate Address
/// Detection, polling every 50 ms; IPv4 addresses in `addrs` are ignored. The kernel starts DAD
/// when the address is added (after a random delay of up to `rtr_solicit_delay`, 1 s, then
/// `dad_transmits` solicitations `retrans_time` apart: 1-2 s by default); until it ends the
/// address cannot be used as a source, so a container would fail its first connections.
///
/// Errors: `AddrInUse` naming the address when DAD failed (a duplicate on the link);
/// `NotFound` when an address is not on the link (any more); `TimedOut` when one is still
/// tentative after `timeout`; netlink errors.
pub async fn wait_for_dad(
    h: &Handle,
    index: u32,
    addrs: &[IpNet],
    timeout: std::time::Duration,
) -> io::Result<()> {
    let wanted: Vec<IpNet> = addrs
        .iter()
        .copied()
        .filter(|a| a.addr().is_ipv6())
        .collect();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let states = address_states(h, index).await?;
        let mut pending = None;
        for a in &wanted {
            match states.iter().find(|(n, _)| n == a).map(|(_, s)| *s) {
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("address {a} is not on link {index}"),
                    ));
                }
                Some(DadState::Failed) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!(
                            "duplicate address detection failed for {a} on link {index}: \
                             another node on the link uses it"
                        ),
                    ));
                }
                Some(DadState::Tentative) => pending = Some(*a),
                Some(DadState::Ready) => {}
            }
        }
        let Some(a) = pending else { return Ok(()) };
        if tokio::time::Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "address {a} on link {index} still tentative (duplicate address detection) \
                     after {timeout:?}"
                ),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Removes `addr` (address and prefix length) from link `index` (`ip addr del`). The kernel
/// drops the routes that depended on it (the prefix route, routes using it as source).
///
/// Returns `Ok(false)` when the link does not carry that address (nothing to do).
/// Errors: netlink failures, `NotFound` when the link is gone.
pub(crate) async fn delete_address(h: &Handle, index: u32, addr: IpNet) -> io::Result<bool> {
    let msgs: Vec<AddressMessage> = h
        .address()
        .get()
        .set_link_index_filter(index)
        .set_address_filter(addr.addr())
        .set_prefix_length_filter(addr.prefix_len())
        .execute()
        .try_collect()
        .await
        .map_err(|e| nl_err(format_args!("looking up address {addr} on link {index}"), e))?;
    let mut deleted = false;
    for m in msgs.into_iter().filter(|m| m.header.index == index) {
        h.address()
            .del(m)
            .execute()
            .await
            .map_err(|e| nl_err(format_args!("deleting address {addr} from link {index}"), e))?;
        deleted = true;
    }
    Ok(deleted)
}

/// Adds `route` out of link `index` in the main table (`ip route add DST [via GW] dev X
/// [metric N]`). Without a gateway the route has scope link. A gateway must be reachable
/// (on a connected prefix) unless the kernel accepts it otherwise.
///
/// Errors: `AlreadyExists` for a duplicate; `ENETUNREACH`-kind for an unreachable gateway;
/// `InvalidInput` when the gateway's family differs from the destination's.
pub async fn add_route(h: &Handle, index: u32, route: &RouteSpec) -> io::Result<()> {
    let mut what = format!("adding route {}", route.dst);
    match route.gw {
        Some(gw) => what.push_str(&format!(" via {gw}")),
        None => what.push_str(" on-link"),
    }
    if let Some(m) = route.metric {
        what.push_str(&format!(" metric {m}"));
    }
    what.push_str(&format!(" on link {index}"));
    fn invalid(what: &str, e: impl fmt::Display) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: {e}"))
    }
    if let Some(gw) = route.gw
        && gw.is_ipv4() != route.dst.addr().is_ipv4()
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what}: gateway and destination families differ"),
        ));
    }
    let mut b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(route.dst.network(), route.dst.prefix_len())
        .map_err(|e| invalid(&what, e))?
        .output_interface(index);
    match route.gw {
        Some(gw) => b = b.gateway(gw).map_err(|e| invalid(&what, e))?,
        None => b = b.scope(RouteScope::Link),
    }
    if let Some(m) = route.metric {
        b = b.priority(m);
    }
    h.route()
        .add(b.build())
        .execute()
        .await
        .map_err(|e| nl_err(&what, e))
}

/// Lists the main-table unicast routes whose output interface is link `index`, both families
/// (including the kernel's prefix routes and, for IPv6, `fe80::/64`).
#[cfg(test)]
pub(crate) async fn list_routes(h: &Handle, index: u32) -> io::Result<Vec<RouteSpec>> {
    let mut out = Vec::new();
    for v6 in [false, true] {
        let query = if v6 {
            RouteMessageBuilder::<std::net::Ipv6Addr>::new().build()
        } else {
            RouteMessageBuilder::<std::net::Ipv4Addr>::new().build()
        };
        let routes: Vec<RouteMessage> = h
            .route()
            .get(query)
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl_err("listing routes", e))?;
        for r in &routes {
            if r.header.kind != RouteType::Unicast
                || route_table(r) != u32::from(RouteHeader::RT_TABLE_MAIN)
            {
                continue;
            }
            let mut oif = None;
            let mut dst = None;
            let mut gw = None;
            for a in &r.attributes {
                match a {
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    RouteAttribute::Destination(d) => dst = route_addr(d),
                    RouteAttribute::Gateway(g) => gw = route_addr(g),
                    _ => {}
                }
            }
            if oif != Some(index) {
                continue;
            }
            let dst = dst.unwrap_or(if r.header.address_family == AddressFamily::Inet6 {
                IpAddr::from([0u16; 8])
            } else {
                IpAddr::from([0u8; 4])
            });
            if let Ok(dst) = IpNet::new(dst, r.header.destination_prefix_length) {
                out.push(RouteSpec {
                    dst,
                    gw,
                    metric: route_priority(r),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
fn route_addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// Parses the `major.minor` prefix of a kernel release string such as `6.1.0-27-cloud-amd64`
/// or `6.18.44-fc-v669`. `None` when it does not start with two dot-separated numbers.
pub(crate) fn parse_kernel_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor: String = parts
        .next()?
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    Some((major, minor.parse().ok()?))
}

/// The running kernel's release (`uname -r`, from `uname(2)`).
pub fn kernel_release() -> io::Result<String> {
    let uts = nix::sys::utsname::uname().map_err(io::Error::from)?;
    Ok(uts.release().to_string_lossy().into_owned())
}

/// True when kernels of this release give every ipvlan slave its own `dev_id`, so the
/// EUI-64 link-local addresses of slaves (which all share the master's MAC) differ and IPv6
/// DAD does not fail on them.
///
/// Source: drivers/net/ipvlan/ipvlan_main.c, `ipvlan_link_new()`: "Since L2 address is shared
/// among all IPvlan slaves including master, use unique 16 bit dev-ids to differentiate among
/// them ... [see addrconf_ifid_eui48()]" (an IDA per port hands out 0x1..0xFFFE), and
/// net/ipv6/addrconf.c `addrconf_ifid_eui48()`, which puts a non-zero `dev_id` in place of
/// `ff:fe` in the interface identifier. Checked in kernel trees: absent from 4.9, present in
/// 4.14 (before ipvlan flags, which arrived in 4.15). The exact first release between those
/// two was not verified, so the threshold is the conservative 4.14. Unparseable releases
/// count as old.
pub fn kernel_gives_ipvlan_distinct_link_locals(release: &str) -> bool {
    parse_kernel_release(release).is_some_and(|v| v >= (4, 14))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn mode_and_flag_names_round_trip() {
        for m in [IpvlanMode::L2, IpvlanMode::L3, IpvlanMode::L3s] {
            assert_eq!(m.to_string().parse::<IpvlanMode>().unwrap(), m);
        }
        for f in [IpvlanFlag::Bridge, IpvlanFlag::Private, IpvlanFlag::Vepa] {
            assert_eq!(f.to_string().parse::<IpvlanFlag>().unwrap(), f);
        }
        assert!("L2".parse::<IpvlanMode>().is_err());
        assert!("".parse::<IpvlanFlag>().is_err());
        assert!(!IpvlanMode::L2.blocks_broadcast());
        assert!(IpvlanMode::L3.blocks_broadcast() && IpvlanMode::L3s.blocks_broadcast());
    }

    #[test]
    fn dad_state_from_flags() {
        // IFA_F_PERMANENT (0x80) alone, IPv4 or DAD over; nodad (0x02).
        assert_eq!(DadState::from_flags(0x80), DadState::Ready);
        assert_eq!(DadState::from_flags(0x82), DadState::Ready);
        assert_eq!(DadState::from_flags(0xc0), DadState::Tentative);
        // Optimistic (RFC 4429) is usable while tentative.
        assert_eq!(DadState::from_flags(0xc4), DadState::Ready);
        // DAD failed: set together with tentative.
        assert_eq!(DadState::from_flags(0xc8), DadState::Failed);
        // Flags above bit 7 (IFA_F_NOPREFIXROUTE 0x200) change nothing.
        assert_eq!(DadState::from_flags(0x240), DadState::Tentative);
    }

    #[test]
    fn kernel_release_parsing_and_threshold() {
        assert_eq!(parse_kernel_release("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(parse_kernel_release("6.1.0-27-cloud-amd64"), Some((6, 1)));
        assert_eq!(parse_kernel_release("4.9"), Some((4, 9)));
        assert_eq!(parse_kernel_release("5.10rc1"), Some((5, 10)));
        assert_eq!(parse_kernel_release("garbage"), None);
        assert_eq!(parse_kernel_release("6"), None);
        assert!(kernel_gives_ipvlan_distinct_link_locals(
            "6.1.0-27-cloud-amd64"
        ));
        assert!(kernel_gives_ipvlan_distinct_link_locals("4.14.0"));
        assert!(!kernel_gives_ipvlan_distinct_link_locals("4.9.337"));
        assert!(!kernel_gives_ipvlan_distinct_link_locals("3.10.0-1160.el7"));
        assert!(!kernel_gives_ipvlan_distinct_link_locals("weird"));
        assert!(parse_kernel_release(&kernel_release().unwrap()).is_some());
    }

    /// A named network namespace made with `ip netns add`, deleted on drop.
    struct TempNs {
        name: String,
        ns: NetNs,
    }

    impl TempNs {
        fn new() -> TempNs {
            static N: AtomicU32 = AtomicU32::new(0);
            let name = format!(
                "cnidhcp-lt-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            );
            run("ip", &["netns", "add", &name]);
            let ns = NetNs::open(format!("/run/netns/{name}")).unwrap();
            TempNs { name, ns }
        }

        fn ip(&self, args: &[&str]) {
            let mut all = vec!["-n", &self.name];
            all.extend_from_slice(args);
            run("ip", &all);
        }
    }

    impl Drop for TempNs {
        fn drop(&mut self) {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name])
                .status();
        }
    }

    fn run(cmd: &str, args: &[&str]) {
        let out = Command::new(cmd).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{cmd} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn link_info_reports_kind_mac_master_and_state() {
        let t = TempNs::new();
        t.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
        t.ip(&[
            "link",
            "add",
            "m0",
            "link",
            "v0",
            "address",
            "02:00:00:00:00:42",
            "mtu",
            "1400",
            "type",
            "macvlan",
            "mode",
            "bridge",
        ]);
        let v0 = link_info_in(&t.ns, "v0").unwrap();
        let m0 = link_info_in(&t.ns, "m0").unwrap();
        assert_eq!(v0.kind.as_deref(), Some("veth"));
        assert_eq!(m0.kind.as_deref(), Some("macvlan"));
        assert_eq!(m0.name, "m0");
        assert_eq!(m0.mac, Some([2, 0, 0, 0, 0, 0x42]));
        assert_eq!(m0.mtu, 1400);
        assert_eq!(m0.link, Some(v0.index));
        assert_eq!(m0.link_netnsid, None);
        assert_eq!(m0.ipvlan_mode, None);
        assert!(!m0.up);
        let lo = link_info_in(&t.ns, "lo").unwrap();
        assert_eq!(lo.kind, None);
        assert_eq!(lo.index, 1);

        let err = link_info_in(&t.ns, "nosuch0").unwrap_err();
        assert!(is_not_found(&err), "{err}");
        let err = link_info_in(&t.ns, "a-name-way-too-long").unwrap_err();
        assert!(is_not_found(&err), "{err}");
    }

    #[test]
    fn set_up_rename_mtu_addresses_routes_and_delete() {
        let t = TempNs::new();
        t.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
        let v0 = link_info_in(&t.ns, "v0").unwrap();
        let v1 = link_info_in(&t.ns, "v1").unwrap();
        with_handle_in(&t.ns, |h| async move {
            set_addr_gen_mode(&h, v0.index, AddrGenMode::Random).await?;
            rename_link(&h, v0.index, "eth7").await?;
            set_mtu(&h, v0.index, 1280).await?;
            set_link_up(&h, v0.index).await?;
            set_link_up(&h, v1.index).await?;
            let l = link_by_index(&h, v0.index).await?;
            assert_eq!(l.name, "eth7");
            assert_eq!(l.mtu, 1280);
            assert!(l.up);
            assert!(is_not_found(&link_by_name(&h, "v0").await.unwrap_err()));

            let a4: IpNet = "198.18.7.2/24".parse().unwrap();
            let a6: IpNet = "2001:db8::2/64".parse().unwrap();
            add_address(&h, v0.index, a4).await?;
            add_address(&h, v0.index, a6).await?;
            let err = add_address(&h, v0.index, a4).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
            let addrs = list_addresses(&h, v0.index).await?;
            assert!(addrs.contains(&a4) && addrs.contains(&a6), "{addrs:?}");
            // Delete and put back: what the daemon does when a lease expires and returns.
            let a4b: IpNet = "198.18.7.3/24".parse().unwrap();
            add_address(&h, v0.index, a4b).await?;
            assert!(delete_address(&h, v0.index, a4b).await?);
            assert!(
                !delete_address(&h, v0.index, a4b).await?,
                "second delete finds nothing"
            );
            let addrs = list_addresses(&h, v0.index).await?;
            assert!(!addrs.contains(&a4b) && addrs.contains(&a4), "{addrs:?}");

            let default = RouteSpec {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: Some("198.18.7.1".parse().unwrap()),
                metric: Some(100),
            };
            let direct = RouteSpec {
                dst: "198.19.0.0/16".parse().unwrap(),
                gw: None,
                metric: None,
            };
            let via = RouteSpec {
                dst: "198.18.99.0/24".parse().unwrap(),
                gw: Some("198.18.7.1".parse().unwrap()),
                metric: None,
            };
            let v6 = RouteSpec {
                dst: "::/0".parse().unwrap(),
                gw: Some("2001:db8::1".parse().unwrap()),
                metric: Some(5),
            };
            for r in [&default, &direct, &via, &v6] {
                add_route(&h, v0.index, r).await?;
            }
            let mixed = RouteSpec {
                dst: "10.0.0.0/8".parse().unwrap(),
                gw: Some("2001:db8::1".parse().unwrap()),
                metric: None,
            };
            let err = add_route(&h, v0.index, &mixed).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            let unreachable = RouteSpec {
                dst: "10.0.0.0/8".parse().unwrap(),
                gw: Some("203.0.113.1".parse().unwrap()),
                metric: None,
            };
            assert!(add_route(&h, v0.index, &unreachable).await.is_err());

            let routes = list_routes(&h, v0.index).await?;
            for r in [&default, &direct, &via, &v6] {
                assert!(routes.contains(r), "{r:?} not in {routes:?}");
            }
            // The kernel's own prefix route for the address, without metric.
            assert!(
                routes
                    .iter()
                    .any(|r| r.dst == "198.18.7.0/24".parse().unwrap() && r.gw.is_none())
            );

            let dflt = default_route_link(&h).await?.expect("a default route");
            assert_eq!(dflt.index, v0.index);

            delete_link(&h, v0.index).await?;
            let err = delete_link(&h, v0.index).await.unwrap_err();
            assert!(is_not_found(&err), "{err}");
            // Deleting one veth end removes the peer as well.
            assert!(is_not_found(
                &link_by_index(&h, v1.index).await.unwrap_err()
            ));
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn default_route_link_none_without_default_route() {
        let t = TempNs::new();
        let got = with_handle_in(&t.ns, |h| async move { default_route_link(&h).await }).unwrap();
        assert_eq!(got, None);
    }

    #[test]
    fn with_handle_sees_own_namespace() {
        let lo = with_handle(|h| async move { link_by_name(&h, "lo").await }).unwrap();
        assert_eq!(lo.name, "lo");
    }

    #[test]
    fn create_ipvlan_fails_cleanly_without_module_or_master() {
        // This host kernel has no ipvlan; either way creating on a missing master must fail
        // with an error, never panic, and leave nothing behind.
        let t = TempNs::new();
        t.ip(&["link", "add", "d0", "type", "veth", "peer", "name", "d1"]);
        let d0 = link_info_in(&t.ns, "d0").unwrap();
        let res = with_handle_in(&t.ns, |h| async move {
            create_ipvlan(
                &h,
                &IpvlanSpec {
                    name: "ipv0",
                    master: d0.index + 1000,
                    mode: IpvlanMode::L2,
                    flag: IpvlanFlag::Bridge,
                    mtu: None,
                    netns: None,
                },
            )
            .await
        });
        assert!(res.is_err());
        assert!(link_info_in(&t.ns, "ipv0").is_err());
    }
}
