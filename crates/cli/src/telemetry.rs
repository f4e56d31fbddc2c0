//! OpenTelemetry traces over OTLP (HTTP, protobuf), when the standard variables ask
//! for them: `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`), with the
//! exporter's and the SDK's other `OTEL_*` variables (headers, timeout, service
//! name, resource attributes, sampler, batch delays) read by those crates.
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn it off.
//!
//! Spans: `receive` per delivery, `attempt` per hand-over (a forward) with the
//! event's stable fields and the answer's status; each forward carries the
//! attempt's W3C `traceparent`, so the application's own trace continues it.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};

/// The exporter's provider: shut it down at exit so the last spans are sent.
pub struct Telemetry(SdkTracerProvider);

impl Telemetry {
    /// Sends what is batched, within the exporter's timeout.
    pub fn shutdown(self) {
        if let Err(error) = self.0.shutdown() {
            eprintln!("warning: cannot send the last traces: {error}");
        }
    }
}

/// Whether the environment asks for traces.
fn wanted() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let is = |name: &str, value: &str| {
        std::env::var(name).is_ok_and(|v| v.trim().eq_ignore_ascii_case(value))
    };
    (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        && !is("OTEL_SDK_DISABLED", "true")
        && !is("OTEL_TRACES_EXPORTER", "none")
}

/// The layer that turns the relay's spans into OpenTelemetry spans, and its
/// provider; `None` when the environment does not ask for traces. Spans are
/// recorded at `info` whatever the log level.
pub fn layer<S>() -> Option<(impl Layer<S>, Telemetry)>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    if !wanted() {
        return None;
    }
    // The exporter's HTTP client uses rustls: the process's provider comes first.
    thulium::tls::install_default_provider();
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(exporter) => exporter,
        Err(error) => {
            eprintln!("warning: OpenTelemetry is off: cannot set up the OTLP exporter: {error}");
            return None;
        }
    };
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(
            std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "thulium-relay".into()),
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let tracer = provider.tracer("thulium");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(
            Targets::new()
                .with_target("thulium_inbox", LevelFilter::INFO)
                .with_target("thulium", LevelFilter::INFO),
        );
    Some((layer, Telemetry(provider)))
}
