//! `dhcp-leases`: lists the leases `dhcp daemon` holds (first version: live mode only).
//!
//! Exit codes: 0 listed, 1 the daemon could not be reached, 2 usage error (clap's).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use cni_dhcp::rpc::{self, PROTOCOL_VERSION, Request, Response};

/// List the DHCP leases held by `dhcp daemon`.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The daemon's socket.
    #[arg(long, default_value = rpc::DEFAULT_SOCKET_PATH)]
    socket: PathBuf,
    /// Print the records as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let request = Request::List {
        version: PROTOCOL_VERSION,
    };
    let records = match rpc::call(&args.socket, &request, Duration::from_secs(10)) {
        Ok(Response::Leases { records, .. }) => records,
        Ok(Response::Error { msg, details, .. }) => {
            eprintln!("dhcp-leases: the daemon refused: {msg}: {details}");
            return ExitCode::from(1);
        }
        Ok(other) => {
            eprintln!("dhcp-leases: unexpected answer from the daemon: {other:?}");
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("dhcp-leases: {e}");
            return ExitCode::from(1);
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&records).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    let rows: Vec<[String; 7]> = records
        .iter()
        .map(|r| {
            let short: String = r.attachment.container_id.chars().take(12).collect();
            let (addr, server) = match &r.lease {
                Some(l) => (
                    format!("{}/{}", l.address, l.prefix_len),
                    l.server_id.to_string(),
                ),
                None => ("-".into(), "-".into()),
            };
            let left = |s: Option<u64>| s.map_or("-".into(), |s| format!("{s}s"));
            [
                short,
                r.attachment.network.clone(),
                r.attachment.ifname.clone(),
                addr,
                server,
                r.state.clone(),
                format!("{}/{}/{}", left(r.t1_in), left(r.t2_in), left(r.expires_in)),
            ]
        })
        .collect();
    let header = [
        "CONTAINER",
        "NETWORK",
        "IFNAME",
        "ADDRESS",
        "SERVER",
        "STATE",
        "T1/T2/EXPIRY",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (cell, w) in cells.iter().zip(widths) {
            out.push_str(&format!("{cell:<w$}  "));
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    ExitCode::SUCCESS
}
