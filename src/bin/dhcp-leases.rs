//! `dhcp-leases`: lists the DHCP leases of `dhcp daemon`, live over its socket or offline from
//! its state directory, as a table or JSON (schema: `cni_dhcp::leases_view`), and shows one
//! lease in full with its recent transactions.
//!
//! Exit codes: 0 done; 1 the daemon could not be reached or answered an error (or, offline,
//! the state directory could not be read); 2 usage error; 3 `show`: no lease matches the ID,
//! or the ID prefix is ambiguous.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;
use cni_dhcp::lease_file::{DEFAULT_STATE_DIR, Granted};
use cni_dhcp::leases_view::{self, Filter, LeaseView};
use cni_dhcp::rpc::{self, Attachment, CallError, Family, PROTOCOL_VERSION, Request, Response};

const TIMEOUT: Duration = Duration::from_secs(10);

const AFTER_HELP: &str = "\
Modes:
  live (default)     ask the running daemon over --socket
  offline            --state-dir DIR: read the lease files a stopped daemon left (read only,
                     no lock taken, nothing changed; safe beside a running daemon too). Offline
                     records carry no last error and no history: the daemon keeps those in
                     memory only. State is as last saved, or EXPIRED when the lease ran out.

Table columns: container ID (first 12 characters), network, ifname, address/prefix, gateway
(the default route's next hop), DHCP server, RFC 2131 state, time left to T1 (renew), T2
(rebind) and expiry (`29m59s`, `1h2m`; `-` when not bound), renewals done, last error.

JSON (--json): an array, one object per lease, each with \"schema_version\": 1; full container
IDs, times in RFC 3339 UTC (granted, t1, t2, expiry) and seconds left (t1_in, t2_in,
expires_in), client_id in hex, state, lease fields, broadcast and broadcast_reason, renewals,
previous_address, last_error, and history (`show`, live only; null otherwise). The full schema
is documented in the cni_dhcp::leases_view module.

Exit codes:
  0  done
  1  the daemon could not be reached or answered an error; offline: the state directory
     could not be read
  2  usage error (bad flag or value)
  3  show: no lease matches ID, or ID is an ambiguous prefix

Examples:
  dhcp-leases
  dhcp-leases --network mynet --state bound
  dhcp-leases --watch 5
  dhcp-leases show 3f2a9c
  dhcp-leases --state-dir /var/lib/cni/dhcp --json
  dhcp-leases completions bash > /etc/bash_completion.d/dhcp-leases";

/// List the DHCP leases held by `dhcp daemon`, or show one in full.
#[derive(Parser, Debug)]
#[command(version, after_help = AFTER_HELP)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// The daemon's Unix socket (live mode).
    #[arg(long, global = true, value_name = "PATH", default_value = rpc::DEFAULT_SOCKET_PATH)]
    socket: PathBuf,
    /// Offline mode: read the leases saved in the daemon's state directory DIR (its
    /// `-state-dir`, by default /var/lib/cni/dhcp) instead of asking the daemon.
    #[arg(long, global = true, value_name = "DIR", conflicts_with = "socket")]
    state_dir: Option<PathBuf>,
    /// Print JSON (an array of records with `schema_version` 1, see below) instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Only leases whose container ID starts with PREFIX.
    #[arg(long, value_name = "PREFIX")]
    container: Option<String>,
    /// Only leases of the network (the CNI configuration's `name`) NAME.
    #[arg(long, value_name = "NAME")]
    network: Option<String>,
    /// Only leases in STATE (BOUND, RENEWING, REBINDING, SELECTING, EXPIRED, LOST, ...;
    /// case-insensitive).
    #[arg(long, value_name = "STATE")]
    state: Option<String>,
    /// Redraw the listing in place every SECS seconds (default 2) until Ctrl-C.
    #[arg(
        long,
        value_name = "SECS",
        num_args = 0..=1,
        default_missing_value = "2",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    watch: Option<u64>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show one container's lease(s) in full, with the last 32 transactions (live mode).
    Show {
        /// Container ID, or a prefix of exactly one container's ID. A container with several
        /// attachments (networks, interfaces) shows them all.
        id: String,
    },
    /// Print a shell completion script for SHELL to stdout.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
    },
}

/// Why a command failed: the message and the exit code.
struct Failure(u8, String);

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match &args.command {
        Some(Command::Completions { shell }) => {
            clap_complete::generate(
                *shell,
                &mut Args::command(),
                "dhcp-leases",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Some(Command::Show { id }) => show(&args, id),
        None => match args.watch {
            Some(secs) => watch(&args, secs),
            None => list(&args).map(|out| print!("{out}")),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, msg)) => {
            eprintln!("dhcp-leases: {msg}");
            ExitCode::from(code)
        }
    }
}

/// Every lease, from the daemon or the state directory.
fn fetch(args: &Args) -> Result<Vec<LeaseView>, Failure> {
    if let Some(dir) = &args.state_dir {
        let (views, problems) = leases_view::load_state_dir(dir, &Granted::now()).map_err(|e| {
            Failure(
                1,
                format!("cannot read the state directory {}: {e}", dir.display()),
            )
        })?;
        for p in problems {
            eprintln!("dhcp-leases: skipped {p}");
        }
        return Ok(views);
    }
    let request = Request::List {
        version: PROTOCOL_VERSION,
    };
    match call(args, &request)? {
        Response::Leases { records, .. } => {
            Ok(records.into_iter().map(LeaseView::from_live).collect())
        }
        other => Err(unexpected(other)),
    }
}

/// One request to the daemon. A failure's text goes through [`leases_view::escape_text`]: a
/// frame error can quote what the daemon sent.
fn call(args: &Args, request: &Request) -> Result<Response, Failure> {
    rpc::call(&args.socket, request, TIMEOUT).map_err(|e| {
        let hint = match e {
            CallError::Connect { .. } => format!(
                "\n(if the daemon is stopped, read its saved leases with --state-dir {DEFAULT_STATE_DIR})"
            ),
            CallError::Frame { .. } => String::new(),
        };
        Failure(1, format!("{}{hint}", leases_view::escape_text(&e.to_string())))
    })
}

/// An answer other than the one asked for; the daemon's error text escaped
/// ([`leases_view::escape_text`]), anything else in its (escaped) debug form.
fn unexpected(response: Response) -> Failure {
    match response {
        Response::Error { msg, details, .. } => Failure(
            1,
            format!(
                "the daemon refused: {}: {}",
                leases_view::escape_text(&msg),
                leases_view::escape_text(&details)
            ),
        ),
        other => Failure(1, format!("unexpected answer from the daemon: {other:?}")),
    }
}

/// The listing as printed: table or JSON, filtered.
fn list(args: &Args) -> Result<String, Failure> {
    let filter = Filter {
        container: args.container.clone(),
        network: args.network.clone(),
        state: args.state.clone(),
    };
    let views: Vec<LeaseView> = fetch(args)?
        .into_iter()
        .filter(|v| filter.matches(v))
        .collect();
    Ok(if args.json {
        leases_view::to_json(&views) + "\n"
    } else {
        leases_view::table(&views)
    })
}

/// Redraws the listing every `secs` seconds; a failure is drawn too, and retried.
fn watch(args: &Args, secs: u64) -> Result<(), Failure> {
    let source = match &args.state_dir {
        Some(dir) => format!("state dir {}", dir.display()),
        None => format!("daemon {}", args.socket.display()),
    };
    loop {
        let body = list(args).unwrap_or_else(|Failure(_, msg)| format!("error: {msg}\n"));
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        let mut out = std::io::stdout().lock();
        // Cursor home, clear screen: redraw in place.
        let drawn = write!(
            out,
            "\x1b[H\x1b[2JEvery {secs}s: {source}   {now}   (Ctrl-C to stop)\n\n{body}"
        )
        .and_then(|()| out.flush());
        if let Err(e) = drawn {
            // stdout closed (a pipe to `head`): nothing more to show.
            return Err(Failure(1, format!("cannot write: {e}")));
        }
        drop(out);
        std::thread::sleep(Duration::from_secs(secs));
    }
}

/// `show ID`: the matching leases in full, with the daemon's history when live.
fn show(args: &Args, id: &str) -> Result<(), Failure> {
    let all = fetch(args)?;
    let selected = leases_view::select(&all, id).map_err(|msg| Failure(3, msg))?;
    let mut views = Vec::new();
    for v in selected {
        views.push(if args.state_dir.is_some() {
            v.clone()
        } else {
            with_history(args, &v.core.attachment, v.core.family).unwrap_or_else(|| v.clone())
        });
    }
    if args.json {
        println!("{}", leases_view::to_json(&views));
    } else {
        let texts: Vec<String> = views.iter().map(leases_view::detail).collect();
        print!("{}", texts.join("\n"));
    }
    Ok(())
}

/// The attachment's record of `family` with its history (SHOW answers with every family's);
/// `None` when the daemon no longer has it or predates SHOW (the listing's record is shown
/// then, without history).
fn with_history(args: &Args, attachment: &Attachment, family: Family) -> Option<LeaseView> {
    let request = Request::Show {
        version: PROTOCOL_VERSION,
        attachment: attachment.clone(),
    };
    match call(args, &request) {
        Ok(Response::Lease { record, also, .. }) => std::iter::once(*record)
            .chain(also)
            .find(|r| r.core.family == family)
            .map(LeaseView::from_live),
        _ => None,
    }
}
