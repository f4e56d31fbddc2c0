//! Action names typed on the command line: a name Thulium does not document is
//! probably a typo (`ticket_created`), so it gets a warning naming the closest action.

use thulium::Action;

/// The documented action `name` most likely meant, if it is close to one: the same
/// letters in another case or with `-` for `_`, or at most a few letters apart.
pub fn closest(name: &str) -> Option<&'static Action> {
    let wanted = name.trim().to_ascii_uppercase().replace(['-', ' '], "_");
    Action::KNOWN
        .iter()
        .map(|action| (strsim::levenshtein(&wanted, action.as_str()), action))
        .filter(|(distance, action)| *distance <= (action.as_str().len() / 5).max(2))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, action)| action)
}

/// The warning for `name`, unless it is a documented action.
pub fn warning(name: &str) -> Option<String> {
    if Action::from(name).is_known() {
        return None;
    }
    Some(match closest(name) {
        Some(action) => format!(
            "warning: `{name}` is not an action Thulium documents; did you mean {action}? \
             Using `{name}` as given (--allow-unknown-action accepts it without this warning)"
        ),
        None => format!(
            "warning: `{name}` is not an action Thulium documents; using it as given \
             (--allow-unknown-action accepts it without this warning)"
        ),
    })
}

/// Prints a warning on stderr for each name that is not a documented action, unless
/// the user said the names are deliberate.
pub fn warn_unknown<'a>(names: impl IntoIterator<Item = &'a str>, allow_unknown: bool) {
    if allow_unknown {
        return;
    }
    for name in names {
        if let Some(warning) = warning(name) {
            eprintln!("{}", crate::output::escape(&warning));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_point_at_the_documented_action() {
        assert_eq!(closest("ticket_created"), Some(&Action::TicketCreated));
        assert_eq!(closest("TICKET-CREATED"), Some(&Action::TicketCreated));
        assert_eq!(closest("TICKET_CRATED"), Some(&Action::TicketCreated));
        assert_eq!(closest("agent_ringing"), Some(&Action::AgentRinging));
        assert_eq!(closest("CALL_QUEUE_ENTERED"), None);
        assert!(warning("TICKET_CREATED").is_none());
        let text = warning("ticket_created").unwrap();
        assert!(text.contains("did you mean TICKET_CREATED?"), "{text}");
        assert!(
            !warning("CALL_QUEUE_ENTERED")
                .unwrap()
                .contains("did you mean")
        );
    }
}
