//! The persisted lease format, through the read-only loader (`dhcp-leases --state-dir`): the
//! input is written as a record file into a private directory and `lease_file::read_all` reads
//! it.
//! The file is named for the attachment it claims, when it names one, as the daemon names it.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use cni_dhcp::lease_file::{self as store, Record, Record6, Stored};
use cni_dhcp::rpc::Family;
use cni_dhcp::rpc::Attachment;
use libfuzzer_sys::fuzz_target;

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = std::env::var_os("TMPDIR").map_or_else(std::env::temp_dir, PathBuf::from);
        let d = base.join(format!("cni-dhcp-fuzz-lease-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("private state dir");
        d
    })
}

fuzz_target!(|data: &[u8]| {
    let dir = dir();
    let value = serde_json::from_slice::<serde_json::Value>(data).ok();
    // A version-2 (DHCPv6) record lives under its own name.
    let family = match value.as_ref().and_then(|v| v.get("version")?.as_u64()) {
        Some(2) => Family::Ipv6,
        _ => Family::Ipv4,
    };
    let name = value
        .and_then(|v| serde_json::from_value::<Attachment>(v.get("attachment")?.clone()).ok())
        .map_or_else(
            || "00000000000000000000000000000000.json".to_string(),
            |a| store::file_name_of(&a, family),
        );
    let path = dir.join(&name);
    std::fs::write(&path, data).expect("write record");
    let (records, _errors) = store::read_all(dir).expect("list the state dir");
    for stored in &records {
        match stored {
            Stored::V4(r) => {
                // A record that loads is within the lease's size bounds (Record::validate).
                assert_eq!(r.lease.check_bounds(), Ok(()));
                let _ = r.elapsed_since_granted();
                let _ = r.is_expired();
                let _ = r.lease.routes();
                let _ = r.lease.address_net();
            }
            Stored::V6(r) => {
                assert!(r.lease.lease.t1 <= r.lease.lease.t2);
                let _ = r.is_expired();
                let _ = r.lease.address_net();
                let _ = r.lease.default_route();
            }
        }
        assert_eq!(stored.file_name(), name);
    }
    std::fs::remove_file(&path).expect("remove record");
    // The same bytes straight into a Record, as any other reader of the format would.
    if let Ok(r) = serde_json::from_slice::<Record>(data) {
        let _ = r.elapsed_since_granted();
        let _ = r.is_expired();
    }
    if let Ok(r) = serde_json::from_slice::<Record6>(data) {
        let _ = r.is_expired();
    }
});
