//! Leases persisted by an earlier daemon, resumed at start-up ([`resume`]): the namespace is
//! re-opened and checked against the lease's identity, the client resumes in the state its
//! times say; a namespace that cannot be entered for now is retried with back-off
//! ([`retry_resume`]), a gone one drops the lease.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::ctx::{Ctx, Trace};
use super::event_loop::drive;
use super::protocol::LeaseClient;
use super::start::{Asks, client_config};
use super::v4::Dhcpv4;
use super::{RESUME_RETRY_MAX, RESUME_RETRY_MIN, spawn_driver, unpersist};
use crate::daemon::clock;
use crate::daemon::identity::{self, NetnsForm, Verdict};
use crate::daemon::shared::Shared;
use crate::daemon::table::{DriverCommand, Handle, Slot, Status};
use crate::dhcp::client::Client;
use crate::lease_file::{Granted, Identity, Record};
use crate::lease_state::LeaseState;
use crate::rpc::{Attachment, Direction, Family};

/// What resuming needs of a persisted lease of either family.
#[derive(Debug, Clone)]
pub(super) struct Persisted {
    pub(super) attachment: Attachment,
    pub(super) family: Family,
    /// `CNI_NETNS` as given at ADD.
    pub(super) netns: String,
    /// What the lease was granted on, when the file has it.
    pub(super) identity: Option<Identity>,
    /// When its times count from.
    pub(super) granted: Granted,
    /// Its lifetime in seconds (u32::MAX: infinite).
    pub(super) lifetime: u32,
    /// The MAC a file without an identity must find on the interface (DHCPv4 chaddr).
    pub(super) chaddr: Option<[u8; 6]>,
    pub(super) priority: Option<u32>,
    pub(super) server_mac: Option<[u8; 6]>,
    /// The lease's ipam `unicastDiscover` (DHCPv4; false for DHCPv6).
    pub(super) unicast_discover: bool,
    /// The leased address.
    pub(super) address: IpAddr,
}

impl Persisted {
    pub(super) fn of_v4(r: &Record) -> Persisted {
        Persisted {
            attachment: r.attachment.clone(),
            family: Family::Ipv4,
            netns: r.netns.clone(),
            identity: r.identity.clone(),
            granted: r.granted.clone(),
            lifetime: r.lease.lease_time,
            chaddr: Some(r.chaddr),
            priority: r.priority,
            server_mac: r.server_mac,
            unicast_discover: !r.no_unicast_discover,
            address: IpAddr::V4(r.lease.address),
        }
    }

    pub(super) fn of_v6(r: &crate::lease_file::Record6) -> Persisted {
        Persisted {
            attachment: r.attachment.clone(),
            family: Family::Ipv6,
            netns: r.netns.clone(),
            identity: r.identity.clone(),
            granted: r.granted.clone(),
            lifetime: r.lease.lease.valid_lifetime,
            chaddr: None,
            priority: r.priority,
            server_mac: None,
            unicast_discover: false,
            address: IpAddr::V6(r.lease.lease.address),
        }
    }

    /// Whether the lease has run out by now (never an infinite one).
    pub(super) fn is_expired(&self) -> bool {
        self.lifetime != u32::MAX
            && self.granted.elapsed_until(&Granted::now())
                >= Duration::from_secs(self.lifetime.into())
    }
}

/// How [`resume`] left a persisted lease.
#[derive(Debug)]
pub(crate) enum Resumed {
    /// Its driver runs.
    Running,
    /// Its container is gone (or it is from another boot): the file was removed. The reason.
    Dropped(String),
    /// Its namespace could not be entered for now (a transient error, logged and put in the
    /// lease's `last_error`): the lease and its file are kept, and its task tries again with
    /// back-off.
    Retrying,
}

/// What the daemon found of a persisted lease's namespace and interface.
pub(super) struct Attached {
    pub(super) entered: identity::Entered,
    pub(super) form: NetnsForm,
    pub(super) identity: Identity,
}

/// Opens a persisted lease's namespace and checks it is the lease's ([`identity::reopen`]). A
/// record from a daemon before identities were kept is checked on what it holds (the boot of
/// its grant, the MAC as chaddr) and gets the identity found.
pub(super) async fn attach(
    shared: &Arc<Shared>,
    record: &Persisted,
) -> std::io::Result<Verdict<Attached>> {
    let config = &shared.config;
    let form = match identity::parse_cni_netns(&record.netns) {
        Ok(form) => form,
        Err(why) => return Ok(Verdict::Gone(why)),
    };
    let path = config.netns_path(&record.netns);
    let ifname = record.attachment.ifname.clone();
    let host_prefix = config.host_prefix.clone();
    if let Some(known) = &record.identity {
        return Ok(
            match identity::reopen(path, form, ifname, known.clone(), host_prefix).await? {
                Verdict::Same(entered) => Verdict::Same(Attached {
                    entered,
                    form,
                    identity: known.clone(),
                }),
                Verdict::Gone(why) => Verdict::Gone(why),
            },
        );
    }
    let boot_id = crate::lease_file::read_boot_id()?;
    if record.granted.boot_id != boot_id {
        return Ok(Verdict::Gone(
            "the lease is from another boot: its network namespace cannot have survived".into(),
        ));
    }
    let entered = match identity::enter(path.clone(), form, ifname, host_prefix).await? {
        Verdict::Same(entered) => entered,
        Verdict::Gone(why) => return Ok(Verdict::Gone(why)),
    };
    let Some(chaddr) = record.chaddr else {
        return Ok(Verdict::Gone(
            "the lease file has no identity to check the namespace against".into(),
        ));
    };
    if entered.link.mac != Some(chaddr) {
        return Ok(Verdict::Gone(format!(
            "interface {} in {} has another MAC than the lease's chaddr",
            record.attachment.ifname,
            path.display()
        )));
    }
    let identity = Identity {
        boot_id,
        netns_dev: entered.netns_id.0,
        netns_ino: entered.netns_id.1,
        netns_cookie: entered.cookie,
        pid_start: entered.pid_start,
        ifindex: entered.link.index,
        mac: chaddr,
    };
    Ok(Verdict::Same(Attached {
        entered,
        form,
        identity,
    }))
}

/// Resumes a lease persisted by an earlier daemon (at start-up). Drops it when its container
/// is gone ([`attach`]: namespace path gone or naming another namespace, interface gone or
/// replaced, another boot); otherwise starts its driver in the right state: within T1 it just
/// waits; past T1 it renews at once, past T2 it rebinds; past expiry it asks for the same
/// address again (INIT-REBOOT, RFC 2131 §3.2, §4.3.2). When the namespace cannot be entered for
/// a transient reason (no descriptor left, a netlink error) the lease, its slot and its file
/// are kept and its task tries again, [`RESUME_RETRY_MIN`] doubling to [`RESUME_RETRY_MAX`]
/// apart (each wait between half and one and a half times that, at random), with the error in
/// the lease record. This is the DHCPv4 side of [`super::resume`] (DHCPv6: `v6.rs`).
pub(super) async fn resume_v4(shared: &Arc<Shared>, record: Record) -> Resumed {
    let config = &shared.config;
    let expired = record.is_expired();
    let asks = Asks::from_record(&record);
    let client_config = client_config(
        config,
        &asks,
        (record.sent_chaddr(), record.chaddr),
        record.broadcast,
    );
    let seed = rand::random();
    let mut client = if expired {
        Client::reboot(client_config, record.lease.clone(), clock::now(), seed)
    } else {
        Client::resume(
            client_config,
            record.lease.clone(),
            record.granted_instant(),
            seed,
        )
    };
    client.keep_trying(true);
    let client = Dhcpv4::new(client);
    let slot = shared.table.slot(&record.attachment, Family::Ipv4);
    let op = slot.op.lock().await;
    *slot.status() = Status {
        netns: record.netns.clone(),
        identity: record.identity.clone(),
        client_id: record.client_id.clone(),
        chaddr: record.sent_chaddr(),
        state: client.state(),
        broadcast: record.broadcast,
        broadcast_reason: record.broadcast_reason.clone(),
        lease: (!expired).then(|| record.lease.clone()),
        timers: client.timers(),
        renewals: record.renewals,
        // The server granted it then: an offer of its address to a sibling's DHCPDISCOVER
        // sent after this proves keying by MAC (`on_offer`).
        bound_at: (!expired).then(|| record.granted_instant()),
        ..Status::default()
    };
    start_resumed(shared, &slot, op, Persisted::of_v4(&record), client).await
}

/// The part of [`resume`] common to both families, once the slot's status is set and its
/// lock held (`op`): enters the namespace and spawns the driver, or drops the lease, or
/// spawns the task that retries.
pub(super) async fn start_resumed<C: LeaseClient>(
    shared: &Arc<Shared>,
    slot: &Arc<Slot>,
    mut op: tokio::sync::MutexGuard<'_, Option<Handle>>,
    record: Persisted,
    client: C,
) -> Resumed {
    let expired = record.is_expired();
    let first = attach(shared, &record).await;
    let (commands, command_rx) = mpsc::channel(4);
    let (outcome, task) = match first {
        Ok(Verdict::Gone(why)) => {
            slot.status().state = LeaseState::Lost;
            shared.table.remove(slot);
            unpersist(shared, &record.attachment, record.family).await;
            return Resumed::Dropped(why);
        }
        Ok(Verdict::Same(attached)) => {
            slot.push_history(
                Direction::Event,
                format!(
                    "resumed from the state directory ({}, {})",
                    record.address,
                    client.state()
                ),
            );
            info!(
                attachment = %record.attachment,
                address = %record.address,
                state = %client.state(),
                "resumed persisted lease"
            );
            let ctx = resumed_ctx(shared, slot, &record, attached, expired);
            (
                Resumed::Running,
                spawn_driver(
                    shared,
                    &record.attachment,
                    drive(ctx, client, None, command_rx),
                ),
            )
        }
        Err(e) => {
            let why = e.to_string();
            note_resume_error(slot, &why, RESUME_RETRY_MIN);
            let attachment = record.attachment.clone();
            (
                Resumed::Retrying,
                spawn_driver(
                    shared,
                    &attachment,
                    retry_resume(shared.clone(), slot.clone(), record, client, command_rx),
                ),
            )
        }
    };
    *op = Some(Handle { commands, task });
    outcome
}

pub(super) fn note_resume_error(slot: &Slot, why: &str, retry_in: Duration) {
    warn!(attachment = %slot.attachment, error = %why, retry_in_secs = retry_in.as_secs(), "cannot resume persisted lease; keeping it and trying again");
    slot.status().last_error = Some(format!(
        "cannot resume after restart: {why}; trying again in {}s",
        retry_in.as_secs()
    ));
}

/// The context of a resumed lease whose namespace was found.
pub(super) fn resumed_ctx(
    shared: &Arc<Shared>,
    slot: &Arc<Slot>,
    record: &Persisted,
    attached: Attached,
    expired: bool,
) -> Ctx {
    {
        let mut st = slot.status();
        st.identity = Some(attached.identity.clone());
        st.last_error = None;
    }
    Ctx {
        shared: shared.clone(),
        slot: slot.clone(),
        netns_path: shared.config.netns_path(&record.netns),
        form: attached.form,
        ns: Arc::new(attached.entered.ns),
        identity: attached.identity,
        ifname: record.attachment.ifname.clone(),
        link_kind: attached.entered.link.kind,
        priority: record.priority,
        server_mac: record.server_mac,
        unicast_discover: record.unicast_discover,
        // An expired lease's address was (or should have been) withdrawn already.
        configured: !expired,
        last_address: Some(record.address),
        bound_tx: None,
        timeout: shared.config.timeout,
        trace: Trace::default(),
        permit: None,
    }
}

/// The task of a resumed lease whose namespace could not be entered yet: tries again with
/// back-off until it can (then drives the lease), finds the container gone (then drops it), or
/// is told to release (DEL: the file goes; no DHCPRELEASE can be sent from a namespace that
/// cannot be entered).
pub(super) async fn retry_resume<C: LeaseClient>(
    shared: Arc<Shared>,
    slot: Arc<Slot>,
    record: Persisted,
    client: C,
    mut commands: mpsc::Receiver<DriverCommand>,
) {
    let mut wait = RESUME_RETRY_MIN;
    loop {
        // Leases that failed together (a burst of EMFILE at start-up) must not retry together.
        let jittered = wait.mul_f64(rand::random_range(0.5..1.5));
        tokio::select! {
            _ = tokio::time::sleep(jittered) => {}
            command = commands.recv() => {
                if let Some(DriverCommand::Release(done)) = command {
                    warn!("DHCPRELEASE not sent: the lease's namespace could not be entered since the restart");
                    unpersist(&shared, &record.attachment, record.family).await;
                    let _ = done.send(());
                }
                return;
            }
        }
        wait = wait.saturating_mul(2).min(RESUME_RETRY_MAX);
        match attach(&shared, &record).await {
            Ok(Verdict::Same(attached)) => {
                info!(address = %record.address, "resumed persisted lease after earlier failures");
                slot.push_history(
                    Direction::Event,
                    "resumed from the state directory after earlier failures",
                );
                let expired = record.is_expired();
                let ctx = resumed_ctx(&shared, &slot, &record, attached, expired);
                drive(ctx, client, None, commands).await;
                return;
            }
            Ok(Verdict::Gone(why)) => {
                info!(reason = %why, "persisted lease dropped");
                shared.metrics.lease_lost();
                slot.status().state = LeaseState::Lost;
                shared.table.remove(&slot);
                unpersist(&shared, &record.attachment, record.family).await;
                return;
            }
            Err(e) => note_resume_error(&slot, &e.to_string(), wait),
        }
    }
}
