//! The operator surface: the event admin API, replays, recompute, the OpenAPI
//! document, and the dashboards and alert rules.
use crate::helpers::*;
use komisi::engine::faults::Faults;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

async fn events_of(app: &TestApp, order: &str) -> Vec<Value> {
    app.admin_get(&format!("/admin/events?order_id={order}")).await["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_failing_event_goes_failed_then_dead_and_a_bulk_replay_pays_it_once() {
    let app = spawn_app_with(
        |c| {
            c.max_attempts = 2;
            c.retry_base_ms = 1_500;
            c.retry_max_ms = 1_500;
        },
        Faults::default(),
    )
    .await;
    abc_tree(&app).await;
    app.faults.fail_db_mid_tx(u32::MAX);
    let event_id = app.accept(&worked_example_order("o-1", "x", "code-C")).await;

    let failed =
        poll(Duration::from_secs(10), || async { events_of(&app, "o-1").await[0]["status"] == "failed" }).await;
    assert!(failed, "the event is failed after its first attempt");
    let row = &events_of(&app, "o-1").await[0];
    assert_eq!(
        (row["id"].as_str(), row["type"].as_str(), row["attempts"].as_u64()),
        (Some(event_id.as_str()), Some("order.placed"), Some(1))
    );
    assert!(row["last_error"].as_str().unwrap().contains("injected failure"));
    assert_eq!(app.get_json("/v1/orders/o-1").await["commission_status"], "failed");

    app.order_in_status("o-1", "dead", Duration::from_secs(15)).await;
    let detail = app.admin_get(&format!("/admin/events/{event_id}")).await;
    assert_eq!(detail["status"], "dead");
    assert_eq!(detail["payload"]["items"].as_array().unwrap().len(), 3);
    assert_eq!(detail["payload"]["referral_code"], "code-C");
    let history = detail["attempt_history"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert!(history.iter().all(|a| a["at"].is_string() && a["error"].as_str().unwrap().contains("injected failure")));
    let dead = app.admin_get("/admin/events?status=dead").await;
    assert_eq!(dead["items"].as_array().unwrap().len(), 1);
    assert_eq!(app.admin_get("/admin/events?status=done&type=order.placed").await["items"], json!([]));

    // The fault is fixed; the operator replays every dead event.
    app.faults.clear();
    let replayed: Value =
        app.admin_post("/admin/events/replay", &json!({"status": "dead"})).await.json().await.unwrap();
    assert_eq!(replayed["replayed"], 1);
    app.processed("o-1").await;
    let detail = app.admin_get(&format!("/admin/events/{event_id}")).await;
    assert_eq!(detail["status"], "done");
    assert_eq!(detail["attempt_history"].as_array().unwrap().len(), 2, "history is kept");
    assert_eq!(detail["replay_history"][0]["previous_status"], "dead");
    assert_eq!(app.balance("C", "pending").await, d("95000"));
    assert_eq!(app.balance("B", "pending").await, d("64500"));
    assert_eq!(app.balance("A", "pending").await, d("21500"));
    assert_eq!(app.points("x").await, 26500);
    // Nothing left to replay.
    let again: Value = app.admin_post("/admin/events/replay", &json!({"status": "dead"})).await.json().await.unwrap();
    assert_eq!(again["replayed"], 0);
    app.assert_ledger_consistent().await;
    app.assert_reconciled().await;
}

#[tokio::test]
async fn replaying_a_done_event_changes_no_balance() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    let event_id = app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    app.processed("o-1").await;
    let r = app.admin_post(&format!("/admin/events/{event_id}/replay"), &json!({})).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "done");
    // The replay is journaled, delivered and recorded as a no-op.
    let recorded = poll(Duration::from_secs(5), || async {
        app.admin_get(&format!("/admin/events/{event_id}")).await["replay_history"].as_array().unwrap().len() == 1
    })
    .await;
    assert!(recorded);
    let drained = poll(Duration::from_secs(5), || async { app.tree_stats().await.inflight == 0 }).await;
    assert!(drained);
    assert_eq!(app.balance("C", "pending").await, d("95000"));
    assert_eq!(app.points("x").await, 26500);
    let rows = app.db.int("SELECT COUNT(*) FROM ledger_entries", &[]).await;
    assert_eq!(rows, 3);
    assert_eq!(
        app.admin_post("/admin/events/01234567-89ab-7def-8123-456789abcdef/replay", &json!({})).await.status(),
        StatusCode::NOT_FOUND
    );
    app.assert_reconciled().await;
}

#[tokio::test]
async fn events_are_listed_newest_first_with_cursor_pagination_and_filters() {
    let app = spawn_app().await;
    app.create_affiliate("A", None).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(app.accept(&simple_order(&format!("o-{n}"), "b", Some("code-A"), "100000")).await);
    }
    let first = app.admin_get("/admin/events?limit=2").await;
    let second =
        app.admin_get(&format!("/admin/events?limit=2&cursor={}", first["next_cursor"].as_str().unwrap())).await;
    let third =
        app.admin_get(&format!("/admin/events?limit=2&cursor={}", second["next_cursor"].as_str().unwrap())).await;
    let seen: Vec<String> = [&first, &second, &third]
        .iter()
        .flat_map(|p| p["items"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()))
        .collect();
    ids.reverse();
    assert_eq!(seen, ids);
    assert_eq!(third["next_cursor"], Value::Null);
    assert_eq!(app.admin_get("/admin/events?order_id=o-3").await["items"].as_array().unwrap().len(), 1);
    let future = app.admin_get("/admin/events?since=2999-01-01T00:00:00Z").await;
    assert_eq!(future["items"], json!([]));
    let r = app.client.get(app.url("/admin/events?status=sleeping")).bearer_auth(ADMIN_KEY).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = app.client.get(app.url("/admin/events")).bearer_auth(STOREFRONT_KEY).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn recompute_shows_entitled_applied_delta_and_writes_the_delta_as_an_event() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    app.processed("o-1").await;
    let clean: Value =
        app.admin_post("/admin/orders/o-1/recompute", &json!({"dry_run": true})).await.json().await.unwrap();
    assert_eq!(clean["delta"], json!([]));
    assert_eq!(clean["entitled"], clean["applied"]);
    assert!(clean["entitled"]
        .as_array()
        .unwrap()
        .contains(&json!({"affiliate_id": "C", "level": 1, "kind": "commission", "amount": "95000"})));
    assert!(clean["entitled"]
        .as_array()
        .unwrap()
        .contains(&json!({"buyer_id": "x", "kind": "first_order_bonus", "points": 5000})));

    // Someone deletes B's entry behind komisi's back (and fixes the balance to match).
    app.db.exec("DELETE FROM ledger_entries WHERE affiliate_id = 'B'", &[]).await;
    app.db.add_money("affiliates", "pending", "B", -d("64500")).await;
    assert_eq!(app.balance("B", "pending").await, d("0"));
    let dry: Value =
        app.admin_post("/admin/orders/o-1/recompute", &json!({"dry_run": true})).await.json().await.unwrap();
    assert_eq!(dry["delta"], json!([{"affiliate_id": "B", "level": 2, "kind": "commission", "amount": "64500"}]));
    assert_eq!(dry["event_id"], Value::Null);
    assert_eq!(app.balance("B", "pending").await, d("0"), "a dry run writes nothing");

    let wet: Value =
        app.admin_post("/admin/orders/o-1/recompute", &json!({"dry_run": false})).await.json().await.unwrap();
    let event_id = wet["event_id"].as_str().expect("an event writes the delta").to_owned();
    app.processed("o-1").await;
    assert_eq!(app.balance("B", "pending").await, d("64500"));
    assert_eq!(
        app.event_entries(&event_id).await,
        vec![("B".into(), "commission".into(), d("64500"), "pending".into())]
    );
    let after: Value =
        app.admin_post("/admin/orders/o-1/recompute", &json!({"dry_run": false})).await.json().await.unwrap();
    assert_eq!((after["delta"].clone(), after["event_id"].clone()), (json!([]), Value::Null));
    assert_eq!(
        app.admin_post("/admin/orders/nope/recompute", &json!({"dry_run": true})).await.status(),
        StatusCode::NOT_FOUND
    );
    app.assert_reconciled().await;
}

#[tokio::test]
async fn every_route_is_in_the_openapi_document() {
    let app = spawn_app().await;
    let doc: Value = app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            documented.insert((method.to_uppercase(), path.clone()));
            assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path} has responses");
            if matches!(method.as_str(), "post" | "put" | "patch")
                && !path.ends_with("/replay")
                && !path.ends_with("/cancel")
                && !path.ends_with("/release")
                && !path.ends_with("/complete")
                && !path.ends_with("/payouts/{id}/complete")
                && !path.ends_with("/rotate-secret")
                && !path.ends_with("/resend")
            {
                assert!(op["requestBody"].is_object(), "{method} {path} documents its request body");
            }
        }
    }
    // The SPEC §3 contract.
    let spec: BTreeSet<(String, String)> = [
        ("POST", "/v1/affiliates"),
        ("PATCH", "/v1/affiliates/{id}"),
        ("GET", "/v1/affiliates/{id}"),
        ("GET", "/v1/affiliates/{id}/commissions"),
        ("GET", "/v1/affiliates/{id}/children"),
        ("POST", "/v1/orders"),
        ("GET", "/v1/orders/{id}"),
        ("POST", "/v1/orders/{id}/refunds"),
        ("POST", "/v1/orders/{id}/cancel"),
        ("POST", "/v1/orders/{id}/complete"),
        ("GET", "/v1/buyers/{id}/rewards"),
        ("POST", "/v1/quotes"),
        ("POST", "/v1/buyers/{id}/redemptions"),
        ("POST", "/v1/buyers/{id}/redemptions/{rid}/capture"),
        ("POST", "/v1/buyers/{id}/redemptions/{rid}/release"),
        ("GET", "/admin/events"),
        ("GET", "/admin/events/counts"),
        ("GET", "/admin/events/{id}"),
        ("POST", "/admin/events/{id}/replay"),
        ("POST", "/admin/events/replay"),
        ("POST", "/admin/orders/{id}/recompute"),
        ("GET", "/admin/program"),
        ("PUT", "/admin/program"),
        ("POST", "/admin/payouts"),
        ("GET", "/admin/payouts"),
        ("GET", "/admin/payouts/{id}"),
        ("POST", "/admin/payouts/{id}/complete"),
        ("GET", "/admin/payouts/{id}/items.csv"),
        ("GET", "/admin/program/versions"),
        ("GET", "/admin/program/versions/{version}"),
        ("GET", "/v1/affiliates/{id}/payouts"),
        ("GET", "/v1/affiliates"),
        ("GET", "/admin/orders"),
        ("GET", "/admin/audit"),
        ("GET", "/admin/reports/daily"),
        ("GET", "/admin/reports/top-affiliates"),
        ("POST", "/admin/affiliates/{id}/adjustments"),
        ("POST", "/admin/buyers/{id}/points-adjustments"),
        ("GET", "/admin/reconcile"),
        ("POST", "/admin/reconcile"),
        ("POST", "/admin/webhooks"),
        ("GET", "/admin/webhooks"),
        ("GET", "/admin/webhooks/{id}"),
        ("PATCH", "/admin/webhooks/{id}"),
        ("DELETE", "/admin/webhooks/{id}"),
        ("POST", "/admin/webhooks/{id}/rotate-secret"),
        ("POST", "/admin/webhooks/{id}/recover"),
        ("GET", "/admin/webhook-messages"),
        ("GET", "/admin/webhook-messages/{id}"),
        ("POST", "/admin/webhook-messages/{id}/resend"),
        ("POST", "/admin/webhook-messages/prune"),
        ("POST", "/v1/clicks"),
        ("POST", "/v1/affiliates/{id}/coupons"),
        ("GET", "/v1/affiliates/{id}/coupons"),
        ("DELETE", "/v1/affiliates/{id}/coupons/{code}"),
        ("GET", "/v1/affiliates/{id}/attribution"),
        ("GET", "/v1/buyers/{id}"),
        ("PUT", "/admin/buyers/{id}/affiliate"),
        ("POST", "/admin/orders/{id}/attribution"),
        ("PUT", "/admin/fx-rates"),
        ("GET", "/admin/fx-rates"),
        ("GET", "/admin/budgets"),
        ("GET", "/v1/orders/{id}/explanation"),
        ("GET", "/admin/events/{id}/bundle"),
        ("POST", "/admin/simulations"),
        ("GET", "/admin/simulations/{id}"),
        ("DELETE", "/admin/simulations/{id}"),
        ("GET", "/admin/simulations/{id}/affiliates.csv"),
        ("GET", "/admin/affiliates/{id}/caps"),
        ("PUT", "/admin/affiliates/{id}/caps"),
        ("GET", "/metrics"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/openapi.json"),
    ]
    .iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    assert_eq!(documented, spec);
    // Every documented operation is really served (no 404/405 for its method and path).
    for (method, path) in &documented {
        let url = app.url(&path.replace("{id}", "1").replace("{rid}", "r-1").replace("{code}", "c-1"));
        let r = app
            .client
            .request(method.parse().unwrap(), url)
            .bearer_auth(ADMIN_KEY)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = r.status();
        let problem = r.headers().get("content-type").is_some_and(|v| v == "application/problem+json");
        // A 404 from a handler is a problem document ("no such order"); the router's own is not.
        assert!(
            status != StatusCode::METHOD_NOT_ALLOWED && (status != StatusCode::NOT_FOUND || problem),
            "{method} {path}: {status}"
        );
    }
    // Routes can only be added through the documented router: no bare `.route(`
    // or `.route_service(` in src/http, but for the console's pages (HTML, not
    // API operations), which are all under /console.
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src/http")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(".route("), "{} registers an undocumented route", path.display());
        if path.file_name().unwrap() == "console.rs" {
            for call in text.split(".route_service(\"").skip(1) {
                assert!(call.starts_with("/console"), "the console serves only /console paths: {call:.40}");
            }
        } else {
            assert!(!text.contains(".route_service("), "{} registers an undocumented route", path.display());
        }
    }
    assert!(!documented.iter().any(|(_, p)| p.starts_with("/console")), "console pages are not API operations");
}

/// Every `komisi_*` name in a dashboard query or an alert rule.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("komisi_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase() || bytes[end].is_ascii_digit() || bytes[end] == b'_')
        {
            end += 1;
        }
        let name = &text[start..end];
        let base = ["_bucket", "_sum", "_count"].iter().fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
        names.insert(base.to_owned());
        i = end;
    }
    names
}

#[test]
fn dashboards_and_alerts_only_use_exported_metrics() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards");
    let exported: BTreeSet<String> = komisi::metrics::ALL.iter().map(|(n, _)| n.to_string()).collect();
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/komisi.json")).unwrap()).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    let rules = std::fs::read_to_string(format!("{dir}/alerts.yml")).unwrap();
    let rule_exprs: Vec<String> =
        rules.lines().filter_map(|l| l.trim().strip_prefix("expr:")).map(str::to_owned).collect();
    assert!(exprs.len() >= 10 && rule_exprs.len() >= 4, "dashboard and rules parsed");
    let used: BTreeSet<String> = exprs.iter().chain(rule_exprs.iter()).flat_map(|e| metric_names(e)).collect();
    let unknown: Vec<&String> = used.difference(&exported).collect();
    assert!(unknown.is_empty(), "queries name metrics komisi does not export: {unknown:?}");
    // The SPEC's required metrics are all on the dashboard.
    for required in [
        "komisi_http_requests_total",
        "komisi_http_request_duration_seconds",
        "komisi_events_total",
        "komisi_event_lag_seconds",
        "komisi_events_pending",
        "komisi_events_dead",
        "komisi_actors_active",
        "komisi_actor_restarts_total",
        "komisi_commission_amount_total",
        "komisi_event_processing_duration_seconds",
    ] {
        assert!(used.contains(required), "{required} missing from the dashboard");
    }
    let prometheus = std::fs::read_to_string(format!("{dir}/prometheus.yml")).unwrap();
    assert!(prometheus.contains("alerts.yml") && prometheus.contains("/metrics"));
    assert!(prometheus.contains("\"127.0.0.1:8080\""), "the default KOMISI_BIND is scraped");
    // Every alert: a summary, a description and a runbook section that exists.
    let reliability = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/RELIABILITY.md")).unwrap();
    let headings: BTreeSet<String> = reliability
        .lines()
        .filter_map(|l| l.strip_prefix("### ").or_else(|| l.strip_prefix("## ")))
        .map(|h| h.to_lowercase().replace(' ', "-"))
        .collect();
    let alerts: Vec<&str> = rules.split("- alert: ").skip(1).collect();
    assert!(alerts.len() >= 11, "{}", alerts.len());
    for alert in alerts {
        let name = alert.lines().next().unwrap().trim();
        for key in ["summary:", "description:", "runbook_url:"] {
            assert!(alert.contains(key), "{name} has no {key}");
        }
        let url = alert.lines().find_map(|l| l.trim().strip_prefix("runbook_url:")).unwrap().trim().trim_matches('"');
        assert_eq!(url, format!("docs/RELIABILITY.md#{}", name.to_lowercase()), "{name}");
        assert!(headings.contains(&name.to_lowercase()), "docs/RELIABILITY.md has no section {name}");
    }
}

#[tokio::test]
async fn event_counts_per_status_follow_the_filters_and_a_bulk_replay_takes_an_order_filter() {
    let app = spawn_app_with(|c| c.max_attempts = 1, Faults::default()).await;
    app.create_affiliate("A", None).await;
    app.accept(&simple_order("o-1", "b", Some("code-A"), "100000")).await;
    app.processed("o-1").await;
    app.faults.fail_db_mid_tx(u32::MAX);
    app.accept(&simple_order("o-2", "b", Some("code-A"), "100000")).await;
    app.accept(&simple_order("o-3", "b", Some("code-A"), "100000")).await;
    app.order_in_status("o-2", "dead", Duration::from_secs(15)).await;
    app.order_in_status("o-3", "dead", Duration::from_secs(15)).await;
    app.faults.clear();

    let zero = json!({"pending": 0, "processing": 0, "done": 0, "failed": 0, "dead": 0});
    let all = app.admin_get("/admin/events/counts").await;
    assert_eq!(all, json!({"pending": 0, "processing": 0, "done": 1, "failed": 0, "dead": 2}));
    let one = app.admin_get("/admin/events/counts?order_id=o-2").await;
    assert_eq!(one, json!({"pending": 0, "processing": 0, "done": 0, "failed": 0, "dead": 1}));
    assert_eq!(app.admin_get("/admin/events/counts?type=order.placed").await, all);
    assert_eq!(app.admin_get("/admin/events/counts?type=order.refunded").await, zero);
    assert_eq!(app.admin_get("/admin/events/counts?since=2999-01-01T00:00:00Z").await, zero);
    assert_eq!(app.admin_get("/admin/events/counts?until=2000-01-01T00:00:00Z").await, zero);
    for bad in ["type=order.eaten", "order_id=a%20b", "since=yesterday"] {
        let r = app.client.get(app.url(&format!("/admin/events/counts?{bad}"))).bearer_auth(ADMIN_KEY).send().await;
        assert_eq!(r.unwrap().status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    let r = app.client.get(app.url("/admin/events/counts")).bearer_auth(STOREFRONT_KEY).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // A bulk replay limited to one order touches that order's events only.
    let r: Value = app
        .admin_post("/admin/events/replay", &json!({"status": "dead", "order_id": "o-3"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["replayed"], 1);
    app.processed("o-3").await;
    assert_eq!(app.get_json("/v1/orders/o-2").await["commission_status"], "dead");
    assert_eq!(app.admin_get("/admin/events/counts").await["dead"], 1);
    let r = app.admin_post("/admin/events/replay", &json!({"status": "dead", "order_id": "no such/id"})).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    app.assert_ledger_consistent().await;
}

#[tokio::test]
async fn an_affiliates_direct_children_are_listed_by_id_a_page_at_a_time() {
    let app = spawn_app().await;
    app.create_affiliate("A", None).await;
    for child in ["C", "B", "D"] {
        app.create_affiliate(child, Some("A")).await;
    }
    app.create_affiliate("E", Some("B")).await;
    app.accept(&simple_order("o-1", "b", Some("code-B"), "100000")).await;
    app.processed("o-1").await;

    let ids = |page: &Value| -> Vec<String> {
        page["items"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect()
    };
    let first = app.get_json("/v1/affiliates/A/children?limit=2").await;
    assert_eq!(ids(&first), ["B", "C"]);
    assert_eq!(first["items"][0]["balances"]["pending"], "10000", "children come with their balances");
    assert_eq!(first["next_cursor"], "C");
    let second = app.get_json("/v1/affiliates/A/children?limit=2&cursor=C").await;
    assert_eq!((ids(&second), second["next_cursor"].clone()), (vec!["D".to_owned()], Value::Null));
    assert_eq!(ids(&app.get_json("/v1/affiliates/B/children").await), ["E"]);
    assert_eq!(app.get_json("/v1/affiliates/E/children").await["items"], json!([]));
    assert_eq!(app.get("/v1/affiliates/nobody/children").await.status(), StatusCode::NOT_FOUND);
    for bad in ["limit=0", "limit=501", "cursor=a%20b"] {
        let r = app.get(&format!("/v1/affiliates/A/children?{bad}")).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
}

#[tokio::test]
async fn payout_batches_are_listed_newest_first_and_read_with_their_items() {
    let app = spawn_app().await;
    app.set_program(|p| p["holding_days"] = json!(0)).await;
    abc_tree(&app).await;
    assert_eq!(app.admin_get("/admin/payouts").await, json!({"items": [], "next_cursor": null}));
    app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    app.processed("o-1").await;
    let r = app.client.post(app.url("/v1/orders/o-1/complete")).bearer_auth(STOREFRONT_KEY).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(poll(Duration::from_secs(10), || async { app.balance("A", "approved").await == d("21500") }).await);
    let first: Value = app.admin_post("/admin/payouts", &json!({"min_amount": "50000"})).await.json().await.unwrap();
    let second: Value = app.admin_post("/admin/payouts", &json!({"min_amount": "0"})).await.json().await.unwrap();
    let (first_id, second_id) = (first["id"].as_u64().unwrap(), second["id"].as_u64().unwrap());

    let read = app.admin_get(&format!("/admin/payouts/{first_id}")).await;
    assert_eq!(read, first, "a batch reads as it was answered when built");
    let page = app.admin_get("/admin/payouts?limit=1").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["id"], second_id, "newest first");
    assert_eq!((page["items"][0]["items"].clone(), page["items"][0]["total"].clone()), (json!(1), json!("21500")));
    let next = app.admin_get(&format!("/admin/payouts?limit=1&cursor={}", page["next_cursor"].as_str().unwrap())).await;
    assert_eq!(next["items"][0]["id"], first_id);
    assert_eq!((next["items"][0]["items"].clone(), next["items"][0]["status"].clone()), (json!(2), json!("open")));
    assert_eq!(app.admin_get("/admin/payouts?cursor=9999999999999999999").await["items"].as_array().unwrap().len(), 2);
    assert_eq!(app.admin_get(&format!("/admin/payouts?cursor={first_id}")).await["items"], json!([]));

    app.admin_post(&format!("/admin/payouts/{first_id}/complete"), &json!({})).await;
    assert_eq!(app.admin_get(&format!("/admin/payouts/{first_id}")).await["status"], "completed");

    // The export for the bank run: one line per affiliate, a name that a
    // spreadsheet would run as a formula defused, quoted as RFC 4180 says.
    let r = app.patch("/v1/affiliates/B", &json!({"name": "=SUM(A1), \"B\""})).await;
    assert!(r.status().is_success());
    let csv = |id: u64, key: &'static str| {
        let app = &app;
        async move {
            app.client.get(app.url(&format!("/admin/payouts/{id}/items.csv"))).bearer_auth(key).send().await.unwrap()
        }
    };
    let r = csv(first_id, ADMIN_KEY).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(r.headers()["content-disposition"], format!("attachment; filename=\"payout-{first_id}.csv\""));
    let c_name = app.get_json("/v1/affiliates/C").await["name"].as_str().unwrap().to_owned();
    assert_eq!(
        r.text().await.unwrap(),
        format!(
            "payout_id,affiliate_id,name,amount,currency,status\n\
             {first_id},B,\"'=SUM(A1), \"\"B\"\"\",64500,IDR,completed\n\
             {first_id},C,{c_name},95000,IDR,completed\n"
        )
    );
    assert_eq!(csv(999_999, ADMIN_KEY).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(csv(first_id, STOREFRONT_KEY).await.status(), StatusCode::FORBIDDEN);

    // Each affiliate's payout history, newest first: C is paid again by a third batch.
    app.accept(&worked_example_order("o-2", "y", "code-C")).await;
    app.processed("o-2").await;
    let r = app.client.post(app.url("/v1/orders/o-2/complete")).bearer_auth(STOREFRONT_KEY).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(poll(Duration::from_secs(10), || async { app.balance("C", "approved").await == d("95000") }).await);
    let third: Value = app.admin_post("/admin/payouts", &json!({"min_amount": "90000"})).await.json().await.unwrap();
    let third_id = third["id"].as_u64().unwrap();
    let history = app.get_json("/v1/affiliates/C/payouts").await;
    let seen: Vec<(u64, &str, &str)> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["payout_id"].as_u64().unwrap(), p["amount"].as_str().unwrap(), p["status"].as_str().unwrap()))
        .collect();
    assert_eq!(seen, [(third_id, "95000", "open"), (first_id, "95000", "completed")], "{history}");
    assert_eq!((&history["items"][0]["currency"], &history["next_cursor"]), (&json!("IDR"), &Value::Null));
    let page = app.get_json("/v1/affiliates/C/payouts?limit=1").await;
    assert_eq!(page["items"][0]["payout_id"], third_id);
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let next = app.get_json(&format!("/v1/affiliates/C/payouts?limit=1&cursor={cursor}")).await;
    assert_eq!(next["items"][0]["payout_id"], first_id);
    assert_eq!(app.get_json("/v1/affiliates/A/payouts").await["items"][0]["payout_id"], second_id);
    app.create_affiliate("never-paid", None).await;
    assert_eq!(app.get_json("/v1/affiliates/never-paid/payouts").await, json!({"items": [], "next_cursor": null}));
    assert_eq!(app.get("/v1/affiliates/nobody/payouts").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.get("/v1/affiliates/C/payouts?cursor=x").await.status(), StatusCode::UNPROCESSABLE_ENTITY);
    for (path, status) in [
        ("/admin/payouts/999999", StatusCode::NOT_FOUND),
        ("/admin/payouts/99999999999999999999", StatusCode::NOT_FOUND),
        ("/admin/payouts?cursor=-1", StatusCode::UNPROCESSABLE_ENTITY),
        ("/admin/payouts?limit=0", StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let r = app.client.get(app.url(path)).bearer_auth(ADMIN_KEY).send().await.unwrap();
        assert_eq!(r.status(), status, "{path}");
    }
    let r = app.client.get(app.url("/admin/payouts")).bearer_auth(STOREFRONT_KEY).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    app.assert_reconciled().await;
}

#[tokio::test]
async fn an_order_shows_its_items_with_what_is_refunded() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    app.processed("o-1").await;
    let r = app
        .post("/v1/orders/o-1/refunds", &json!({"refund_id": "r-1", "items": [{"sku": "shirt", "quantity": 1}]}))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let order = app.processed("o-1").await;
    assert_eq!(
        order["items"],
        json!([
            {"sku": "shirt", "category": "fashion", "quantity": 2, "refunded": 1, "unit_price": "75000"},
            {"sku": "phone", "category": "electronics", "quantity": 1, "refunded": 0, "unit_price": "2000000"},
            {"sku": "voucher", "category": "gift-card", "quantity": 1, "refunded": 0, "unit_price": "100000"}
        ])
    );
}

#[tokio::test]
async fn program_versions_are_listed_newest_first_and_each_reads_as_it_was_stored() {
    let app = spawn_app().await;
    let first = app.admin_get("/admin/program").await;
    let v2 = app.set_program(|p| p["holding_days"] = json!(7)).await;
    let v3 = app.set_program(|p| p["holding_days"] = json!(30)).await;
    let list = app.admin_get("/admin/program/versions").await;
    let seen: Vec<(u64, bool)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_u64().unwrap(), v["current"].as_bool().unwrap()))
        .collect();
    let v1 = first["version"].as_u64().unwrap();
    assert_eq!(seen, [(v3, true), (v2, false), (v1, false)], "{list}");
    assert_eq!(list["next_cursor"], Value::Null);
    // Each version as it was stored: the first is the program that was in force.
    let mut one = app.admin_get(&format!("/admin/program/versions/{v1}")).await;
    assert!(one.as_object_mut().unwrap().remove("created_at").is_some());
    assert_eq!(one, first);
    assert_eq!(app.admin_get(&format!("/admin/program/versions/{v2}")).await["holding_days"], 7);
    let current = app.admin_get("/admin/program").await;
    let mut newest = app.admin_get(&format!("/admin/program/versions/{v3}")).await;
    newest.as_object_mut().unwrap().remove("created_at");
    assert_eq!(newest, current);
    // A page at a time.
    let page = app.admin_get("/admin/program/versions?limit=2").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let rest = app.admin_get(&format!("/admin/program/versions?limit=2&cursor={cursor}")).await;
    assert_eq!((rest["items"][0]["version"].as_u64(), &rest["next_cursor"]), (Some(v1), &Value::Null));
    for (path, status) in [
        ("/admin/program/versions/999999", StatusCode::NOT_FOUND),
        ("/admin/program/versions/0", StatusCode::NOT_FOUND),
        ("/admin/program/versions/x", StatusCode::NOT_FOUND),
        ("/admin/program/versions/99999999999999999999", StatusCode::NOT_FOUND),
        ("/admin/program/versions/9223372036854775807", StatusCode::NOT_FOUND),
        ("/admin/program/versions?cursor=-1", StatusCode::UNPROCESSABLE_ENTITY),
        ("/admin/program/versions?limit=501", StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let r = app.client.get(app.url(path)).bearer_auth(ADMIN_KEY).send().await.unwrap();
        assert_eq!(r.status(), status, "{path}");
    }
    let r = app.client.get(app.url("/admin/program/versions")).bearer_auth(STOREFRONT_KEY).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // An older version read back is stored again as is: its number and date are ignored.
    let mut again = app.admin_get(&format!("/admin/program/versions/{v2}")).await;
    again["holding_days"] = json!(8);
    let r = app.admin_put("/admin/program", &again).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.admin_get("/admin/program").await["holding_days"], 8);
}

#[tokio::test]
async fn affiliates_are_searched_by_id_code_or_name_prefix_filtered_and_paged_by_id() {
    let app = spawn_app().await;
    for (id, name, code, parent) in [
        ("acme-1", "Budi Santoso", "promo-budi", None),
        ("acme-2", "budiman store", "bm-2", Some("acme-1")),
        ("zeta", "Zeta 100% Deals", "acme-zeta", Some("acme-1")),
        ("under", "a_b literal", "u-1", None),
        ("axb", "axb shop", "u-2", None),
    ] {
        app.create_affiliate_with(json!({"id": id, "name": name, "referral_code": code, "parent_id": parent})).await;
    }
    let r = app.patch("/v1/affiliates/acme-2", &json!({"status": "suspended"})).await;
    assert!(r.status().is_success());
    let ids = |v: &Value| -> Vec<String> {
        v["items"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect()
    };
    let search = |query: &'static str| {
        let app = &app;
        async move { ids(&app.get_json(&format!("/v1/affiliates?{query}")).await) }
    };
    // id prefix or referral code prefix (zeta's code starts with "acme"), in id order.
    assert_eq!(search("q=acme").await, ["acme-1", "acme-2", "zeta"]);
    // A name prefix in either case; not a substring.
    assert_eq!(search("q=BUDI").await, ["acme-1", "acme-2"]);
    assert_eq!(search("q=Santoso").await, Vec::<String>::new());
    // `%` and `_` are literal characters, never wildcards.
    assert_eq!(search("q=a_b").await, ["under"]);
    assert_eq!(search("q=Zeta%20100%25").await, ["zeta"]);
    assert_eq!(search("q=%25").await, Vec::<String>::new());
    // Filters, alone and with a search.
    assert_eq!(search("status=suspended").await, ["acme-2"]);
    assert_eq!(search("q=budi&status=active").await, ["acme-1"]);
    assert_eq!(search("parent_id=acme-1").await, ["acme-2", "zeta"]);
    // Every affiliate, a page at a time, each with its balances.
    let page = app.get_json("/v1/affiliates?limit=2").await;
    assert_eq!(ids(&page), ["acme-1", "acme-2"]);
    assert_eq!(page["items"][0]["balances"]["pending"], "0");
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    assert_eq!(search_owned(&app, &format!("limit=2&cursor={cursor}")).await, ["axb", "under"]);
    let page = app.get_json("/v1/affiliates?q=acme&limit=2").await;
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    assert_eq!(search_owned(&app, &format!("q=acme&limit=2&cursor={cursor}")).await, ["zeta"]);
    // Bad input: 422 naming the field, never a scan.
    for (query, field) in [
        (format!("q={}", "x".repeat(65)), "q"),
        ("q=a%01b".to_owned(), "q"),
        ("status=deleted".to_owned(), "status"),
        ("parent_id=a%20b".to_owned(), "parent_id"),
        ("parent_id=".to_owned(), "parent_id"),
        ("status=".to_owned(), "status"),
        ("cursor=a%20b".to_owned(), "cursor"),
        ("limit=0".to_owned(), "limit"),
    ] {
        let r = app.get(&format!("/v1/affiliates?{query}")).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["errors"][0]["field"], field, "{query}: {body}");
    }
    assert_eq!(search_owned(&app, &format!("q={}", "x".repeat(64))).await, Vec::<String>::new());
}

async fn search_owned(app: &TestApp, query: &str) -> Vec<String> {
    let v = app.get_json(&format!("/v1/affiliates?{query}")).await;
    v["items"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn an_affiliates_or_a_buyers_orders_are_listed_newest_first_filtered_and_paged() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    for (id, buyer, code, at) in [
        ("o-1", "x", "code-C", "2026-11-01T10:00:00Z"),
        ("o-2", "y", "code-C", "2026-11-02T10:00:00Z"),
        ("o-3", "x", "code-C", "2026-11-03T10:00:00Z"),
        ("o-4", "x", "code-B", "2026-11-03T10:00:00Z"),
        ("o-5", "z", "code-C", "2026-11-03T10:00:00Z"),
    ] {
        let mut o = worked_example_order(id, buyer, code);
        o["placed_at"] = json!(at);
        app.accept(&o).await;
        app.processed(id).await;
    }
    let ids = |v: &Value| -> Vec<String> {
        v["items"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap().to_owned()).collect()
    };
    // C's orders, newest placed first (a tie by id, descending).
    let c = app.admin_get("/admin/orders?affiliate_id=C").await;
    assert_eq!(ids(&c), ["o-5", "o-3", "o-2", "o-1"]);
    let first = &c["items"][0];
    assert_eq!(
        (&first["buyer_id"], &first["affiliate_id"], &first["currency"], &first["status"], &first["commission_status"]),
        (&json!("z"), &json!("C"), &json!("IDR"), &json!("placed"), &json!("processed")),
        "{first}"
    );
    assert_eq!(first["placed_at"], "2026-11-03T10:00:00Z");
    // A buyer's, a window, a status.
    assert_eq!(ids(&app.admin_get("/admin/orders?buyer_id=x").await), ["o-4", "o-3", "o-1"]);
    let window = "affiliate_id=C&since=2026-11-02T00:00:00Z&until=2026-11-03T00:00:00Z";
    assert_eq!(ids(&app.admin_get(&format!("/admin/orders?{window}")).await), ["o-2"]);
    assert_eq!(ids(&app.admin_get("/admin/orders?affiliate_id=C&commission_status=dead").await), Vec::<String>::new());
    // Pages: the cursor crosses the tie at 2026-11-03.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = app.admin_get(&format!("/admin/orders?affiliate_id=C&limit=1&cursor={cursor}")).await;
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, ["o-5", "o-3", "o-2", "o-1"]);
    // Bad input: 422 naming the field.
    for (query, field) in [
        ("", "affiliate_id"),
        ("affiliate_id=C&buyer_id=x", "buyer_id"),
        ("affiliate_id=C&buyer_id=", "buyer_id"),
        ("affiliate_id=C&commission_status=", "commission_status"),
        ("affiliate_id=a%20b", "affiliate_id"),
        ("affiliate_id=C&commission_status=paid", "commission_status"),
        ("affiliate_id=C&since=yesterday", "since"),
        ("affiliate_id=C&cursor=abc", "cursor"),
    ] {
        let r = app.client.get(app.url(&format!("/admin/orders?{query}"))).bearer_auth(ADMIN_KEY).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["errors"][0]["field"], field, "{query}: {body}");
    }
    let r = app.client.get(app.url("/admin/orders?affiliate_id=C")).bearer_auth(STOREFRONT_KEY).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}
