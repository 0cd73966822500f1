//! A webhook receiver for benchmarks: answers every delivery 204 at once and
//! measures what komisi's webhooks cost to receive — deliveries, distinct
//! `webhook-id`s, and the lag from a change's commit (the body's
//! `timestamp`) to its arrival. `GET /stats` reports since the last
//! `POST /reset`. It does not verify signatures (the test suite does, with
//! the Standard Webhooks library): here only the sender's cost is measured.
use anyhow::Result;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Args;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

#[derive(Args)]
pub struct SinkArgs {
    /// Listen on 127.0.0.1 at this port.
    #[arg(long, default_value_t = 18095)]
    port: u16,
}

#[derive(Default)]
struct Seen {
    deliveries: u64,
    ids: HashSet<String>,
    /// Commit → arrival, in microseconds.
    lag: Option<Histogram<u64>>,
}

type Shared = Arc<Mutex<Seen>>;

pub async fn run(args: SinkArgs) -> Result<()> {
    let seen: Shared = Arc::default();
    let app =
        Router::new().route("/stats", get(stats)).route("/reset", post(reset)).fallback(post(deliver)).with_state(seen);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    eprintln!("sink listening on 127.0.0.1:{}", args.port);
    axum::serve(listener, app).await?;
    Ok(())
}

async fn deliver(State(seen): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let now = chrono::Utc::now();
    let committed = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|b| b["timestamp"].as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()));
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
    s.deliveries += 1;
    s.ids.insert(id);
    if let Some(at) = committed {
        let micros = (now - at.with_timezone(&chrono::Utc)).num_microseconds().unwrap_or(0).max(1) as u64;
        let lag = s.lag.get_or_insert_with(|| Histogram::new(3).expect("histogram"));
        let _ = lag.record(micros);
    }
    StatusCode::NO_CONTENT
}

async fn stats(State(seen): State<Shared>) -> Json<Value> {
    let s = seen.lock().unwrap_or_else(|p| p.into_inner());
    let q = |p: f64| s.lag.as_ref().map(|h| h.value_at_quantile(p) as f64 / 1000.0);
    Json(json!({
        "deliveries": s.deliveries,
        "distinct_ids": s.ids.len(),
        "lag_p50_ms": q(0.5),
        "lag_p99_ms": q(0.99),
        "lag_max_ms": s.lag.as_ref().map(|h| h.max() as f64 / 1000.0),
    }))
}

async fn reset(State(seen): State<Shared>) -> StatusCode {
    *seen.lock().unwrap_or_else(|p| p.into_inner()) = Seen::default();
    StatusCode::NO_CONTENT
}
