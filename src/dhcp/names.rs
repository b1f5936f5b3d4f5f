//! DHCP option names as the `provide` and `request` ipam keys spell them.
//!
//! The reference plugin accepts six names (`dhcp-client-identifier`, `subnet-mask`, `routers`,
//! `host-name`, `user-class`, `vendor-class-identifier`) or a decimal option code; we accept the
//! same, plus the other RFC 2132 / RFC 3397 / RFC 3442 options an operator is likely to ask
//! for, in the same ISC-style spelling. Anything else is a configuration error, never silently
//! ignored.

/// (name, code) for every option name we know.
pub const OPTION_NAMES: &[(&str, u8)] = &[
    ("subnet-mask", 1),
    ("routers", 3),
    ("domain-name-servers", 6),
    ("host-name", 12),
    ("domain-name", 15),
    ("interface-mtu", 26),
    ("broadcast-address", 28),
    ("static-routes", 33),
    ("ntp-servers", 42),
    ("vendor-encapsulated-options", 43),
    ("dhcp-lease-time", 51),
    ("dhcp-server-identifier", 54),
    ("dhcp-renewal-time", 58),
    ("dhcp-rebinding-time", 59),
    ("vendor-class-identifier", 60),
    ("dhcp-client-identifier", 61),
    ("tftp-server-name", 66),
    ("bootfile-name", 67),
    ("user-class", 77),
    ("domain-search", 119),
    ("classless-static-routes", 121),
];

/// The option code for `name`: a known name (case-insensitive) or a decimal code 1..=254.
///
/// Errors: a message naming the option and listing the accepted names.
pub fn option_code(name: &str) -> Result<u8, String> {
    let trimmed = name.trim();
    if let Some((_, code)) = OPTION_NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(trimmed))
    {
        return Ok(*code);
    }
    match trimmed.parse::<u8>() {
        Ok(code) if (1..=254).contains(&code) => Ok(code),
        _ => Err(format!(
            "unknown DHCP option {name:?}: use a code 1-254 or one of {}",
            OPTION_NAMES
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(option_code("host-name"), Ok(12));
        assert_eq!(option_code("Vendor-Class-Identifier"), Ok(60));
        assert_eq!(option_code("dhcp-client-identifier"), Ok(61));
        assert_eq!(option_code("121"), Ok(121));
        assert_eq!(option_code(" 77 "), Ok(77));
        for bad in ["hostname", "0", "255", "256", "-1", "", "routers2"] {
            let err = option_code(bad).unwrap_err();
            assert!(err.contains("unknown DHCP option"), "{bad}: {err}");
        }
    }

    #[test]
    fn table_has_no_duplicates() {
        for (i, (n, c)) in OPTION_NAMES.iter().enumerate() {
            for (n2, c2) in &OPTION_NAMES[i + 1..] {
                assert!(n != n2 && c != c2, "{n}/{n2}");
            }
        }
    }
}
