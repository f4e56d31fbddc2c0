//! The JSON endpoints the console's script polls to update counts and states.

use std::sync::Arc;

use axum::extract::{Path, Query, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Console;
use super::html;
use super::pages::{attempts_table, history_version};
use crate::model::{EventId, Filter, Stats, now_ms};
use crate::store::Store;

/// [`Stats::to_json`], with the oldest open event's age as the page shows it.
pub(super) fn stats_json(stats: &Stats) -> serde_json::Value {
    let now = now_ms();
    let mut json = stats.to_json(now);
    json["oldest"] = stats
        .oldest_open_age(now)
        .map_or_else(|| "none waiting".to_string(), html::duration)
        .into();
    json
}

pub(super) async fn api_stats<S: Store>(
    AxumState(console): AxumState<Arc<Console<S>>>,
) -> Response {
    match console.store.stats().await {
        Ok(stats) => axum::Json(stats_json(&stats)).into_response(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    }
}

pub(super) async fn api_event<S: Store>(
    AxumState(console): AxumState<Arc<Console<S>>>,
    Path(id): Path<u64>,
) -> Response {
    match console.store.get(EventId(id)).await {
        Ok(Some(event)) => axum::Json(json!({
            "state": event.state,
            "attempts": event.attempts,
            "history": attempts_table(&event),
            "version": history_version(&event),
        }))
        .into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    }
}

#[derive(serde::Deserialize)]
pub(super) struct Latest {
    after: u64,
    ids: Option<String>,
}

/// How many events arrived after `after`, and the states of the listed `ids`.
pub(super) async fn api_latest<S: Store>(
    AxumState(console): AxumState<Arc<Console<S>>>,
    query: Result<Query<Latest>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(latest)) = query else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let newer = match console
        .store
        .list(Filter {
            limit: Some(101),
            ..Filter::default()
        })
        .await
    {
        Ok(page) => page.iter().filter(|e| e.id.0 > latest.after).count(),
        Err(error) => return (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    };
    let mut states = serde_json::Map::new();
    for id in latest
        .ids
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter_map(|i| i.parse::<u64>().ok())
        .take(200)
    {
        if let Ok(Some(event)) = console.store.get(EventId(id)).await {
            states.insert(
                id.to_string(),
                json!({"state": event.state, "attempts": event.attempts}),
            );
        }
    }
    axum::Json(json!({ "newer": newer, "states": states })).into_response()
}
