//! Routes: which destinations take an event, decided once at receipt.
//!
//! A relay may hand each event to several destinations (an application per team,
//! a message bus). Each is a **route**: a [`RouteName`] and the actions it takes
//! ([`ActionPattern`]s, exact names or globs such as `CHAT_*`). [`Routing`] decides
//! at receipt which routes take an event; the store then keeps **one entry per
//! route** (its own id, state, attempts, history), so a route that is down never
//! delays or re-sends to another, and dead letters, replays and counts are per
//! route. An event no route takes is stored once on [`RouteName::unrouted`], done
//! at once, so that it is still seen (the console, `thulium inbox list`).
//!
//! Without routes there is one, [`RouteName::default_route`], that takes every
//! action: the relay as it was before routes.
//!
//! ```
//! use thulium_inbox::routing::{ActionPattern, RouteName, Routing};
//!
//! let routing = Routing::new(vec![
//!     (RouteName::new("crm")?, vec![ActionPattern::new("CHAT_*")?]),
//!     (RouteName::new("audit")?, vec![]), // no patterns: every action
//! ])?;
//! let names = |action| routing.routes_for(action).iter().map(|r| r.to_string()).collect::<Vec<_>>();
//! assert_eq!(names("CHAT_CREATED"), ["crm", "audit"]);
//! assert_eq!(names("TICKET_CREATED"), ["audit"]);
//! # Ok::<(), thulium_inbox::routing::RoutingError>(())
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a route name, a pattern or a set of routes is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoutingError {
    /// A route name must be short and plain.
    #[error(
        "`{0}` is not a route name: use 1 to 40 lower-case letters, digits, `-` and `_`, starting with a letter"
    )]
    BadName(String),
    /// `unrouted` names the events no route takes.
    #[error("`unrouted` is reserved for the events no route takes; choose another route name")]
    Reserved,
    /// Two routes with one name.
    #[error("two routes are named `{0}`; route names must differ")]
    Duplicate(String),
    /// An action pattern must be an action's characters and `*`.
    #[error(
        "`{0}` is not an action pattern: use an action name such as CHAT_CREATED, or a glob with `*` such as CHAT_*"
    )]
    BadPattern(String),
    /// No route at all.
    #[error("a relay needs at least one route")]
    NoRoutes,
    /// Not an account name.
    #[error(
        "`{0}` is not a Thulium account name; use the first label of its host, e.g. `acme` for https://acme.thulium.com"
    )]
    BadAccount(String),
}

/// A route's name: 1 to 40 lower-case ASCII letters, digits, `-` and `_`, starting
/// with a letter (it appears in file keys, SQL rows, metrics labels and URLs).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RouteName(String);

const DEFAULT_ROUTE: &str = "default";
const UNROUTED: &str = "unrouted";

impl RouteName {
    /// A route named `name`, if the name is valid and not reserved.
    pub fn new(name: &str) -> Result<Self, RoutingError> {
        let route = Self::parse(name)?;
        if route.is_unrouted() {
            return Err(RoutingError::Reserved);
        }
        Ok(route)
    }

    /// A valid name, reserved or not (as read back from a store).
    fn parse(name: &str) -> Result<Self, RoutingError> {
        let valid = (1..=40).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(RoutingError::BadName(name.to_owned()))
        }
    }

    /// `default`: the one route of a relay configured without routes, and of every
    /// event stored before routes existed.
    pub fn default_route() -> Self {
        Self(DEFAULT_ROUTE.to_owned())
    }

    /// `unrouted`: where an event no route takes is kept (done at once).
    pub fn unrouted() -> Self {
        Self(UNROUTED.to_owned())
    }

    /// Whether this is [`Self::unrouted`].
    pub fn is_unrouted(&self) -> bool {
        self.0 == UNROUTED
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for RouteName {
    fn default() -> Self {
        Self::default_route()
    }
}

impl fmt::Display for RouteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for RouteName {
    type Err = RoutingError;
    /// A name a user gives: reserved names refused.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::new(name)
    }
}

impl TryFrom<String> for RouteName {
    type Error = RoutingError;
    /// A name read back (from JSON, a store): `unrouted` included.
    fn try_from(name: String) -> Result<Self, Self::Error> {
        Self::parse(&name)
    }
}

impl From<RouteName> for String {
    fn from(route: RouteName) -> Self {
        route.0
    }
}

/// A Thulium account a relay receives for (`acme` for `https://acme.thulium.com`):
/// its events are stored with it, forwarded with `X-Thulium-Account`, and
/// recognised as redeliveries only among that account's own events.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountName(String);

impl AccountName {
    /// The account `name` (the first label of its host, as
    /// [`thulium::config::account_url`] takes it), in lower case.
    pub fn new(name: &str) -> Result<Self, RoutingError> {
        thulium::config::account_url(name)
            .map(|_| Self(name.to_ascii_lowercase()))
            .map_err(|_| RoutingError::BadAccount(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for AccountName {
    type Err = RoutingError;
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::new(name)
    }
}

impl TryFrom<String> for AccountName {
    type Error = RoutingError;
    fn try_from(name: String) -> Result<Self, Self::Error> {
        Self::new(&name)
    }
}

impl From<AccountName> for String {
    fn from(account: AccountName) -> Self {
        account.0
    }
}

/// The name a store read back: a name no version writes reads as `unrouted`, so
/// that nothing dispatches an entry nobody can name.
pub(crate) fn stored_route(name: &str) -> RouteName {
    RouteName::parse(name).unwrap_or_else(|_| RouteName::unrouted())
}

/// An action a route takes: an exact name (`CHAT_CREATED`) or a glob where `*`
/// stands for any run of characters (`CHAT_*`, `*_CREATED`, `*`).
///
/// Written here rather than with a glob crate: actions are upper-case words with
/// `_`, and `*` is the only wildcard a route needs (no classes, no paths).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionPattern(String);

impl ActionPattern {
    /// The pattern `text`: letters, digits, `_` and `*`.
    pub fn new(text: &str) -> Result<Self, RoutingError> {
        let valid = !text.is_empty()
            && text.len() <= 100
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'*');
        if valid {
            Ok(Self(text.to_owned()))
        } else {
            Err(RoutingError::BadPattern(text.to_owned()))
        }
    }

    /// Whether `action` matches.
    ///
    /// ```
    /// use thulium_inbox::routing::ActionPattern;
    /// let chats = ActionPattern::new("CHAT_*").unwrap();
    /// assert!(chats.matches("CHAT_CREATED") && !chats.matches("TICKET_CREATED"));
    /// ```
    pub fn matches(&self, action: &str) -> bool {
        let mut parts = self.0.split('*');
        let first = parts.next().unwrap_or_default();
        let Some(mut rest) = action.strip_prefix(first) else {
            return false;
        };
        let mut parts: Vec<&str> = parts.collect();
        let Some(last) = parts.pop() else {
            // No `*`: the whole action.
            return rest.is_empty();
        };
        for middle in parts {
            match rest.find(middle) {
                Some(at) => rest = &rest[at + middle.len()..],
                None => return false,
            }
        }
        rest.ends_with(last)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ActionPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The routes of a relay and the actions each takes, in order; a route may also
/// take only some accounts' events ([`Routing::only_accounts`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routing {
    routes: Vec<(RouteName, Vec<ActionPattern>)>,
    /// Routes that take only these accounts' events.
    accounts: Vec<(RouteName, Vec<AccountName>)>,
}

impl Default for Routing {
    /// One route, [`RouteName::default_route`], taking every action.
    fn default() -> Self {
        Self {
            routes: vec![(RouteName::default_route(), Vec::new())],
            accounts: Vec::new(),
        }
    }
}

impl Routing {
    /// Routes with the actions each takes (none: every action); names must differ.
    pub fn new(routes: Vec<(RouteName, Vec<ActionPattern>)>) -> Result<Self, RoutingError> {
        if routes.is_empty() {
            return Err(RoutingError::NoRoutes);
        }
        for (position, (name, _)) in routes.iter().enumerate() {
            if routes[..position].iter().any(|(other, _)| other == name) {
                return Err(RoutingError::Duplicate(name.to_string()));
            }
        }
        Ok(Self {
            routes,
            accounts: Vec::new(),
        })
    }

    /// Route `route` takes only the events of `accounts` (empty: every account's).
    pub fn only_accounts(mut self, route: &RouteName, accounts: Vec<AccountName>) -> Self {
        self.accounts.retain(|(name, _)| name != route);
        if !accounts.is_empty() {
            self.accounts.push((route.clone(), accounts));
        }
        self
    }

    /// The routes that take `action`, in the order they were given; empty when none
    /// does.
    pub fn routes_for(&self, action: &str) -> Vec<RouteName> {
        self.routes_for_account(action, None)
    }

    /// The routes that take `action` from `account` (an event of no named account
    /// goes to the routes that take every account's).
    pub fn routes_for_account(
        &self,
        action: &str,
        account: Option<&AccountName>,
    ) -> Vec<RouteName> {
        self.routes
            .iter()
            .filter(|(_, patterns)| {
                patterns.is_empty() || patterns.iter().any(|p| p.matches(action))
            })
            .filter(
                |(name, _)| match self.accounts.iter().find(|(n, _)| n == name) {
                    Some((_, only)) => account.is_some_and(|a| only.contains(a)),
                    None => true,
                },
            )
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Every route's name.
    pub fn names(&self) -> impl Iterator<Item = &RouteName> {
        self.routes.iter().map(|(name, _)| name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_exact_names_and_globs() {
        let cases = [
            ("CHAT_CREATED", "CHAT_CREATED", true),
            ("CHAT_CREATED", "CHAT_CREATED_X", false),
            ("CHAT_*", "CHAT_CREATED", true),
            ("CHAT_*", "CHAT_", true),
            ("CHAT_*", "TICKET_CREATED", false),
            ("*_CREATED", "TICKET_CREATED", true),
            ("*_CREATED", "TICKET_CLOSED", false),
            ("*", "ANYTHING", true),
            ("T*_*ED", "TICKET_CREATED", true),
            ("T*_*ED", "TICKET_CREATE", false),
            ("A*A", "A", false),
            ("A*A", "AA", true),
            ("**", "", true),
        ];
        for (pattern, action, expected) in cases {
            assert_eq!(
                ActionPattern::new(pattern).unwrap().matches(action),
                expected,
                "{pattern} against {action}"
            );
        }
        for bad in ["", "CHAT-*", "a b", "CHAT?"] {
            assert!(ActionPattern::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn route_names_are_plain_and_unrouted_is_reserved() {
        for good in ["crm", "billing-eu", "a_1"] {
            assert_eq!(RouteName::new(good).unwrap().as_str(), good);
        }
        for bad in ["", "Crm", "1crm", "crm!", &"a".repeat(41)] {
            assert!(
                matches!(RouteName::new(bad), Err(RoutingError::BadName(_))),
                "{bad}"
            );
        }
        assert_eq!(RouteName::new("unrouted"), Err(RoutingError::Reserved));
        // Read back, the reserved name is the unrouted route.
        let read: RouteName = serde_json::from_str("\"unrouted\"").unwrap();
        assert!(read.is_unrouted());
        assert!(stored_route("NOT A NAME").is_unrouted());
    }

    #[test]
    fn routing_keeps_order_and_refuses_twins() {
        let crm = RouteName::new("crm").unwrap();
        let routing = Routing::new(vec![
            (crm.clone(), vec![ActionPattern::new("CHAT_*").unwrap()]),
            (
                RouteName::new("tickets").unwrap(),
                vec![ActionPattern::new("TICKET_*").unwrap()],
            ),
        ])
        .unwrap();
        assert_eq!(routing.routes_for("CHAT_CREATED"), vec![crm.clone()]);
        assert!(routing.routes_for("CALL_RINGING").is_empty());
        assert_eq!(
            Routing::new(vec![(crm.clone(), vec![]), (crm, vec![])]),
            Err(RoutingError::Duplicate("crm".into()))
        );
        assert_eq!(Routing::new(vec![]), Err(RoutingError::NoRoutes));
        assert_eq!(
            Routing::default().routes_for("X"),
            vec![RouteName::default_route()]
        );
    }

    #[test]
    fn a_route_may_take_only_some_accounts() {
        let (crm, audit) = (
            RouteName::new("crm").unwrap(),
            RouteName::new("audit").unwrap(),
        );
        let acme = AccountName::new("Acme").unwrap();
        assert_eq!(acme.as_str(), "acme");
        let beta = AccountName::new("beta").unwrap();
        let routing = Routing::new(vec![(crm.clone(), vec![]), (audit.clone(), vec![])])
            .unwrap()
            .only_accounts(&crm, vec![acme.clone()]);
        assert_eq!(
            routing.routes_for_account("X", Some(&acme)),
            vec![crm.clone(), audit.clone()]
        );
        assert_eq!(
            routing.routes_for_account("X", Some(&beta)),
            vec![audit.clone()]
        );
        assert_eq!(routing.routes_for_account("X", None), vec![audit]);
        for bad in ["", "acme.thulium.com", "-acme", "a b"] {
            assert!(AccountName::new(bad).is_err(), "{bad}");
        }
    }
}
