//! The `cniVersion`s this project speaks (spec 1.1.0, "Version considerations") and how they
//! are checked and compared.
//!
//! Both the configuration on stdin ([`super::conf`]) and a result ([`super::result`], including
//! a `prevResult`) carry a `cniVersion`; each checks it here, so neither needs the other for
//! it. [`SUPPORTED_VERSIONS`] is also what the `VERSION` command reports
//! ([`super::reply_version`]).

use super::error::{Error, code};

/// The `cniVersion`s this project reads and writes (spec 1.1.0 "Version considerations"):
/// 0.3.0 and later. 0.1.0 and 0.2.0 (`ip4`/`ip6` results) are refused with code 1.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The `cniVersion` of the spec implemented here; results are held in this version's shape.
pub const CURRENT_VERSION: &str = "1.1.0";

/// Checks that `v` is one of [`SUPPORTED_VERSIONS`] (exact string match).
///
/// Error: code 1 ([`code::INCOMPATIBLE_VERSION`]), `msg` `incompatible CNI versions`, `details`
/// `config is "0.2.0", plugin supports ["0.3.0", ...]` (libcni's wording).
pub fn check_version(v: &str) -> Result<(), Error> {
    if SUPPORTED_VERSIONS.contains(&v) {
        return Ok(());
    }
    Err(Error::new(
        code::INCOMPATIBLE_VERSION,
        "incompatible CNI versions",
        format!("config is {v:?}, plugin supports {SUPPORTED_VERSIONS:?}"),
    ))
}

/// Compares two `MAJOR.MINOR.PATCH` version strings numerically: true when `v >= min`.
/// Unparsable parts count as 0.
pub fn version_at_least(v: &str, min: &str) -> bool {
    fn parts(s: &str) -> [u64; 3] {
        let mut out = [0; 3];
        for (o, p) in out.iter_mut().zip(s.split('.')) {
            *o = p.parse().unwrap_or(0);
        }
        out
    }
    parts(v) >= parts(min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert!(version_at_least("1.1.0", "1.1.0"));
        assert!(version_at_least("1.10.0", "1.9.0"));
        assert!(version_at_least("0.4.0", "0.3.1"));
        assert!(!version_at_least("0.3.1", "0.4.0"));
        assert!(!version_at_least("1.0.0", "1.1.0"));
        for v in SUPPORTED_VERSIONS {
            assert!(check_version(v).is_ok());
        }
        assert_eq!(
            check_version("1.0").unwrap_err().code,
            code::INCOMPATIBLE_VERSION
        );
    }
}
