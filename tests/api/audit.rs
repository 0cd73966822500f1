//! The audit trail (docs/API.md "Audit trail"): every write through the API
//! is recorded, in its own transaction, with the key's name, the request id
//! and what changed; `GET /admin/audit` filters and pages it.
use crate::helpers::*;
use komisi::engine::faults::Faults;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeSet;

const ANNA_KEY: &str = "anna-secret-key";

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    key: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut r = app.client.request(method, app.url(path)).bearer_auth(key);
    if let Some(body) = body {
        r = r.json(&body);
    }
    let r = r.send().await.expect("request");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn trail(app: &TestApp, query: &str) -> Vec<Value> {
    app.admin_get(&format!("/admin/audit?limit=500{query}")).await["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn every_write_through_the_api_is_audited_with_its_key_name_request_id_and_change() {
    let app = spawn_app_with(
        |c| c.admin_keys = vec![ADMIN_KEY.into(), format!("support.anna:{ANNA_KEY}")],
        Faults::default(),
    )
    .await;
    use reqwest::Method as M;
    let ok = |(status, body): (StatusCode, Value), what: &str| {
        assert!(status.is_success(), "{what}: {status} {body}");
        body
    };
    abc_tree(&app).await;
    // An endpoint first, so the order's money changes leave messages to resend, recover and prune.
    let endpoint = ok(
        send(
            &app,
            M::POST,
            ADMIN_KEY,
            "/admin/webhooks",
            Some(json!({"url": "http://127.0.0.1:9/hook", "event_types": ["*"]})),
        )
        .await,
        "webhook",
    );
    let ep = endpoint["id"].as_str().unwrap().to_owned();
    app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    app.processed("o-1").await;
    assert_eq!(
        trail(&app, "").await.iter().map(|e| e["action"].as_str().unwrap().to_owned()).collect::<Vec<_>>(),
        ["webhook.create"],
        "orders and registrations are not operator writes"
    );
    // A recompute that writes a difference (the ledger was changed behind komisi's back); a dry run records nothing.
    let entry = app.db.one("SELECT id FROM ledger_entries WHERE order_id = 'o-1' AND affiliate_id = 'C'", &[]).await;
    app.db.add_money("ledger_entries", "amount", &entry, d("1")).await;
    ok(send(&app, M::POST, ADMIN_KEY, "/admin/orders/o-1/recompute", Some(json!({"dry_run": true}))).await, "dry run");
    let recomputed = ok(
        send(&app, M::POST, ADMIN_KEY, "/admin/orders/o-1/recompute", Some(json!({"dry_run": false}))).await,
        "recompute",
    );
    assert!(recomputed["event_id"].is_string(), "{recomputed}");
    app.processed("o-1").await;

    // The program, with a request id of the caller's.
    let mut program = default_program();
    program["levels"] = json!(["0.12", "0.03", "0.01"]);
    let r = app
        .client
        .put(app.url("/admin/program"))
        .bearer_auth(ADMIN_KEY)
        .header("X-Request-Id", "change-42")
        .json(&program)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A refused write records nothing.
    program["levels"] = json!([]);
    assert_eq!(app.admin_put("/admin/program", &program).await.status(), StatusCode::UNPROCESSABLE_ENTITY);

    ok(
        send(
            &app,
            M::PUT,
            ADMIN_KEY,
            "/admin/fx-rates",
            Some(json!({"base": "IDR", "rates": {"USD": "16000"}, "as_of": "2026-01-01T00:00:00Z"})),
        )
        .await,
        "fx",
    );
    ok(
        send(
            &app,
            M::PUT,
            ANNA_KEY,
            "/admin/affiliates/C/caps",
            Some(json!({"caps": [{"period": "day", "max_commission": "12345"}]})),
        )
        .await,
        "caps",
    );
    ok(send(&app, M::PATCH, STOREFRONT_KEY, "/v1/affiliates/B", Some(json!({"status": "suspended"}))).await, "patch");
    ok(
        send(&app, M::POST, STOREFRONT_KEY, "/v1/affiliates/A/coupons", Some(json!({"code": "SUMMER"}))).await,
        "coupon",
    );
    let (status, _) = send(&app, M::DELETE, STOREFRONT_KEY, "/v1/affiliates/A/coupons/SUMMER", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    ok(
        send(
            &app,
            M::PUT,
            ADMIN_KEY,
            "/admin/buyers/x/affiliate",
            Some(json!({"affiliate_id": "A", "reason": "ticket 7"})),
        )
        .await,
        "link",
    );
    ok(
        send(
            &app,
            M::POST,
            ADMIN_KEY,
            "/admin/orders/o-1/attribution",
            Some(json!({"affiliate_id": "A", "reason": "late"})),
        )
        .await,
        "move",
    );
    let placed = app.admin_get("/admin/events?order_id=o-1&type=order.placed").await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(send(&app, M::POST, ADMIN_KEY, &format!("/admin/events/{placed}/replay"), None).await, "replay");
    ok(
        send(
            &app,
            M::POST,
            ADMIN_KEY,
            "/admin/affiliates/A/adjustments",
            Some(json!({"adjustment_id": "a-1", "amount": "1000", "reason": "promo"})),
        )
        .await,
        "adjust",
    );
    ok(
        send(
            &app,
            M::POST,
            ADMIN_KEY,
            "/admin/buyers/x/points-adjustments",
            Some(json!({"adjustment_id": "p-1", "points": 10, "reason": "promo"})),
        )
        .await,
        "points",
    );
    let payout = ok(send(&app, M::POST, ADMIN_KEY, "/admin/payouts", Some(json!({"min_amount": "1"}))).await, "payout");
    let payout_id = payout["id"].as_u64().unwrap();
    ok(send(&app, M::POST, ADMIN_KEY, &format!("/admin/payouts/{payout_id}/complete"), None).await, "complete");
    ok(send(&app, M::POST, ADMIN_KEY, "/admin/reconcile", Some(json!({"wait": true}))).await, "reconcile");
    ok(
        send(&app, M::PATCH, ADMIN_KEY, &format!("/admin/webhooks/{ep}"), Some(json!({"description": "books"}))).await,
        "patch webhook",
    );
    let rotated =
        ok(send(&app, M::POST, ADMIN_KEY, &format!("/admin/webhooks/{ep}/rotate-secret"), None).await, "rotate");
    // Nothing to recover or prune: a write that changes nothing records nothing.
    // (A window before the test began: by now the order's message may have
    // failed its attempts, and would be recovered.)
    let nothing = trail(&app, "").await.len();
    ok(
        send(
            &app,
            M::POST,
            ADMIN_KEY,
            &format!("/admin/webhooks/{ep}/recover"),
            Some(json!({"since": "2020-01-01T00:00:00Z", "until": "2020-01-02T00:00:00Z"})),
        )
        .await,
        "recover",
    );
    ok(
        send(
            &app,
            M::POST,
            ADMIN_KEY,
            "/admin/webhook-messages/prune",
            Some(json!({"before": "2020-01-01T00:00:00Z"})),
        )
        .await,
        "prune",
    );
    assert_eq!(trail(&app, "").await.len(), nothing, "a recover or a prune of nothing records nothing");
    // One message sent again; the endpoint's messages failed, recovered, failed and old, pruned.
    let messages = app.admin_get(&format!("/admin/webhook-messages?endpoint={ep}")).await;
    let message = messages["items"][0]["id"].as_str().expect("a message of the order").to_owned();
    ok(send(&app, M::POST, ADMIN_KEY, &format!("/admin/webhook-messages/{message}/resend"), None).await, "resend");
    app.db.exec("UPDATE webhook_messages SET status = 'failed' WHERE endpoint_id = ?", &[&ep]).await;
    let since = json!({"since": "2000-01-01T00:00:00Z"});
    ok(send(&app, M::POST, ADMIN_KEY, &format!("/admin/webhooks/{ep}/recover"), Some(since)).await, "recover");
    app.db.exec("UPDATE webhook_messages SET status = 'failed' WHERE endpoint_id = ?", &[&ep]).await;
    let old = "2020-06-01T00:00:00Z".parse().unwrap();
    app.db.set_time_where("webhook_messages", "created_at", "endpoint_id", &ep, old).await;
    let pruned = ok(
        send(
            &app,
            M::POST,
            ADMIN_KEY,
            "/admin/webhook-messages/prune",
            Some(json!({"before": "2021-01-01T00:00:00Z"})),
        )
        .await,
        "prune",
    );
    let (status, _) = send(&app, M::DELETE, ADMIN_KEY, &format!("/admin/webhooks/{ep}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // A simulation held before its first page, so its cancel finds it open.
    app.faults.hold_simulations(Some(0));
    let mut candidate = default_program();
    candidate["levels"] = json!(["0.20"]);
    let sim = ok(
        send(
            &app,
            M::POST,
            ADMIN_KEY,
            "/admin/simulations",
            Some(json!({"program": candidate, "since": "2026-01-01T00:00:00Z", "until": "2026-02-01T00:00:00Z"})),
        )
        .await,
        "simulate",
    );
    let sim_id = sim["id"].as_u64().unwrap();
    ok(send(&app, M::DELETE, ADMIN_KEY, &format!("/admin/simulations/{sim_id}"), None).await, "cancel");
    app.faults.hold_simulations(None);

    let all = trail(&app, "").await;
    let actions: BTreeSet<&str> = all.iter().map(|e| e["action"].as_str().unwrap()).collect();
    let expected: BTreeSet<&str> = [
        "program.replace",
        "fx_rates.replace",
        "affiliate.caps",
        "affiliate.update",
        "coupon.add",
        "coupon.delete",
        "buyer.link",
        "order.reattribute",
        "event.replay",
        "adjustment.commission",
        "adjustment.points",
        "payout.create",
        "payout.complete",
        "reconcile.start",
        "webhook.create",
        "webhook.update",
        "webhook.rotate_secret",
        "webhook.delete",
        "webhook.resend",
        "webhook.recover",
        "webhook.prune",
        "simulation.submit",
        "simulation.cancel",
        "order.recompute",
    ]
    .into_iter()
    .collect();
    let every: BTreeSet<&str> = komisi::domain::audit::Action::ALL.iter().map(|a| a.as_str()).collect();
    assert_eq!(expected, every, "the test writes every audited action");
    assert_eq!(actions, expected);
    let one = |action: &str| -> Value {
        let of: Vec<&Value> = all.iter().filter(|e| e["action"] == action).collect();
        assert_eq!(of.len(), 1, "{action}: {of:?}");
        of[0].clone()
    };
    // Who, which request, what changed.
    let p = one("program.replace");
    assert_eq!(
        (&p["actor"], &p["request_id"], &p["subject"]),
        (&json!("admin-1"), &json!("change-42"), &json!("program"))
    );
    assert_eq!((&p["before"], &p["after"]), (&json!({"version": 1}), &json!({"version": 2})));
    let caps = one("affiliate.caps");
    assert_eq!(caps["actor"], "support.anna");
    assert_eq!(caps["before"]["caps"], Value::Null);
    assert_eq!(caps["after"]["caps"][0]["max_commission"], "12345", "{caps}");
    let patch = one("affiliate.update");
    assert_eq!((&patch["actor"], &patch["subject"]), (&json!("storefront-1"), &json!("affiliate:B")));
    assert_eq!((&patch["before"], &patch["after"]), (&json!({"status": "active"}), &json!({"status": "suspended"})));
    let moved = one("order.reattribute");
    assert_eq!((&moved["before"]["affiliate_id"], &moved["after"]["affiliate_id"]), (&json!("C"), &json!("A")));
    assert!(moved["after"]["event_id"].is_string(), "{moved}");
    assert_eq!(one("event.replay")["before"][&placed], "done");
    assert_eq!(one("payout.create")["after"]["payout_id"], payout_id);
    assert_eq!(
        (&one("payout.complete")["before"]["status"], &one("payout.complete")["after"]["status"]),
        (&json!("open"), &json!("completed"))
    );
    assert_eq!(one("buyer.link")["after"], json!({"affiliate_id": "A", "reason": "ticket 7"}));
    assert_eq!(one("webhook.update")["after"], json!({"description": "books"}));
    let rotate = one("webhook.rotate_secret").to_string();
    let secret = rotated["secret"].as_str().unwrap();
    assert!(
        !rotate.contains(secret) && !one("webhook.create").to_string().contains(endpoint["secret"].as_str().unwrap()),
        "no secret in the trail"
    );
    assert_eq!(one("webhook.prune")["after"]["deleted"], pruned["deleted"], "{pruned}");
    assert!(one("webhook.recover")["after"]["requeued"].as_u64().unwrap() >= 1);
    assert_eq!(one("webhook.resend")["subject"], format!("webhook_message:{message}"));
    assert_eq!(one("order.recompute")["after"]["event_id"], recomputed["event_id"]);
    assert_eq!(one("simulation.cancel")["subject"], format!("simulation:{sim_id}"));
    for e in &all {
        assert!(e["request_id"].is_string(), "every entry carries its request id: {e}");
    }

    // Filters and pages.
    let anna = trail(&app, "&actor=support.anna").await;
    assert_eq!(anna.len(), 1);
    assert!(trail(&app, "&actor=SUPPORT.ANNA").await.is_empty(), "names are case-sensitive");
    let first = app.admin_get("/admin/audit?limit=2").await;
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = app.admin_get(&format!("/admin/audit?limit=2&cursor={cursor}")).await;
    assert_eq!(first["items"][1]["id"].as_u64().unwrap() - 1, second["items"][0]["id"].as_u64().unwrap());
    assert_eq!(all.len(), trail(&app, "&since=2000-01-01T00:00:00Z").await.len());
    assert!(trail(&app, "&since=2999-01-01T00:00:00Z").await.is_empty());
    for bad in ["action=nope", "actor=a%20b", "since=yesterday", "cursor=x", "limit=0"] {
        let (status, body) = send(&app, M::GET, ADMIN_KEY, &format!("/admin/audit?{bad}"), None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }
    let (status, _) = send(&app, M::GET, STOREFRONT_KEY, "/admin/audit", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
