//! `thulium inbox stats|list|show|replay|set-aside|pause|resume|purge|migrate|backup|salvage`: an inbox (a file or
//! a PostgreSQL schema), read and changed while listeners use it or not (a file is
//! opened in redb's multi-writer mode).

use serde_json::{Value, json};
use thulium_inbox::model::now_ms;
use thulium_inbox::{EventId, Filter, Replay, State, Stats, Store, StoredEvent};

use crate::args::{InboxCommand, Output};
use crate::failure::Failure;
use crate::location::{self, Opened};
use crate::output;

pub async fn run(command: InboxCommand, format: Output) -> Result<(), Failure> {
    let at = match &command {
        InboxCommand::Stats { at }
        | InboxCommand::List { at, .. }
        | InboxCommand::Show { at, .. }
        | InboxCommand::Replay { at, .. }
        | InboxCommand::SetAside { at, .. }
        | InboxCommand::Pause { at, .. }
        | InboxCommand::Resume { at, .. }
        | InboxCommand::Migrate { at }
        | InboxCommand::Backup { at, .. }
        | InboxCommand::Salvage { at, .. }
        | InboxCommand::Console { at, .. }
        | InboxCommand::Purge { at, .. } => at,
    };
    if let InboxCommand::Migrate { at } = &command {
        // Opening applies what is missing: a file is upgraded in place, in one
        // transaction; a schema gets its migrations under an advisory lock.
        return match location::open(
            &at.inbox,
            &at.inbox_schema,
            location::INBOX_PASSWORD_ENV,
            false,
            true,
        )
        .await?
        {
            Opened::File(store) => output::print(format!(
                "inbox file {} is at schema version {}",
                store.path().display(),
                thulium_inbox::embedded::SCHEMA_VERSION
            )),
            // Migrating opens for writing: never read-only.
            Opened::ReadOnly(_) => Ok(()),
            Opened::Postgres(store) => output::print(format!(
                "{} schema {} is at version {}",
                store.label(),
                at.inbox_schema,
                thulium_inbox::postgres::SCHEMA_VERSION
            )),
        };
    }
    if let InboxCommand::Salvage { at, to } = &command {
        return salvage(&at.inbox, to, format).await;
    }
    // The commands that read, replay or back up never create or migrate: they
    // find the inbox a listener made.
    let opened = location::open(
        &at.inbox,
        &at.inbox_schema,
        location::INBOX_PASSWORD_ENV,
        false,
        false,
    )
    .await?;
    if let InboxCommand::Backup { to, .. } = &command {
        let (source, backup) = match opened {
            Opened::File(store) => (store.path().to_path_buf(), store.backup_to(to).await?),
            Opened::ReadOnly(store) => (store.path().to_path_buf(), store.backup_to(to).await?),
            Opened::Postgres(_) => {
                return Err(Failure::usage(
                    "a PostgreSQL inbox is backed up with the database's own tools (pg_dump, base backups, your provider's snapshots)",
                ));
            }
        };
        return match format {
            Output::Json => output::print(json!({
                "path": backup.path.display().to_string(),
                "rows": backup.rows,
                "bytes": backup.bytes,
            })),
            Output::Table => output::print(format!(
                "backed up {} to {} ({} rows, {} bytes); it opens as an inbox: thulium inbox stats --inbox {}",
                output::escape(&source.display().to_string()),
                output::escape(&backup.path.display().to_string()),
                backup.rows,
                backup.bytes,
                output::escape(&backup.path.display().to_string()),
            )),
        };
    }
    match opened {
        Opened::File(store) => run_on(&store, command, format).await,
        Opened::ReadOnly(store) => run_on(&store, command, format).await,
        Opened::Postgres(store) => run_on(&store, command, format).await,
    }
}

/// `inbox salvage`: reads the damaged file directly (opening it as an inbox may be
/// what fails), on a blocking thread.
async fn salvage(location: &str, to: &std::path::Path, format: Output) -> Result<(), Failure> {
    if location::is_postgres(location) {
        return Err(Failure::usage(
            "salvage reads an inbox file; a PostgreSQL inbox is repaired with the database's own tools",
        ));
    }
    let (source, destination) = (std::path::PathBuf::from(location), to.to_path_buf());
    let report = tokio::task::spawn_blocking(move || {
        thulium_inbox::embedded::salvage(&source, &destination)
    })
    .await
    .map_err(|e| Failure::other(format!("the salvage stopped: {e}")))??;
    match format {
        Output::Json => output::print(json!({
            "path": report.path.display().to_string(),
            "saved": report.saved,
            "lost": report.lost.iter().map(|(id, why)| json!({"id": id, "reason": why})).collect::<Vec<_>>(),
        })),
        Output::Table => {
            let mut text = format!(
                "saved {} event(s) to {}; lost {}",
                report.saved,
                output::escape(&report.path.display().to_string()),
                report.lost.len()
            );
            for (id, why) in &report.lost {
                text.push_str(&format!("\n  event {id}: {}", output::escape(why)));
            }
            output::print(text)
        }
    }
}

async fn run_on<S: Store + Clone>(
    store: &S,
    command: InboxCommand,
    format: Output,
) -> Result<(), Failure> {
    match command {
        InboxCommand::Migrate { .. }
        | InboxCommand::Backup { .. }
        | InboxCommand::Salvage { .. } => Ok(()),
        InboxCommand::Console { console, .. } => {
            let Some((listener, router)) = crate::console::prepare(&console, store.clone()).await?
            else {
                return Err(Failure::usage(
                    "give the console's address with --console 127.0.0.1:8081",
                ));
            };
            eprintln!(
                "inbox console at http://{}/; Ctrl-C stops",
                listener.local_addr()?
            );
            thulium::server::serve(
                listener,
                router,
                thulium::server::ServerLimits::default(),
                thulium_inbox::relay::shutdown_signal(),
            )
            .await?;
            Ok(())
        }
        InboxCommand::Stats { .. } => {
            let stats = store.stats().await?;
            match format {
                Output::Json => output::print(stats.to_json(now_ms())),
                Output::Table => output::print(stats_table(&stats)),
            }
        }
        InboxCommand::List {
            state,
            route,
            from_account,
            action,
            text,
            before,
            limit,
            ..
        } => {
            let filter = Filter {
                state: state
                    .map(|s| s.parse::<State>())
                    .transpose()
                    .map_err(Failure::usage)?,
                route,
                account: from_account,
                action,
                text,
                before: before.map(EventId),
                limit: Some(limit as usize),
                ..Filter::default()
            };
            let events = store.list(filter).await?;
            match format {
                Output::Json => {
                    output::print(Value::Array(events.iter().map(event_json).collect()))
                }
                Output::Table => {
                    // The account column once the relay receives for several.
                    let accounts = events.iter().any(|e| e.account.is_some());
                    let rows: Vec<Vec<String>> = events
                        .iter()
                        .map(|e| {
                            let mut row = vec![e.id.to_string(), e.route.to_string()];
                            if accounts {
                                row.push(e.account.as_ref().map_or("-".into(), |a| a.to_string()));
                            }
                            row.extend([
                                e.state.to_string(),
                                e.action.clone(),
                                output::rfc3339(e.received_at),
                                e.attempts.to_string(),
                                e.last_error.clone().unwrap_or_else(|| "-".into()),
                            ]);
                            row
                        })
                        .collect();
                    let mut headers = vec!["ID", "ROUTE"];
                    if accounts {
                        headers.push("ACCOUNT");
                    }
                    headers.extend(["STATE", "ACTION", "RECEIVED", "ATTEMPTS", "LAST ERROR"]);
                    output::print(output::table(&headers, &rows))
                }
            }
        }
        InboxCommand::Show { id, .. } => {
            let event = store
                .get(EventId(id))
                .await?
                .ok_or_else(|| Failure::usage(format!("no event {id} in the inbox")))?;
            match format {
                Output::Json => output::print(event_json(&event)),
                Output::Table => output::print(show(&event)),
            }
        }
        InboxCommand::Replay {
            id,
            all_dead,
            since,
            route,
            ..
        } => {
            let selection = match (id, all_dead, since) {
                (Some(id), _, _) => Replay::Id(EventId(id)),
                (None, true, _) => match route {
                    Some(route) => Replay::DeadOn(route),
                    None => Replay::AllDead,
                },
                (None, false, Some(since)) => Replay::ReceivedBetween {
                    from: now_ms()
                        .saturating_sub(u64::try_from(since.as_millis()).unwrap_or(u64::MAX)),
                    to: u64::MAX,
                },
                (None, false, None) => {
                    return Err(Failure::usage("give an id, --all-dead or --since"));
                }
            };
            let count = store.replay(selection).await?;
            match format {
                Output::Json => output::print(json!({ "replayed": count })),
                Output::Table => output::print(format!(
                    "{count} event(s) pending again; a running listener hands them over now"
                )),
            }
        }
        InboxCommand::SetAside { id, reason, .. } => {
            store.set_aside(EventId(id), reason).await?;
            match format {
                Output::Json => output::print(json!({ "set_aside": id })),
                Output::Table => output::print(format!("event {id} is dead until replayed")),
            }
        }
        InboxCommand::Pause { route, reason, .. } => {
            let pause = thulium_inbox::Pause::by_hand(&reason);
            store.set_pause(route.clone(), Some(pause)).await?;
            match format {
                Output::Json => output::print(json!({ "paused": route })),
                Output::Table => output::print(format!(
                    "route {route} is paused: its events wait until `thulium inbox resume {route}`"
                )),
            }
        }
        InboxCommand::Resume { route, .. } => {
            let was = store.pause_of(route.clone()).await?;
            store.set_pause(route.clone(), None).await?;
            match (format, was) {
                (Output::Json, was) => {
                    output::print(json!({ "resumed": route, "was_paused": was.is_some() }))
                }
                (Output::Table, Some(_)) => output::print(format!(
                    "route {route} is resumed: its waiting events are handed over now"
                )),
                (Output::Table, None) => output::print(format!("route {route} was not paused")),
            }
        }
        InboxCommand::Purge {
            older_than,
            keep_keys,
            ..
        } => {
            let cut = |d: std::time::Duration| {
                now_ms().saturating_sub(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            };
            let purged = store.purge(cut(older_than), cut(keep_keys)).await?;
            match format {
                Output::Json => {
                    output::print(json!({ "events": purged.events, "keys": purged.keys }))
                }
                Output::Table => output::print(format!(
                    "removed {} handed-over event(s), forgot {} dedup key(s)",
                    purged.events, purged.keys
                )),
            }
        }
    }
}

fn stats_table(stats: &Stats) -> String {
    let age = stats
        .oldest_open_age(now_ms())
        .map_or_else(|| "-".to_string(), |a| format!("{} s", a.as_secs()));
    let rows = vec![
        vec!["pending".into(), stats.pending.to_string()],
        vec!["in flight".into(), stats.in_flight.to_string()],
        vec!["done".into(), stats.done.to_string()],
        vec!["dead".into(), stats.dead.to_string()],
        vec!["received".into(), stats.received.to_string()],
        vec!["duplicates".into(), stats.duplicates.to_string()],
        vec!["conflicts".into(), stats.conflicts.to_string()],
        vec!["oldest waiting".into(), age],
    ];
    let mut out = output::table(&["", "COUNT"], &rows);
    // Per route, once there is more than the default one, or one is paused.
    if stats
        .routes
        .iter()
        .any(|r| r.route != thulium_inbox::RouteName::default_route() || r.paused.is_some())
    {
        let now = now_ms();
        let rows: Vec<Vec<String>> = stats
            .routes
            .iter()
            .map(|r| {
                vec![
                    r.route.to_string(),
                    r.pending.to_string(),
                    r.in_flight.to_string(),
                    r.done.to_string(),
                    r.dead.to_string(),
                    r.oldest_open_received_at.map_or_else(
                        || "-".into(),
                        |at| format!("{} s", now.saturating_sub(at) / 1000),
                    ),
                    r.paused
                        .as_ref()
                        .map_or_else(|| "-".into(), |p| p.reason.clone()),
                ]
            })
            .collect();
        out.push_str("\n\n");
        out.push_str(&output::table(
            &[
                "ROUTE",
                "PENDING",
                "IN FLIGHT",
                "DONE",
                "DEAD",
                "OLDEST WAITING",
                "PAUSED",
            ],
            &rows,
        ));
    }
    out
}

fn event_json(event: &StoredEvent) -> Value {
    json!({
        "id": event.id,
        "route": event.route,
        "account": event.account,
        "state": event.state,
        "action": event.action,
        "dedup_key": event.dedup_key,
        "received_at": output::rfc3339(event.received_at),
        "attempts": event.attempts,
        "due_at": output::rfc3339(event.due_at),
        "finished_at": event.finished_at.map(output::rfc3339),
        "last_error": event.last_error,
        "conflict": event.conflict,
        "content_type": event.content_type,
        "body": thulium_inbox::model::body_json::serialize(&event.body, serde_json::value::Serializer)
            .unwrap_or_default(),
        "event": serde_json::from_str::<Value>(&event.canonical).unwrap_or(Value::Null),
        "history": event.history.iter().map(attempt_json).collect::<Vec<_>>(),
    })
}

/// An attempt as JSON, its start in RFC 3339 like every other time the command
/// prints, to the millisecond (attempts can be milliseconds apart).
fn attempt_json(attempt: &thulium_inbox::Attempt) -> Value {
    let mut json = serde_json::to_value(attempt).unwrap_or_default();
    json["started_at"] = json!(output::rfc3339_ms(attempt.started_at));
    json
}

fn show(event: &StoredEvent) -> String {
    let mut out = format!(
        "event {}  {}  {}\nroute     {}{}\nreceived  {}\nattempts  {}{}\ndedup key {}\nbody ({})\n  {}\n",
        event.id,
        event.state,
        output::escape(&event.action),
        event.route,
        event
            .account
            .as_ref()
            .map_or_else(String::new, |a| format!("\naccount   {a}")),
        output::rfc3339(event.received_at),
        event.attempts,
        if event.conflict {
            "  (conflict: another event had this dedup key)"
        } else {
            ""
        },
        output::escape(&event.dedup_key),
        output::escape(event.content_type.as_deref().unwrap_or("no content type")),
        output::escape(&String::from_utf8_lossy(&event.body)),
    );
    if !event.history.is_empty() {
        out.push_str("\nattempts\n");
        for attempt in &event.history {
            let outcome = match &attempt.outcome {
                thulium_inbox::Outcome::Delivered => "delivered".to_string(),
                thulium_inbox::Outcome::Failed(e) => format!("failed: {}", output::escape(e)),
                thulium_inbox::Outcome::SetAside(e) => format!("set aside: {}", output::escape(e)),
                _ => "other".to_string(),
            };
            out.push_str(&format!(
                "  #{}  {}  {} ms  {outcome}\n",
                attempt.number,
                output::rfc3339(attempt.started_at),
                attempt.duration_ms
            ));
        }
    }
    out
}
