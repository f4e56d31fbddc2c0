//! Tables for people, JSON for scripts. No colours: output is plain text either way,
//! so it is the same in a terminal, a pipe or with NO_COLOR.

use serde_json::{Value, json};
use thulium::Webhook;

/// Left-aligned columns separated by two spaces, headers first.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
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
    for row in rows {
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
                w.actions
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
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

/// One subscription as JSON, with its password redacted (the CLI prints no secret).
pub fn webhook_json(webhook: &Webhook) -> Value {
    json!({
        "id": webhook.id,
        "actions": webhook.actions,
        "subscription_url": webhook.subscription_url,
        "http_auth_user": webhook.http_auth_user,
        "http_auth_password": if webhook.http_auth_password.is_empty() { "" } else { thulium::secret::REDACTED },
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
}
