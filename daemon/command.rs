//! What each request does to the shared state.
//!
//! One function per [`Request`] variant. ADD is idempotent (an attachment that already holds a
//! lease gets that lease back, no second one is acquired); DEL of an unknown attachment
//! succeeds and DEL is safe to repeat or run concurrently (the slot's lock orders them); CHECK
//! never acquires anything (the reference does, docs/design.md, *The reference's bugs*).

use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;

use super::clock;
use super::driver::{self, AcquireError};
use super::metrics;
use super::shared::Shared;
use super::table::Slot;
use crate::cni::{self, code};
use crate::rpc::{
    AddOptions, Attachment, Family, LeaseRecord, PROTOCOL_VERSION, Request, Response,
    ValidAttachment,
};

/// The CNI spec's rules for the names in an attachment (container ID, network name, ifname at
/// most 15 bytes, no '/', not '.' or '..'): the plugin checks them too, but the socket may be
/// reached by other clients, and the names end up in logs and file names.
fn validate(attachment: &Attachment) -> Result<(), cni::Error> {
    cni::validate_container_id(&attachment.container_id)?;
    cni::validate_network_name(&attachment.network)?;
    cni::validate_ifname(&attachment.ifname)
}

/// The CNI error an ADD answers with when its acquisition failed: the one place that picks the
/// code (CNI spec 1.1.0, "Error"; codes in [`crate::cni::code`]):
/// - 4 (invalid environment): `CNI_NETNS` not of an accepted form, not a namespace, or the
///   container went away during the ADD;
/// - 7 (invalid network configuration): the interface does not exist, a bad
///   `dhcp-client-identifier`, a server that keys by MAC (offer refused or duplicate declined),
///   or the timeout ran out on an ipvlan slave without the broadcast flag;
/// - 11 (try again later): no server answered in time;
/// - 5 (I/O failure): anything the host refused, including a state directory that refused the
///   lease (which was then released).
impl From<AcquireError> for cni::Error {
    fn from(e: AcquireError) -> cni::Error {
        let code = match &e {
            AcquireError::NetnsForm(_)
            | AcquireError::NetnsUnusable { .. }
            | AcquireError::ContainerGone(_) => code::INVALID_ENV,
            AcquireError::ClientIdLength(_)
            | AcquireError::DuidLength(_)
            | AcquireError::NoLinkLocal { .. }
            | AcquireError::NoInterface { .. }
            | AcquireError::MacKeyed { .. }
            | AcquireError::Declined { .. } => code::INVALID_NETWORK_CONFIG,
            AcquireError::Timeout {
                ipvlan_without_broadcast: true,
                ..
            } => code::INVALID_NETWORK_CONFIG,
            AcquireError::Timeout { .. } => code::TRY_AGAIN_LATER,
            AcquireError::NotPersisted { .. } | AcquireError::Io { .. } => code::IO_FAILURE,
        };
        cni::Error::new(code, e.to_string(), e.details())
    }
}

/// Applies `request` and returns the response to send.
pub(crate) async fn apply(shared: &Arc<Shared>, request: Request) -> Response {
    let _in_flight = shared
        .metrics
        .request_started(metrics::command_name(&request));
    let attachment = match &request {
        Request::Add { attachment, .. }
        | Request::Del { attachment, .. }
        | Request::Check { attachment, .. } => Some(attachment),
        _ => None,
    };
    if let Some(Err(e)) = attachment.map(validate) {
        return Response::error(e.code, e.msg, e.details);
    }
    // The host name reaches logs and lease records: the plugin refuses control characters in
    // it, but the socket may be reached by other clients (`-socket-group`). (CNI_NETNS is
    // checked with its form, `identity::parse_cni_netns`.)
    if let Request::Add { options, .. } = &request
        && let Some(bad) = options
            .hostname
            .as_ref()
            .filter(|t| t.chars().any(char::is_control))
    {
        return Response::error(
            code::INVALID_ENV,
            "control characters in an ADD request's host name",
            bad.escape_debug().to_string(),
        );
    }
    match request {
        Request::Add {
            attachment,
            options,
            ..
        } => {
            let span = driver::lease_span(&attachment);
            let started = Instant::now();
            let response = add(shared, attachment, options).instrument(span).await;
            shared.metrics.observe_add(
                started.elapsed(),
                !matches!(response, Response::Error { .. }),
            );
            response
        }
        Request::Del { attachment, .. } => {
            let span = driver::lease_span(&attachment);
            del(shared, attachment).instrument(span).await
        }
        Request::Check {
            attachment,
            families,
            ..
        } => check(shared, attachment, families).await,
        Request::Status { .. } => status(shared).await,
        Request::Gc { network, valid, .. } => gc(shared, &network, &valid).await,
        Request::List { .. } => {
            let now = clock::now();
            Response::Leases {
                version: PROTOCOL_VERSION,
                records: shared.table.all().iter().map(|s| s.record(now)).collect(),
            }
        }
        Request::Show { attachment, .. } => {
            let now = clock::now();
            let records = shared
                .table
                .of(&attachment)
                .iter()
                .map(|slot| slot.record_with_history(now))
                .collect();
            leases_response(records).unwrap_or_else(|| {
                Response::error(
                    code::UNKNOWN_CONTAINER,
                    format!("no lease for {attachment}"),
                    "",
                )
            })
        }
    }
}

/// The answer carrying an attachment's `records` (IPv4 first), `None` when there are none.
fn leases_response(records: Vec<LeaseRecord>) -> Option<Response> {
    let mut records = records.into_iter();
    let record = records.next()?;
    Some(Response::Lease {
        version: PROTOCOL_VERSION,
        record: Box::new(record),
        also: records.collect(),
    })
}

/// CNI ADD: the lease of every family the ADD asks for, acquired at the same time. When one
/// fails, the others are released (an ADD that fails leaves nothing behind) and its error is
/// the answer; a DHCPv6 error's message says so.
async fn add(shared: &Arc<Shared>, attachment: Attachment, options: AddOptions) -> Response {
    let families = options.families();
    if families.is_empty() {
        return Response::error(
            code::INVALID_NETWORK_CONFIG,
            "neither DHCPv4 nor DHCPv6 is on for this network",
            "the ipam key dhcp4 is false and dhcp6 is not true: there is no lease to acquire",
        );
    }
    let results = futures::future::join_all(
        families
            .iter()
            .map(|family| add_one(shared, &attachment, *family, &options)),
    )
    .await;
    let mut records = Vec::new();
    let mut failure = None;
    for (family, result) in families.iter().zip(results) {
        match result {
            Ok(record) => records.push(record),
            Err(e) if failure.is_none() => failure = Some((*family, e)),
            Err(_) => {}
        }
    }
    if let Some((family, e)) = failure {
        for record in &records {
            if let Some(slot) = shared.table.get(&attachment, record.core.family) {
                release_slot(shared, &slot).await;
            }
        }
        let msg = match family {
            Family::Ipv4 => e.msg,
            Family::Ipv6 => format!("DHCPv6: {}", e.msg),
        };
        return Response::error(e.code, msg, e.details);
    }
    leases_response(records).unwrap_or_else(|| Response::error(code::INTERNAL, "no lease", ""))
}

/// ADD of one family: the held lease if there is one, else a new acquisition.
async fn add_one(
    shared: &Arc<Shared>,
    attachment: &Attachment,
    family: Family,
    options: &AddOptions,
) -> Result<LeaseRecord, cni::Error> {
    loop {
        let slot = shared.table.slot(attachment, family);
        let mut op = slot.op.lock().await;
        // While this request waited for the lock, a DEL, GC or lost container may have removed
        // the slot (and an ADD behind it made a new one): a lease acquired here would then live
        // where no LIST, DEL, GC or sweeper can see it. Start over with the table's slot.
        if !shared.table.is_current(&slot) {
            continue;
        }
        if let Some(handle) = op.as_ref()
            && handle.is_alive()
            && slot.status().has_lease()
        {
            return Ok(slot.record(clock::now()));
        }
        // No lease held now. A task that still runs (acquiring again after a DHCPNAK or an
        // expiry, or a resumed lease retrying its namespace) is stopped before a new one
        // starts: one attachment never has two drivers of a family.
        if let Some(handle) = op.take() {
            driver::release(handle).await;
        }
        let started = match family {
            Family::Ipv4 => driver::start(shared, slot.clone(), options).await,
            Family::Ipv6 => driver::start6(shared, slot.clone(), options).await,
        };
        return match started {
            Ok(handle) => {
                *op = Some(handle);
                Ok(slot.record(clock::now()))
            }
            Err(e) => {
                shared.table.remove(&slot);
                Err(cni::Error::from(e))
            }
        };
    }
}

/// Releases the slot's lease (DHCPRELEASE, file removed) once no other request on the same
/// attachment runs, and forgets the slot. Used by DEL, GC and `-release-on-exit`.
pub(crate) async fn release_slot(shared: &Arc<Shared>, slot: &Arc<Slot>) {
    let mut op = slot.op.lock().await;
    if let Some(handle) = op.take() {
        driver::release(handle).await;
    }
    shared.table.remove(slot);
}

async fn del(shared: &Arc<Shared>, attachment: Attachment) -> Response {
    for slot in shared.table.of(&attachment) {
        release_slot(shared, &slot).await;
    }
    Response::Ok {
        version: PROTOCOL_VERSION,
    }
}

/// CNI CHECK: every family asked for (IPv4 alone when none is named) has its lease held.
async fn check(shared: &Arc<Shared>, attachment: Attachment, families: Vec<Family>) -> Response {
    let families = if families.is_empty() {
        vec![Family::Ipv4]
    } else {
        families
    };
    let mut records = Vec::new();
    for family in families {
        let Some(slot) = shared.table.get(&attachment, family) else {
            return Response::error(
                code::UNKNOWN_CONTAINER,
                format!("no {} lease held for {attachment}", family.protocol()),
                "CHECK never acquires a lease; run ADD first",
            );
        };
        let op = slot.op.lock().await;
        let alive = op.as_ref().is_some_and(|h| h.is_alive());
        let has_lease = slot.status().has_lease();
        if !(alive && has_lease) {
            let st = slot.status();
            return Response::error(
                code::UNKNOWN_CONTAINER,
                format!(
                    "the {} lease for {attachment} is no longer held (state {})",
                    family.protocol(),
                    st.state
                ),
                st.last_error.clone().unwrap_or_default(),
            );
        }
        records.push(slot.record(clock::now()));
    }
    leases_response(records).unwrap_or_else(|| Response::error(code::INTERNAL, "no lease", ""))
}

/// Releases every lease of `network` whose (container ID, ifname) is not in `valid`, one after
/// the other (a burst of releases overflows dnsmasq's socket buffer, docs/design.md,
/// *DHCP servers*).
async fn gc(shared: &Arc<Shared>, network: &str, valid: &[ValidAttachment]) -> Response {
    let stale: Vec<_> = shared
        .table
        .all()
        .into_iter()
        .filter(|slot| {
            let a = &slot.attachment;
            a.network == network
                && !valid
                    .iter()
                    .any(|v| v.container_id == a.container_id && v.ifname == a.ifname)
        })
        .collect();
    for slot in stale {
        tracing::info!(attachment = %slot.attachment, "GC: attachment no longer valid, releasing");
        release_slot(shared, &slot).await;
    }
    Response::Ok {
        version: PROTOCOL_VERSION,
    }
}

/// CNI STATUS (spec 1.1.0): ready when the state directory takes a write now (a lease must be
/// on disk before its ADD is answered, so a full or read-only directory means no ADD can
/// succeed); otherwise code 50 with the directory and the error.
async fn status(shared: &Arc<Shared>) -> Response {
    let probe = shared.clone();
    let written = tokio::task::spawn_blocking(move || probe.store.probe_write())
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
    match written {
        Ok(()) => Response::Ok {
            version: PROTOCOL_VERSION,
        },
        Err(e) => Response::error(
            code::PLUGIN_NOT_AVAILABLE,
            format!(
                "DHCP daemon cannot write its state directory {}",
                shared.store.dir().display()
            ),
            e.to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each acquisition failure answers with the code the CNI spec gives its kind, and its
    /// message and details pass through unchanged.
    #[test]
    fn acquisition_errors_map_to_their_cni_codes() {
        let timeout = |ipvlan_without_broadcast| AcquireError::Timeout {
            secs: 10.0,
            ifname: "eth0".into(),
            ipvlan_without_broadcast,
            details: "sent 3 message(s)".into(),
        };
        let cases = [
            (AcquireError::NetnsForm("bad".into()), code::INVALID_ENV),
            (
                AcquireError::ContainerGone("gone".into()),
                code::INVALID_ENV,
            ),
            (
                AcquireError::ClientIdLength(0),
                code::INVALID_NETWORK_CONFIG,
            ),
            (timeout(true), code::INVALID_NETWORK_CONFIG),
            (timeout(false), code::TRY_AGAIN_LATER),
            (
                AcquireError::NotPersisted {
                    dir: "/var/lib/cni/dhcp".into(),
                    error: "ENOSPC".into(),
                },
                code::IO_FAILURE,
            ),
            (
                AcquireError::io("cannot register socket", "EMFILE"),
                code::IO_FAILURE,
            ),
        ];
        for (e, want) in cases {
            let (msg, details) = (e.to_string(), e.details());
            let cni = cni::Error::from(e);
            assert_eq!(cni.code, want, "{msg}");
            assert_eq!((cni.msg, cni.details), (msg, details));
        }
        let e = cni::Error::from(timeout(false));
        assert!(
            e.msg.starts_with("no DHCP lease within 10s on eth0"),
            "{}",
            e.msg
        );
        assert_eq!(e.details, "sent 3 message(s)");
    }
}
