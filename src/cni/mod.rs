//! The CNI specification 1.1.0 (<https://www.cni.dev/docs/spec/>) as Rust types, and the plugin
//! skeleton every binary of this project uses.
//!
//! - [`error`]: the error JSON and the well-known codes ([`Error`], [`code`]);
//! - [`env`](mod@env): the `CNI_*` environment ([`Env`], [`Command`]) and name validation;
//! - [`conf`]: the network configuration on stdin ([`NetConf`], [`parse_conf`]);
//! - [`result`]: results in the 1.1.0 shape and conversion to/from older versions
//!   ([`CniResult`]);
//! - [`version`]: the `cniVersion`s supported and how they compare ([`check_version`],
//!   [`version_at_least`]);
//! - [`plugin`]: [`Plugin`], [`run`] and delegation to other plugins ([`exec_plugin`]).

pub mod conf;
pub mod env;
pub mod error;
pub mod plugin;
pub mod result;
pub mod version;

pub use conf::{NetConf, conf_version, parse_conf};
pub use env::{
    Command, Env, parse_args, validate_container_id, validate_ifname, validate_network_name,
};
pub use error::{Error, code};
pub use plugin::{Plugin, dispatch, exec_plugin, find_in_path, reply_version, run};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
pub use version::{CURRENT_VERSION, SUPPORTED_VERSIONS, check_version, version_at_least};
