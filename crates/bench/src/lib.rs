//! Pieces of the benchmark (`cargo bench -p thulium-bench`): latency statistics, the
//! in-process servers both sides of each comparison run against, and the baselines.
//!
//! Every figure is reported beside a baseline measured in the same process and
//! interleaved with it, so that a noisy shared machine moves both alike.

pub mod baselines;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use base64::Engine as _;
use serde::Deserialize;

/// The vendor's example answer to `POST /api/webhooks`.
pub const VENDOR_CREATED: &str = r#"{"id":5,"actions":["CHAT_CONVERSATION_CREATED"],"subscription_url":"https://example.pl","http_auth_user":"","http_auth_password":""}"#;

/// The vendor's example answer to `GET /api/webhooks`.
pub const VENDOR_LIST: &str = r#"[{"id":1,"actions":["CHAT_AGENT_ASSIGNED"],"subscription_url":"https://example.com/","http_auth_user":"","http_auth_password":""},{"id":2,"actions":["CHAT_CONVERSATION_CREATED"],"subscription_url":"https://example.com/","http_auth_user":"","http_auth_password":""}]"#;

/// The vendor's example event, form-encoded as Thulium sends it.
pub const EVENT_FORM: &str = "action=CHAT_CONVERSATION_CREATED&conversation_id=83a3f676-e831-47d0-bba7-beda6c0bde88&client_name=John+Smith&client_email=john.smith%40foo.bar&date=2016-04-20+09%3A46%3A24&chat_queue_id=1";

/// The same event as JSON.
pub const EVENT_JSON: &str = r#"{"action":"CHAT_CONVERSATION_CREATED","conversation_id":"83a3f676-e831-47d0-bba7-beda6c0bde88","client_name":"John Smith","client_email":"john.smith@foo.bar","date":"2016-04-20 09:46:24","chat_queue_id":1}"#;

/// Latency figures of one series of calls.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    /// Calls measured.
    pub count: usize,
    /// Median latency.
    pub p50: Duration,
    /// 99th-percentile latency.
    pub p99: Duration,
}

impl Stats {
    /// Statistics of `samples` (sorted in place); `None` for no samples.
    pub fn of(samples: &mut [Duration]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        Some(Self {
            count: samples.len(),
            p50: percentile(samples, 50.0),
            p99: percentile(samples, 99.0),
        })
    }
}

/// The nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of a few measurements (of throughput, say).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

/// CPU time this process has used so far, across all its threads (from
/// `/proc/self/task/*/schedstat`, in nanoseconds); `None` where that is not readable.
///
/// Wall time on a shared 2-core machine moves with the neighbours' load; CPU time
/// per call moves much less, so the report gives both.
pub fn process_cpu_time() -> Option<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

/// A server answering the vendor's examples to `GET`/`POST /api/webhooks`, checking
/// nothing: both clients pay the same for it, so the difference is theirs.
pub fn fixed_api() -> Router {
    let json = |body: &'static str| {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    };
    Router::new().route(
        "/api/webhooks",
        post(move || async move { json(VENDOR_CREATED) })
            .get(move || async move { json(VENDOR_LIST) }),
    )
}

/// Serves `app` on a free loopback port in the background.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("a bound address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// What a careful hand-written client decodes a subscription into.
#[derive(Debug, Deserialize)]
pub struct HandWebhook {
    /// The id.
    pub id: i64,
    /// The actions.
    pub actions: Vec<String>,
    /// The URL.
    pub subscription_url: String,
    /// The auth user.
    pub http_auth_user: String,
    /// The auth password.
    pub http_auth_password: String,
}

/// The baseline client: the same requests as the SDK, written by hand with reqwest.
#[derive(Clone)]
pub struct HandClient {
    http: reqwest::Client,
    url: String,
    authorization: String,
}

impl HandClient {
    /// A client for `base` with the vendor's example credentials.
    pub fn new(base: &str) -> Self {
        thulium::tls::install_default_provider();
        Self {
            // The vendor's own samples set a 30 s timeout; so does a careful hand-written call.
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .expect("a plain HTTP client"),
            url: format!("{base}/api/webhooks"),
            authorization: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("api_user:api_pass")
            ),
        }
    }

    /// `POST /api/webhooks` with the vendor's body.
    pub async fn create(&self) -> Result<HandWebhook, reqwest::Error> {
        self.http
            .post(&self.url)
            .header(header::AUTHORIZATION.as_str(), &self.authorization)
            .header(header::ACCEPT.as_str(), "application/json")
            .json(&serde_json::json!({
                "actions": ["CHAT_CONVERSATION_CREATED"],
                "subscription_url": "https://example.pl",
            }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await
    }

    /// `GET /api/webhooks`.
    pub async fn list(&self) -> Result<Vec<HandWebhook>, reqwest::Error> {
        self.http
            .get(&self.url)
            .header(header::AUTHORIZATION.as_str(), &self.authorization)
            .header(header::ACCEPT.as_str(), "application/json")
            .send()
            .await?
            .error_for_status()?
            .json()
            .await
    }
}

/// The bare handler the receiver is compared with: answers 200 to anything.
pub fn bare_receiver() -> Router {
    Router::new().route("/hook", post(|| async { StatusCode::OK }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|v| Duration::from_millis(*v)).collect()
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut samples = ms(&[5, 1, 4, 2, 3, 6, 7, 8, 9, 10]);
        let stats = Stats::of(&mut samples).unwrap();
        assert_eq!(stats.p50, Duration::from_millis(5));
        assert_eq!(stats.p99, Duration::from_millis(10));
        assert_eq!(Stats::of(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn cpu_time_grows_with_work() {
        let Some(before) = process_cpu_time() else {
            return;
        };
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        assert!(process_cpu_time().unwrap() > before, "{x}");
    }

    #[tokio::test]
    async fn both_clients_decode_the_same_answers() {
        let addr = serve(fixed_api()).await;
        let base = format!("http://{addr}");
        let hand = HandClient::new(&base);
        assert_eq!(hand.create().await.unwrap().id, 5);
        assert_eq!(hand.list().await.unwrap().len(), 2);
        let sdk = thulium::Client::builder()
            .base_url(base)
            .credentials("api_user", "api_pass")
            .build()
            .unwrap();
        let created = sdk
            .create_webhook(&thulium::NewWebhook::new(
                "https://example.pl",
                [thulium::Action::ChatConversationCreated],
            ))
            .await
            .unwrap();
        assert_eq!(created.id, 5);
        assert_eq!(sdk.list_webhooks().await.unwrap().len(), 2);
    }
}
