//! The state of a lease as the daemon reports and persists it: the client's RFC 2131 state or
//! one of the daemon's own.
//!
//! The lease table (`daemon/table.rs`), the lease files ([`crate::lease_file::Record`]), the
//! protocol's [`crate::rpc::LeaseRecord`] and `dhcp-leases` ([`crate::leases_view`]) all hold a
//! lease's state as one [`LeaseState`]. On the wire and on disk it is the upper-case name an
//! operator knows, a plain JSON string: `"BOUND"`, `"INIT-REBOOT"`, `"LOST"`... ([`State::name`]
//! for the client's states). A name this build does not know (a file written by a newer daemon,
//! or edited by hand) is kept as read ([`LeaseState::Other`]) and shown as it is, so that
//! reading never fails on the state alone.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::dhcp::client::State;

/// A lease's state. Serialised as its name ([`LeaseState::as_str`]), a JSON string; parsed
/// back by [`LeaseState::parse`], which accepts any string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum LeaseState {
    /// No state yet: the slot of an ADD that has just begun, before its driver set one. Its
    /// name is the empty string; the `leases` gauge counts it as `INIT`.
    #[default]
    Unset,
    /// The client's state (RFC 2131 §4.4, figure 5, plus the client's terminal states), named
    /// by [`State::name`]: `INIT`, `SELECTING`, `BOUND`, `RENEWING`, `INIT-REBOOT`, `EXPIRED`...
    Client(State),
    /// The DHCPv6 client's state (RFC 8415 names none; ours share the DHCPv4 names where they
    /// mean the same, [`crate::dhcp6::State`]). Parsed back from a name, a DHCPv6 state reads
    /// as the DHCPv4 state of the same name, except `SOLICITING`, which only DHCPv6 has.
    Client6(crate::dhcp6::State),
    /// `LOST`: the daemon gave the lease up because its container's network namespace or
    /// interface is gone (docs/reliability.md). Nothing more is done in that namespace.
    Lost,
    /// Any other name, kept as read (a newer daemon's state, a hand-edited file). This daemon
    /// never sets it.
    Other(String),
}

/// The name of [`LeaseState::Lost`].
const LOST: &str = "LOST";

impl LeaseState {
    /// Every state this daemon sets and the `leases` gauge reports even at 0: each client
    /// [`State`] in RFC 2131 order, then [`LeaseState::Lost`]. ([`LeaseState::Unset`] is
    /// reported as `INIT`; [`LeaseState::Other`] only when a lease is in it.)
    pub const KNOWN: [LeaseState; 14] = [
        LeaseState::Client(State::Init),
        LeaseState::Client(State::Selecting),
        LeaseState::Client(State::Requesting),
        LeaseState::Client(State::Bound),
        LeaseState::Client(State::Renewing),
        LeaseState::Client(State::Rebinding),
        LeaseState::Client(State::InitReboot),
        LeaseState::Client(State::Rebooting),
        LeaseState::Client(State::Expired),
        LeaseState::Client(State::Released),
        LeaseState::Client(State::Failed),
        LeaseState::Client(State::Declined),
        LeaseState::Client6(crate::dhcp6::State::Soliciting),
        LeaseState::Lost,
    ];

    /// The name, as written on disk, in the protocol and in `dhcp-leases`: [`State::name`] for
    /// a client state, `LOST`, the string as read for [`LeaseState::Other`], and the empty
    /// string for [`LeaseState::Unset`].
    pub fn as_str(&self) -> &str {
        match self {
            LeaseState::Unset => "",
            LeaseState::Client(state) => state.name(),
            LeaseState::Client6(state) => state.name(),
            LeaseState::Lost => LOST,
            LeaseState::Other(name) => name,
        }
    }

    /// The state named `name` (exact, case-sensitive: the names this build writes), or
    /// [`LeaseState::Other`] holding it; never fails. `parse(s.as_str()) == s` for every state.
    pub fn parse(name: &str) -> LeaseState {
        match name {
            "" => LeaseState::Unset,
            LOST => LeaseState::Lost,
            _ => LeaseState::KNOWN
                .into_iter()
                .find(|known| known.as_str() == name)
                .unwrap_or_else(|| LeaseState::Other(name.to_owned())),
        }
    }
}

impl From<State> for LeaseState {
    fn from(state: State) -> LeaseState {
        LeaseState::Client(state)
    }
}

impl From<crate::dhcp6::State> for LeaseState {
    fn from(state: crate::dhcp6::State) -> LeaseState {
        LeaseState::Client6(state)
    }
}

impl From<&str> for LeaseState {
    /// [`LeaseState::parse`].
    fn from(name: &str) -> LeaseState {
        LeaseState::parse(name)
    }
}

impl FromStr for LeaseState {
    type Err = std::convert::Infallible;

    /// [`LeaseState::parse`].
    fn from_str(name: &str) -> Result<LeaseState, Self::Err> {
        Ok(LeaseState::parse(name))
    }
}

impl AsRef<str> for LeaseState {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for LeaseState {
    /// The name ([`LeaseState::as_str`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for LeaseState {
    /// Whether the state's name is `other`, exactly.
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for LeaseState {
    /// Whether the state's name is `other`, exactly.
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for LeaseState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for LeaseState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<LeaseState, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(LeaseState::parse(&name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_holds_every_client_state_once_then_lost() {
        // An exhaustive match: a new client state does not compile until it is placed here,
        // which is the reminder to add it to KNOWN.
        let position = |s: State| match s {
            State::Init => 0,
            State::Selecting => 1,
            State::Requesting => 2,
            State::Bound => 3,
            State::Renewing => 4,
            State::Rebinding => 5,
            State::InitReboot => 6,
            State::Rebooting => 7,
            State::Expired => 8,
            State::Released => 9,
            State::Failed => 10,
            State::Declined => 11,
        };
        for (i, known) in LeaseState::KNOWN.iter().enumerate() {
            match known {
                LeaseState::Client(s) => assert_eq!(position(*s), i, "{known}"),
                LeaseState::Client6(s) => {
                    assert_eq!(*s, crate::dhcp6::State::Soliciting);
                    assert_eq!(i, LeaseState::KNOWN.len() - 2);
                }
                LeaseState::Lost => assert_eq!(i, LeaseState::KNOWN.len() - 1),
                other => panic!("{other:?} in KNOWN"),
            }
        }
    }

    #[test]
    fn names_are_those_written_so_far_and_parse_back() {
        let names: Vec<&str> = LeaseState::KNOWN.iter().map(LeaseState::as_str).collect();
        assert_eq!(
            names,
            [
                "INIT",
                "SELECTING",
                "REQUESTING",
                "BOUND",
                "RENEWING",
                "REBINDING",
                "INIT-REBOOT",
                "REBOOTING",
                "EXPIRED",
                "RELEASED",
                "FAILED",
                "DECLINED",
                "SOLICITING",
                "LOST"
            ]
        );
        for state in LeaseState::KNOWN
            .into_iter()
            .chain([LeaseState::Unset, LeaseState::Other("NEWER".into())])
        {
            assert_eq!(LeaseState::parse(state.as_str()), state);
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
            assert_eq!(serde_json::from_str::<LeaseState>(&json).unwrap(), state);
        }
        assert_eq!(LeaseState::from(State::Bound), "BOUND");
        assert_eq!(LeaseState::default().to_string(), "");
    }

    #[test]
    fn unknown_names_are_kept_as_read() {
        for odd in ["bound", "BOUND\r", "SOMETHING-NEW", "\u{1b}[2J"] {
            let state = LeaseState::parse(odd);
            assert_eq!(state, LeaseState::Other(odd.into()));
            assert_eq!(state.as_str(), odd);
        }
        // Escaped JSON strings (not borrowable from the input) parse too.
        let state: LeaseState = serde_json::from_str(r#""BOUND\r""#).unwrap();
        assert_eq!(state, LeaseState::Other("BOUND\r".into()));
        assert!(serde_json::from_str::<LeaseState>("42").is_err());
    }
}
