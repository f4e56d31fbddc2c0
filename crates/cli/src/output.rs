//! Tables for people, JSON for scripts. No colours: output is plain text either way,
//! so it is the same in a terminal, a pipe or with NO_COLOR.

use std::borrow::Cow;

use std::io::Write as _;
use thulium::text::shorten;

use serde_json::{Value, json};
use thulium::Webhook;

use crate::failure::Failure;

/// The widest a table cell grows; longer text is cut with `…`, so one odd value
/// cannot pad every row of a table to thousands of columns.
pub const MAX_CELL_CHARS: usize = 60;

/// A time in milliseconds since the Unix epoch as RFC 3339 UTC, to the second: the
/// one time format of the command's output.
pub fn rfc3339(unix_ms: u64) -> String {
    rfc3339_ms(unix_ms - unix_ms % 1000)
}

/// As [`rfc3339`], to the millisecond (for attempts, which can be that close).
pub fn rfc3339_ms(unix_ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// An attempt of the fake's delivery log as JSON, its time (`at`) in RFC 3339 as
/// every time the command prints, where the fake's own API has `at_unix_ms`.
pub fn mock_attempt_json(attempt: &thulium_mock::Attempt) -> Value {
    let mut json = serde_json::to_value(attempt).unwrap_or_default();
    if let Some(object) = json.as_object_mut() {
        object.remove("at_unix_ms");
        object.insert("at".into(), json!(rfc3339_ms(attempt.at_unix_ms)));
    }
    json
}

/// A delivery of the fake's log as JSON, with [`mock_attempt_json`]'s times.
pub fn mock_delivery_json(delivery: &thulium_mock::Delivery) -> Value {
    let mut json = serde_json::to_value(delivery).unwrap_or_default();
    json["attempts"] = delivery.attempts.iter().map(mock_attempt_json).collect();
    json
}

/// Writes `text` and a newline to stdout. A reader that went away (`| head`) ends
/// the command quietly; any other write error (a full disk) is a [`Failure`].
pub fn print(text: impl std::fmt::Display) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::output(&e))
}

/// `text` with control characters written as escapes (`\n`, `\u{1b}`), so text from
/// an event or a server can neither forge lines nor drive the terminal.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Left-aligned columns separated by two spaces, headers first. Cells are escaped
/// and cut to [`MAX_CELL_CHARS`].
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|cell| shorten(&escape(cell), MAX_CELL_CHARS).into_owned())
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    let mut out = line(headers.to_vec());
    for row in &rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// The subscriptions as a table.
pub fn webhooks_table(webhooks: &[Webhook]) -> String {
    let rows: Vec<Vec<String>> = webhooks
        .iter()
        .map(|w| {
            vec![
                w.id.to_string(),
                actions_cell(&w.actions),
                w.subscription_url.clone(),
                if w.has_auth() {
                    w.http_auth_user.clone()
                } else {
                    "-".into()
                },
            ]
        })
        .collect();
    table(&["ID", "ACTIONS", "URL", "AUTH USER"], &rows)
}

/// The actions, comma-separated; past [`MAX_CELL_CHARS`] the rest is counted.
fn actions_cell(actions: &[thulium::Action]) -> String {
    let mut cell = String::new();
    for (shown, action) in actions.iter().enumerate() {
        let more = format!(",… (+{} more)", actions.len() - shown);
        if !cell.is_empty() && cell.len() + 1 + action.as_str().len() + more.len() > MAX_CELL_CHARS
        {
            cell.push_str(&more);
            return cell;
        }
        if !cell.is_empty() {
            cell.push(',');
        }
        cell.push_str(action.as_str());
    }
    cell
}

/// One subscription as JSON. The CLI prints no secret, so the password is left out;
/// `http_auth_password_set` says whether the subscription has one.
pub fn webhook_json(webhook: &Webhook) -> Value {
    json!({
        "id": webhook.id,
        "actions": webhook.actions,
        "subscription_url": webhook.subscription_url,
        "http_auth_user": webhook.http_auth_user,
        "http_auth_password_set": !webhook.http_auth_password.is_empty(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_lines_have_no_trailing_space() {
        let out = table(
            &["A", "LONG HEADER"],
            &[
                vec!["wide cell".into(), "x".into()],
                vec!["1".into(), "".into()],
            ],
        );
        assert_eq!(out, "A          LONG HEADER\nwide cell  x\n1");
    }

    #[test]
    fn cells_are_escaped_and_cut() {
        let out = table(
            &["A", "B"],
            &[vec!["line\nforged\u{1b}[31m".into(), "x".repeat(500)]],
        );
        assert!(!out.contains('\u{1b}'));
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(out.contains("line\\nforged\\u{1b}[31m"));
        assert!(out.lines().all(|l| l.chars().count() < 2 * MAX_CELL_CHARS));
    }

    #[test]
    fn thousands_of_actions_fit_one_cell() {
        let actions: Vec<thulium::Action> =
            (0..3000).map(|i| format!("ACTION_{i}").into()).collect();
        let cell = actions_cell(&actions);
        assert!(cell.chars().count() <= MAX_CELL_CHARS, "{cell}");
        assert!(cell.starts_with("ACTION_0,ACTION_1,"));
        assert!(cell.ends_with(" more)"), "{cell}");
    }
}
