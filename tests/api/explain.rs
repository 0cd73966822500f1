//! `GET /v1/orders/{id}/explanation` (docs/API.md): each line of an order
//! with the rules that produced it, computed by the entitlement itself.
use crate::helpers::*;
use crate::lifecycle::refund;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn steps(line: &Value) -> Vec<(String, String)> {
    line["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["rule"].as_str().unwrap().to_owned(), s["text"].as_str().unwrap().to_owned()))
        .collect()
}

fn line<'a>(x: &'a Value, affiliate: &str, kind: &str) -> &'a Value {
    x["commissions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["affiliate_id"] == affiliate && l["kind"] == kind)
        .unwrap_or_else(|| panic!("no {affiliate} {kind} line: {x}"))
}

fn pair(rule: &str, text: &str) -> (String, String) {
    (rule.to_owned(), text.to_owned())
}

#[tokio::test]
async fn the_worked_example_is_explained_line_by_line_and_after_a_refund_each_entry_shows() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    app.processed("o-1").await;
    let x = app.get_json("/v1/orders/o-1/explanation").await;
    assert_eq!(
        (&x["eligible_amount"], &x["currency"], &x["program_version"]),
        (&json!("2150000"), &json!("IDR"), &json!(1))
    );
    assert_eq!(
        x["items"][2],
        json!({"sku": "voucher", "category": "gift-card", "quantity": 1, "refunded": 0,
        "amount": "100000", "excluded": true, "level1_rate": null, "rate_from": null})
    );
    assert_eq!(x["items"][1]["rate_from"], "category_rates");
    let c = line(&x, "C", "commission");
    assert_eq!(
        steps(c),
        [
            pair("1", "eligible amount 2150000: the items' net amounts, without voucher (excluded category)"),
            pair("3", "shirt (fashion): 150000 × 10 % (levels[0]) = 15000"),
            pair("3", "phone (electronics): 2000000 × 4 % (its category's rate) = 80000"),
            pair("3", "commission 95000"),
        ]
    );
    assert_eq!((&c["amount"], &c["paid"]), (&json!("95000"), &json!("95000")));
    assert_eq!(c["summary"], "C is paid 95000 commission as the direct affiliate on an eligible 2150000");
    assert_eq!(steps(line(&x, "B", "commission"))[1], pair("7", "B is the ancestor at level 2: 2150000 × 3 % = 64500"));
    assert_eq!(steps(line(&x, "A", "commission"))[1], pair("7", "A is the ancestor at level 3: 2150000 × 1 % = 21500"));
    let points = &x["rewards"][0];
    assert_eq!(points["steps"][1]["text"], "2150000 × points_rate 0.01 = 21500, floored to 21500");
    assert_eq!((&points["points"], &points["paid"]), (&json!(21500), &json!(21500)));
    assert_eq!(x["rewards"][1]["summary"], "5000 points for the buyer's first order");

    // The phone refunded: C's line is the shirts' 15 000, written by two entries.
    let (status, _) = refund(&app, "o-1", "r-1", json!([{"sku": "phone", "quantity": 1}])).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    app.processed("o-1").await;
    let x = app.get_json("/v1/orders/o-1/explanation").await;
    let c = line(&x, "C", "commission");
    assert_eq!((&c["amount"], &c["paid"]), (&json!("15000"), &json!("15000")));
    let written: Vec<&str> = c["entries"].as_array().unwrap().iter().map(|e| e["amount"].as_str().unwrap()).collect();
    assert_eq!(written, ["95000", "-80000"]);
    assert_eq!(steps(c)[2], pair("3", "phone (electronics): 0 × 4 % (its category's rate) = 0"));

    // Unknown: 404; not processed yet: 409.
    let r = app.get("/v1/orders/nope/explanation").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    app.faults.fail_order_mid_tx("o-2", 1000);
    app.accept(&simple_order("o-2", "y", Some("code-C"), "100000")).await;
    let r = app.get("/v1/orders/o-2/explanation").await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn a_line_a_cap_cut_says_so_and_a_skipped_ancestor_says_why() {
    let app = spawn_app().await;
    app.set_program(|p| {
        p["tiers"] = json!([]);
        p["milestones"] = json!([]);
        p["affiliate_caps"] = json!([{"period": "month", "max_commission": "15000"}]);
        p["upline_qualification"] = json!({"min_personal_month_sales": "1"});
    })
    .await;
    abc_tree(&app).await;
    app.accept(&simple_order("a-1", "z", Some("code-A"), "100000")).await;
    app.processed("a-1").await;
    for id in ["o-1", "o-2"] {
        app.accept(&simple_order(id, &format!("b-{id}"), Some("code-C"), "100000")).await;
        app.processed(id).await;
    }
    let x = app.get_json("/v1/orders/o-2/explanation").await;
    let c = line(&x, "C", "commission");
    assert_eq!((&c["amount"], &c["paid"]), (&json!("5000"), &json!("5000")));
    assert_eq!(
        steps(c).last().unwrap(),
        &pair("caps", "a cap or budget cut this line when it was first paid: it pays at most 5000 (10000 entitled)")
    );
    assert_eq!((&c["entries"][0]["capped_by"], &c["entries"][0]["cut"]), (&json!("affiliate_month"), &json!("5000")));
    // B sold nothing itself this month: skipped, A takes level 2.
    let a = line(&x, "A", "commission");
    assert_eq!(
        steps(a)[1..],
        [
            pair("7", "B passed over for level 2 (unqualified): the next ancestor up takes the level"),
            pair("7", "A is the ancestor at level 2: 100000 × 3 % = 3000"),
        ]
    );
}

/// Runs `komisi reproduce` on a bundle: (exit code, stdout as JSON or Null, stderr).
fn reproduce(bundle: &Value, name: &str) -> (i32, Value, String) {
    let path = std::env::temp_dir().join(format!("komisi-bundle-{}-{name}.json", uuid::Uuid::now_v7().simple()));
    std::fs::write(&path, serde_json::to_vec(bundle).unwrap()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_komisi")).arg("reproduce").arg(&path).output().unwrap();
    let _ = std::fs::remove_file(&path);
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The commission lines of a recompute's delta or a reproduction's, sorted.
fn commission_lines(lines: &Value) -> Vec<(String, String, String)> {
    let mut v: Vec<(String, String, String)> = lines
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l.get("affiliate_id").is_some())
        .map(|l| {
            let s = |k: &str| l[k].as_str().unwrap_or_default().to_owned();
            (s("affiliate_id"), s("kind"), crate::helpers::dec(&l["amount"]).normalize().to_string())
        })
        .collect();
    v.sort();
    v
}

/// Places `order`, fails its event until it is dead (one attempt), and
/// clears the fault; the event's id.
async fn dead(app: &TestApp, order: &Value) -> String {
    let id = order["id"].as_str().unwrap().to_owned();
    app.faults.fail_order_mid_tx(&id, 1000);
    let event = app.accept(order).await;
    let died = poll(std::time::Duration::from_secs(30), || async {
        app.admin_get(&format!("/admin/events/{event}")).await["status"] == "dead"
    })
    .await;
    assert!(died, "the event of {id} dies");
    app.faults.clear();
    event
}

#[tokio::test]
async fn a_dead_events_bundle_reproduces_offline_the_delta_recompute_reports_and_exit_0_after_the_replay() {
    let app = spawn_app_with(|c| c.max_attempts = 1, komisi::engine::faults::Faults::default()).await;
    abc_tree(&app).await;
    let event = dead(&app, &worked_example_order("o-dead", "x", "code-C")).await;
    let bundle = app.admin_get(&format!("/admin/events/{event}/bundle")).await;
    assert_eq!((&bundle["format"], &bundle["context_frozen"]), (&json!(1), &json!(false)), "never processed");
    assert_eq!(bundle["event"]["status"], "dead");
    assert!(bundle["event"]["attempt_history"][0][1].as_str().unwrap().contains("injected"), "{bundle}");
    // Offline: the ledger is empty, the entitlement is not — exit 1, and the
    // delta is the one a dry-run recompute would report once processed.
    let (code, out, err) = reproduce(&bundle, "dead");
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        commission_lines(&out["delta"]),
        [
            ("A".into(), "commission".into(), "21500".into()),
            ("B".into(), "commission".into(), "64500".into()),
            ("C".into(), "commission".into(), "95000".into())
        ]
    );
    assert!(out["explanation"][0]["steps"][1].as_str().unwrap().starts_with("rule 3: shirt (fashion)"), "{out}");

    // Replayed, the event applies; the new bundle reproduces with exit 0 and
    // the same (empty) delta as a dry-run recompute.
    let r = app.admin_post(&format!("/admin/events/{event}/replay"), &json!({})).await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap_or_default());
    app.processed("o-dead").await;
    let bundle = app.admin_get(&format!("/admin/events/{event}/bundle")).await;
    assert_eq!(bundle["context_frozen"], true);
    let (code, out, err) = reproduce(&bundle, "applied");
    assert_eq!(code, 0, "{err} {out}");
    let dry: Value =
        app.admin_post("/admin/orders/o-dead/recompute", &json!({"dry_run": true})).await.json().await.unwrap();
    assert_eq!(commission_lines(&out["delta"]), commission_lines(&dry["delta"]));
    assert!(commission_lines(&dry["delta"]).is_empty());

    // A bundle edited to change an applied line differs: exit 1, the delta names it.
    let mut edited = bundle.clone();
    let c = edited["applied"].as_array_mut().unwrap().iter_mut().find(|l| l["affiliate_id"] == "C").unwrap();
    c["amount"] = json!("90000");
    let (code, out, _) = reproduce(&edited, "edited");
    assert_eq!(code, 1);
    assert_eq!(commission_lines(&out["delta"]), [("C".into(), "commission".into(), "5000".into())]);
    // Another major version, or not a bundle at all: exit 2, saying why.
    let mut other = bundle.clone();
    other["format"] = json!(99);
    let (code, _, err) = reproduce(&other, "format");
    assert_eq!(code, 2);
    assert!(err.contains("bundle format 99"), "{err}");
    let (code, _, err) = reproduce(&json!({"hello": "world"}), "junk");
    assert_eq!((code, err.contains("not an event bundle")), (2, true), "{err}");
    // A never-processed order's bundle resolves its context with the order's
    // own e-mail hash: a self-referral by e-mail shows offline too.
    let hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let r = app.patch("/v1/affiliates/C", &json!({"email_hash": hash})).await;
    assert!(r.status().is_success());
    let mut own = worked_example_order("o-self", "guest-1", "code-C");
    own["buyer_email_hash"] = json!(hash);
    let event = dead(&app, &own).await;
    let bundle = app.admin_get(&format!("/admin/events/{event}/bundle")).await;
    assert_eq!((&bundle["context_frozen"], &bundle["context"]["buyer_email_hash"]), (&json!(false), &json!(hash)));
    let (code, out, err) = reproduce(&bundle, "self");
    assert_eq!(code, 1, "{err}");
    assert!(commission_lines(&out["delta"]).iter().all(|(a, _, _)| a != "C"), "C refers itself: {out}");
    // Unknown event: 404.
    let r = app
        .client
        .get(app.url(&format!("/admin/events/{}/bundle", uuid::Uuid::now_v7())))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}
