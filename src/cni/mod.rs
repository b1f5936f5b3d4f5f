//! The CNI specification 1.1.0 (<https://www.cni.dev/docs/spec/>) as Rust types, and the plugin
//! skeleton every binary of this project uses.
//!
//! - [`error`]: the error JSON and the well-known codes ([`Error`], [`code`]);
//! - [`env`]: the `CNI_*` environment ([`Env`], [`Command`]) and name validation;
//! - [`conf`]: the network configuration on stdin ([`NetConf`], [`parse_conf`]);
//! - [`result`]: results in the 1.1.0 shape and conversion to/from older versions
//!   ([`CniResult`]);
//! - [`plugin`]: [`Plugin`], [`run`] and delegation to other plugins ([`exec_plugin`]).

pub mod conf;
pub mod env;
pub mod error;
pub mod plugin;
pub mod result;

pub use conf::{NetConf, check_version, conf_version, parse_conf, version_at_least};
pub use env::{
    Command, Env, parse_args, validate_container_id, validate_ifname, validate_network_name,
};
pub use error::{Error, code};
pub use plugin::{Plugin, dispatch, exec_plugin, find_in_path, reply_version, run};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};

/// The `cniVersion`s this project reads and writes (spec 1.1.0 "Version considerations"):
/// 0.3.0 and later. 0.1.0 and 0.2.0 (`ip4`/`ip6` results) are refused with code 1.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The `cniVersion` of the spec implemented here; results are held in this version's shape.
pub const CURRENT_VERSION: &str = "1.1.0";
