//! Telemetry, set up once per process by [`init`]: logs (text or JSON) filtered by
//! `EnvFilter`, written to stderr by a thread of their own (a request never waits on the
//! log's pipe or disk: a paused terminal, a slow container log driver, a disk throttled by
//! a big upload), also kept in memory as plain text ([`crate::recent_logs`]), OpenTelemetry span export over OTLP/gRPC when an endpoint is configured, the
//! W3C trace-context propagator, and a Prometheus recorder rendered at `/metrics`.
//!
//! Trace context crosses every gRPC hop: clients inject it ([`inject`], used by
//! [`crate::client`]) and servers extract it ([`extract`], used by [`crate::server`]).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::RuntimeError;
use crate::config::{LogFormat, TelemetryArgs};

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Keeps the exporters alive; dropping it flushes the spans still buffered.
#[must_use = "dropping the guard stops span export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    /// Dropping it writes out the log lines still queued.
    _log_writer: tracing_appender::non_blocking::WorkerGuard,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.force_flush();
            let _ = provider.shutdown();
        }
    }
}

/// Sets up logs, traces and metrics for this process; `service` names it in exported spans.
/// Call once, early in `main`.
pub fn init(args: &TelemetryArgs, service: &str) -> Result<TelemetryGuard, RuntimeError> {
    args.validate()?;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_new(&args.log_filter)
        .map_err(|e| RuntimeError::Telemetry(format!("log filter: {e}")))?;
    // Lines queue (up to 128k) for the writer thread; past that they are dropped rather
    // than let a stuck stderr stop the service.
    let (stderr, log_writer) = tracing_appender::non_blocking(std::io::stderr());
    let fmt_layer = match args.log_format {
        // Colours only on a terminal: logs sent to a file or a pipe stay plain text.
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(stderr)
            .boxed(),
    };
    let mut provider = None;
    let otel_layer = match &args.otlp_endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .build()
                .map_err(|e| RuntimeError::Telemetry(format!("OTLP exporter: {e}")))?;
            let p = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name(service.to_string())
                        .build(),
                )
                .build();
            let tracer = p.tracer(service.to_string());
            opentelemetry::global::set_tracer_provider(p.clone());
            provider = Some(p);
            // Spans at info and above: ours (requests, stages, jobs). Below are the HTTP/2
            // and hyper internals, a span per frame: exported, they crowd the request spans
            // out of the exporter's queue, and merely enabled they cost every call.
            Some(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
            )
        }
        None => None,
    };
    // The same lines, plain, into the in-memory ring an admin reads over the API.
    let recent_filter = EnvFilter::try_new(&args.log_filter)
        .map_err(|e| RuntimeError::Telemetry(format!("log filter: {e}")))?;
    let recent_layer = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(crate::recent_logs::writer)
        .with_filter(recent_filter);
    tracing_subscriber::registry()
        .with(otel_layer)
        .with(fmt_layer.with_filter(filter))
        .with(recent_layer)
        .try_init()
        .map_err(|e| RuntimeError::Telemetry(format!("subscriber: {e}")))?;
    install_prometheus();
    Ok(TelemetryGuard {
        provider,
        _log_writer: log_writer,
    })
}

/// Installs the Prometheus recorder once per process (also used by tests that skip [`init`]).
pub fn install_prometheus() {
    PROMETHEUS.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(&[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ])
            .expect("static bucket list is not empty");
        match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is installed (a test harness): keep a detached one so
            // `/metrics` still answers.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    });
}

/// The Prometheus text exposition of every metric recorded in this process.
pub fn render_metrics() -> String {
    PROMETHEUS.get().map(PrometheusHandle::render).unwrap_or_default()
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// Makes `span` a child of the W3C trace context carried by incoming request headers.
pub fn extract(headers: &http::HeaderMap, span: &tracing::Span) {
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let _ = span.set_parent(parent);
}

/// Writes the current span's W3C trace context into outgoing gRPC metadata.
pub fn inject(metadata: &mut tonic::metadata::MetadataMap) {
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut MetadataInjector(metadata));
}
