//! `ipvlan`: the CNI main plugin that puts an ipvlan slave of a host interface into the
//! container and configures it from its IPAM plugin (typically our `dhcp`).
//!
//! Network configuration keys (compatible with the reference plugin, plus `flag`):
//! - `name`, `type`, `cniVersion`, `ipam` (required, with a string `type`), `dns`;
//! - `master` (string): the host interface; default: the link of the host's default route
//!   (of the container's, with `linkInContainer`);
//! - `mode` (`"l2"` | `"l3"` | `"l3s"`, default `"l2"`), `flag` (`"bridge"` | `"private"` |
//!   `"vepa"`, default `"bridge"`); both are per master in the kernel: the latest slave sets
//!   them for all;
//! - `mtu` (integer, 0 = the master's);
//! - `linkInContainer` (bool): look `master` up inside the container's namespace;
//! - `vlanId` (integer 1-4094): the master is the 802.1q VLAN link `MASTER.VID` on `master`
//!   (see below); not with `linkInContainer`.
//!
//! 802.1q trunk parents ([`cni_dhcp::trunk`], docs/design.md *802.1q trunk parents*): a
//! `master` of the form `PARENT.VID` that does not exist while `PARENT` does (or `master`
//! plus `vlanId`) is created as the VLAN link with id VID on PARENT, brought up and marked with
//! the alias [`trunk::MARK`]; the slave goes on it. It is deleted after its last slave (DEL,
//! or a failed ADD), the lease released first. An existing link of that name is used as it is
//! and never deleted (with `vlanId` it must be that VLAN, else error 7).
//!
//! A key of the wrong type or value is CNI error 7 naming the key. `ipam.type` `"dhcp"` with
//! mode `l3`/`l3s` is refused with error 7 before anything is created: L3 modes carry no
//! broadcast or multicast (kernel ipvlan doc §4.2), so DHCP could only time out.
//!
//! ADD: create the slave directly inside the container namespace under a temporary name;
//! on kernels that do not give ipvlan slaves distinct link-locals set IPv6 `addrgenmode
//! random`; rename it to `CNI_IFNAME`; bring it up; run the IPAM plugin with the same stdin
//! and environment; put its addresses and routes on the slave (IPv6 switched on for the slave
//! first if the result has an IPv6 address and it is off; a route that already exists, such as
//! the kernel's default route from a Router Advertisement, is skipped); wait (up to 10 s) for
//! the IPv6 addresses to pass duplicate address detection; print the result. Any failure
//! once the slave exists, a DAD failure included, deletes it and runs IPAM DEL, so nothing
//! leaks.
//! DEL: IPAM DEL (always), then delete the slave; an absent namespace or link is success.
//! CHECK: IPAM CHECK, then the slave must exist with kind ipvlan, the configured mode (and
//! flag when the kernel reports it) and master, and carry `prevResult`'s addresses.
//! STATUS and GC: delegated to the IPAM plugin.

use std::io;
use std::path::Path;
use std::process::ExitCode;

use cni_dhcp::cni::{self, CniResult, Command, Env, Error, Interface, IpConfig, NetConf, code};
use cni_dhcp::lease_file::mac;
use cni_dhcp::link::{
    self, AddrGenMode, IpvlanFlag, IpvlanMode, IpvlanSpec, LinkInfo, RouteSpec, is_not_found,
};
use cni_dhcp::netns::NetNs;
use cni_dhcp::trunk::{self, AcquireError, Trunk};

/// The parsed network configuration.
struct Conf {
    net: NetConf,
    master: Option<String>,
    mode: IpvlanMode,
    flag: IpvlanFlag,
    mtu: Option<u32>,
    link_in_container: bool,
    /// The VLAN link the master may be (see [`Conf::trunk`]).
    trunk: Option<Result<Trunk, String>>,
    ipam_type: String,
}

fn invalid(msg: impl Into<String>, details: impl Into<String>) -> Error {
    Error::new(code::INVALID_NETWORK_CONFIG, msg, details)
}

fn internal(msg: impl Into<String>, err: &io::Error) -> Error {
    Error::new(code::INTERNAL, msg, err.to_string())
}

impl Conf {
    /// Parses stdin. `refuse_dhcp_in_l3` applies the L3 + DHCP refusal (ADD, CHECK); DEL
    /// skips it so that cleanup is never blocked by a configuration check.
    fn load(stdin: &[u8], refuse_dhcp_in_l3: bool) -> Result<Conf, Error> {
        let net: NetConf = cni::parse_conf(stdin)?;
        let master = net.get::<String>("master")?.filter(|m| !m.is_empty());
        let mode = match net.get::<String>("mode")? {
            None => IpvlanMode::default(),
            Some(s) if s.is_empty() => IpvlanMode::default(),
            Some(s) => s
                .parse()
                .map_err(|e: String| invalid("invalid mode", format!("mode: {e}")))?,
        };
        let flag = match net.get::<String>("flag")? {
            None => IpvlanFlag::default(),
            Some(s) if s.is_empty() => IpvlanFlag::default(),
            Some(s) => s
                .parse()
                .map_err(|e: String| invalid("invalid flag", format!("flag: {e}")))?,
        };
        let mtu = net.get::<u32>("mtu")?.filter(|&m| m != 0);
        let link_in_container = net.get::<bool>("linkInContainer")?.unwrap_or(false);
        let trunk = match net.get::<i64>("vlanId")? {
            Some(vid) => {
                let Some(parent) = &master else {
                    return Err(invalid(
                        "vlanId needs master",
                        "vlanId: set master to the trunk (parent) interface",
                    ));
                };
                if link_in_container {
                    return Err(invalid(
                        "vlanId cannot be used with linkInContainer",
                        "vlanId: VLAN links are made in the host namespace only",
                    ));
                }
                let t = Trunk::explicit(parent, vid).map_err(|e| invalid("invalid vlanId", e))?;
                Some(Ok(t))
            }
            None if link_in_container => None,
            None => master.as_deref().and_then(Trunk::parse),
        };
        let ipam_type = match &net.ipam {
            None => return Err(invalid("missing ipam", "ipam: missing field `ipam`")),
            Some(v) => match v.get("type") {
                Some(serde_json::Value::String(t)) if !t.is_empty() => t.clone(),
                Some(serde_json::Value::String(_)) | None => {
                    return Err(invalid("missing ipam type", "ipam.type: missing or empty"));
                }
                Some(other) => {
                    return Err(invalid(
                        "invalid ipam type",
                        format!("ipam.type: expected a string, got {other}"),
                    ));
                }
            },
        };
        if refuse_dhcp_in_l3 && ipam_type == "dhcp" && mode.blocks_broadcast() {
            return Err(invalid(
                format!(
                    "ipvlan mode {mode} cannot be used with dhcp: L3 modes carry no broadcast \
                     or multicast (kernel ipvlan doc section 4.2), so DHCP cannot work; use \
                     \"mode\": \"l2\""
                ),
                "mode: l3 and l3s forbid ipam type dhcp",
            ));
        }
        Ok(Conf {
            net,
            master,
            mode,
            flag,
            mtu,
            link_in_container,
            trunk,
            ipam_type,
        })
    }
}

fn open_netns(path: &Path) -> Result<NetNs, Error> {
    NetNs::open(path).map_err(|e| {
        Error::new(
            code::UNKNOWN_CONTAINER,
            format!("failed to open netns {}", path.display()),
            e.to_string(),
        )
    })
}

/// The master for ADD: [`find_master`], except that a VLAN link the configuration names
/// (`vlanId`, or a missing `master` of the form `PARENT.VID`) is made when missing and this
/// attachment recorded as its user. Returns the master and whether the attachment was
/// recorded (the link is ours: release it on failure).
fn master_for_add(conf: &Conf, env: &Env, ns: &NetNs) -> Result<(LinkInfo, bool), Error> {
    let t = match &conf.trunk {
        None => return find_master(conf, ns).map(|m| (m, false)),
        Some(Ok(t)) if t.explicit => t,
        Some(candidate) => match find_master(conf, ns) {
            // An existing link is used as it is, whatever its name says.
            Ok(m) if !trunk::made_by_us(&m) => return Ok((m, false)),
            Ok(_) => candidate
                .as_ref()
                .map_err(|e| invalid("invalid master", e.clone()))?,
            Err(e) if e.code != code::INVALID_NETWORK_CONFIG => return Err(e),
            Err(_) => candidate
                .as_ref()
                .map_err(|e| invalid("invalid master", e.clone()))?,
        },
    };
    let user = trunk_user(env, env.netns()?.display().to_string())?;
    match trunk::acquire(Path::new(trunk::STATE_DIR), t, &user) {
        Ok(m) => {
            let ours = trunk::made_by_us(&m);
            Ok((m, ours))
        }
        Err(AcquireError::ParentMissing(d)) => Err(invalid(
            format!(
                "master {:?} not found, nor its parent {:?}",
                t.name, t.parent
            ),
            format!("master: {d}"),
        )),
        Err(AcquireError::NameTaken(d)) => Err(invalid(
            format!(
                "cannot use {:?} as VLAN {} of {:?}",
                t.name, t.vid, t.parent
            ),
            format!("{}: {d}", if t.explicit { "vlanId" } else { "master" }),
        )),
        Err(AcquireError::NoVlanSupport(e)) => Err(Error::new(
            code::INTERNAL,
            format!(
                "cannot create VLAN link {:?}: this kernel has no 802.1q support \
                 (CONFIG_VLAN_8021Q, module 8021q)",
                t.name
            ),
            e.to_string(),
        )),
        Err(AcquireError::Other(m, e)) => Err(internal(m, &e)),
    }
}

/// This attachment as a trunk user (`CNI_CONTAINERID`, `CNI_IFNAME`, and `netns`, which
/// only ADD records).
fn trunk_user(env: &Env, netns: String) -> Result<trunk::User, Error> {
    Ok(trunk::User {
        container_id: env.container_id()?.to_owned(),
        ifname: env.ifname()?.to_owned(),
        netns,
    })
}

/// After the slave of this attachment is gone (and its lease released): forgets the
/// attachment as a user of the VLAN link the configuration names, deleting the link when it is
/// ours and unused. No VLAN in the configuration: nothing to do.
fn release_trunk(conf: &Conf, env: &Env) -> Result<(), Error> {
    let Some(Ok(t)) = &conf.trunk else {
        return Ok(());
    };
    let user = trunk_user(env, String::new())?;
    trunk::release(Path::new(trunk::STATE_DIR), t, &user)
        .map(|_| ())
        .map_err(|e| internal(format!("failed to release VLAN link {:?}", t.name), &e))
}

/// Finds the master: by name or as the default-route link, in the host namespace or (with
/// `linkInContainer`) in the container's.
fn find_master(conf: &Conf, ns: &NetNs) -> Result<LinkInfo, Error> {
    let name = match &conf.trunk {
        Some(Ok(t)) if t.explicit => Some(t.name.clone()),
        _ => conf.master.clone(),
    };
    let lookup = |h: rtnetlink::Handle| async move {
        match &name {
            Some(n) => link::link_by_name(&h, n).await.map(Some),
            None => link::default_route_link(&h).await,
        }
    };
    let found = if conf.link_in_container {
        link::with_handle_in(ns, lookup)
    } else {
        link::with_handle(lookup)
    };
    let where_ = if conf.link_in_container {
        "in the container namespace"
    } else {
        "in the host namespace"
    };
    match (found, &conf.master) {
        (Ok(Some(m)), _) => Ok(m),
        (Ok(None), _) => Err(invalid(
            "no master given and no default route to take it from",
            format!("master: no default route {where_}"),
        )),
        (Err(e), Some(n)) if is_not_found(&e) => Err(invalid(
            format!("master {n:?} not found {where_}"),
            format!("master: {e}"),
        )),
        (Err(e), _) => Err(internal("failed to look up the master", &e)),
    }
}

fn temp_name() -> String {
    format!("ipvl{:08x}", rand::random::<u32>())
}

/// Whether to switch the slave to random IPv6 link-local generation: only when the running
/// kernel does not give each ipvlan slave its own `dev_id` (see
/// [`link::kernel_gives_ipvlan_distinct_link_locals`]); an unknown release counts as old.
fn needs_random_link_local() -> bool {
    !link::kernel_release()
        .map(|r| link::kernel_gives_ipvlan_distinct_link_locals(&r))
        .unwrap_or(false)
}

/// Deletes the slave with this index in `ns`, if it is still there and still an ipvlan.
fn delete_slave(ns: &NetNs, index: u32) -> io::Result<()> {
    link::with_handle_in(ns, |h| async move {
        match link::link_by_index(&h, index).await {
            Ok(l) if l.kind.as_deref() == Some("ipvlan") => {
                match link::delete_link(&h, index).await {
                    Err(e) if !is_not_found(&e) => Err(e),
                    _ => Ok(()),
                }
            }
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e),
        }
    })
}

/// Everything ADD does once the slave (interface `index` in `ns`) exists; the caller cleans
/// up on error.
fn setup(
    conf: &Conf,
    env: &Env,
    stdin: &[u8],
    ns: &NetNs,
    index: u32,
    ifname: &str,
) -> Result<CniResult, Error> {
    let netns_path = env.netns()?;
    let random_ll = needs_random_link_local();
    let ifname_owned = ifname.to_owned();
    let slave = link::with_handle_in(ns, |h| async move {
        if random_ll {
            // Random needs kernel 4.5+; "none" (no link-local at all) is the fallback.
            // With IPv6 disabled both fail, and then there is no DAD to worry about.
            if link::set_addr_gen_mode(&h, index, AddrGenMode::Random)
                .await
                .is_err()
            {
                let _ = link::set_addr_gen_mode(&h, index, AddrGenMode::None).await;
            }
        }
        link::rename_link(&h, index, &ifname_owned).await?;
        link::set_link_up(&h, index).await?;
        link::link_by_index(&h, index).await
    })
    .map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            Error::new(
                code::INTERNAL,
                format!("interface {ifname:?} already exists in the container"),
                e.to_string(),
            )
        } else {
            internal("failed to set up the ipvlan interface", &e)
        }
    })?;

    let ipam = cni::exec_plugin(&conf.ipam_type, Command::Add, stdin, env)?.ok_or_else(|| {
        Error::new(
            code::INTERNAL,
            format!("ipam plugin {} returned no result", conf.ipam_type),
            "",
        )
    })?;
    if ipam.ips.is_empty() {
        return Err(Error::new(
            code::INTERNAL,
            format!(
                "ipam plugin {} returned no IP configuration",
                conf.ipam_type
            ),
            "",
        ));
    }

    let addrs: Vec<_> = ipam.ips.iter().map(|ip| ip.address).collect();
    if addrs.iter().any(|a| a.addr().is_ipv6()) {
        enable_ipv6(ns, ifname)
            .map_err(|e| internal(format!("failed to enable IPv6 on {ifname:?}"), &e))?;
    }
    let routes = routes_from(&ipam);
    configure(ns, index, &addrs, &routes, DAD_TIMEOUT)
        .map_err(|e| internal("failed to configure the ipvlan interface", &e))?;

    let dns = if ipam.dns.is_empty() {
        conf.net.dns.clone().unwrap_or_default()
    } else {
        ipam.dns.clone()
    };
    Ok(CniResult {
        cni_version: conf.net.cni_version.clone(),
        interfaces: vec![Interface {
            name: ifname.to_owned(),
            mac: slave.mac.as_ref().map(mac::to_string),
            sandbox: Some(netns_path.display().to_string()),
            ..Interface::default()
        }],
        ips: ipam
            .ips
            .iter()
            .map(|ip| IpConfig {
                interface: Some(0),
                ..ip.clone()
            })
            .collect(),
        routes: ipam.routes.clone(),
        dns,
    })
}

/// How long ADD waits for the IPv6 addresses of the result to pass duplicate address
/// detection (1-2 s with the kernel's defaults), as the reference plugins' `SettleAddresses`.
const DAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Makes sure IPv6 is on for `ifname` in `ns` (`net.ipv6.conf.IFNAME.disable_ipv6 = 0`), as the
/// reference plugins do before adding an IPv6 address: with it off the kernel refuses the
/// address (`EACCES`). A namespace whose `default.disable_ipv6` is 1 gives new links IPv6 off.
/// Returns whether it had to switch it on. No `/proc/sys/net/ipv6` at all (IPv6 not built or
/// `ipv6.disable=1`) is an error: the address cannot be added then either.
fn enable_ipv6(ns: &NetNs, ifname: &str) -> io::Result<bool> {
    let path = format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6");
    // /proc/sys/net is the namespace of the thread that opens it: NetNs::run's.
    ns.run(move || {
        let value = std::fs::read_to_string(&path)?;
        if value.trim() == "0" {
            return Ok(false);
        }
        std::fs::write(&path, "0")?;
        Ok(true)
    })
}

/// Puts `addrs` and `routes` on link `index` in `ns`, then waits for the IPv6 addresses to
/// pass duplicate address detection.
///
/// A route that already exists (`EEXIST`: the kernel's default route from a Router
/// Advertisement, which has the same destination and metric, a prefix route, a duplicate in the
/// result) is skipped: the first one wins, as in the reference plugins. An IPv6 address is
/// tentative until DAD ends, unusable as a source; the container gets it usable, or the ADD
/// fails (and its caller releases the lease) when another node on the link holds it.
fn configure(
    ns: &NetNs,
    index: u32,
    addrs: &[ipnet::IpNet],
    routes: &[RouteSpec],
    dad_timeout: std::time::Duration,
) -> io::Result<()> {
    link::with_handle_in(ns, |h| async move {
        for a in addrs {
            link::add_address(&h, index, *a).await?;
        }
        for r in routes {
            match link::add_route(&h, index, r).await {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                other => other?,
            }
        }
        link::wait_for_dad(&h, index, addrs, dad_timeout).await
    })
}

struct IpvlanPlugin;

/// The IPAM result's routes as netlink routes: a route without `gw` goes via the gateway of
/// the first address of its family when there is one (as the reference plugins'
/// `ConfigureIface` does), else it is directly connected. `priority` is the metric; `table`,
/// `scope`, `mtu` and `advmss` are not applied (main table only).
fn routes_from(ipam: &CniResult) -> Vec<RouteSpec> {
    let gw_for = |v4: bool| {
        ipam.ips
            .iter()
            .filter_map(|ip| ip.gateway)
            .find(|g| g.is_ipv4() == v4)
    };
    ipam.routes
        .iter()
        .map(|r| RouteSpec {
            dst: r.dst,
            gw: r.gw.or_else(|| gw_for(r.dst.addr().is_ipv4())),
            metric: r.priority,
        })
        .collect()
}

impl cni::Plugin for IpvlanPlugin {
    fn add(&self, env: &Env, stdin: &[u8]) -> Result<CniResult, Error> {
        let conf = Conf::load(stdin, true)?;
        let ifname = env.ifname()?;
        let netns_path = env.netns()?;
        let ns = open_netns(netns_path)?;
        let (master, trunk) = master_for_add(&conf, env, &ns)?;

        let tmp = temp_name();
        let spec = IpvlanSpec {
            name: &tmp,
            master: master.index,
            mode: conf.mode,
            flag: conf.flag,
            mtu: conf.mtu,
            netns: if conf.link_in_container {
                None
            } else {
                Some(&ns)
            },
        };
        let created = if conf.link_in_container {
            link::with_handle_in(&ns, |h| async move { link::create_ipvlan(&h, &spec).await })
        } else {
            link::with_handle(|h| async move { link::create_ipvlan(&h, &spec).await })
        };
        created
            .inspect_err(|_| {
                if trunk {
                    let _ = release_trunk(&conf, env);
                }
            })
            .map_err(|e| {
                let unsupported = e.raw_os_error() == Some(libc::EOPNOTSUPP)
                    || e.to_string().contains("Operation not supported");
                if unsupported {
                    Error::new(
                        code::INTERNAL,
                        "this kernel has no ipvlan support (CONFIG_IPVLAN, module ipvlan)",
                        e.to_string(),
                    )
                } else {
                    internal(
                        format!("failed to create the ipvlan slave of {:?}", master.name),
                        &e,
                    )
                }
            })?;

        // The slave exists from here on: every failure deletes it and releases the IPAM lease.
        let tmp_owned = tmp.clone();
        let index = match link::with_handle_in(&ns, |h| async move {
            link::link_by_name(&h, &tmp_owned).await.map(|l| l.index)
        }) {
            Ok(i) => i,
            Err(e) => {
                cleanup(&conf, env, stdin, &ns, None, &tmp, trunk);
                return Err(internal("created the ipvlan slave but cannot find it", &e));
            }
        };
        setup(&conf, env, stdin, &ns, index, ifname)
            .inspect_err(|_| cleanup(&conf, env, stdin, &ns, Some(index), &tmp, trunk))
    }

    fn del(&self, env: &Env, stdin: &[u8]) -> Result<(), Error> {
        let conf = Conf::load(stdin, false)?;
        let ifname = env.ifname()?;
        let ipam_result = cni::exec_plugin(&conf.ipam_type, Command::Del, stdin, env).map(|_| ());

        let link_result = match env.netns.as_deref() {
            None => Ok(()),
            Some(path) => match NetNs::open(path) {
                // Gone, or an unmounted leftover file that is no namespace any more: either
                // way there is no link left to delete (DEL must be idempotent).
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::InvalidInput
                    ) =>
                {
                    Ok(())
                }
                Err(e) => Err(Error::new(
                    code::INTERNAL,
                    format!("failed to open netns {}", path.display()),
                    e.to_string(),
                )),
                Ok(ns) => {
                    let name = ifname.to_owned();
                    link::with_handle_in(&ns, |h| async move {
                        match link::link_by_name(&h, &name).await {
                            Ok(l) if l.kind.as_deref() == Some("ipvlan") => {
                                match link::delete_link(&h, l.index).await {
                                    Err(e) if !is_not_found(&e) => Err(e),
                                    _ => Ok(()),
                                }
                            }
                            // Not ours (some other kind): leave it alone.
                            Ok(_) => Ok(()),
                            Err(e) if is_not_found(&e) => Ok(()),
                            Err(e) => Err(e),
                        }
                    })
                    .map_err(|e| internal(format!("failed to delete {ifname:?}"), &e))
                }
            },
        };
        // Only once the lease is released and the slave gone: deleting a VLAN link deletes
        // every slave on it.
        let trunk_result = match (&ipam_result, &link_result) {
            (Ok(()), Ok(())) => release_trunk(&conf, env),
            _ => Ok(()),
        };
        ipam_result.and(link_result).and(trunk_result)
    }

    fn check(&self, env: &Env, stdin: &[u8]) -> Result<(), Error> {
        let conf = Conf::load(stdin, true)?;
        let ifname = env.ifname()?;
        let netns_path = env.netns()?;
        let prev = conf.net.prev_result()?.ok_or_else(|| {
            invalid(
                "required prevResult missing",
                "prevResult: CHECK needs the ADD result",
            )
        })?;
        cni::exec_plugin(&conf.ipam_type, Command::Check, stdin, env)?;

        let ns = open_netns(netns_path)?;
        let master = find_master(&conf, &ns)?;
        let name = ifname.to_owned();
        let (slave, addrs) = link::with_handle_in(&ns, |h| async move {
            let l = link::link_by_name(&h, &name).await?;
            let a = link::list_addresses(&h, l.index).await?;
            Ok((l, a))
        })
        .map_err(|e| internal(format!("interface {ifname:?} not usable"), &e))?;

        let fail = |msg: String| Err(Error::new(code::INTERNAL, msg, ""));
        if slave.kind.as_deref() != Some("ipvlan") {
            return fail(format!(
                "interface {ifname:?} is of kind {:?}, not ipvlan",
                slave.kind.unwrap_or_default()
            ));
        }
        if slave.ipvlan_mode != Some(conf.mode) {
            return fail(format!(
                "interface {ifname:?} has ipvlan mode {:?}, configured {}",
                slave.ipvlan_mode, conf.mode
            ));
        }
        if let Some(f) = slave.ipvlan_flag
            && f != conf.flag
        {
            return fail(format!(
                "interface {ifname:?} has ipvlan flag {f}, configured {}",
                conf.flag
            ));
        }
        if slave.link != Some(master.index) {
            return fail(format!(
                "interface {ifname:?} is not a slave of {:?} (link index {:?}, master index {})",
                master.name, slave.link, master.index
            ));
        }
        // Addresses of prevResult that belong to this interface (by interface index pointing
        // at our name in our sandbox, or without an interface index).
        let ours = |ip: &IpConfig| match ip.interface {
            None => true,
            Some(i) => prev.interfaces.get(i as usize).is_some_and(|itf| {
                itf.name == ifname
                    && itf
                        .sandbox
                        .as_deref()
                        .is_none_or(|s| Path::new(s) == netns_path)
            }),
        };
        for ip in prev.ips.iter().filter(|ip| ours(ip)) {
            if !addrs.contains(&ip.address) {
                return fail(format!(
                    "interface {ifname:?} lacks address {} from prevResult",
                    ip.address
                ));
            }
        }
        Ok(())
    }

    fn status(&self, env: &Env, stdin: &[u8]) -> Result<(), Error> {
        let conf = Conf::load(stdin, true)?;
        cni::exec_plugin(&conf.ipam_type, Command::Status, stdin, env).map(|_| ())
    }

    fn gc(&self, env: &Env, stdin: &[u8]) -> Result<(), Error> {
        let conf = Conf::load(stdin, false)?;
        cni::exec_plugin(&conf.ipam_type, Command::Gc, stdin, env).map(|_| ())
    }
}

/// Undoes a failed ADD: deletes the slave (by index, else by its temporary name), runs
/// IPAM DEL and, with `trunk`, releases the VLAN link it made or used. Errors are ignored: the
/// ADD's own error is what the runtime needs to see.
fn cleanup(
    conf: &Conf,
    env: &Env,
    stdin: &[u8],
    ns: &NetNs,
    index: Option<u32>,
    tmp: &str,
    trunk: bool,
) {
    match index {
        Some(i) => {
            let _ = delete_slave(ns, i);
        }
        None => {
            let tmp = tmp.to_owned();
            let _ = link::with_handle_in(ns, |h| async move {
                let l = link::link_by_name(&h, &tmp).await?;
                link::delete_link(&h, l.index).await
            });
        }
    }
    let _ = cni::exec_plugin(&conf.ipam_type, Command::Del, stdin, env);
    if trunk {
        let _ = release_trunk(conf, env);
    }
}

fn main() -> ExitCode {
    cni::run(
        &IpvlanPlugin,
        "CNI ipvlan plugin (cni-dhcp): ipvlan slaves configured by an IPAM plugin, DHCP included",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(extra: &str) -> Result<Conf, Error> {
        let s = format!(r#"{{"cniVersion":"1.0.0","name":"n","type":"ipvlan"{extra}}}"#);
        Conf::load(s.as_bytes(), true)
    }

    #[test]
    fn defaults() {
        let c = conf(r#","ipam":{"type":"host-local"}"#).unwrap();
        assert_eq!(c.mode, IpvlanMode::L2);
        assert_eq!(c.flag, IpvlanFlag::Bridge);
        assert_eq!(c.master, None);
        assert_eq!(c.mtu, None);
        assert!(!c.link_in_container);
        assert_eq!(c.ipam_type, "host-local");
    }

    #[test]
    fn wrong_types_and_values_name_the_key() {
        for (extra, key) in [
            (r#","mode":5"#, "mode"),
            (r#","mode":"l4""#, "mode"),
            (r#","flag":"vepa2""#, "flag"),
            (r#","flag":[]"#, "flag"),
            (r#","mtu":"x""#, "mtu"),
            (r#","mtu":-1"#, "mtu"),
            (r#","master":1"#, "master"),
            (r#","linkInContainer":"yes""#, "linkInContainer"),
        ] {
            let e = conf(&format!(r#"{extra},"ipam":{{"type":"host-local"}}"#))
                .err()
                .unwrap_or_else(|| panic!("{extra} accepted"));
            assert_eq!(e.code, code::INVALID_NETWORK_CONFIG, "{extra}");
            assert!(e.details.starts_with(key), "{extra}: {e}");
        }
        for extra in ["", r#","ipam":{}"#, r#","ipam":{"type":3}"#] {
            let e = conf(extra).err().unwrap();
            assert_eq!(e.code, code::INVALID_NETWORK_CONFIG, "{extra}");
            assert!(e.details.starts_with("ipam"), "{e}");
        }
    }

    #[test]
    fn dhcp_is_refused_in_l3_modes_only() {
        for mode in ["l3", "l3s"] {
            let e = conf(&format!(r#","mode":"{mode}","ipam":{{"type":"dhcp"}}"#))
                .err()
                .unwrap();
            assert_eq!(e.code, code::INVALID_NETWORK_CONFIG);
            assert!(e.msg.contains("broadcast") && e.msg.contains("l2"), "{e}");
        }
        // Whatever the families: DHCPv6 is multicast to ff02::1:2, which L3 modes drop too.
        for ipam in [
            r#"{"type":"dhcp","dhcp6":true}"#,
            r#"{"type":"dhcp","dhcp4":false,"dhcp6":true}"#,
        ] {
            for mode in ["l3", "l3s"] {
                let e = conf(&format!(r#","mode":"{mode}","ipam":{ipam}"#))
                    .err()
                    .unwrap_or_else(|| panic!("{mode} {ipam} accepted"));
                assert_eq!(e.code, code::INVALID_NETWORK_CONFIG, "{mode} {ipam}");
                assert!(e.msg.contains("multicast"), "{e}");
            }
            assert!(conf(&format!(r#","mode":"l2","ipam":{ipam}"#)).is_ok());
        }
        assert!(conf(r#","mode":"l2","ipam":{"type":"dhcp"}"#).is_ok());
        assert!(conf(r#","mode":"l3","ipam":{"type":"host-local"}"#).is_ok());
        // DEL does not refuse, so a stale configuration can always be cleaned up.
        let s = r#"{"cniVersion":"1.0.0","name":"n","type":"ipvlan","mode":"l3","ipam":{"type":"dhcp"}}"#;
        assert!(Conf::load(s.as_bytes(), false).is_ok());
    }

    #[test]
    fn routes_without_gw_use_the_family_gateway() {
        let ipam = CniResult::from_value(&serde_json::json!({
            "cniVersion": "1.0.0",
            "ips": [{"address": "198.18.0.5/24", "gateway": "198.18.0.1"}],
            "routes": [
                {"dst": "0.0.0.0/0"},
                {"dst": "198.19.0.0/16", "gw": "198.18.0.254", "priority": 7},
                {"dst": "2001:db8::/32"}
            ]
        }))
        .unwrap();
        let r = routes_from(&ipam);
        assert_eq!(r[0].gw, Some("198.18.0.1".parse().unwrap()));
        assert_eq!(r[1].gw, Some("198.18.0.254".parse().unwrap()));
        assert_eq!(r[1].metric, Some(7));
        assert_eq!(r[2].gw, None);
    }

    /// A named network namespace (`ip netns add`) holding a veth pair `v0`/`v1`, both up;
    /// deleted on drop. `None` (skip) without IPv6 in this kernel.
    struct TempNs {
        name: String,
        ns: NetNs,
    }

    impl TempNs {
        fn new(tag: &str) -> Option<TempNs> {
            if !Path::new("/proc/sys/net/ipv6").exists() {
                eprintln!("SKIP: no IPv6 in this kernel");
                return None;
            }
            let name = format!("cnidhcp-ipvl-{tag}-{}", std::process::id());
            sh(&["netns", "add", &name]);
            let ns = NetNs::open(format!("/run/netns/{name}")).unwrap();
            let t = TempNs { name, ns };
            t.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
            t.ip(&["link", "set", "v0", "up"]);
            t.ip(&["link", "set", "v1", "up"]);
            Some(t)
        }

        fn ip(&self, args: &[&str]) -> String {
            let mut all = vec!["-n", &self.name];
            all.extend_from_slice(args);
            sh(&all)
        }

        fn index(&self, ifname: &str) -> u32 {
            let name = ifname.to_owned();
            link::with_handle_in(&self.ns, |h| async move {
                link::link_by_name(&h, &name).await.map(|l| l.index)
            })
            .unwrap()
        }
    }

    impl Drop for TempNs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.name])
                .status();
        }
    }

    fn sh(args: &[&str]) -> String {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn net(s: &str) -> ipnet::IpNet {
        s.parse().unwrap()
    }

    /// A dual-stack result applied to a link: both addresses, the IPv4 routes, a route the
    /// kernel already has (a Router Advertisement's IPv6 default: same destination, same
    /// metric 1024) and a duplicate skipped, and the IPv6 address out of DAD on return.
    #[test]
    fn configure_applies_both_families_skips_existing_routes_and_waits_for_dad() {
        let Some(t) = TempNs::new("cfg") else { return };
        // What the kernel installs from an RA (proto ra, metric 1024), before the plugin runs.
        t.ip(&[
            "-6", "route", "add", "default", "via", "fe80::1", "dev", "v0",
        ]);
        let index = t.index("v0");
        let addrs = [net("198.18.9.2/24"), net("fd00:9::2/64")];
        let default4 = RouteSpec {
            dst: net("0.0.0.0/0"),
            gw: Some("198.18.9.1".parse().unwrap()),
            metric: None,
        };
        let default6 = RouteSpec {
            dst: net("::/0"),
            gw: Some("fe80::1".parse().unwrap()),
            metric: None,
        };
        let routes = [default4.clone(), default4, default6];
        let started = std::time::Instant::now();
        configure(&t.ns, index, &addrs, &routes, DAD_TIMEOUT).unwrap();
        eprintln!("configure with DAD: {:?}", started.elapsed());
        let shown = t.ip(&["-o", "addr", "show", "dev", "v0"]);
        assert!(shown.contains("198.18.9.2/24"), "{shown}");
        let v6 = shown
            .lines()
            .find(|l| l.contains("fd00:9::2/64"))
            .unwrap_or_else(|| panic!("{shown}"));
        assert!(
            !v6.contains("tentative"),
            "DAD still running on return: {v6}"
        );
        let r4 = t.ip(&["-4", "route", "show", "default"]);
        assert!(r4.contains("via 198.18.9.1"), "{r4}");
        let r6 = t.ip(&["-6", "route", "show", "default"]);
        assert_eq!(r6.lines().count(), 1, "{r6}");
    }

    /// An IPv6 address that another node on the link holds fails DAD: configure says so
    /// (AddrInUse, naming the address) instead of handing the container a dead address.
    #[test]
    fn configure_fails_when_dad_finds_the_address_on_the_link() {
        let Some(t) = TempNs::new("dad") else { return };
        let Some(peer) = TempNs::new("dadpeer") else {
            return;
        };
        // t's v1 goes to the peer namespace (in place of its own pair) and holds the address
        // already (no DAD of its own).
        peer.ip(&["link", "del", "v0"]);
        t.ip(&["link", "set", "v1", "netns", &peer.name]);
        peer.ip(&["link", "set", "v1", "up"]);
        peer.ip(&["addr", "add", "fd00:9::7/64", "dev", "v1", "nodad"]);
        let index = t.index("v0");
        let err = configure(&t.ns, index, &[net("fd00:9::7/64")], &[], DAD_TIMEOUT).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        assert!(err.to_string().contains("fd00:9::7/64"), "{err}");
    }

    #[test]
    fn enable_ipv6_switches_a_disabled_link_on() {
        let Some(t) = TempNs::new("en6") else { return };
        let path = "/proc/sys/net/ipv6/conf/v0/disable_ipv6";
        t.ns.run(|| std::fs::write(path, "1")).unwrap();
        assert!(enable_ipv6(&t.ns, "v0").unwrap(), "it was off");
        let now = t.ns.run(|| std::fs::read_to_string(path)).unwrap();
        assert_eq!(now.trim(), "0");
        assert!(!enable_ipv6(&t.ns, "v0").unwrap(), "already on");
        assert!(enable_ipv6(&t.ns, "nosuch0").is_err());
        let index = t.index("v0");
        configure(&t.ns, index, &[net("fd00:9::3/64")], &[], DAD_TIMEOUT).unwrap();
    }

    #[test]
    fn mac_formatting() {
        assert_eq!(
            mac::to_string(&[0x02, 0, 0xab, 1, 2, 0xff]),
            "02:00:ab:01:02:ff"
        );
    }
}
