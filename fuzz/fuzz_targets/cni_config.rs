//! CNI network configuration (plugin stdin) and CNI results in every supported version.
#![no_main]

use cni_dhcp::cni::{CniResult, NetConf, SUPPORTED_VERSIONS, parse_conf};
use cni_dhcp::ipam::Conf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(net) = parse_conf::<NetConf>(data) {
        let _ = net.prev_result();
    }
    if let Ok(conf) = Conf::parse(data) {
        let _ = conf.ipam.dhcp_extras(|_| None);
        let _ = conf.ipam.dhcp_extras(|k| Some(format!("{k}=x")));
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    // The input as a result, and as the prevResult inside it.
    for v in [Some(&value), value.get("prevResult")]
        .into_iter()
        .flatten()
    {
        if let Ok(result) = CniResult::from_value(v) {
            for version in SUPPORTED_VERSIONS {
                let _ = result.to_version(version);
            }
        }
    }
});
