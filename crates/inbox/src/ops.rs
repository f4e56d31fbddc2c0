//! What operators probe: `GET /healthz` (the process and its store's writer run),
//! `GET /readyz` (the
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
//! | `thulium_inbox_dispatched_total{route}` | counter | events the handler took |
//! | `thulium_inbox_retried_total{route}` | counter | failed attempts scheduled again |
//! | `thulium_inbox_dead_total{route}` | counter | events dead-lettered |
//! | `thulium_inbox_handler_duration_seconds{route}` | histogram | time per attempt |
//! | `thulium_inbox_events{state}` | gauge | events per state, read at each scrape |
//! | `thulium_inbox_queue_depth` | gauge | pending plus in flight |
//! | `thulium_inbox_oldest_pending_age_seconds` | gauge | age of the oldest open event |
//! | `thulium_inbox_route_events{route,state}` | gauge | each route's entries per state |
//! | `thulium_inbox_route_oldest_open_age_seconds{route}` | gauge | age of each route's oldest open entry |
//! | `thulium_inbox_route_paused{route}` | gauge | 1 while a route is paused (by hand or by its breaker) |
//! | `thulium_inbox_breaker_opened_total{route}` | counter | times a route's circuit breaker paused it |
//! | `thulium_console_sign_in_failures_total` | counter | console requests with wrong credentials |
//! | `thulium_console_sign_in_throttled_total` | counter | console requests refused after too many failures |
//! | `thulium_console_searches_refused_total` | counter | text searches answered busy |
//! | `thulium_build_info{version}` | gauge | always 1, labelled with the version |
//! | `process_*` | | CPU seconds, memory, open files, threads (read at each scrape) |

use axum::Router;
use axum::extract::State as AxumState;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
pub use metrics_exporter_prometheus::PrometheusHandle;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use crate::model::{State, now_ms};
use crate::store::Store;

/// Why the metrics recorder could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("cannot install the metrics recorder: {0}")]
pub struct MetricsError(#[source] metrics_exporter_prometheus::BuildError);

/// Installs a Prometheus recorder as the process's metrics recorder, describes
/// every family of the table above, registers the counters at zero (so alerts see
/// a series before the first increment) and sets `thulium_build_info`; returns the
/// handle that renders it. Call once, early; a second call fails.
pub fn install_prometheus() -> Result<PrometheusHandle, MetricsError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("thulium_inbox_handler_duration_seconds".into()),
            &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0],
        )
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(MetricsError)?;
    describe();
    Ok(handle)
}

/// Every family's help text and unit, and each counter at zero.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    let counters = [
        (
            "thulium_inbox_received_total",
            "Deliveries that passed the receiver's checks, duplicates included.",
        ),
        (
            "thulium_inbox_stored_total",
            "New events stored, conflicts included.",
        ),
        (
            "thulium_inbox_duplicates_total",
            "Redeliveries recognised by their dedup key and content.",
        ),
        (
            "thulium_inbox_conflicts_total",
            "Deliveries with a known dedup key and other content (stored as new events).",
        ),
        (
            "thulium_inbox_rejected_total",
            "Deliveries refused by the receiver's checks, by HTTP status.",
        ),
        (
            "thulium_inbox_refused_total",
            "Deliveries answered 503: the store failed (store) or the backlog was full (full).",
        ),
        ("thulium_inbox_dispatched_total", "Events the handler took."),
        (
            "thulium_inbox_retried_total",
            "Failed attempts scheduled again.",
        ),
        (
            "thulium_inbox_dead_total",
            "Events dead-lettered (the schedule ended, or a permanent failure).",
        ),
        (
            "thulium_inbox_breaker_opened_total",
            "Times a route's circuit breaker paused it after failures in a row.",
        ),
    ];
    for (name, help) in counters {
        describe_counter!(name, Unit::Count, help);
    }
    // Each series at zero, so that an alert on `increase(...)` sees it from the
    // start; the labelled families with every label value they are counted under.
    // The per-route families are registered by each route's dispatcher.
    let per_route = [
        "thulium_inbox_dispatched_total",
        "thulium_inbox_retried_total",
        "thulium_inbox_dead_total",
        "thulium_inbox_breaker_opened_total",
    ];
    let labelled: [(&str, &str, &[&str]); 2] = [
        (
            "thulium_inbox_rejected_total",
            "status",
            &["400", "401", "408", "413"],
        ),
        ("thulium_inbox_refused_total", "reason", &["store", "full"]),
    ];
    for (name, _) in counters {
        if per_route.contains(&name) {
            continue;
        }
        match labelled.iter().find(|(family, ..)| *family == name) {
            Some((_, label, values)) => {
                for value in *values {
                    metrics::counter!(name, *label => *value).absolute(0);
                }
            }
            None => metrics::counter!(name).absolute(0),
        }
    }
    describe_histogram!(
        "thulium_inbox_handler_duration_seconds",
        Unit::Seconds,
        "Time per attempt of the handler, failures and timeouts included."
    );
    describe_gauge!(
        "thulium_inbox_events",
        Unit::Count,
        "Events per state, read from the store at each scrape."
    );
    describe_gauge!(
        "thulium_inbox_queue_depth",
        Unit::Count,
        "Events pending or in flight."
    );
    describe_gauge!(
        "thulium_inbox_oldest_pending_age_seconds",
        Unit::Seconds,
        "Age of the oldest event not yet done or dead (0 when none)."
    );
    describe_gauge!(
        "thulium_inbox_route_events",
        Unit::Count,
        "Each route's entries per state, read from the store at each scrape."
    );
    describe_gauge!(
        "thulium_inbox_route_oldest_open_age_seconds",
        Unit::Seconds,
        "Age of each route's oldest entry not yet done or dead (0 when none)."
    );
    describe_gauge!(
        "thulium_inbox_route_paused",
        Unit::Count,
        "1 while a route is paused (by an operator or by its circuit breaker), else 0."
    );
    describe_gauge!(
        "thulium_build_info",
        "The running thulium-inbox version (always 1)."
    );
    metrics::gauge!("thulium_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    metrics_process::Collector::default().describe();
}

#[derive(Clone)]
struct Ops<S> {
    store: S,
    metrics: Option<PrometheusHandle>,
}

/// `/healthz`, `/readyz` and (with a handle) `/metrics` over `store`.
pub fn router<S: Store + Clone>(store: S, metrics: Option<PrometheusHandle>) -> Router {
    Router::new()
        .route("/healthz", get(healthz::<S>))
        .route("/readyz", get(readyz::<S>))
        .route("/metrics", get(render::<S>))
        .with_state(Ops { store, metrics })
}

/// `200` while the process and its store's machinery run; `503` once the store
/// cannot work until a restart (the embedded store's writer stopped).
async fn healthz<S: Store>(AxumState(ops): AxumState<Ops<S>>) -> Response {
    match ops.store.check_alive() {
        Ok(()) => (StatusCode::OK, "ok").into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not alive: {error}"),
        )
            .into_response(),
    }
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
    // process_cpu_seconds_total, process_resident_memory_bytes, open fds, threads.
    metrics_process::Collector::default().collect();
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
            let now = now_ms();
            for route in &stats.routes {
                let name = route.route.to_string();
                for (state, count) in [
                    (State::Pending, route.pending),
                    (State::InFlight, route.in_flight),
                    (State::Done, route.done),
                    (State::Dead, route.dead),
                ] {
                    metrics::gauge!("thulium_inbox_route_events", "route" => name.clone(), "state" => state.as_str())
                        .set(count as f64);
                }
                let age = route
                    .oldest_open_received_at
                    .map_or(0, |at| now.saturating_sub(at));
                metrics::gauge!("thulium_inbox_route_oldest_open_age_seconds", "route" => name.clone())
                    .set(age as f64 / 1000.0);
                metrics::gauge!("thulium_inbox_route_paused", "route" => name)
                    .set(if route.paused.is_some() { 1.0 } else { 0.0 });
            }
        }
        Err(error) => tracing::warn!(%error, "cannot read the inbox stats for /metrics"),
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EmbeddedStore;

    /// `/healthz` fails once the embedded store's writer is gone (here: its
    /// channel closed, as at a shutdown), and passes while it runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn healthz_fails_once_the_writer_is_gone() {
        thulium::tls::install_default_provider();
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path().join("inbox.redb")).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/healthz", listener.local_addr().unwrap());
        tokio::spawn(thulium::server::serve(
            listener,
            router(store.clone(), None),
            Default::default(),
            std::future::pending(),
        ));
        let status = || async { reqwest::get(&url).await.unwrap().status().as_u16() };
        assert_eq!(status().await, 200);
        store.stop_writer_for_test();
        assert_eq!(status().await, 503);
    }
}
