//! Outbound webhooks, end to end: a receiver written with the official
//! Standard Webhooks library (`tests/webhooks/receiver.mjs`, npm
//! `standardwebhooks`) verifies every delivery's signature.
use crate::helpers::*;
use crate::lifecycle::{lifecycle, refund};
use crate::webhook_receiver::{Delivery, Receiver, Reply};
use komisi::engine::faults::Faults;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// Registers an endpoint (201); its view with the secret.
async fn register(app: &TestApp, url: &str, types: Value) -> Value {
    let r = app.admin_post("/admin/webhooks", &json!({"url": url, "event_types": types})).await;
    assert_eq!(r.status(), StatusCode::CREATED, "register {url}");
    r.json().await.unwrap()
}

async fn patch_endpoint(app: &TestApp, id: &str, body: Value) -> Value {
    let r = app.client.patch(app.url(&format!("/admin/webhooks/{id}"))).bearer_auth(ADMIN_KEY).json(&body).send();
    let r = r.await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

/// An endpoint pointing at `receiver`'s `path`: registered first (its
/// secret is needed to start the receiver), then moved there.
async fn endpoint_with_receiver(app: &TestApp, path: &str, types: Value) -> (Value, Receiver) {
    let e = register(app, "http://127.0.0.1:9/not-yet", types).await;
    let receiver = Receiver::start(&[e["secret"].as_str().unwrap()]).await;
    let e = patch_endpoint(app, e["id"].as_str().unwrap(), json!({"url": receiver.url(path)})).await;
    (e, receiver)
}

fn bodies<'a>(log: &'a [Delivery], kind: &'a str) -> impl Iterator<Item = Value> + 'a {
    log.iter().filter(|d| d.status == 200).map(Delivery::json).filter(move |b| b["type"] == kind)
}

/// (subject, amount) of each delivered message of this type, sorted.
fn amounts(log: &[Delivery], kind: &str, subject: &str, field: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = bodies(log, kind)
        .map(|b| (b["data"][subject].as_str().unwrap().to_owned(), b["data"][field].as_str().unwrap().to_owned()))
        .collect();
    v.sort();
    v
}

fn count(log: &[Delivery], kind: &str) -> usize {
    bodies(log, kind).count()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

#[tokio::test]
async fn the_worked_example_reaches_a_receiver_that_verifies_every_signature() {
    let app = spawn_app().await;
    app.set_program(|p| p["holding_days"] = json!(0)).await;
    abc_tree(&app).await;
    let (endpoint, receiver) = endpoint_with_receiver(&app, "/hooks", json!(["*"])).await;
    let endpoint_id = endpoint["id"].as_str().unwrap();
    // The secret is shown once: not in the list nor the endpoint's own read.
    assert!(app.admin_get(&format!("/admin/webhooks/{endpoint_id}")).await.get("secret").is_none());
    assert!(app.admin_get("/admin/webhooks").await["items"][0].get("secret").is_none());

    app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    app.processed("o-1").await;
    let log = receiver.wait_for(|l| count(l, "commission.created") == 3 && count(l, "reward.earned") == 1, WAIT).await;
    assert_eq!(
        amounts(&log, "commission.created", "affiliate_id", "amount"),
        pairs(&[("A", "21500"), ("B", "64500"), ("C", "95000")])
    );
    assert_eq!(amounts(&log, "reward.earned", "buyer_id", "points"), pairs(&[("x", "26500")]));
    let c = bodies(&log, "commission.created").find(|b| b["data"]["affiliate_id"] == "C").unwrap();
    assert_eq!(
        (&c["data"]["order_id"], &c["data"]["currency"], &c["data"]["status"], &c["data"]["event_type"]),
        (&json!("o-1"), &json!("IDR"), &json!("pending"), &json!("order.placed"))
    );
    assert!(c["data"]["program_version"].as_u64().is_some() && c["data"]["sequence"].as_u64().is_some(), "{c}");

    // Both shirts come back: the matching reversals.
    refund(&app, "o-1", "r-1", json!([{"sku": "shirt", "quantity": 2}])).await;
    app.processed("o-1").await;
    let log =
        receiver.wait_for(|l| count(l, "commission.reversed") == 3 && count(l, "reward.reversed") == 1, WAIT).await;
    assert_eq!(
        amounts(&log, "commission.reversed", "affiliate_id", "amount"),
        pairs(&[("A", "-1500"), ("B", "-4500"), ("C", "-15000")])
    );
    assert_eq!(amounts(&log, "reward.reversed", "buyer_id", "points"), pairs(&[("x", "-1500")]));

    // Completed with no holding period: approved; then paid out.
    lifecycle(&app, "o-1", "complete").await;
    app.processed("o-1").await;
    let log = receiver.wait_for(|l| count(l, "commission.approved") == 3, WAIT).await;
    assert_eq!(
        amounts(&log, "commission.approved", "affiliate_id", "amount"),
        pairs(&[("A", "20000"), ("B", "60000"), ("C", "80000")])
    );
    let batch: Value = app.admin_post("/admin/payouts", &json!({"min_amount": "50000"})).await.json().await.unwrap();
    let payout = batch["id"].as_u64().unwrap().to_string();
    app.admin_post(&format!("/admin/payouts/{payout}/complete"), &json!({})).await;
    let log = receiver.wait_for(|l| count(l, "payout.paid") == 2, WAIT).await;
    assert_eq!(amounts(&log, "payout.created", "affiliate_id", "amount"), pairs(&[("B", "60000"), ("C", "80000")]));
    assert_eq!(amounts(&log, "payout.paid", "affiliate_id", "amount"), pairs(&[("B", "60000"), ("C", "80000")]));
    // One subject's messages are numbered in commit order: created before paid.
    let seq =
        |kind: &str| -> Vec<u64> { bodies(&log, kind).map(|b| b["data"]["sequence"].as_u64().unwrap()).collect() };
    assert!(seq("payout.created").iter().max() < seq("payout.paid").iter().min(), "{log:?}");
    // C's messages: created, reversed, approved, in that order.
    let c_seq: Vec<(u64, String)> = {
        let mut v: Vec<(u64, String)> = log
            .iter()
            .map(Delivery::json)
            .filter(|b| b["data"]["affiliate_id"] == "C" && b["type"].as_str().unwrap().starts_with("commission."))
            .map(|b| (b["data"]["sequence"].as_u64().unwrap(), b["type"].as_str().unwrap().to_owned()))
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let order: Vec<&str> = c_seq.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(order, vec!["commission.created", "commission.reversed", "commission.approved"]);

    // Every delivery was verified by the library with the endpoint's secret.
    assert_eq!(log.len(), 3 + 1 + 3 + 1 + 3 + 2 + 2, "one delivery per change: {log:?}");
    for d in &log {
        assert_eq!(d.verified_by, vec![0], "{d:?}");
        assert!(d.webhook_id.starts_with("msg_"), "{d:?}");
    }
    let messages = app.admin_get(&format!("/admin/webhook-messages?endpoint={endpoint_id}&limit=500")).await;
    let items = messages["items"].as_array().unwrap();
    assert_eq!(items.len(), log.len());
    assert!(
        items.iter().all(|m| m["status"] == "delivered" && m["attempt_log"][0]["status_code"] == 200),
        "{messages}"
    );
    app.assert_reconciled().await;
}

#[tokio::test]
async fn the_library_rejects_a_tampered_body_an_old_timestamp_and_a_wrong_secret() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    let e = register(&app, "http://127.0.0.1:9/not-yet", json!(["reward.*"])).await;
    let secret = e["secret"].as_str().unwrap().to_owned();
    let receiver = Receiver::start(&[&secret]).await;
    patch_endpoint(&app, e["id"].as_str().unwrap(), json!({"url": receiver.url("/r")})).await;
    app.accept(&simple_order("o-1", "x", Some("code-A"), "100000")).await;
    let log = receiver.wait_for(|l| !l.is_empty(), WAIT).await;
    let d = &log[0];
    assert_eq!(d.verified_by, vec![0]);
    let headers = |ts: &str| {
        vec![
            ("webhook-id".to_owned(), d.webhook_id.clone()),
            ("webhook-timestamp".to_owned(), ts.to_owned()),
            ("webhook-signature".to_owned(), d.webhook_signature.clone()),
        ]
    };
    let as_refs = |h: &[(String, String)]| -> Vec<(String, String)> { h.to_vec() };
    let call = |body: String, h: Vec<(String, String)>, secret: String| {
        let receiver = &receiver;
        async move {
            let refs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            receiver.verify(&body, &refs, &secret).await
        }
    };
    // The delivery itself verifies (an attempt signed within the tolerance).
    let fresh = headers(&d.webhook_timestamp);
    call(d.body.clone(), as_refs(&fresh), secret.clone()).await.expect("the delivery verifies");
    let tampered = d.body.replace("\"points\":\"", "\"points\":\"9");
    assert_ne!(tampered, d.body);
    assert!(call(tampered, as_refs(&fresh), secret.clone()).await.is_err(), "a tampered body");
    let old = (d.webhook_timestamp.parse::<i64>().unwrap() - 600).to_string();
    let err = call(d.body.clone(), headers(&old), secret.clone()).await.unwrap_err();
    assert!(err.contains("too old") || err.contains("signature"), "{err}");
    let other = register(&app, "http://127.0.0.1:9/other", json!(["*"])).await;
    assert!(call(d.body.clone(), fresh, other["secret"].as_str().unwrap().to_owned()).await.is_err(), "wrong secret");
}

#[tokio::test]
async fn a_receiver_failing_three_times_gets_each_message_once_as_a_success_under_one_webhook_id() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    let (e, receiver) = endpoint_with_receiver(&app, "/flaky", json!(["commission.created"])).await;
    receiver.script("/flaky", &[Reply::status(500), Reply::status(500), Reply::status(500)]).await;
    // One affiliate, one message.
    app.accept(&simple_order("o-1", "x", Some("code-A"), "100000")).await;
    let log = receiver.wait_for(|l| l.iter().any(|d| d.status == 200), WAIT).await;
    assert_eq!(log.iter().map(|d| d.status).collect::<Vec<_>>(), vec![500, 500, 500, 200]);
    assert!(log.iter().all(|d| d.webhook_id == log[0].webhook_id && d.body == log[0].body && d.verified_by == [0]));
    let id = &log[0].webhook_id;
    // The receiver logs the 200 before the sender records it.
    let recorded =
        poll(WAIT, || async { app.admin_get(&format!("/admin/webhook-messages/{id}")).await["status"] == "delivered" })
            .await;
    assert!(recorded, "the success is recorded");
    let m = app.admin_get(&format!("/admin/webhook-messages/{id}")).await;
    assert_eq!((&m["status"], &m["attempts"], &m["endpoint_id"]), (&json!("delivered"), &json!(4), &e["id"]));
    let codes: Vec<&Value> = m["attempt_log"].as_array().unwrap().iter().map(|a| &a["status_code"]).collect();
    assert_eq!(codes, vec![&json!(500), &json!(500), &json!(500), &json!(200)]);
    // Nothing more comes: delivered once.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(receiver.log().await.len(), 4);

    // A resend (receivers ask for it) sends the same message again.
    let r = app.admin_post(&format!("/admin/webhook-messages/{id}/resend"), &json!({})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let log = receiver.wait_for(|l| l.len() == 5, WAIT).await;
    assert_eq!((&log[4].webhook_id, &log[4].body), (id, &log[0].body));
}

#[tokio::test]
async fn a_message_whose_attempts_all_fail_is_kept_failed_and_recovered_by_window() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    let (e, receiver) = endpoint_with_receiver(&app, "/down", json!(["commission.created"])).await;
    // The test schedule has four pauses: five attempts in all.
    receiver.script("/down", &vec![Reply::status(503); 5]).await;
    let since = chrono::Utc::now() - chrono::TimeDelta::seconds(5);
    app.accept(&simple_order("o-1", "x", Some("code-A"), "100000")).await;
    let id = e["id"].as_str().unwrap();
    let failed = poll(WAIT, || async {
        app.admin_get(&format!("/admin/webhook-messages?endpoint={id}&status=failed")).await["items"]
            .as_array()
            .is_some_and(|i| i.len() == 1)
    })
    .await;
    assert!(failed, "the message fails after its last attempt: {:?}", receiver.log().await);
    assert_eq!(receiver.log().await.len(), 5);
    let r = app
        .admin_post(&format!("/admin/webhooks/{id}/recover"), &json!({"since": since.to_rfc3339()}))
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(r, json!({"requeued": 1}));
    let log = receiver.wait_for(|l| l.iter().any(|d| d.status == 200), WAIT).await;
    assert_eq!(log.len(), 6);
    // The endpoint was failing, and a success clears that once the sender has
    // recorded it (the receiver logs the 200 before the sender reads it).
    let cleared =
        poll(WAIT, || async { app.admin_get(&format!("/admin/webhooks/{id}")).await["failing_since"].is_null() }).await;
    assert!(cleared, "a success clears failing_since: {}", app.admin_get(&format!("/admin/webhooks/{id}")).await);
}

#[tokio::test]
async fn an_endpoint_answering_410_is_disabled_and_sent_nothing_more() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    let (e, receiver) = endpoint_with_receiver(&app, "/gone", json!(["commission.created"])).await;
    receiver.script("/gone", &[Reply::status(410)]).await;
    app.accept(&simple_order("o-1", "x", Some("code-A"), "100000")).await;
    receiver.wait_for(|l| !l.is_empty(), WAIT).await;
    let id = e["id"].as_str().unwrap();
    assert!(
        poll(WAIT, || async { app.admin_get(&format!("/admin/webhooks/{id}")).await["disabled"] == true }).await,
        "410 disables the endpoint"
    );
    app.accept(&simple_order("o-2", "y", Some("code-A"), "100000")).await;
    app.processed("o-2").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.log().await.len(), 1, "a disabled endpoint is sent nothing");
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("komisi_webhook_attempts_total{outcome=\"gone\"}"), "{metrics}");
}

#[tokio::test]
async fn during_a_rotation_every_message_verifies_with_either_secret() {
    // Secrets sealed at rest: the database holds neither.
    let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let app = spawn_app_with(|c| c.webhook_secret_key = Some(key.into()), Faults::default()).await;
    abc_tree(&app).await;
    let e = register(&app, "http://127.0.0.1:9/not-yet", json!(["commission.*"])).await;
    let id = e["id"].as_str().unwrap();
    let old = e["secret"].as_str().unwrap().to_owned();
    let rotated: Value =
        app.admin_post(&format!("/admin/webhooks/{id}/rotate-secret"), &json!({})).await.json().await.unwrap();
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(old, new);
    assert!(rotated["previous_secret_expires_at"].is_string(), "{rotated}");
    let stored = app.db.rows("SELECT secret, previous_secret FROM webhook_endpoints WHERE id = ?", &[id]).await;
    let stored: Vec<String> = stored[0].iter().map(|c| c.clone().unwrap()).collect();
    assert!(stored.iter().all(|s| s.starts_with("aead:") && !s.contains(&old[6..]) && !s.contains(&new[6..])));
    let receiver = Receiver::start(&[&old, &new]).await;
    patch_endpoint(&app, id, json!({"url": receiver.url("/rot")})).await;
    app.accept(&simple_order("o-1", "x", Some("code-C"), "100000")).await;
    let log = receiver.wait_for(|l| l.len() == 3, WAIT).await;
    for d in &log {
        assert_eq!(d.verified_by, vec![0, 1], "each secret alone verifies: {d:?}");
        assert_eq!(d.webhook_signature.split(' ').count(), 2);
    }
}

#[tokio::test]
async fn a_rolled_back_transaction_leaves_no_message_and_its_retry_one_set() {
    let faults = Faults::default();
    faults.fail_db_mid_tx(1);
    let app = spawn_app_with(|_| {}, faults).await;
    abc_tree(&app).await;
    let (e, receiver) = endpoint_with_receiver(&app, "/tx", json!(["*"])).await;
    app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    app.processed("o-1").await;
    let log = receiver.wait_for(|l| l.len() >= 4, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = if log.len() == 4 { receiver.log().await } else { log };
    assert_eq!(log.len(), 4, "3 commissions and 1 reward, once: {log:?}");
    let id = e["id"].as_str().unwrap();
    let stored = app.db.int("SELECT COUNT(*) FROM webhook_messages WHERE endpoint_id = ?", &[id]).await;
    assert_eq!(stored, 4, "the rolled-back attempt's messages are not stored");
    let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &log {
        *ids.entry(d.webhook_id.as_str()).or_default() += 1;
    }
    assert!(ids.values().all(|n| *n == 1));
}

/// A name this machine resolves to a loopback or private address (from
/// /etc/hosts: the machine's own name, on Debian and in containers).
fn private_host_name() -> String {
    let hosts = std::fs::read_to_string("/etc/hosts").expect("/etc/hosts");
    hosts
        .lines()
        .filter_map(|l| {
            let mut f = l.split('#').next()?.split_whitespace();
            let ip: std::net::IpAddr = f.next()?.parse().ok()?;
            let private = match ip {
                std::net::IpAddr::V4(v4) => v4.is_loopback() || v4.is_private(),
                std::net::IpAddr::V6(v6) => v6.is_loopback(),
            };
            private.then(|| f.find(|n| !n.contains("localhost")).map(str::to_owned)).flatten()
        })
        .next()
        .expect("/etc/hosts names this machine (or another name) with a loopback or private address")
}

#[tokio::test]
async fn private_and_plain_http_urls_are_refused_unless_allowed() {
    let app = spawn_app_with(|c| c.webhook_allow_private = false, Faults::default()).await;
    for url in [
        "https://127.0.0.1/hook",
        "https://10.0.0.1/hook",
        "https://[::1]/hook",
        "http://example.com/hook",
        "https://localhost/hook",
        "https://localhost./hook",
    ] {
        let r = app.admin_post("/admin/webhooks", &json!({"url": url, "event_types": ["*"]})).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{url}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["errors"][0]["field"], "url", "{url}: {body}");
    }
    // A name that resolves to a private address is refused when it is registered.
    let private_name = private_host_name();
    let named = json!({"url": format!("https://{private_name}/"), "event_types": ["*"]});
    assert_eq!(app.admin_post("/admin/webhooks", &named).await.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(app.admin_get("/admin/webhooks").await["items"].as_array().unwrap().is_empty(), "nothing stored");
    let bad_types = json!({"url": "https://93.184.216.34/hook", "event_types": ["nope"]});
    assert_eq!(app.admin_post("/admin/webhooks", &bad_types).await.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // A name that resolves to loopback only when a message is sent (DNS
    // rebinding) is not connected to.
    abc_tree(&app).await;
    let receiver = Receiver::start(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]).await;
    let e = register(&app, "https://93.184.216.34/hook", json!(["commission.created"])).await;
    let id = e["id"].as_str().unwrap();
    let rebound = format!("https://{private_name}:{}/hook", receiver.port());
    app.db.exec("UPDATE webhook_endpoints SET url = ? WHERE id = ?", &[&rebound, id]).await;
    app.accept(&simple_order("o-1", "x", Some("code-A"), "100000")).await;
    let first_attempt = || async {
        app.admin_get(&format!("/admin/webhook-messages?endpoint={id}")).await["items"][0]["attempt_log"][0].clone()
    };
    assert!(poll(WAIT, || async { first_attempt().await.is_object() }).await, "an attempt is recorded");
    let attempt = first_attempt().await;
    assert_eq!(attempt["status_code"], Value::Null, "{attempt}");
    assert!(attempt["error"].as_str().unwrap().contains("no public address"), "{attempt}");
    assert!(receiver.log().await.is_empty(), "nothing reached the receiver");
}

#[tokio::test]
async fn endpoints_are_listed_changed_and_deleted_with_their_messages() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    let (e, receiver) = endpoint_with_receiver(&app, "/crud", json!(["commission.*"])).await;
    let id = e["id"].as_str().unwrap();
    let changed =
        patch_endpoint(&app, id, json!({"event_types": ["payout.*", "payout.paid"], "description": "books"})).await;
    assert_eq!(
        (&changed["event_types"], &changed["description"]),
        (&json!(["payout.*", "payout.paid"]), &json!("books"))
    );
    // Not subscribed to commissions any more: nothing is written for them.
    app.accept(&simple_order("o-1", "x", Some("code-A"), "100000")).await;
    app.processed("o-1").await;
    assert_eq!(app.db.int("SELECT COUNT(*) FROM webhook_messages WHERE endpoint_id = ?", &[id]).await, 0);
    let disabled = patch_endpoint(&app, id, json!({"disabled": true})).await;
    assert_eq!(
        (&disabled["disabled"], &disabled["disabled_reason"]),
        (&json!(true), &json!("disabled by an operator"))
    );
    let enabled = patch_endpoint(&app, id, json!({"disabled": false, "event_types": ["*"]})).await;
    assert_eq!(enabled["disabled_reason"], Value::Null);
    app.accept(&simple_order("o-2", "y", Some("code-A"), "100000")).await;
    receiver.wait_for(|l| l.len() == 2, WAIT).await;
    for bad in
        [json!({"url": "ftp://x"}), json!({"event_types": []}), json!({"event_types": ["x.*"]}), json!({"bogus": 1})]
    {
        let r = app.client.patch(app.url(&format!("/admin/webhooks/{id}"))).bearer_auth(ADMIN_KEY).json(&bad);
        assert!(r.send().await.unwrap().status().is_client_error(), "{bad}");
    }
    let del = app.client.delete(app.url(&format!("/admin/webhooks/{id}"))).bearer_auth(ADMIN_KEY).send().await.unwrap();
    assert_eq!(del.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.db.int("SELECT COUNT(*) FROM webhook_messages WHERE endpoint_id = ?", &[id]).await, 0);
    let gone = app.client.get(app.url(&format!("/admin/webhooks/{id}"))).bearer_auth(ADMIN_KEY).send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    for path in ["/admin/webhooks/nope", "/admin/webhook-messages/msg_nope"] {
        let r = app.client.get(app.url(path)).bearer_auth(ADMIN_KEY).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let r = app.client.get(app.url("/admin/webhook-messages?status=lost&type=nope&cursor=x")).bearer_auth(ADMIN_KEY);
    let body: Value = r.send().await.unwrap().json().await.unwrap();
    assert_eq!(body["errors"].as_array().unwrap().len(), 3, "{body}");
}

#[tokio::test]
async fn a_killed_instances_attempt_in_flight_is_sent_again_after_its_lease_under_the_same_id() {
    let mut app = spawn_app().await;
    abc_tree(&app).await;
    let (e, receiver) = endpoint_with_receiver(&app, "/slow", json!(["commission.created"])).await;
    // The first attempt hangs (the receiver answers only after the kill).
    receiver.script("/slow", &[Reply::status(200).delay_ms(1_500)]).await;
    app.accept(&simple_order("o-1", "x", Some("code-A"), "100000")).await;
    receiver.wait_for(|l| !l.is_empty(), WAIT).await;
    app.kill().await;
    app.restart(Faults::default()).await;
    // The new instance takes the message once the dead one's lease (8 rounds
    // of the 2 s timeout + 5 s) has passed, and sends it again: same id, same body.
    let log = receiver.wait_for(|l| l.len() == 2, Duration::from_secs(45)).await;
    assert_eq!((&log[1].webhook_id, &log[1].body), (&log[0].webhook_id, &log[0].body));
    assert_eq!(log[1].verified_by, vec![0]);
    let m = app.admin_get(&format!("/admin/webhook-messages/{}", log[0].webhook_id)).await;
    assert!(
        poll(WAIT, || async {
            app.admin_get(&format!("/admin/webhook-messages/{}", log[0].webhook_id)).await["status"] == "delivered"
        })
        .await
    );
    assert_eq!(m["endpoint_id"], e["id"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.log().await.len(), 2, "delivered once after the takeover");
}

#[tokio::test]
async fn two_instances_send_each_message_once() {
    if !needs_mysql_backend("two_instances_send_each_message_once", "several instances share MySQL") {
        return;
    }
    let app = spawn_app().await;
    abc_tree(&app).await;
    let (_, receiver) = endpoint_with_receiver(&app, "/two", json!(["*"])).await;
    let (second, _, _) = start_instance(app.config.clone(), Arc::new(Faults::default())).await;
    for i in 0..30 {
        app.accept(&simple_order(&format!("o-{i}"), &format!("b-{i}"), Some("code-C"), "100000")).await;
    }
    // 3 commissions and 1 reward an order.
    let log = receiver.wait_for(|l| l.len() >= 120, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let log = if log.len() == 120 { receiver.log().await } else { log };
    let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &log {
        *ids.entry(d.webhook_id.as_str()).or_default() += 1;
    }
    assert_eq!((log.len(), ids.len()), (120, 120), "each message sent once by one instance");
    drop(second);
}

#[tokio::test]
async fn a_panicking_deliverer_is_restarted_and_the_messages_still_go_out() {
    let faults = Faults::default();
    faults.panic_in_webhooks(3);
    let app = spawn_app_with(|_| {}, faults).await;
    abc_tree(&app).await;
    let (_, receiver) = endpoint_with_receiver(&app, "/panic", json!(["commission.created"])).await;
    app.accept(&simple_order("o-1", "x", Some("code-A"), "100000")).await;
    let log = receiver.wait_for(|l| !l.is_empty(), WAIT).await;
    assert_eq!(log.len(), 1);
    assert!(log[0].verified_by == [0]);
    assert_eq!(app.faults.webhook_panics_left(), 0, "it panicked three times, and was restarted each time");
}

#[tokio::test]
async fn a_slow_endpoint_does_not_hold_up_another() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    let (_, slow) = endpoint_with_receiver(&app, "/slow", json!(["commission.created"])).await;
    let (_, fast) = endpoint_with_receiver(&app, "/fast", json!(["commission.created"])).await;
    // The slow receiver takes 1.5 s over every answer (the test timeout is 2 s).
    slow.script("/slow", &vec![Reply::status(200).delay_ms(1_500); 40]).await;
    for i in 0..20 {
        app.accept(&simple_order(&format!("o-{i}"), &format!("b-{i}"), Some("code-A"), "100000")).await;
    }
    fast.wait_for(|l| l.len() == 20, WAIT).await;
    // 20 messages, 8 at a time, take the slow one three rounds of 1.5 s: the
    // fast one had every message before the slow one could have.
    let slow_so_far = slow.log().await.len();
    assert!(slow_so_far < 20, "the fast endpoint waited for the slow one ({slow_so_far} slow deliveries by then)");
    slow.wait_for(|l| l.len() == 20, WAIT).await;
}

#[tokio::test]
async fn delivered_messages_are_pruned_after_retention_and_failed_ones_only_on_request() {
    let mut app = spawn_app().await;
    abc_tree(&app).await;
    let (e, receiver) = endpoint_with_receiver(&app, "/keep", json!(["commission.created"])).await;
    let id = e["id"].as_str().unwrap().to_owned();
    receiver.script("/keep", &vec![Reply::status(500); 5]).await;
    app.accept(&simple_order("o-1", "x", Some("code-A"), "100000")).await;
    let failed = || async {
        app.admin_get(&format!("/admin/webhook-messages?endpoint={id}&status=failed")).await["items"]
            .as_array()
            .unwrap()
            .len()
    };
    assert!(poll(WAIT, || async { failed().await == 1 }).await, "the first message fails");
    app.accept(&simple_order("o-2", "y", Some("code-A"), "100000")).await;
    receiver.wait_for(|l| l.iter().any(|d| d.status == 200), WAIT).await;
    let rows = app.db.column("SELECT message_id FROM webhook_messages WHERE endpoint_id = ? ORDER BY id", &[&id]).await;
    assert_eq!(rows.len(), 2);
    // Both older than the 30 days of retention.
    let old = chrono::Utc::now() - chrono::TimeDelta::days(31);
    for m in &rows {
        app.db.set_time_where("webhook_messages", "created_at", "message_id", m, old).await;
    }
    // A new instance prunes at its first round: the delivered one only.
    app.kill().await;
    app.restart(Faults::default()).await;
    let left = || async { app.db.column("SELECT status FROM webhook_messages WHERE endpoint_id = ?", &[&id]).await };
    assert!(poll(WAIT, || async { left().await == vec!["failed".to_owned()] }).await, "{:?}", left().await);
    let before = (chrono::Utc::now() - chrono::TimeDelta::days(1)).to_rfc3339();
    let pruned: Value =
        app.admin_post("/admin/webhook-messages/prune", &json!({"before": before})).await.json().await.unwrap();
    assert_eq!(pruned, json!({"deleted": 1}));
    assert!(left().await.is_empty());
    assert_eq!(app.db.int("SELECT COUNT(*) FROM webhook_attempts", &[]).await, 0, "their attempts went with them");
}
