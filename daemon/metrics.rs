//! Prometheus metrics of the daemon, and the optional HTTP endpoint that serves them.
//!
//! Off by default: [`Metrics`] always exists in [`super::shared::Shared`] (so code paths call it
//! unconditionally and tests need nothing), but nothing serves it unless `-metrics-listen ADDR`
//! is given; then `GET /metrics` on that TCP address returns every series in the OpenMetrics
//! text format (`application/openmetrics-text; version=1.0.0`), which is what the
//! `prometheus-client` crate encodes and what Prometheus negotiates by default.
//!
//! Every series is prefixed `cni_dhcp_`:
//!
//! | series | type | labels | fed by |
//! | --- | --- | --- | --- |
//! | `leases` | gauge | `state` | computed at scrape time from the lease table ([`lease_states`]) |
//! | `add_duration_seconds` | histogram | `outcome` (ok/error) | [`Metrics::observe_add`] |
//! | `messages_sent_total` | counter | `type` | [`Metrics::message_sent`] |
//! | `messages_received_total` | counter | `type` | [`Metrics::message_received`] |
//! | `dhcp6_messages_sent_total` | counter | `type` | [`Metrics::message_sent`] of a DHCPv6 message ([`MESSAGE_TYPES6`]) |
//! | `dhcp6_messages_received_total` | counter | `type` | [`Metrics::message_received`] of a DHCPv6 reply |
//! | `replies_ignored_total` | counter | | [`Metrics::reply_ignored`] |
//! | `sends_retried_total` | counter | | [`Metrics::send_retried`] |
//! | `renewals_total` | counter | | [`Metrics::renewal`] |
//! | `rebinds_total` | counter | | [`Metrics::rebind`] |
//! | `naks_total` | counter | | [`Metrics::nak`] |
//! | `expiries_total` | counter | | [`Metrics::expiry`] |
//! | `declines_total` | counter | | [`Metrics::decline`] |
//! | `leases_lost_total` | counter | | [`Metrics::lease_lost`] |
//! | `requests_in_flight` | gauge | `command` | [`Metrics::request_started`] (a guard) |
//! | `lease_drivers` | gauge | | [`Metrics::driver_started`] (a guard held by each lease task) |
//!
//! Where each call belongs (`m` is `ctx.shared.metrics` in `driver/`, `shared.metrics` in
//! `command.rs`):
//!
//! - `command::apply`, first line: `let _in_flight = m.request_started(command_name(&request));`
//! - `command::apply`, the `Request::Add` arm: `let t = Instant::now();` before `add(..)`, then
//!   `m.observe_add(t.elapsed(), !matches!(response, Response::Error { .. }))` on its response
//!   (the held-lease fast path included; an invalid attachment rejected before the match is not
//!   an ADD that ran and is not observed).
//! - `driver::send`, the `Ok(())` arm: `m.message_sent(family, kind.label)` (covers DISCOVER,
//!   REQUEST, DECLINE and RELEASE, retransmissions too; the protocol names each one's kind).
//! - `driver::on_received`: on `Ok(heard)` from the client's `handle`,
//!   `message_received(family, heard.kind.label)` (the client parsed the reply once), then
//!   `m.renewal()` or `m.rebind()` when `heard.completes` says the reply completed a renewal
//!   (RENEWING) or a rebind (REBINDING); on `Err(_)`, `m.reply_ignored()`.
//! - `driver::on_event`: `Event::Nak` → `m.nak()`; `Event::Expired` → `m.expiry()`.
//! - `driver::siblings::refuse_duplicate`, where the DHCPDECLINE is decided: `m.decline()`.
//! - `driver::Ctx::lose`: `m.lease_lost()`.
//!
//! Every hot-path call is one atomic operation on a series created up front: the label sets
//! are small and fixed (DHCP message types outside RFC 2131 count as `OTHER`), so a scrape
//! always shows every series, at 0 until something happens.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;
use tracing::{debug, warn};

use super::table::Table;
use crate::dhcp::client::State;
use crate::lease_state::LeaseState;

/// Prefix of every series.
pub(crate) const PREFIX: &str = "cni_dhcp";

/// The `Content-Type` of a scrape: the OpenMetrics text format, as `prometheus-client` encodes.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the ADD duration histogram: 1 ms (a lease already held) to 30 s
/// (beyond the default 10 s `-timeout`, for daemons run with a longer one).
pub(crate) const ADD_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0,
];

/// The values of the `type` label of `messages_sent_total` and `messages_received_total`,
/// each series created up front. The protocol names its messages
/// ([`crate::daemon::driver`]'s `MessageKind::label`; for DHCPv4 the RFC 2131 types and RFC 3203
/// FORCERENEW); a label not in this list counts as `OTHER`, so a hostile server cannot create
/// series at will.
pub(crate) const MESSAGE_TYPES: [&str; 10] = [
    "DISCOVER",
    "OFFER",
    "REQUEST",
    "DECLINE",
    "ACK",
    "NAK",
    "RELEASE",
    "INFORM",
    "FORCERENEW",
    "OTHER",
];

/// The `type` label values of `dhcp6_messages_sent_total` and `dhcp6_messages_received_total`:
/// the RFC 8415 §7.3 types a client and a server exchange, then `OTHER`. DHCPv6 counts apart
/// from DHCPv4 (its own series), so each family's traffic reads on its own.
pub(crate) const MESSAGE_TYPES6: [&str; 10] = [
    "SOLICIT",
    "ADVERTISE",
    "REQUEST",
    "CONFIRM",
    "RENEW",
    "REBIND",
    "REPLY",
    "RELEASE",
    "DECLINE",
    "OTHER",
];

/// The index in `types` of `label`, `OTHER`'s (the last) when it is not there.
fn label_index(types: &[&str], label: &str) -> usize {
    types
        .iter()
        .position(|t| *t == label)
        .unwrap_or(types.len() - 1)
}

/// The `command` label values of `requests_in_flight` created up front (one per request of
/// [`crate::rpc::Request`]); see [`command_name`].
pub(crate) const COMMANDS: [&str; 7] = ["add", "del", "check", "status", "gc", "list", "show"];

/// The `command` label of a request, for [`Metrics::request_started`].
pub(crate) fn command_name(request: &crate::rpc::Request) -> &'static str {
    use crate::rpc::Request;
    match request {
        Request::Add { .. } => "add",
        Request::Del { .. } => "del",
        Request::Check { .. } => "check",
        Request::Status { .. } => "status",
        Request::Gc { .. } => "gc",
        Request::List { .. } => "list",
        Request::Show { .. } => "show",
    }
}

/// The state of every lease in `table`, for [`Metrics::render`]: read from the table itself at
/// scrape time, so there is no second bookkeeping to drift. A slot whose driver has not set a
/// state yet (an ADD that just began, [`LeaseState::Unset`]) counts as `INIT`.
pub(crate) fn lease_states(table: &Table) -> Vec<LeaseState> {
    table
        .all()
        .iter()
        .map(|slot| match slot.status().state.clone() {
            LeaseState::Unset => State::Init.into(),
            state => state,
        })
        .collect()
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabel {
    command: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

fn add_histogram() -> Histogram {
    Histogram::new(ADD_BUCKETS)
}

/// The daemon's counters, gauges and histogram. Cheap to call from any task (atomics), `Send +
/// Sync`, and `Default`: a daemon without `-metrics-listen`, and every test, just has one.
pub(crate) struct Metrics {
    registry: Registry,
    in_flight: Family<CommandLabel, Gauge>,
    in_flight_known: [Gauge; COMMANDS.len()],
    add_ok: Histogram,
    add_error: Histogram,
    sent: [Counter; MESSAGE_TYPES.len()],
    received: [Counter; MESSAGE_TYPES.len()],
    sent6: [Counter; MESSAGE_TYPES6.len()],
    received6: [Counter; MESSAGE_TYPES6.len()],
    replies_ignored: Counter,
    sends_retried: Counter,
    renewals: Counter,
    rebinds: Counter,
    naks: Counter,
    expiries: Counter,
    declines: Counter,
    leases_lost: Counter,
    drivers: Gauge,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The registry's own Debug prints every series; keep `Shared`'s Debug readable.
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every series, registered and created at 0.
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);

        let add = Family::<OutcomeLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            add_histogram,
        );
        let add_ok = add.get_or_create(&OutcomeLabel { outcome: "ok" }).clone();
        let add_error = add
            .get_or_create(&OutcomeLabel { outcome: "error" })
            .clone();
        registry.register_with_unit(
            "add_duration",
            "Time to answer a CNI ADD, by outcome",
            Unit::Seconds,
            add,
        );

        let per_type = |registry: &mut Registry, name: &str, help: &str| {
            let family = Family::<TypeLabel, Counter>::default();
            let counters =
                MESSAGE_TYPES.map(|t| family.get_or_create(&TypeLabel { r#type: t }).clone());
            registry.register(name, help, family);
            counters
        };
        let per_type6 = |registry: &mut Registry, name: &str, help: &str| {
            let family = Family::<TypeLabel, Counter>::default();
            let counters =
                MESSAGE_TYPES6.map(|t| family.get_or_create(&TypeLabel { r#type: t }).clone());
            registry.register(name, help, family);
            counters
        };
        let sent6 = per_type6(
            &mut registry,
            "dhcp6_messages_sent",
            "DHCPv6 messages sent, by message type",
        );
        let received6 = per_type6(
            &mut registry,
            "dhcp6_messages_received",
            "DHCPv6 replies accepted (matching transaction ID and client DUID), by message type",
        );
        let sent = per_type(
            &mut registry,
            "messages_sent",
            "DHCP messages sent, by message type",
        );
        let received = per_type(
            &mut registry,
            "messages_received",
            "DHCP replies accepted (matching xid and client identifier), by message type",
        );

        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let replies_ignored = counter(
            &mut registry,
            "replies_ignored",
            "DHCP packets received and dropped: another client's xid or client identifier (normal on ipvlan, where every slave hears every broadcast reply), malformed, or unexpected in the current state",
        );
        let sends_retried = counter(
            &mut registry,
            "sends_retried",
            "Sends the kernel refused with ENOBUFS (its queue full behind broadcasts fanned out to every slave of the master) and that were sent again after a pacing turn",
        );
        let renewals = counter(
            &mut registry,
            "renewals",
            "Leases extended by a DHCPACK in RENEWING (from the server that granted them)",
        );
        let rebinds = counter(
            &mut registry,
            "rebinds",
            "Leases extended by a DHCPACK in REBINDING (from any server, after T2)",
        );
        let naks = counter(
            &mut registry,
            "naks",
            "Leases taken away by a DHCPNAK in RENEWING or REBINDING; every accepted DHCPNAK, during acquisition too, counts in messages_received_total with type NAK",
        );
        let expiries = counter(
            &mut registry,
            "expiries",
            "Leases that expired without a DHCPACK",
        );
        let declines = counter(
            &mut registry,
            "declines",
            "Addresses declined (DHCPDECLINE) because another live lease holds them",
        );
        let leases_lost = counter(
            &mut registry,
            "leases_lost",
            "Leases given up because the container's namespace or interface is gone",
        );

        let drivers = Gauge::default();
        registry.register(
            "lease_drivers",
            "Lease tasks running: at most one per attachment, so more than the leases gauge's total means a task nobody can reach",
            drivers.clone(),
        );

        let in_flight = Family::<CommandLabel, Gauge>::default();
        let in_flight_known = COMMANDS.map(|c| {
            in_flight
                .get_or_create(&CommandLabel { command: c })
                .clone()
        });
        registry.register(
            "requests_in_flight",
            "Plugin requests being served, by command",
            in_flight.clone(),
        );

        Metrics {
            registry,
            in_flight,
            in_flight_known,
            add_ok,
            add_error,
            sent,
            received,
            sent6,
            received6,
            replies_ignored,
            sends_retried,
            renewals,
            rebinds,
            naks,
            expiries,
            declines,
            leases_lost,
            drivers,
        }
    }

    /// A lease task (a driver, or a resumed lease still trying to enter its namespace) starts;
    /// it counts in `lease_drivers` until the returned guard is dropped.
    pub(crate) fn driver_started(&self) -> InFlight {
        self.drivers.inc();
        InFlight {
            gauge: self.drivers.clone(),
        }
    }

    /// An ADD answered after `elapsed`: `ok` when it returned a lease, false for an error.
    pub(crate) fn observe_add(&self, elapsed: Duration, ok: bool) {
        let h = if ok { &self.add_ok } else { &self.add_error };
        h.observe(elapsed.as_secs_f64());
    }

    /// A message of `family` and type `label` ([`MESSAGE_TYPES`], [`MESSAGE_TYPES6`]) handed
    /// to the socket (retransmissions included).
    pub(crate) fn message_sent(&self, family: crate::rpc::Family, label: &str) {
        let counter = match family {
            crate::rpc::Family::Ipv4 => &self.sent[label_index(&MESSAGE_TYPES, label)],
            crate::rpc::Family::Ipv6 => &self.sent6[label_index(&MESSAGE_TYPES6, label)],
        };
        counter.inc();
    }

    /// A reply of `family` and type `label` accepted for a lease (its xid and client
    /// identifier matched).
    pub(crate) fn message_received(&self, family: crate::rpc::Family, label: &str) {
        let counter = match family {
            crate::rpc::Family::Ipv4 => &self.received[label_index(&MESSAGE_TYPES, label)],
            crate::rpc::Family::Ipv6 => &self.received6[label_index(&MESSAGE_TYPES6, label)],
        };
        counter.inc();
    }

    /// A DHCP packet received and not used (someone else's reply, malformed, or not expected in
    /// the current state).
    pub(crate) fn reply_ignored(&self) {
        self.replies_ignored.inc();
    }

    /// A send refused with `ENOBUFS` and tried again after a pacing turn
    /// ([`crate::daemon::pacer`]).
    pub(crate) fn send_retried(&self) {
        self.sends_retried.inc();
    }

    /// A lease extended by a DHCPACK in RENEWING.
    pub(crate) fn renewal(&self) {
        self.renewals.inc();
    }

    /// A lease extended by a DHCPACK in REBINDING.
    pub(crate) fn rebind(&self) {
        self.rebinds.inc();
    }

    /// A DHCPNAK took a held lease away (RENEWING or REBINDING: the client's `Event::Nak`). A
    /// DHCPNAK during acquisition only restarts it and is not counted here.
    pub(crate) fn nak(&self) {
        self.naks.inc();
    }

    /// A lease expired.
    pub(crate) fn expiry(&self) {
        self.expiries.inc();
    }

    /// An acknowledged address declined (DHCPDECLINE): another live lease holds it.
    pub(crate) fn decline(&self) {
        self.declines.inc();
    }

    /// A lease given up because its namespace or link is gone.
    pub(crate) fn lease_lost(&self) {
        self.leases_lost.inc();
    }

    /// A plugin request of `command` (see [`command_name`]) starts; it counts in
    /// `requests_in_flight` until the returned guard is dropped.
    pub(crate) fn request_started(&self, command: &'static str) -> InFlight {
        let gauge = match COMMANDS.iter().position(|c| *c == command) {
            Some(i) => self.in_flight_known[i].clone(),
            None => self
                .in_flight
                .get_or_create(&CommandLabel { command })
                .clone(),
        };
        gauge.inc();
        InFlight { gauge }
    }

    /// Every series in the OpenMetrics text format, with the `leases` gauge computed from
    /// `lease_states` (one state name per lease: [`lease_states`] of the daemon's table).
    pub(crate) fn render<I, S>(&self, lease_states: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut counts: BTreeMap<String, i64> = LeaseState::KNOWN
            .iter()
            .map(|s| (s.to_string(), 0))
            .collect();
        for state in lease_states {
            *counts.entry(state.as_ref().to_string()).or_default() += 1;
        }
        let leases = Family::<StateLabel, Gauge>::default();
        for (state, n) in counts {
            leases.get_or_create(&StateLabel { state }).set(n);
        }
        let mut scrape = Registry::with_prefix(PREFIX);
        scrape.register("leases", "Leases held, by RFC 2131 state", leases);

        let mut out = String::new();
        // Writing into a String cannot fail; the encoders only return fmt::Error from the writer.
        let _ = encode_registry(&mut out, &scrape)
            .and_then(|()| encode_registry(&mut out, &self.registry))
            .and_then(|()| encode_eof(&mut out));
        out
    }
}

/// A request counted in `requests_in_flight`; the count goes down when this is dropped.
#[derive(Debug)]
#[must_use = "the request stops counting as in flight when the guard is dropped"]
pub(crate) struct InFlight {
    gauge: Gauge,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Time a scraper has to send its request headers.
pub(crate) const HEADER_DEADLINE: Duration = Duration::from_secs(5);

/// Scrape connections served at once; one more is closed at once. A scraper needs one.
pub(crate) const MAX_SCRAPE_CONNECTIONS: usize = 16;

/// Longest life of one scrape connection, keep-alive included: a scraper reconnects.
pub(crate) const SCRAPE_CONNECTION_LIFE: Duration = Duration::from_secs(60);

/// Binds the metrics endpoint (`-metrics-listen`). Separate from [`serve`] so the daemon fails
/// at start, before resuming leases, when the address is taken.
pub(crate) async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("metrics endpoint {addr}: {e}")))
}

/// Serves `GET /metrics` (and `HEAD`) on `listener` forever, answering each with `scrape()`.
/// Other paths get 404, other methods 405. One task per connection (HTTP/1.1, keep-alive);
/// a client that does not send its headers within [`HEADER_DEADLINE`] is dropped, at most
/// [`MAX_SCRAPE_CONNECTIONS`] are open at once, and none lives past
/// [`SCRAPE_CONNECTION_LIFE`].
pub(crate) async fn serve<F>(listener: TcpListener, scrape: F)
where
    F: Fn() -> String + Send + Sync + 'static,
{
    let scrape = Arc::new(scrape);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_SCRAPE_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            debug!("metrics connection refused: {MAX_SCRAPE_CONNECTIONS} already open");
            continue;
        };
        let scrape = scrape.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let scrape = scrape.clone();
                async move { Ok::<_, Infallible>(respond(&req, || scrape())) }
            });
            let served = tokio::time::timeout(
                SCRAPE_CONNECTION_LIFE,
                hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_DEADLINE)
                    .serve_connection(TokioIo::new(stream), service),
            )
            .await;
            match served {
                Ok(Err(e)) => debug!(error = %e, "metrics connection ended"),
                Err(_) => debug!("metrics connection closed after its longest life"),
                Ok(Ok(())) => {}
            }
        });
    }
}

fn respond<B>(req: &Request<B>, scrape: impl FnOnce() -> String) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, body: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *r.status_mut() = status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    };
    if req.uri().path() != "/metrics" {
        return plain(StatusCode::NOT_FOUND, "not found; try /metrics\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let mut r = Response::new(Full::new(Bytes::from(scrape())));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(CONTENT_TYPE),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DHCPv6 messages count in their own series, by RFC 8415 type; DHCPv4's are untouched.
    #[test]
    fn dhcpv6_messages_have_their_own_series() {
        use crate::rpc::Family;
        let m = Metrics::new();
        m.message_sent(Family::Ipv6, "SOLICIT");
        m.message_sent(Family::Ipv6, "REQUEST");
        m.message_received(Family::Ipv6, "REPLY");
        m.message_received(Family::Ipv6, "NOT-A-TYPE");
        let text = m.render(Vec::<LeaseState>::new());
        for line in [
            "cni_dhcp_dhcp6_messages_sent_total{type=\"SOLICIT\"} 1",
            "cni_dhcp_dhcp6_messages_sent_total{type=\"REQUEST\"} 1",
            "cni_dhcp_dhcp6_messages_received_total{type=\"REPLY\"} 1",
            "cni_dhcp_dhcp6_messages_received_total{type=\"OTHER\"} 1",
            "cni_dhcp_messages_sent_total{type=\"REQUEST\"} 0",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }
    use std::io::{Read, Write};

    /// The value of the sample `name{labels}` in `text` (labels as rendered, e.g.
    /// `type="ACK"`; empty for none), parsed line by line.
    fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
        let want = if labels.is_empty() {
            name.to_string()
        } else {
            format!("{name}{{{labels}}}")
        };
        text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            (series == want).then(|| value.parse().ok())?
        })
    }

    #[test]
    fn metrics_is_shareable_and_default() {
        fn check<T: Send + Sync + Default + fmt::Debug + 'static>() {}
        check::<Metrics>();
        check::<Arc<Metrics>>();
        fn send<T: Send>() {}
        send::<InFlight>();
    }

    #[test]
    fn counters_render_with_prefix_suffix_and_labels() {
        let m = Metrics::default();
        m.message_sent(crate::rpc::Family::Ipv4, "DISCOVER");
        m.message_sent(crate::rpc::Family::Ipv4, "DISCOVER");
        m.message_sent(crate::rpc::Family::Ipv4, "REQUEST");
        m.message_received(crate::rpc::Family::Ipv4, "OFFER");
        m.message_received(crate::rpc::Family::Ipv4, "ACK");
        // Labels outside the list (an unknown option 53, a leasequery type) count as OTHER.
        m.message_received(crate::rpc::Family::Ipv4, "UNKNOWN(200)");
        m.message_received(crate::rpc::Family::Ipv4, "LEASEQUERY");
        m.reply_ignored();
        m.renewal();
        m.renewal();
        m.rebind();
        m.nak();
        m.expiry();
        m.decline();
        m.lease_lost();
        let text = m.render(Vec::<String>::new());
        let s = |name, labels| sample(&text, name, labels);
        assert_eq!(
            s("cni_dhcp_messages_sent_total", r#"type="DISCOVER""#),
            Some(2.0)
        );
        assert_eq!(
            s("cni_dhcp_messages_sent_total", r#"type="REQUEST""#),
            Some(1.0)
        );
        assert_eq!(
            s("cni_dhcp_messages_sent_total", r#"type="RELEASE""#),
            Some(0.0),
            "every type exists from the start"
        );
        assert_eq!(
            s("cni_dhcp_messages_received_total", r#"type="OFFER""#),
            Some(1.0)
        );
        assert_eq!(
            s("cni_dhcp_messages_received_total", r#"type="ACK""#),
            Some(1.0)
        );
        assert_eq!(
            s("cni_dhcp_messages_received_total", r#"type="OTHER""#),
            Some(2.0),
            "unknown and leasequery types share one series"
        );
        assert_eq!(s("cni_dhcp_replies_ignored_total", ""), Some(1.0));
        assert_eq!(s("cni_dhcp_renewals_total", ""), Some(2.0));
        assert_eq!(s("cni_dhcp_rebinds_total", ""), Some(1.0));
        assert_eq!(s("cni_dhcp_naks_total", ""), Some(1.0));
        assert_eq!(s("cni_dhcp_expiries_total", ""), Some(1.0));
        assert_eq!(s("cni_dhcp_declines_total", ""), Some(1.0));
        assert_eq!(s("cni_dhcp_leases_lost_total", ""), Some(1.0));
        assert!(text.contains("# TYPE cni_dhcp_messages_sent counter"));
        assert!(text.ends_with("# EOF\n"), "one OpenMetrics document");
        assert_eq!(
            text.matches("# EOF").count(),
            1,
            "the scrape-time gauge does not end the document early"
        );
    }

    #[test]
    fn add_histogram_by_outcome() {
        let m = Metrics::default();
        m.observe_add(Duration::from_millis(3), true);
        m.observe_add(Duration::from_millis(800), true);
        m.observe_add(Duration::from_secs(10), false);
        let text = m.render(Vec::<String>::new());
        let h = "cni_dhcp_add_duration_seconds";
        assert!(text.contains(&format!("# TYPE {h} histogram")));
        assert!(text.contains(&format!("# UNIT {h} seconds")));
        let s = |name: &str, labels| sample(&text, name, labels);
        assert_eq!(s(&format!("{h}_count"), r#"outcome="ok""#), Some(2.0));
        assert_eq!(s(&format!("{h}_sum"), r#"outcome="ok""#), Some(0.803));
        assert_eq!(s(&format!("{h}_count"), r#"outcome="error""#), Some(1.0));
        // Cumulative buckets: 3 ms is in le=0.005 and above, 800 ms from le=1.0.
        let b = format!("{h}_bucket");
        assert_eq!(s(&b, r#"le="0.0025",outcome="ok""#), Some(0.0));
        assert_eq!(s(&b, r#"le="0.005",outcome="ok""#), Some(1.0));
        assert_eq!(s(&b, r#"le="0.5",outcome="ok""#), Some(1.0));
        assert_eq!(s(&b, r#"le="1.0",outcome="ok""#), Some(2.0));
        assert_eq!(s(&b, r#"le="+Inf",outcome="ok""#), Some(2.0));
        assert_eq!(s(&b, r#"le="5.0",outcome="error""#), Some(0.0));
        assert_eq!(s(&b, r#"le="10.0",outcome="error""#), Some(1.0));
        assert_eq!(s(&b, r#"le="30.0",outcome="error""#), Some(1.0));
    }

    #[test]
    fn in_flight_guard_counts_until_dropped() {
        let m = Metrics::default();
        let gauge = |m: &Metrics, c: &str| {
            sample(
                &m.render(Vec::<String>::new()),
                "cni_dhcp_requests_in_flight",
                &format!(r#"command="{c}""#),
            )
        };
        assert_eq!(gauge(&m, "add"), Some(0.0));
        let a = m.request_started("add");
        let b = m.request_started("add");
        let d = m.request_started("del");
        let x = m.request_started("future");
        assert_eq!(gauge(&m, "add"), Some(2.0));
        assert_eq!(gauge(&m, "del"), Some(1.0));
        assert_eq!(gauge(&m, "future"), Some(1.0));
        drop(a);
        drop(d);
        assert_eq!(gauge(&m, "add"), Some(1.0));
        assert_eq!(gauge(&m, "del"), Some(0.0));
        drop(b);
        drop(x);
        assert_eq!(gauge(&m, "add"), Some(0.0));
        assert_eq!(gauge(&m, "future"), Some(0.0));
    }

    #[test]
    fn command_names_are_precreated() {
        let req = crate::rpc::Request::Status {
            version: crate::rpc::PROTOCOL_VERSION,
        };
        assert_eq!(command_name(&req), "status");
        for c in COMMANDS {
            assert!(
                sample(
                    &Metrics::default().render(Vec::<String>::new()),
                    "cni_dhcp_requests_in_flight",
                    &format!(r#"command="{c}""#)
                )
                .is_some()
            );
        }
    }

    #[test]
    fn leases_gauge_counts_states_at_scrape_time() {
        let m = Metrics::default();
        let text = m.render(["BOUND", "BOUND", "RENEWING", "SOMETHING-NEW"]);
        let s = |state: &str| sample(&text, "cni_dhcp_leases", &format!(r#"state="{state}""#));
        assert_eq!(s("BOUND"), Some(2.0));
        assert_eq!(s("RENEWING"), Some(1.0));
        assert_eq!(s("SELECTING"), Some(0.0), "known states are reported at 0");
        assert_eq!(s("LOST"), Some(0.0));
        assert_eq!(s("SOMETHING-NEW"), Some(1.0));
        assert!(text.contains("# TYPE cni_dhcp_leases gauge"));
        // Nothing is remembered between scrapes: a state left is back to 0, an unknown one gone.
        let text = m.render(["REBINDING"]);
        let s = |state: &str| sample(&text, "cni_dhcp_leases", &format!(r#"state="{state}""#));
        assert_eq!(s("BOUND"), Some(0.0));
        assert_eq!(s("REBINDING"), Some(1.0));
        assert_eq!(s("SOMETHING-NEW"), None);
    }

    #[test]
    fn lease_states_are_read_from_the_table() {
        use crate::rpc::Attachment;
        let table = Table::default();
        let att = |c: &str| Attachment {
            container_id: c.into(),
            network: "n".into(),
            ifname: "eth0".into(),
        };
        table.slot4(&att("a")).status().state = "BOUND".into();
        table.slot4(&att("b")).status().state = "BOUND".into();
        table.slot4(&att("c")).status().state = "REBINDING".into();
        table.slot4(&att("d")); // an ADD that just began: no state yet
        let states = lease_states(&table);
        let mut states: Vec<&str> = states.iter().map(LeaseState::as_str).collect();
        states.sort();
        assert_eq!(states, ["BOUND", "BOUND", "INIT", "REBINDING"]);
        let text = Metrics::default().render(lease_states(&table));
        let s = |state: &str| sample(&text, "cni_dhcp_leases", &format!(r#"state="{state}""#));
        assert_eq!(s("BOUND"), Some(2.0));
        assert_eq!(s("REBINDING"), Some(1.0));
        assert_eq!(s("INIT"), Some(1.0));
        assert_eq!(s("EXPIRED"), Some(0.0));
    }

    /// One HTTP/1.0 request over a plain socket; returns (status line, headers, body).
    fn get(addr: SocketAddr, request: &str) -> (String, String, String) {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        let (head, body) = reply.split_once("\r\n\r\n").unwrap();
        let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
        (
            status.to_string(),
            headers.to_ascii_lowercase(),
            body.to_string(),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http_endpoint_serves_metrics() {
        let metrics = Arc::new(Metrics::default());
        metrics.message_sent(crate::rpc::Family::Ipv4, "DISCOVER");
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let m = metrics.clone();
        let server = tokio::spawn(serve(listener, move || m.render(["BOUND"])));

        let (status, headers, body) = tokio::task::spawn_blocking(move || {
            get(addr, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        })
        .await
        .unwrap();
        assert!(status.starts_with("HTTP/1.0 200"), "{status}");
        assert!(
            headers.contains("content-type: application/openmetrics-text; version=1.0.0"),
            "{headers}"
        );
        assert_eq!(
            sample(&body, "cni_dhcp_messages_sent_total", r#"type="DISCOVER""#),
            Some(1.0)
        );
        assert_eq!(
            sample(&body, "cni_dhcp_leases", r#"state="BOUND""#),
            Some(1.0)
        );

        let (status, _, _) = tokio::task::spawn_blocking(move || {
            get(addr, "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        })
        .await
        .unwrap();
        assert!(status.starts_with("HTTP/1.0 404"), "{status}");
        let (status, headers, _) = tokio::task::spawn_blocking(move || {
            get(
                addr,
                "POST /metrics HTTP/1.0\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
            )
        })
        .await
        .unwrap();
        assert!(status.starts_with("HTTP/1.0 405"), "{status}");
        assert!(headers.contains("allow: get, head"), "{headers}");
        server.abort();
    }
}
