//! [`Action`]: the name of a Thulium event, open to names this SDK does not know yet.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

macro_rules! actions {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, )*) => {
        /// The name of a Thulium event, as used in subscriptions and event payloads.
        ///
        /// Thulium's list of actions is longer than the one documented publicly, so the
        /// enum is open: any other name is kept, unchanged, in [`Action::Other`].
        /// Build one from a string with [`Action::from`] (or `parse`), which always
        /// picks the known variant for a known name.
        ///
        /// ```
        /// use thulium::Action;
        ///
        /// assert_eq!(Action::from("CHAT_CONVERSATION_CREATED"), Action::ChatConversationCreated);
        /// assert_eq!(Action::ChatConversationCreated.as_str(), "CHAT_CONVERSATION_CREATED");
        ///
        /// let unknown = Action::from("CALL_QUEUE_ENTERED");
        /// assert_eq!(unknown, Action::Other("CALL_QUEUE_ENTERED".into()));
        /// assert_eq!(serde_json::to_string(&unknown).unwrap(), "\"CALL_QUEUE_ENTERED\"");
        /// ```
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Action {
            $( $(#[$doc])* $variant, )*
            /// An action this SDK does not know, with its name exactly as Thulium sent it.
            ///
            /// Do not construct it with a known name; use [`Action::from`], which
            /// normalises to the known variant.
            Other(String),
        }

        impl Action {
            /// Every action this SDK knows, in the order of `docs/thulium/API-FACTS.md`.
            pub const KNOWN: &'static [Action] = &[$( Action::$variant, )*];

            /// The name on the wire, exactly as Thulium spells it.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Action::$variant => $name, )*
                    Action::Other(name) => name,
                }
            }

            fn known(name: &str) -> Option<Self> {
                match name {
                    $( $name => Some(Action::$variant), )*
                    _ => None,
                }
            }
        }
    };
}

actions! {
    /// An agent was assigned to a chat conversation.
    ChatAgentAssigned = "CHAT_AGENT_ASSIGNED",
    /// A chat conversation was closed.
    ChatConversationClosed = "CHAT_CONVERSATION_CLOSED",
    /// A client started a chat conversation.
    ChatConversationCreated = "CHAT_CONVERSATION_CREATED",
    /// A customer record was created.
    CustomerCreated = "CUSTOMER_CREATED",
    /// A customer record was updated.
    CustomerUpdated = "CUSTOMER_UPDATED",
    /// An agent's phone is ringing.
    AgentRinging = "AGENT_RINGING",
    /// A call recording is ready.
    RecordingReady = "RECORDING_READY",
    /// A ticket was created.
    TicketCreated = "TICKET_CREATED",
    /// A message was received on a ticket.
    TicketMessageReceived = "TICKET_MESSAGE_RECEIVED",
}

impl Action {
    /// Whether this is one of the actions the SDK knows.
    pub fn is_known(&self) -> bool {
        !matches!(self, Action::Other(_))
    }

    /// Whether the name can be subscribed: it has at least one ASCII letter or digit
    /// (the OpenAPI spec's `pattern` for an action, which the fake enforces too).
    /// Every action Thulium documents is upper-case letters and underscores.
    ///
    /// ```
    /// use thulium::Action;
    /// assert!(Action::from("CALL_QUEUE_ENTERED").is_valid_name());
    /// assert!(!Action::from(" ").is_valid_name());
    /// ```
    pub fn is_valid_name(&self) -> bool {
        self.as_str().bytes().any(|b| b.is_ascii_alphanumeric())
    }
}

impl From<&str> for Action {
    fn from(name: &str) -> Self {
        Self::known(name).unwrap_or_else(|| Action::Other(name.to_string()))
    }
}

impl From<String> for Action {
    fn from(name: String) -> Self {
        Self::known(&name).unwrap_or(Action::Other(name))
    }
}

impl FromStr for Action {
    type Err = std::convert::Infallible;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Ok(Self::from(name))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Action {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Through `&str` where the format allows, so a known name allocates nothing.
        struct NameVisitor;
        impl serde::de::Visitor<'_> for NameVisitor {
            type Value = Action;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an action name")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Action, E> {
                Ok(Action::from(name))
            }
            fn visit_string<E: serde::de::Error>(self, name: String) -> Result<Action, E> {
                Ok(Action::from(name))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

impl schemars::JsonSchema for Action {
    fn schema_name() -> Cow<'static, str> {
        "WebhookAction".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let known: Vec<&str> = Action::KNOWN.iter().map(Action::as_str).collect();
        schemars::json_schema!({
            "type": "string",
            "description": "The name of a Thulium event; names not listed in `examples` are valid too.",
            "examples": known,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_name_round_trips_to_its_variant() {
        for action in Action::KNOWN {
            assert_eq!(&Action::from(action.as_str()), action);
            let json = serde_json::to_string(action).unwrap();
            assert_eq!(json, format!("\"{}\"", action.as_str()));
            assert_eq!(&serde_json::from_str::<Action>(&json).unwrap(), action);
        }
        assert_eq!(Action::KNOWN.len(), 9);
    }

    #[test]
    fn unknown_names_are_kept_byte_for_byte() {
        for name in ["CALL_ANSWERED", "chat_agent_assigned", "", "ZAŻÓŁĆ", "A\"B"] {
            let action: Action = serde_json::from_value(serde_json::json!(name)).unwrap();
            assert_eq!(action, Action::Other(name.to_string()));
            assert!(!action.is_known());
            assert_eq!(
                serde_json::to_value(&action).unwrap(),
                serde_json::json!(name)
            );
        }
    }
}
