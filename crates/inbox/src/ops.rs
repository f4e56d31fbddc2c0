//! What operators probe: `GET /healthz` (the process answers), `GET /readyz` (the
//! store can commit a write now) and `GET /metrics` (Prometheus).
//!
//! The inbox records its metrics through the `metrics` facade; whoever runs it
//! installs a recorder ([`install_prometheus`] for this router's `/metrics`):
//!
//! | metric | kind | what |
//! |---|---|---|
//! | `thulium_inbox_received_total` | counter | deliveries that passed the checks |
//! | `thulium_inbox_stored_total` | counter | new events stored (conflicts included) |
//! | `thulium_inbox_duplicates_total` | counter | redeliveries recognised |
//! | `thulium_inbox_conflicts_total` | counter | known dedup keys with other content |
//! | `thulium_inbox_rejected_total{status}` | counter | refused by the checks (401, 400, 413, 408) |
//! | `thulium_inbox_refused_total{reason}` | counter | `503`s: the store failed or was full |
//! | `thulium_inbox_dispatched_total` | counter | events the handler took |
//! | `thulium_inbox_retried_total` | counter | failed attempts scheduled again |
//! | `thulium_inbox_dead_total` | counter | events dead-lettered |
//! | `thulium_inbox_handler_duration_seconds` | histogram | time per attempt |
//! | `thulium_inbox_events{state}` | gauge | events per state, read at each scrape |
//! | `thulium_inbox_queue_depth` | gauge | pending plus in flight |
//! | `thulium_inbox_oldest_pending_age_seconds` | gauge | age of the oldest open event |

use axum::Router;
use axum::extract::State as AxumState;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::model::{State, now_ms};
use crate::store::Store;

/// Installs a Prometheus recorder as the process's metrics recorder and returns the
/// handle that renders it. Call once, early; a second call fails.
pub fn install_prometheus() -> Result<PrometheusHandle, String> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(
                "thulium_inbox_handler_duration_seconds".into(),
            ),
            &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0],
        )
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))
}

#[derive(Clone)]
struct Ops<S> {
    store: S,
    metrics: Option<PrometheusHandle>,
}

/// `/healthz`, `/readyz` and (with a handle) `/metrics` over `store`.
pub fn router<S: Store + Clone>(store: S, metrics: Option<PrometheusHandle>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz::<S>))
        .route("/metrics", get(render::<S>))
        .with_state(Ops { store, metrics })
}

async fn readyz<S: Store>(AxumState(ops): AxumState<Ops<S>>) -> Response {
    match ops.store.check_writable().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {error}"),
        )
            .into_response(),
    }
}

async fn render<S: Store>(AxumState(ops): AxumState<Ops<S>>) -> Response {
    let Some(handle) = &ops.metrics else {
        return (StatusCode::NOT_FOUND, "metrics are not enabled").into_response();
    };
    match ops.store.stats().await {
        Ok(stats) => {
            for state in State::ALL {
                let count = match state {
                    State::Pending => stats.pending,
                    State::InFlight => stats.in_flight,
                    State::Done => stats.done,
                    State::Dead => stats.dead,
                };
                metrics::gauge!("thulium_inbox_events", "state" => state.as_str())
                    .set(count as f64);
            }
            metrics::gauge!("thulium_inbox_queue_depth").set(stats.open() as f64);
            let age = stats
                .oldest_open_age(now_ms())
                .map_or(0.0, |age| age.as_secs_f64());
            metrics::gauge!("thulium_inbox_oldest_pending_age_seconds").set(age);
        }
        Err(error) => tracing::warn!(%error, "cannot read the inbox stats for /metrics"),
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}
