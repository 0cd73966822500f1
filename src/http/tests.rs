//! The HTTP edge through the router itself (`tower::ServiceExt::oneshot`),
//! with no database or Redis: only answers decided before a handler calls the engine.
//!
//! The engine's store and journal connect lazily to ports nothing listens on,
//! so a request whose handler did reach the engine would wait out the pool's
//! acquire timeout; [`send`] fails it well before that, saying so.
use super::extract::ApiKeys;
use super::limit::{LimitSettings, Limits};
use super::{router, AppState, BODY_LIMIT};
use crate::engine::faults::Faults;
use crate::engine::retry::RetryPolicy;
use crate::engine::{Engine, EngineConfig};
use crate::journal::redis::RedisJournal;
use crate::store::mysql::MySqlStore;
use crate::store::sql::SqlStore;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

const STOREFRONT: &str = "sf-router-test";
const ADMIN: &str = "admin-router-test";

/// The one state of these tests: an engine that can reach no database and
/// no Redis (nothing listens on port 1), fixed keys, limits that never refuse.
fn offline_state() -> AppState {
    let store = MySqlStore::connect_lazy("mysql://root@127.0.0.1:1/none", 1).expect("a lazy store needs no server");
    let journal = RedisJournal::new("redis://127.0.0.1:1", "komisi_router_test", "router-test".into(), 1)
        .expect("the Redis journal connects lazily");
    let engine = Engine::new(
        Arc::new(SqlStore::new(Arc::new(store))),
        Arc::new(journal),
        Arc::new(Faults::default()),
        EngineConfig {
            intake_workers: 1,
            intake_batch: 64,
            event_workers: 1,
            event_batch: 1,
            event_linger: Duration::ZERO,
            max_backlog: 0,
            retry: RetryPolicy { max_attempts: 8, base: Duration::from_secs(1), max: Duration::from_secs(300) },
            retry_horizon: Duration::from_secs(3600),
            redeliver_after: Duration::from_secs(60),
            reconcile_every: Duration::ZERO,
            reconcile_full_every: Duration::ZERO,
            reconcile_incremental_max_entries: 1_000_000,
            webhooks: Default::default(),
        },
    );
    let generous = LimitSettings {
        per_key_per_sec: 1_000_000,
        per_key_burst: 1_000_000,
        auth_failures_per_min: 1_000_000,
        auth_failures_burst: 1_000_000,
    };
    AppState {
        engine,
        keys: Arc::new(ApiKeys::new(&[STOREFRONT.into()], &[ADMIN.into()])),
        limits: Arc::new(Limits::new(generous)),
        metrics: crate::metrics::handle(),
        access_log: false,
    }
}

/// One request through the router. Every request of these tests is answered
/// before the engine is called; one that waited on the database would not be.
async fn send(state: &AppState, req: Request<Body>) -> Response<Body> {
    let answered = tokio::time::timeout(Duration::from_secs(5), router(state.clone()).oneshot(req)).await;
    let Ok(response) = answered else {
        panic!("no answer within 5 s: the handler reached the engine (and its unreachable database)")
    };
    response.expect("the router's error type is Infallible")
}

fn request(method: Method, uri: &str, key: Option<&str>) -> axum::http::request::Builder {
    let builder = Request::builder().method(method).uri(uri);
    match key {
        Some(k) => builder.header(header::AUTHORIZATION, format!("Bearer {k}")),
        None => builder,
    }
}

fn get(uri: &str, key: Option<&str>) -> Request<Body> {
    request(Method::GET, uri, key).body(Body::empty()).expect("request")
}

/// A request with a JSON body, sent as `application/json`.
fn with_json(method: Method, uri: &str, key: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    request(method, uri, key).header(header::CONTENT_TYPE, "application/json").body(body.into()).expect("request")
}

fn post_json(uri: &str, key: Option<&str>, body: &Value) -> Request<Body> {
    with_json(Method::POST, uri, key, body.to_string())
}

async fn body_bytes(response: Response<Body>) -> Vec<u8> {
    axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body").to_vec()
}

fn header_of(response: &Response<Body>, name: header::HeaderName) -> String {
    response.headers().get(&name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

/// Checks a problem answer as docs/API.md states it — the status, the
/// `application/problem+json` content type, `type`, `title`, `status` and a
/// `request_id` equal to the `X-Request-Id` header — and returns its body.
async fn problem(response: Response<Body>, status: StatusCode, slug: &str, title: &str) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(header_of(&response, header::CONTENT_TYPE), "application/problem+json");
    let request_id = header_of(&response, header::HeaderName::from_static("x-request-id"));
    let body: Value = serde_json::from_slice(&body_bytes(response).await).expect("a JSON problem");
    assert_eq!(body["type"], format!("/problems/{slug}"), "{body}");
    assert_eq!(body["title"], title, "{body}");
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{body}");
    assert_eq!(body["request_id"], request_id, "{body}");
    if status != StatusCode::UNPROCESSABLE_ENTITY {
        assert!(body.get("errors").is_none(), "errors appear on 422 only: {body}");
    }
    body
}

async fn validation(response: Response<Body>) -> Value {
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation", "Invalid request").await;
    let n = body["errors"].as_array().map_or(0, Vec::len);
    assert!(n > 0, "{body}");
    assert_eq!(body["detail"], format!("{n} field(s) are invalid"), "{body}");
    body
}

fn fields(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|a| a.iter().map(|e| e["field"].as_str().unwrap_or("").to_owned()).collect())
        .unwrap_or_default()
}

fn message_of<'a>(body: &'a Value, field: &str) -> &'a str {
    body["errors"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["field"] == field))
        .and_then(|e| e["message"].as_str())
        .unwrap_or_else(|| panic!("no error on {field}: {body}"))
}

/// A valid one-item order (as tests/api's `simple_order`).
fn order() -> Value {
    json!({
        "id": "o-1", "buyer_id": "x", "currency": "IDR",
        "items": [{"sku": "item", "category": "fashion", "quantity": 1, "unit_price": "100000"}]
    })
}

/// A change to a request body.
type Change = fn(&mut Value);

/// An order refused by validation, for routes where only getting past the
/// key matters.
fn invalid_order() -> Value {
    let mut o = order();
    o["currency"] = json!("idr");
    o
}

async fn unauthorized(response: Response<Body>) -> Value {
    assert_eq!(header_of(&response, header::WWW_AUTHENTICATE), "Bearer realm=\"komisi\"");
    let body = problem(response, StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized").await;
    assert_eq!(body["detail"], "missing or invalid bearer key");
    body
}

#[tokio::test]
async fn no_authorization_header_is_a_401_problem_with_a_bearer_challenge() {
    let state = offline_state();
    for (method, path) in [
        (Method::GET, "/v1/affiliates/A"),
        (Method::GET, "/v1/orders/o-1"),
        (Method::GET, "/admin/program"),
        (Method::GET, "/admin/events/counts"),
    ] {
        unauthorized(send(&state, request(method, path, None).body(Body::empty()).unwrap()).await).await;
    }
    unauthorized(send(&state, post_json("/v1/orders", None, &order())).await).await;
}

#[tokio::test]
async fn a_malformed_authorization_header_is_401() {
    let state = offline_state();
    let key_as_basic = format!("Basic {STOREFRONT}");
    let no_space = format!("Bearer{STOREFRONT}");
    let other_scheme = format!("Token {STOREFRONT}");
    for value in ["Basic abc", key_as_basic.as_str(), "Bearer ", "Bearer", no_space.as_str(), other_scheme.as_str(), ""]
    {
        let req = Request::get("/v1/affiliates/A").header(header::AUTHORIZATION, value).body(Body::empty()).unwrap();
        unauthorized(send(&state, req).await).await;
    }
}

#[tokio::test]
async fn an_unknown_key_is_401_on_either_prefix() {
    let state = offline_state();
    let near = format!("{STOREFRONT}x");
    for key in ["wrong", near.as_str(), &STOREFRONT[..STOREFRONT.len() - 1]] {
        unauthorized(send(&state, get("/v1/affiliates/A", Some(key))).await).await;
        unauthorized(send(&state, get("/admin/program", Some(key))).await).await;
    }
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let state = offline_state();
    // Past the key, the invalid body decides: 422, not 401.
    for scheme in ["bearer", "BEARER", "Bearer", "bEaReR"] {
        let req = Request::post("/v1/orders")
            .header(header::AUTHORIZATION, format!("{scheme} {STOREFRONT}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(invalid_order().to_string()))
            .unwrap();
        let body = validation(send(&state, req).await).await;
        assert_eq!(fields(&body), ["currency"], "{scheme}");
    }
}

#[tokio::test]
async fn a_storefront_key_on_an_admin_route_is_403() {
    let state = offline_state();
    let requests = [
        get("/admin/program", Some(STOREFRONT)),
        with_json(Method::PUT, "/admin/program", Some(STOREFRONT), json!({"currency": "IDR"}).to_string()),
        get("/admin/events?status=dead", Some(STOREFRONT)),
        post_json("/admin/payouts", Some(STOREFRONT), &json!({"min_amount": "0"})),
        get("/admin/reconcile", Some(STOREFRONT)),
        post_json("/admin/orders/o-1/recompute", Some(STOREFRONT), &json!({"dry_run": true})),
    ];
    for req in requests {
        let what = format!("{} {}", req.method(), req.uri());
        let body = problem(send(&state, req).await, StatusCode::FORBIDDEN, "forbidden", "Forbidden").await;
        assert_eq!(body["detail"], "this key may not use this resource", "{what}");
    }
}

#[tokio::test]
async fn an_admin_key_is_accepted_where_a_storefront_key_is() {
    let state = offline_state();
    // The API does not refuse admin keys on /v1 (operators read orders and
    // affiliates): the body's own problem is the answer, not 401 or 403.
    for path in ["/v1/orders", "/v1/quotes"] {
        let body = validation(send(&state, post_json(path, Some(ADMIN), &invalid_order())).await).await;
        assert_eq!(fields(&body), ["currency"], "{path}");
    }
}

/// Moved from tests/api/hostile.rs: it needs no stored data.
#[tokio::test]
async fn the_frameworks_own_refusals_are_problems_too() {
    let state = offline_state();
    // Before: plain-text answers from the router and extractors, and a 500
    // for a payout id past i64.
    for (method, path, status) in [
        (Method::GET, "/no/such/route", StatusCode::NOT_FOUND),
        (Method::DELETE, "/v1/orders/o-1", StatusCode::METHOD_NOT_ALLOWED),
        (Method::GET, "/admin/events?limit=1&limit=2", StatusCode::BAD_REQUEST),
        (Method::GET, "/v1/affiliates/%FF", StatusCode::NOT_FOUND),
        (Method::POST, "/admin/payouts/9223372036854775808/complete", StatusCode::NOT_FOUND),
    ] {
        let r = send(&state, request(method.clone(), path, Some(ADMIN)).body(Body::empty()).unwrap()).await;
        assert_eq!(r.status(), status, "{method} {path}");
        assert_eq!(header_of(&r, header::CONTENT_TYPE), "application/problem+json", "{method} {path}");
        if status == StatusCode::METHOD_NOT_ALLOWED {
            assert!(header_of(&r, header::ALLOW).contains("GET"), "405 names the methods");
        }
        let body: Value = serde_json::from_slice(&body_bytes(r).await).unwrap();
        assert_eq!(body["status"], status.as_u16(), "{body}");
    }
}

#[tokio::test]
async fn an_unknown_route_is_a_404_problem() {
    let state = offline_state();
    for path in ["/no/such/route", "/v2/orders", "/v1", "/admin", "/v1/orders/o-1/nope"] {
        let body =
            problem(send(&state, get(path, Some(ADMIN))).await, StatusCode::NOT_FOUND, "not-found", "Not found").await;
        assert_eq!(body["detail"], "route not found", "{path}");
    }
}

#[tokio::test]
async fn a_method_the_route_does_not_take_is_a_405_problem_naming_the_allowed_ones() {
    let state = offline_state();
    for (method, path, allowed) in [
        (Method::DELETE, "/v1/orders/o-1", "GET"),
        (Method::PUT, "/v1/orders", "POST"),
        (Method::POST, "/healthz", "GET"),
        (Method::DELETE, "/admin/program", "PUT"),
        (Method::GET, "/v1/orders/o-1/cancel", "POST"),
    ] {
        let r = send(&state, request(method.clone(), path, Some(ADMIN)).body(Body::empty()).unwrap()).await;
        let allow = header_of(&r, header::ALLOW);
        assert!(allow.split(',').any(|m| m.trim() == allowed), "{method} {path}: Allow {allow:?}");
        let body = problem(r, StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "Method not allowed").await;
        assert_eq!(body["detail"], "this route does not take this method (see the Allow header)");
    }
}

#[tokio::test]
async fn a_body_over_one_mib_is_413_and_a_body_of_one_mib_is_read() {
    let state = offline_state();
    // Exactly 1 MiB of valid JSON (an object padded with spaces) is read:
    // its problem is the missing fields.
    let mut at_limit = b"{}".to_vec();
    at_limit.resize(BODY_LIMIT, b' ');
    let req = request(Method::POST, "/v1/orders", Some(STOREFRONT))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, BODY_LIMIT)
        .body(Body::from(at_limit.clone()))
        .unwrap();
    let body = validation(send(&state, req).await).await;
    assert_eq!(fields(&body), ["id"], "{body}");
    // One byte more is refused, whatever the body holds.
    at_limit.push(b' ');
    for path in ["/v1/orders", "/v1/affiliates", "/v1/quotes"] {
        let req = request(Method::POST, path, Some(STOREFRONT))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, BODY_LIMIT + 1)
            .body(Body::from(at_limit.clone()))
            .unwrap();
        let body =
            problem(send(&state, req).await, StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "Payload too large")
                .await;
        assert_eq!(body["detail"], "request body above the limit", "{path}");
    }
    // Without a Content-Length (a chunked upload) too.
    let chunks: Vec<Result<axum::body::Bytes, std::io::Error>> =
        at_limit.chunks(64 * 1024).map(|c| Ok(axum::body::Bytes::copy_from_slice(c))).collect();
    let req = request(Method::POST, "/v1/orders", Some(STOREFRONT))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap();
    problem(send(&state, req).await, StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "Payload too large").await;
}

#[tokio::test]
async fn a_json_route_needs_the_json_content_type() {
    let state = offline_state();
    let body = order().to_string();
    for content_type in [None, Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("application/jsonx")]
    {
        let mut req = request(Method::POST, "/v1/orders", Some(STOREFRONT));
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let answer = send(&state, req.body(Body::from(body.clone())).unwrap()).await;
        let problem =
            problem(answer, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Unsupported media type")
                .await;
        assert_eq!(problem["detail"], "expected Content-Type: application/json", "{content_type:?}");
    }
    // Parameters and letter case do not matter.
    for content_type in ["application/json; charset=utf-8", "Application/JSON"] {
        let req = request(Method::POST, "/v1/orders", Some(STOREFRONT))
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(invalid_order().to_string()))
            .unwrap();
        assert_eq!(fields(&validation(send(&state, req).await).await), ["currency"], "{content_type}");
    }
}

#[tokio::test]
async fn a_body_that_is_not_json_is_400() {
    let state = offline_state();
    for (path, raw) in [
        ("/v1/orders", r#"{"id": "o-1","#),
        ("/v1/orders", "{'id': 'o-1'}"),
        ("/v1/affiliates", r#"{"id": "A",}"#),
        ("/v1/quotes", "{"),
    ] {
        let r = send(&state, with_json(Method::POST, path, Some(STOREFRONT), raw)).await;
        let body = problem(r, StatusCode::BAD_REQUEST, "malformed-request", "Malformed request").await;
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.starts_with("malformed request: body is not valid JSON"), "{path} {raw}: {detail}");
    }
}

#[tokio::test]
async fn an_invalid_order_is_422_listing_every_invalid_field() {
    let state = offline_state();
    let bad = json!({
        "id": "o 1", "buyer_id": "x", "currency": "idr",
        "items": [
            {"sku": "a", "category": "fashion", "quantity": 0, "unit_price": "10"},
            {"sku": "a", "category": "fashion", "quantity": 1, "unit_price": "1.23456"}
        ]
    });
    let body = validation(send(&state, post_json("/v1/orders", Some(STOREFRONT), &bad)).await).await;
    assert_eq!(fields(&body), ["id", "currency", "items[0].quantity", "items[1].sku", "items[1].unit_price"]);
    assert_eq!(message_of(&body, "currency"), "must be a 3-letter uppercase currency code");
    assert_eq!(message_of(&body, "items[0].quantity"), "must be an integer 1-1000000");
    assert_eq!(message_of(&body, "items[1].sku"), "each sku may appear only once");
    assert_eq!(message_of(&body, "items[1].unit_price"), "must have at most 4 decimal places");
    assert_eq!(message_of(&body, "id"), "must be 1-64 characters of A-Z, a-z, 0-9, '_', '.', ':' or '-'");
    // One rule at a time, each naming its field.
    let cases: [(Change, &str); 8] = [
        (|o| o["items"][0]["unit_price"] = json!("-5"), "items[0].unit_price"),
        (|o| o["items"][0]["unit_price"] = json!("1e5"), "items[0].unit_price"),
        (|o| o["items"][0]["quantity"] = json!(1_000_001), "items[0].quantity"),
        (|o| o["items"] = json!([]), "items"),
        (|o| o["items"][0]["unit_price"] = json!("1000000000000"), "items[0].unit_price"),
        (
            |o| {
                o["items"][0]["quantity"] = json!(2);
                o["items"][0]["unit_price"] = json!("500000000000");
            },
            "items",
        ),
        (|o| o["placed_at"] = json!("2026-06-30T23:59:60Z"), "placed_at"),
        (
            |o| {
                o["referral_code"] = json!("code-A");
                o["affiliate_id"] = json!("A");
            },
            "affiliate_id",
        ),
    ];
    for (change, field) in cases {
        let mut o = order();
        change(&mut o);
        let body = validation(send(&state, post_json("/v1/orders", Some(STOREFRONT), &o)).await).await;
        assert_eq!(fields(&body), [field], "{o}: {body}");
    }
}

#[tokio::test]
async fn a_shape_error_in_an_order_is_reported_on_its_own() {
    let state = offline_state();
    let cases: [(Change, &str); 5] = [
        // Other fields are wrong too; the shape error is the one reported.
        (
            |o| {
                o["currency"] = json!("idr");
                o["items"][0]["quantity"] = json!(-1);
            },
            "items[0].quantity",
        ),
        (|o| o["items"][0]["unit_price"] = json!(75000), "items[0].unit_price"),
        (|o| o["items"][0]["quantity"] = json!(1.5), "items[0].quantity"),
        (
            |o| {
                o.as_object_mut().unwrap().remove("buyer_id");
            },
            "buyer_id",
        ),
        (|o| o["items"] = json!({"sku": "item"}), "items"),
    ];
    for (change, field) in cases {
        let mut o = order();
        change(&mut o);
        let body = validation(send(&state, post_json("/v1/orders", Some(STOREFRONT), &o)).await).await;
        assert_eq!(fields(&body), [field], "{o}: {body}");
        assert_eq!(body["detail"], "1 field(s) are invalid");
    }
}

#[tokio::test]
async fn a_quote_is_validated_as_an_order_is() {
    let state = offline_state();
    let mut quote = order();
    quote.as_object_mut().unwrap().remove("id");
    quote["items"][0]["unit_price"] = json!("0.00001");
    quote["currency"] = json!("IDRX");
    let body = validation(send(&state, post_json("/v1/quotes", Some(STOREFRONT), &quote)).await).await;
    assert_eq!(fields(&body), ["currency", "items[0].unit_price"]);
    quote["colour"] = json!("red");
    let body = validation(send(&state, post_json("/v1/quotes", Some(STOREFRONT), &quote)).await).await;
    assert_eq!(fields(&body), ["colour"]);
}

#[tokio::test]
async fn an_invalid_affiliate_is_422_naming_the_field() {
    let state = offline_state();
    let long_name = "n".repeat(201);
    for (body, expected) in [
        (json!({"id": "bad id", "name": "   ", "referral_code": "code-A"}), vec!["id", "name"]),
        (json!({"id": "A", "name": long_name, "referral_code": "code A"}), vec!["name", "referral_code"]),
        (json!({"id": "A", "name": "A", "referral_code": "code-A", "parent_id": "A"}), vec!["parent_id"]),
        (json!({"id": "A", "name": "A", "referral_code": "code-A", "buyer_id": ""}), vec!["buyer_id"]),
        (json!({"id": "A", "name": "A"}), vec!["referral_code"]),
        (json!({"id": "A", "name": 7, "referral_code": "code-A"}), vec!["name"]),
    ] {
        let problem = validation(send(&state, post_json("/v1/affiliates", Some(STOREFRONT), &body)).await).await;
        assert_eq!(fields(&problem), expected, "{body}: {problem}");
    }
    let problem = validation(
        send(
            &state,
            post_json(
                "/v1/affiliates",
                Some(STOREFRONT),
                &json!({"id": "A", "name": "A", "referral_code": "code-A", "parent_id": "A"}),
            ),
        )
        .await,
    )
    .await;
    assert_eq!(message_of(&problem, "parent_id"), "an affiliate cannot be its own parent");
    // An update is checked before the affiliate is looked up.
    for (body, field) in [
        (json!({"parent_id": "A"}), "parent_id"),
        (json!({"status": "sleeping"}), "status"),
        (json!({"status": 1}), "status"),
        (json!({"name": ""}), "name"),
        (json!({"parent_id": "no such id!"}), "parent_id"),
    ] {
        let problem = validation(
            send(&state, with_json(Method::PATCH, "/v1/affiliates/A", Some(STOREFRONT), body.to_string())).await,
        )
        .await;
        assert_eq!(fields(&problem), [field], "{body}: {problem}");
    }
}

/// Moved from tests/api/hostile.rs: it needs no stored data.
#[tokio::test]
async fn an_unknown_field_is_named_once() {
    let state = offline_state();
    // Before: "referal_code.referal_code".
    let r = send(
        &state,
        post_json("/v1/affiliates", Some(STOREFRONT), &json!({"id": "A", "name": "A", "referal_code": "code-A"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = serde_json::from_slice(&body_bytes(r).await).unwrap();
    assert_eq!(fields(&body), vec!["referal_code"], "{body}");
    let mut order = order();
    order["items"][0]["colour"] = json!("red");
    let r = send(&state, post_json("/v1/orders", Some(STOREFRONT), &order)).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = serde_json::from_slice(&body_bytes(r).await).unwrap();
    assert_eq!(fields(&body), vec!["items[0].colour"], "{body}");
}

#[tokio::test]
async fn a_body_that_is_not_a_json_object_is_422_on_the_empty_field() {
    let state = offline_state();
    let array = json!(["arr1", "barr", null, null, "IDR", null, [["s1", "fashion", 1, "100000"]]]);
    for (method, path) in
        [(Method::POST, "/v1/orders"), (Method::POST, "/v1/affiliates"), (Method::PATCH, "/v1/affiliates/A")]
    {
        for body in [array.clone(), json!("a string"), json!(42), json!(null), json!(true)] {
            let r = send(&state, with_json(method.clone(), path, Some(STOREFRONT), body.to_string())).await;
            let problem = validation(r).await;
            assert_eq!(fields(&problem), [""], "{method} {path} {body}");
            assert_eq!(message_of(&problem, ""), "the body must be a JSON object");
        }
    }
}

#[tokio::test]
async fn a_sane_request_id_is_echoed_in_the_header_and_the_problem() {
    let state = offline_state();
    let longest = "r".repeat(64);
    for id in ["abc-123", "0195f3c2-7a8e-7c31-9d0e-3f1b2a4c5d6e", "!#$%&'*+.^_`|~", longest.as_str()] {
        let req = Request::get("/v1/orders/o-1").header("x-request-id", id).body(Body::empty()).unwrap();
        let r = send(&state, req).await;
        assert_eq!(header_of(&r, header::HeaderName::from_static("x-request-id")), id);
        let body = unauthorized(r).await;
        assert_eq!(body["request_id"], id);
    }
    // A success carries it too.
    let req = Request::get("/healthz").header("x-request-id", "probe-1").body(Body::empty()).unwrap();
    let r = send(&state, req).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header_of(&r, header::HeaderName::from_static("x-request-id")), "probe-1");
}

#[tokio::test]
async fn an_absent_or_insane_request_id_is_replaced_by_a_new_uuid() {
    let state = offline_state();
    let too_long = "r".repeat(65);
    let insane: [Option<HeaderValue>; 5] = [
        None,
        Some(HeaderValue::from_static("")),
        Some(HeaderValue::from_str(&too_long).unwrap()),
        Some(HeaderValue::from_static("has space")),
        Some(HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap()),
    ];
    let mut seen = std::collections::HashSet::new();
    for given in insane {
        let mut req = Request::get("/v1/orders/o-1");
        if let Some(v) = &given {
            req = req.header("x-request-id", v.clone());
        }
        let r = send(&state, req.body(Body::empty()).unwrap()).await;
        let id = header_of(&r, header::HeaderName::from_static("x-request-id"));
        let uuid = uuid::Uuid::parse_str(&id).unwrap_or_else(|_| panic!("{given:?}: {id:?} is not a UUID"));
        assert_eq!(uuid.get_version_num(), 7, "{id}");
        assert_eq!(uuid.to_string(), id, "the hyphenated lower-case form");
        assert!(seen.insert(id.clone()), "a new id per request");
        let body = unauthorized(r).await;
        assert_eq!(body["request_id"], id.as_str());
    }
}

/// Moved from tests/api/console.rs (but HEAD's Content-Length, which hyper
/// sets: see `head_on_the_console_says_the_pages_length`); exact CSP,
/// X-Frame-Options and the 405's Allow added.
#[tokio::test]
async fn console_pages_carry_a_strict_content_security_policy() {
    let state = offline_state();
    const DOCUMENTED_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                                  connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
    for (path, kind) in [
        ("/console", "text/html"),
        ("/console/", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/style.css", "text/css"),
    ] {
        let r = send(&state, get(path, None)).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let header = |n: header::HeaderName| header_of(&r, n);
        assert!(header(header::CONTENT_TYPE).starts_with(kind), "{path}: {}", header(header::CONTENT_TYPE));
        let csp = header(header::CONTENT_SECURITY_POLICY);
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self';"), "{path}: {csp}");
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(csp, DOCUMENTED_CSP, "{path}: the policy docs/API.md states");
        assert_eq!(header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(header(header::REFERRER_POLICY), "no-referrer");
        assert_eq!(header(header::X_FRAME_OPTIONS), "DENY");
        assert_eq!(header(header::CACHE_CONTROL), "no-cache");
    }
    let page = body_bytes(send(&state, get("/console", None)).await).await;
    assert!(std::str::from_utf8(&page).unwrap().contains(r#"<script type="module" src="/console/app.js">"#));
    let r = send(&state, get("/console/nope.js", None)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(header_of(&r, header::CONTENT_SECURITY_POLICY), DOCUMENTED_CSP, "a 404 page carries it too");
    let r = send(&state, request(Method::POST, "/console", None).body(Body::empty()).unwrap()).await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(header_of(&r, header::ALLOW), "GET, HEAD");
    // The page itself needs no key; its data does.
    let r = send(&state, get("/admin/events/counts", None)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// HEAD's `Content-Length` is hyper's doing (the router answers HEAD with the
/// page's body; hyper sends its length and no body), so this one check runs
/// the router on a real socket, still with no database (moved from
/// tests/api/console.rs).
#[tokio::test]
async fn head_on_the_console_says_the_pages_length() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let addr = listener.local_addr().expect("address");
    let server = tokio::spawn(axum::serve(listener, router(offline_state())).into_future());
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
    let page = client.get(format!("http://{addr}/console")).send().await.unwrap().bytes().await.unwrap();
    assert!(!page.is_empty());
    let head = client.head(format!("http://{addr}/console")).send().await.unwrap();
    assert_eq!(head.status(), reqwest::StatusCode::OK);
    assert_eq!(head.headers()["content-length"], page.len().to_string().as_str(), "HEAD says the page's length");
    assert_eq!(head.headers()["content-security-policy"], super::console::CSP);
    assert!(head.bytes().await.unwrap().is_empty(), "and sends no body");
    server.abort();
}

#[tokio::test]
async fn openapi_json_needs_no_key_and_documents_every_api_route() {
    let state = offline_state();
    let r = send(&state, get("/openapi.json", None)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header_of(&r, header::CONTENT_TYPE), "application/json");
    let doc: Value = serde_json::from_slice(&body_bytes(r).await).expect("a JSON document");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "OpenAPI 3.1: {}", doc["openapi"]);
    assert_eq!(doc["info"]["title"], "komisi");
    for (path, method) in [
        ("/v1/orders", "post"),
        ("/v1/orders/{id}", "get"),
        ("/v1/affiliates/{id}", "patch"),
        ("/admin/events", "get"),
        ("/admin/payouts", "post"),
        ("/openapi.json", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} is documented");
    }
    let paths = doc["paths"].as_object().expect("paths");
    assert!(!paths.keys().any(|p| p.starts_with("/console")), "console pages are not API operations");
    for scheme in ["storefront", "admin"] {
        assert_eq!(doc["components"]["securitySchemes"][scheme]["scheme"], "bearer", "{scheme}");
    }
}

#[tokio::test]
async fn healthz_and_metrics_need_no_key_and_get_routes_answer_head() {
    let state = offline_state();
    let r = send(&state, get("/healthz", None)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = serde_json::from_slice(&body_bytes(r).await).unwrap();
    assert_eq!(body, json!({"status": "ok"}));
    let r = send(&state, get("/metrics", None)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header_of(&r, header::CONTENT_TYPE), "text/plain; version=0.0.4");
    let text = String::from_utf8(body_bytes(r).await).unwrap();
    assert!(
        text.contains("komisi_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"}"),
        "the request above is counted by its route:\n{text}"
    );
    // HEAD on a GET route: the GET's status and headers, no body.
    for path in ["/healthz", "/openapi.json"] {
        let r = send(&state, request(Method::HEAD, path, None).body(Body::empty()).unwrap()).await;
        assert_eq!(r.status(), StatusCode::OK, "HEAD {path}");
        assert_eq!(header_of(&r, header::CONTENT_TYPE), "application/json", "HEAD {path}");
        assert!(body_bytes(r).await.is_empty(), "HEAD {path} has no body");
    }
    // Keyed routes ask for the key on HEAD too.
    let r = send(&state, request(Method::HEAD, "/v1/orders/o-1", None).body(Body::empty()).unwrap()).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_key_past_its_rate_gets_a_429_problem_with_retry_after() {
    let tiny = LimitSettings { per_key_per_sec: 1, per_key_burst: 1, auth_failures_per_min: 0, auth_failures_burst: 0 };
    let state = AppState { limits: Arc::new(Limits::new(tiny)), ..offline_state() };
    let quote = || post_json("/v1/quotes", Some(STOREFRONT), &invalid_order());
    validation(send(&state, quote()).await).await;
    let r = send(&state, quote()).await;
    let wait: u64 = header_of(&r, header::RETRY_AFTER).parse().expect("Retry-After in whole seconds");
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    let body = problem(r, StatusCode::TOO_MANY_REQUESTS, "too-many-requests", "Too many requests").await;
    assert_eq!(body["detail"], format!("too many requests; retry after {wait} s"));
    // Every request with the key counts, whatever its answer; other keys have their own bucket.
    assert_eq!(
        send(&state, get("/v1/orders/bad%20id", Some(STOREFRONT))).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    validation(send(&state, post_json("/v1/quotes", Some(ADMIN), &invalid_order())).await).await;
    let metrics = String::from_utf8(body_bytes(send(&state, get("/metrics", None)).await).await).unwrap();
    assert!(metrics.contains("komisi_http_rate_limited_total{reason=\"key\"}"), "counted:\n{metrics}");
}

/// The peer address comes from the `ConnectInfo<SocketAddr>` extension that
/// `into_make_service_with_connect_info` adds (app.rs); `extract.rs` reads
/// that extension itself, so axum's `MockConnectInfo` layer would not reach
/// it: the requests carry the extension as the real server sets it.
#[tokio::test]
async fn an_address_failing_authentication_too_often_is_refused_whatever_key_it_sends() {
    let limits =
        LimitSettings { per_key_per_sec: 0, per_key_burst: 0, auth_failures_per_min: 1, auth_failures_burst: 5 };
    let state = AppState { limits: Arc::new(Limits::new(limits)), ..offline_state() };
    let guesser: SocketAddr = "10.1.2.3:40000".parse().unwrap();
    let neighbour: SocketAddr = "10.1.2.4:40000".parse().unwrap();
    let from = |addr: Option<SocketAddr>, key: &str| {
        let mut req = post_json("/v1/quotes", Some(key), &invalid_order());
        if let Some(addr) = addr {
            req.extensions_mut().insert(ConnectInfo(addr));
        }
        req
    };
    for n in 0..5 {
        assert_eq!(send(&state, from(Some(guesser), "wrong")).await.status(), StatusCode::UNAUTHORIZED, "attempt {n}");
    }
    let too_many = |r: Response<Body>, what: &'static str| async move {
        let wait: u64 = header_of(&r, header::RETRY_AFTER).parse().expect("Retry-After in whole seconds");
        assert!((50..=60).contains(&wait), "{what}: about a minute for the next token, not {wait}");
        problem(r, StatusCode::TOO_MANY_REQUESTS, "too-many-requests", "Too many requests").await
    };
    too_many(send(&state, from(Some(guesser), "wrong")).await, "the sixth failure").await;
    // Refused before the key is compared: a right guess now learns nothing.
    too_many(send(&state, from(Some(guesser), STOREFRONT)).await, "a valid key from the refused address").await;
    // Another address, and a request that came over no TCP connection, are not refused.
    validation(send(&state, from(Some(neighbour), STOREFRONT)).await).await;
    assert_eq!(send(&state, from(Some(neighbour), "wrong")).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(send(&state, from(None, "wrong")).await.status(), StatusCode::UNAUTHORIZED);
    let metrics = String::from_utf8(body_bytes(send(&state, get("/metrics", None)).await).await).unwrap();
    let refused = metrics
        .lines()
        .find(|l| l.starts_with("komisi_http_rate_limited_total{reason=\"auth\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok());
    assert!(refused.is_some_and(|n| n >= 2.0), "counted: {refused:?}");
}

#[tokio::test]
async fn bad_event_filters_are_a_422_naming_each_parameter() {
    let state = offline_state();
    let r = send(
        &state,
        get("/admin/events?status=sleeping&type=order.lost&since=yesterday&limit=0&cursor=nope", Some(ADMIN)),
    )
    .await;
    let body = validation(r).await;
    assert_eq!(fields(&body), ["status", "type", "since", "limit", "cursor"]);
    assert_eq!(message_of(&body, "limit"), "must be an integer 1-500");
    let body =
        validation(send(&state, get("/admin/events/counts?order_id=no%20such&until=2025", Some(ADMIN))).await).await;
    assert_eq!(fields(&body), ["order_id", "until"]);
    let body = validation(
        send(&state, post_json("/admin/events/replay", Some(ADMIN), &json!({"status": "done", "type": "nope"}))).await,
    )
    .await;
    assert_eq!(fields(&body), ["status", "type"], "a bulk replay takes failed or dead only: {body}");
}

#[tokio::test]
async fn a_payouts_amount_and_idempotency_key_are_checked_first() {
    let state = offline_state();
    let payout = |amount: &str, key: Option<&str>| {
        let mut req =
            request(Method::POST, "/admin/payouts", Some(ADMIN)).header(header::CONTENT_TYPE, "application/json");
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        req.body(Body::from(json!({"min_amount": amount}).to_string())).unwrap()
    };
    let body = validation(send(&state, payout("-5", None)).await).await;
    assert_eq!(fields(&body), ["min_amount"]);
    let too_long = "k".repeat(129);
    for key in [too_long.as_str(), "has space", ""] {
        let body = problem(
            send(&state, payout("0", Some(key))).await,
            StatusCode::BAD_REQUEST,
            "malformed-request",
            "Malformed request",
        )
        .await;
        assert_eq!(
            body["detail"], "malformed request: Idempotency-Key must be 1-128 visible ASCII characters",
            "{key:?}"
        );
    }
}

#[tokio::test]
async fn a_reconcile_request_names_a_known_kind_and_known_fields() {
    let state = offline_state();
    for (body, field) in [
        (json!({"kind": "weekly"}), "kind"),
        (json!({"kind": "full", "wait": "yes"}), "wait"),
        (json!({"kind": "full", "scope": "all"}), "scope"),
    ] {
        let answer = send(&state, post_json("/admin/reconcile", Some(ADMIN), &body)).await;
        let problem = validation(answer).await;
        assert_eq!(fields(&problem), [field], "{body}: {problem}");
    }
}

#[tokio::test]
async fn a_path_id_that_is_not_an_id_is_a_404_like_an_unknown_one() {
    let state = offline_state();
    for (method, path, what) in [
        (Method::GET, "/v1/orders/bad%20id", "order"),
        (Method::POST, "/v1/orders/bad%20id/cancel", "order"),
        (Method::POST, "/v1/orders/bad%20id/complete", "order"),
        (Method::GET, "/v1/affiliates/bad%20id", "affiliate"),
        (Method::GET, "/v1/buyers/bad%20id/rewards", "buyer"),
        (Method::GET, "/admin/events/not-an-event", "event"),
        (Method::GET, "/admin/payouts/-1", "payout"),
    ] {
        let r = send(&state, request(method.clone(), path, Some(ADMIN)).body(Body::empty()).unwrap()).await;
        let body = problem(r, StatusCode::NOT_FOUND, "not-found", "Not found").await;
        assert_eq!(body["detail"], format!("{what} not found"), "{method} {path}");
    }
}
