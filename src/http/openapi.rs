//! The OpenAPI document as served: what utoipa derives from the handlers,
//! plus what the derives cannot say — the input formats every handler
//! enforces (ids, money, rates, bounds) and the error statuses every route
//! shares (auth, rate limits, bodies, 500). Each constraint is exactly the
//! parser's rule, so a request the schema calls valid passes the format
//! checks and one it calls invalid is refused (schemathesis checks both).
use serde_json::{json, Value};

/// An id given by the storefront: 1–64 of `A–Z a–z 0–9 _ . : -`.
pub const ID_PATTERN: &str = "^[A-Za-z0-9_.:-]{1,64}$";
/// An amount: digits (at most 12 significant), optionally `.` and 1–4 decimals.
pub const MONEY_PATTERN: &str = r"^0*[0-9]{1,12}(\.[0-9]{1,4})?$";
/// A rate from 0 to 1 with at most 6 decimals.
pub const RATE_PATTERN: &str = r"^0*(0(\.[0-9]{1,6})?|1(\.0{1,6})?)$";

fn id() -> Value {
    json!({"pattern": ID_PATTERN})
}
fn money() -> Value {
    json!({"format": "decimal", "pattern": MONEY_PATTERN, "example": "75000"})
}
fn rate() -> Value {
    json!({"format": "decimal", "pattern": RATE_PATTERN, "example": "0.10"})
}
fn fx_rate() -> Value {
    json!({"format": "decimal", "pattern": r"^[0-9]{1,12}(\.[0-9]{1,12})?$", "example": "15650.25"})
}
/// Every decimal the API answers (amounts, balances, totals, deltas, rates):
/// a string, exact, never a JSON number, never an exponent.
pub const DECIMAL_PATTERN: &str = r"^-?[0-9]+(\.[0-9]+)?$";

/// Gives every `format: decimal` string without a pattern of its own (the
/// answers; the inputs carry their parsers' tighter ones) the decimal pattern.
fn decimal_patterns(v: &mut Value) {
    match v {
        Value::Object(o) => {
            if o.get("format").and_then(Value::as_str) == Some("decimal") && !o.contains_key("pattern") {
                o.insert("pattern".into(), json!(DECIMAL_PATTERN));
            }
            o.values_mut().for_each(decimal_patterns);
        }
        Value::Array(a) => a.iter_mut().for_each(decimal_patterns),
        _ => {}
    }
}
/// A whole schema (not merged into a derived one): says its type too.
fn string(mut schema: Value) -> Value {
    schema["type"] = json!("string");
    schema
}
fn time() -> Value {
    json!({"format": "date-time"})
}

/// (JSON pointer under the document, keys merged into the object there).
fn constraints() -> Vec<(String, Value)> {
    let s = |schema: &str, path: &str| format!("/components/schemas/{schema}/properties/{path}");
    let mut c = vec![
        (s("OrderBody", "id"), id()),
        (s("OrderBody", "buyer_id"), id()),
        (s("OrderBody", "referral_code"), id()),
        (s("OrderBody", "affiliate_id"), id()),
        (s("OrderBody", "currency"), json!({"pattern": "^[A-Z]{3}$"})),
        (s("OrderBody", "placed_at"), time()),
        (s("OrderBody", "items"), json!({"minItems": 1, "maxItems": super::orders::MAX_ITEMS})),
        (s("ItemBody", "sku"), id()),
        (s("ItemBody", "category"), id()),
        (s("ItemBody", "quantity"), json!({"minimum": 1, "maximum": super::orders::MAX_QUANTITY})),
        (s("ItemBody", "unit_price"), money()),
        (s("RefundBody", "refund_id"), id()),
        (s("RefundBody", "items"), json!({"minItems": 1, "maxItems": super::orders::MAX_ITEMS})),
        (s("RefundItemBody", "sku"), id()),
        (s("RefundItemBody", "quantity"), json!({"minimum": 1, "maximum": super::orders::MAX_QUANTITY})),
        (s("CreateBody", "id"), id()),
        (s("CreateBody", "referral_code"), id()),
        (s("CreateBody", "parent_id"), id()),
        (s("CreateBody", "buyer_id"), id()),
        // 1–200 characters once leading and trailing spaces are trimmed.
        (s("CreateBody", "name"), json!({"pattern": r"^\s*\S([\s\S]{0,198}\S)?\s*$"})),
        (s("PatchBody", "name"), json!({"pattern": r"^\s*\S([\s\S]{0,198}\S)?\s*$"})),
        (s("PatchBody", "parent_id"), id()),
        (s("PayoutBody", "min_amount"), money()),
        // The two answers of POST /admin/payouts, told apart by `status`.
        (s("Payout", "status"), json!({"enum": ["open", "completed"]})),
        (s("NothingToPay", "status"), json!({"enum": ["nothing_to_pay"]})),
        (s("BulkReplay", "status"), json!({"enum": ["failed", "dead"]})),
        // Nullable: the enum lists null too, or a null would be "invalid".
        (
            s("BulkReplay", "type"),
            json!({"enum": event_types().into_iter().map(Value::from).chain([Value::Null]).collect::<Vec<_>>()}),
        ),
        (s("BulkReplay", "order_id"), id()),
        (s("BulkReplay", "since"), time()),
        (s("BulkReplay", "until"), time()),
        (s("ProgramDoc", "currency"), json!({"pattern": "^[A-Z]{3}$"})),
        (s("ProgramDoc", "scale"), json!({"maximum": 4})),
        (s("ProgramDoc", "levels"), json!({"minItems": 1, "maxItems": 10, "items": string(rate())})),
        (s("ProgramDoc", "min_order_amount"), money()),
        (s("ProgramDoc", "max_commission_per_order"), money()),
        (s("ProgramDoc", "excluded_categories"), json!({"items": id()})),
        (s("ProgramDoc", "category_rates"), json!({"additionalProperties": string(rate()), "propertyNames": id()})),
        (s("TierDoc", "monthly_sales_from"), money()),
        (s("TierDoc", "bonus_rate"), rate()),
        (s("MilestoneDoc", "bonus"), money()),
        (s("UplineQualificationDoc", "min_personal_month_sales"), money()),
        (s("SimulationBody", "since"), time()),
        (s("SimulationBody", "until"), time()),
        // "applied" or a version (an integer from 1); its `type` replaces the derived one.
        (
            s("SimulationBody", "compare_to"),
            json!({"type": ["string", "integer", "null"], "pattern": "^applied$", "minimum": 1}),
        ),
        (s("CapDoc", "period"), json!({"enum": ["day", "month"]})),
        (s("CapDoc", "max_commission"), money()),
        (s("BudgetDoc", "period"), json!({"enum": ["month", "total"]})),
        (s("BudgetDoc", "max_commission"), money()),
        (s("BudgetDoc", "max_points"), json!({"pattern": "^0*([1-9][0-9]{0,11}|1000000000000)$"})),
        (s("MilestoneDoc", "nth_order_in_month"), json!({"minimum": 1})),
        (s("BuyerRewardsDoc", "points_rate"), rate()),
        (s("BuyerRewardsDoc", "first_order_bonus"), json!({"pattern": "^0*([0-9]{1,9}|1000000000)$"})),
        (s("BuyerRewardsDoc", "points_value"), money()),
        (s("BuyerRewardsDoc", "points_expire_days"), json!({"maximum": 3650})),
        (s("BuyerRewardsDoc", "redemption_hold_minutes"), json!({"minimum": 1, "maximum": 10080})),
        (s("QuoteBody", "id"), id()),
        (s("QuoteBody", "buyer_id"), id()),
        (s("QuoteBody", "referral_code"), id()),
        (s("QuoteBody", "affiliate_id"), id()),
        (s("QuoteBody", "currency"), json!({"pattern": "^[A-Z]{3}$"})),
        (s("QuoteBody", "placed_at"), time()),
        (s("QuoteBody", "fx_rate"), fx_rate()),
        (s("OrderBody", "fx_rate"), fx_rate()),
        (s("RatesBody", "base"), json!({"pattern": "^[A-Z]{3}$"})),
        (
            s("RatesBody", "rates"),
            json!({"minProperties": 1, "maxProperties": crate::domain::currency::MAX_TABLE_RATES,
                "additionalProperties": {"type": "string", "pattern": r"^[0-9]{1,12}(\.[0-9]{1,12})?$"},
                "propertyNames": {"pattern": "^[A-Z]{3}$"}}),
        ),
        (s("RatesBody", "as_of"), time()),
        (s("QuoteBody", "items"), json!({"minItems": 1, "maxItems": super::orders::MAX_ITEMS})),
        (s("HoldBody", "redemption_id"), id()),
        (s("HoldBody", "order_id"), id()),
        (s("HoldBody", "points"), json!({"minimum": 1, "maximum": crate::domain::wallet::MAX_REDEMPTION_POINTS})),
        (s("CaptureBody", "order_id"), id()),
    ];
    let patterns = json!({"minItems": 1, "maxItems": crate::domain::webhook::MAX_PATTERNS,
        "items": {"enum": webhook_patterns()}});
    let url = json!({"minLength": 1, "maxLength": crate::domain::webhook::MAX_URL});
    let description = json!({"maxLength": super::webhooks::MAX_DESCRIPTION});
    for body in ["WebhookEndpointBody", "WebhookPatchBody"] {
        c.push((s(body, "url"), url.clone()));
        c.push((s(body, "event_types"), patterns.clone()));
        c.push((s(body, "description"), description.clone()));
    }
    // Attribution.
    let click_id = json!({"pattern": format!("^[A-Za-z0-9_.-]{{1,{}}}$", crate::domain::attribution::MAX_CLICK_ID)});
    let hash = json!({"pattern": "^[0-9A-Fa-f]{64}$"});
    for body in ["OrderBody", "QuoteBody"] {
        c.push((s(body, "coupon_codes"), json!({"maxItems": crate::domain::order::MAX_COUPONS, "items": id()})));
        c.push((s(body, "click_id"), click_id.clone()));
        c.push((s(body, "click_ids"), json!({"maxItems": crate::domain::order::MAX_CLICKS, "items": click_id})));
        c.push((s(body, "buyer_email_hash"), hash.clone()));
    }
    c.push((s("CreateBody", "email_hash"), hash));
    c.push((s("CouponBody", "code"), id()));
    c.push((s("ClickBody", "referral_code"), id()));
    c.push((
        s("ClickBody", "link"),
        json!({"maxLength": 2048, "pattern": r"^https?://[^\s\x00-\x1f\x7f-\x9f?#]+\?([^\s\x00-\x1f\x7f-\x9f#]*&)?ref=[A-Za-z0-9_.:-]{1,64}(&[^\s\x00-\x1f\x7f-\x9f#]*)?$"}),
    ));
    c.push((s("ClickBody", "visitor_id"), json!({"pattern": r"^[^\x00-\x1f\x7f-\x9f]{1,128}$"})));
    c.push((
        s("ClickBody", "landing_url"),
        json!({"maxLength": 2048, "pattern": r"^https?://[^\s\x00-\x1f\x7f-\x9f]+$"}),
    ));
    c.push((
        "/components/schemas/ClickBody".to_owned(),
        json!({"oneOf": [
            {"required": ["referral_code"], "properties": {"referral_code": {"type": "string"}}},
            {"required": ["link"], "properties": {"link": {"type": "string"}}}
        ]}),
    ));
    // 1–500 characters once leading and trailing spaces are trimmed.
    // `\s` of a pattern leaves out U+0085, which the server trims too.
    let reason = json!({"pattern": r"^\s*[^\s\u0085]([\s\S]{0,498}[^\s\u0085])?\s*$"});
    c.push((s("SetAffiliateBody", "reason"), reason.clone()));
    c.push((s("SetAffiliateBody", "affiliate_id"), id()));
    c.push((s("ReattributeBody", "reason"), reason.clone()));
    c.push((s("ReattributeBody", "affiliate_id"), id()));
    // Adjustments: signed amounts and points (zero and a scale finer than
    // the program's are refused with 422, like an overdraw).
    for body in ["CommissionAdjustmentBody", "PointsAdjustmentBody"] {
        c.push((s(body, "adjustment_id"), id()));
        c.push((s(body, "reason"), reason.clone()));
    }
    c.push((
        s("CommissionAdjustmentBody", "amount"),
        json!({"format": "decimal", "pattern": r"^-?0*[0-9]{1,12}(\.[0-9]{1,4})?$"}),
    ));
    let max = crate::domain::adjustment::MAX_POINTS;
    c.push((s("PointsAdjustmentBody", "points"), json!({"minimum": -max, "maximum": max})));
    c.push((s("RecoverBody", "since"), time()));
    c.push((s("RecoverBody", "until"), time()));
    c.push((s("PruneMessagesBody", "before"), time()));
    c.push((s("PruneMessagesBody", "endpoint"), json!({"pattern": super::webhooks::ENDPOINT_ID_PATTERN})));
    for schema in ["AffiliateId", "BuyerId", "OrderId", "ReferralCode", "RedemptionId"] {
        c.push((format!("/components/schemas/{schema}"), id()));
    }
    c
}

/// What an endpoint may subscribe to: every type, every family, `*`.
fn webhook_patterns() -> Vec<String> {
    use crate::domain::webhook::MessageType;
    let mut p: Vec<String> = MessageType::ALL.iter().map(|t| t.as_str().to_owned()).collect();
    for t in MessageType::ALL {
        let family = format!("{}.*", t.as_str().split('.').next().unwrap_or_default());
        if !p.contains(&family) {
            p.push(family);
        }
    }
    p.push("*".into());
    p
}

fn event_types() -> Vec<&'static str> {
    crate::domain::event::EventType::ALL.iter().map(|t| t.as_str()).collect()
}

fn problem(description: &str) -> Value {
    json!({"description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}})
}

/// Adds `response` under `status` unless the route documents it already.
fn add(op: &mut Value, status: &str, description: &str) {
    if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
        responses.entry(status).or_insert_with(|| problem(description));
    }
}

/// The parameters of one operation, by name.
fn param<'a>(op: &'a mut Value, name: &str) -> Option<&'a mut Value> {
    op.get_mut("parameters")?.as_array_mut()?.iter_mut().find(|p| p["name"] == name)
}

fn shared_responses(path: &str, op: &mut Value) {
    let security = op["security"].to_string();
    if security.contains("storefront") || security.contains("admin") {
        add(op, "401", "No valid key");
        add(op, "429", "Over the key's rate, or this address failed authentication too often (Retry-After)");
    }
    if security.contains("admin") {
        add(op, "403", "Not an admin key");
    }
    if op.get("requestBody").is_some() {
        add(op, "400", "The body is not valid JSON");
        add(op, "413", "The body is above 1 MiB");
        add(op, "415", "The body is not sent as application/json");
        add(op, "422", "A field is missing, of the wrong type, unknown, or out of its limits");
    }
    if op.get("parameters").is_some_and(|p| p.to_string().contains("\"query\"")) {
        add(op, "400", "The query string cannot be decoded (e.g. a repeated parameter)");
        add(op, "422", "A query parameter is out of its limits");
    }
    if path.contains('{') {
        add(op, "404", "No such resource (an id that is not valid is never found)");
    }
    add(op, "500", "An internal failure; nothing was changed by this request");
}

/// The headers every answer carries, and those of a refusal to wait.
fn response_headers(op: &mut Value) {
    let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else { return };
    for (status, response) in responses.iter_mut() {
        let mut headers = json!({"X-Request-Id": {"$ref": "#/components/headers/RequestId"}});
        if status == "429" || status == "503" {
            headers["Retry-After"] = json!({"$ref": "#/components/headers/RetryAfter"});
        }
        if status == "401" {
            headers["WWW-Authenticate"] = json!({"$ref": "#/components/headers/WwwAuthenticate"});
        }
        if let Some(r) = response.as_object_mut() {
            merge(r.entry("headers").or_insert_with(|| json!({})), headers);
        }
    }
}

fn parameters(path: &str, op: &mut Value) {
    let merge_schema = |p: &mut Value, with: Value| {
        if let Some(schema) = p.get_mut("schema") {
            merge(schema, with)
        }
    };
    let webhooks = path.starts_with("/admin/webhooks");
    let messages = path.starts_with("/admin/webhook-messages");
    if let Some(p) = param(op, "id").filter(|_| path.contains("{id}")) {
        if webhooks {
            merge_schema(p, json!({"pattern": super::webhooks::ENDPOINT_ID_PATTERN}));
        } else if messages {
            merge_schema(p, json!({"pattern": super::webhooks::MESSAGE_ID_PATTERN}));
        } else if !path.starts_with("/admin/payouts/") && !path.starts_with("/admin/events/") {
            merge_schema(p, id());
        }
    }
    if let Some(p) = param(op, "endpoint") {
        merge_schema(p, json!({"pattern": super::webhooks::ENDPOINT_ID_PATTERN}));
    }
    if let Some(p) = param(op, "rid") {
        merge_schema(p, id());
    }
    if let Some(p) = param(op, "limit") {
        let max = if path == "/admin/reports/top-affiliates" { super::reports::MAX_TOP } else { 500 };
        p["schema"] = json!({"type": "integer", "minimum": 1, "maximum": max});
    }
    if let Some(p) = param(op, "status") {
        if path == "/v1/affiliates" {
            merge_schema(p, json!({"enum": ["active", "suspended"]}));
        } else if messages {
            merge_schema(p, json!({"enum": ["pending", "delivered", "failed"]}));
        } else {
            merge_schema(p, json!({"enum": ["pending", "processing", "done", "failed", "dead"]}));
        }
    }
    if let Some(p) = param(op, "type") {
        if messages {
            let types: Vec<&str> = crate::domain::webhook::MessageType::ALL.iter().map(|t| t.as_str()).collect();
            merge_schema(p, json!({"enum": types}));
        } else {
            merge_schema(p, json!({"enum": event_types()}));
        }
    }
    if let Some(p) = param(op, "q") {
        // At most MAX_QUERY characters, none a control character.
        merge_schema(p, json!({"maxLength": super::affiliates::MAX_QUERY, "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]*$"}));
    }
    for name in ["parent_id", "affiliate_id", "buyer_id"] {
        if let Some(p) = param(op, name) {
            merge_schema(p, id());
        }
    }
    if let Some(p) = param(op, "action") {
        let actions: Vec<&str> = crate::domain::audit::Action::ALL.iter().map(|a| a.as_str()).collect();
        merge_schema(p, json!({"enum": actions}));
    }
    if let Some(p) = param(op, "actor") {
        merge_schema(p, json!({"pattern": "^[A-Za-z0-9_.-]{1,64}$"}));
    }
    if let Some(p) = param(op, "commission_status") {
        merge_schema(p, json!({"enum": ["pending", "processed", "failed", "dead"]}));
    }
    if let Some(p) = param(op, "order_id") {
        merge_schema(p, id());
    }
    let reports = path.starts_with("/admin/reports/");
    for name in ["since", "until", "at"] {
        if let Some(p) = param(op, name) {
            if reports {
                merge_schema(p, json!({"format": "date", "pattern": super::reports::date_pattern()}));
            } else {
                merge_schema(p, time());
            }
        }
    }
    if let Some(p) = param(op, "tz") {
        merge_schema(p, json!({"pattern": "^[A-Za-z0-9_+/-]{1,64}$"}));
    }
    if let Some(p) = param(op, "order").filter(|_| path == "/v1/affiliates/{id}/commissions") {
        merge_schema(p, json!({"enum": ["oldest", "newest"]}));
    }
    if let Some(p) = param(op, "by") {
        merge_schema(p, json!({"enum": ["commission", "sales", "orders"]}));
    }
    if let Some(p) = param(op, "cursor") {
        let written = if path.starts_with("/admin/events") {
            "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
        } else if path == "/admin/orders" {
            // `<placed_at in µs>:<order id>`.
            "-?[0-9]{1,19}:[A-Za-z0-9_.:-]{1,64}"
        } else if path.ends_with("/children") || path == "/v1/affiliates" {
            // The last child's id.
            "[A-Za-z0-9_.:-]{1,64}"
        } else {
            "[0-9]{1,19}"
        };
        merge_schema(
            p,
            json!({"pattern": format!("^$|^{written}$"), "description": "next_cursor of the previous page"}),
        );
    }
    if let Some(p) = param(op, "Idempotency-Key") {
        p["schema"] = json!({"type": "string", "pattern": "^[!-~]{1,128}$"});
    }
}

fn merge(target: &mut Value, with: Value) {
    if let (Some(t), Value::Object(w)) = (target.as_object_mut(), with) {
        t.extend(w);
    }
}

/// Each operation's `operationId`: unique and descriptive, so generated
/// clients name (and type) every call apart — the handlers' own names
/// repeat across modules (`read`, `create`).
const OPERATION_IDS: &[(&str, &str, &str)] = &[
    ("post", "/v1/affiliates", "createAffiliate"),
    ("get", "/v1/affiliates", "listAffiliates"),
    ("get", "/v1/affiliates/{id}", "getAffiliate"),
    ("patch", "/v1/affiliates/{id}", "updateAffiliate"),
    ("get", "/v1/affiliates/{id}/commissions", "listAffiliateCommissions"),
    ("get", "/v1/affiliates/{id}/children", "listAffiliateChildren"),
    ("get", "/v1/affiliates/{id}/attribution", "getAffiliateAttribution"),
    ("post", "/v1/affiliates/{id}/coupons", "addCoupon"),
    ("get", "/v1/affiliates/{id}/coupons", "listCoupons"),
    ("delete", "/v1/affiliates/{id}/coupons/{code}", "deleteCoupon"),
    ("post", "/v1/clicks", "recordClick"),
    ("post", "/v1/orders", "createOrder"),
    ("get", "/v1/orders/{id}", "getOrder"),
    ("get", "/v1/orders/{id}/explanation", "explainOrder"),
    ("post", "/v1/orders/{id}/refunds", "refundOrder"),
    ("post", "/v1/orders/{id}/cancel", "cancelOrder"),
    ("post", "/v1/orders/{id}/complete", "completeOrder"),
    ("post", "/v1/quotes", "quoteOrder"),
    ("get", "/v1/buyers/{id}", "getBuyer"),
    ("get", "/v1/buyers/{id}/rewards", "getBuyerRewards"),
    ("post", "/v1/buyers/{id}/redemptions", "holdPoints"),
    ("post", "/v1/buyers/{id}/redemptions/{rid}/capture", "captureRedemption"),
    ("post", "/v1/buyers/{id}/redemptions/{rid}/release", "releaseRedemption"),
    ("get", "/admin/events", "listEvents"),
    ("get", "/admin/audit", "listAuditEntries"),
    ("get", "/admin/reports/daily", "getDailyReport"),
    ("get", "/admin/reports/top-affiliates", "getTopAffiliates"),
    ("post", "/admin/affiliates/{id}/adjustments", "adjustCommission"),
    ("post", "/admin/buyers/{id}/points-adjustments", "adjustPoints"),
    ("get", "/admin/events/counts", "countEvents"),
    ("get", "/admin/events/{id}", "getEvent"),
    ("get", "/admin/events/{id}/bundle", "getEventBundle"),
    ("post", "/admin/events/{id}/replay", "replayEvent"),
    ("post", "/admin/events/replay", "replayEvents"),
    ("post", "/admin/orders/{id}/recompute", "recomputeOrder"),
    ("get", "/admin/orders", "listOrders"),
    ("post", "/admin/orders/{id}/attribution", "reattributeOrder"),
    ("put", "/admin/buyers/{id}/affiliate", "setBuyerAffiliate"),
    ("get", "/admin/program", "getProgram"),
    ("put", "/admin/program", "putProgram"),
    ("get", "/admin/program/versions", "listProgramVersions"),
    ("get", "/admin/program/versions/{version}", "getProgramVersion"),
    ("get", "/admin/fx-rates", "getRateTable"),
    ("put", "/admin/fx-rates", "putRateTable"),
    ("get", "/admin/budgets", "getBudgets"),
    ("get", "/admin/affiliates/{id}/caps", "getAffiliateCaps"),
    ("put", "/admin/affiliates/{id}/caps", "putAffiliateCaps"),
    ("post", "/admin/payouts", "createPayout"),
    ("get", "/admin/payouts", "listPayouts"),
    ("get", "/admin/payouts/{id}", "getPayout"),
    ("post", "/admin/payouts/{id}/complete", "completePayout"),
    ("get", "/admin/payouts/{id}/items.csv", "exportPayoutItems"),
    ("get", "/v1/affiliates/{id}/payouts", "listAffiliatePayouts"),
    ("get", "/admin/reconcile", "getReconcile"),
    ("post", "/admin/reconcile", "startReconcile"),
    ("post", "/admin/webhooks", "createWebhookEndpoint"),
    ("get", "/admin/webhooks", "listWebhookEndpoints"),
    ("get", "/admin/webhooks/{id}", "getWebhookEndpoint"),
    ("patch", "/admin/webhooks/{id}", "updateWebhookEndpoint"),
    ("delete", "/admin/webhooks/{id}", "deleteWebhookEndpoint"),
    ("post", "/admin/webhooks/{id}/rotate-secret", "rotateWebhookSecret"),
    ("post", "/admin/webhooks/{id}/recover", "recoverWebhookMessages"),
    ("get", "/admin/webhook-messages", "listWebhookMessages"),
    ("get", "/admin/webhook-messages/{id}", "getWebhookMessage"),
    ("post", "/admin/webhook-messages/{id}/resend", "resendWebhookMessage"),
    ("post", "/admin/webhook-messages/prune", "pruneWebhookMessages"),
    ("post", "/admin/simulations", "createSimulation"),
    ("get", "/admin/simulations/{id}", "getSimulation"),
    ("delete", "/admin/simulations/{id}", "cancelSimulation"),
    ("get", "/admin/simulations/{id}/affiliates.csv", "getSimulationAffiliates"),
    ("get", "/healthz", "getHealth"),
    ("get", "/readyz", "getReadiness"),
    ("get", "/metrics", "getMetrics"),
    ("get", "/openapi.json", "getOpenApi"),
];

/// The document served at `/openapi.json`.
pub fn document(derived: &utoipa::openapi::OpenApi) -> Value {
    let mut doc = serde_json::to_value(derived).expect("the OpenAPI document serialises");
    for (pointer, with) in constraints() {
        let target = doc.pointer_mut(&pointer).unwrap_or_else(|| panic!("OpenAPI: no {pointer}"));
        merge(target, with);
    }
    decimal_patterns(&mut doc["components"]);
    doc["components"]["headers"] = json!({
        "RequestId": {
            "description": "The request's id: the caller's own `X-Request-Id` when it is 1-64 visible ASCII \
                characters, else a new UUID. Every log line of the request and every error body \
                (`request_id`) carry it.",
            "required": true,
            "schema": {"type": "string", "minLength": 1, "maxLength": 64}
        },
        "RetryAfter": {
            "description": "Whole seconds to wait before trying again (at least 1).",
            "required": true,
            "schema": {"type": "integer", "minimum": 1}
        },
        "WwwAuthenticate": {
            "description": "The scheme the API wants: `Bearer realm=\"komisi\"`.",
            "required": true,
            "schema": {"type": "string"}
        }
    });
    // Relative to where the document is served from.
    doc["servers"] = json!([{"url": "/", "description": "this komisi (the document's own origin)"}]);
    // GET answers the program with its `version`; PUT accepts and ignores it.
    merge(
        &mut doc["components"]["schemas"]["ProgramDoc"]["properties"],
        json!({
            "version": {"type": "integer", "minimum": 1, "description": "As GET answers it; ignored by PUT"},
            "created_at": {"type": "string", "format": "date-time",
                "description": "When the version was stored, as GET /admin/program/versions/{version} answers it; ignored by PUT"}
        }),
    );
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, ops) in paths.iter_mut() {
            for (method, op) in ops.as_object_mut().into_iter().flat_map(|o| o.iter_mut()) {
                let id = OPERATION_IDS.iter().find(|(m, p, _)| m == method && p == path).map(|(_, _, id)| *id);
                op["operationId"] = json!(id.unwrap_or_else(|| panic!("OpenAPI: no operationId for {method} {path}")));
                parameters(path, op);
                if path.starts_with("/v1/") || path.starts_with("/admin/") {
                    shared_responses(path, op);
                }
                response_headers(op);
                // No key: said explicitly (the ops routes).
                if op.get("security").is_none() {
                    op["security"] = json!([]);
                }
            }
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_has_its_own_descriptive_id() {
        let doc = document(super::super::openapi());
        let mut seen = std::collections::BTreeSet::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap().to_owned();
                assert!(
                    id.chars().next().unwrap().is_ascii_lowercase() && id.chars().all(|c| c.is_ascii_alphanumeric()),
                    "{id}"
                );
                assert!(seen.insert(id.clone()), "{method} {path}: operationId {id} is used twice");
            }
        }
        assert_eq!(seen.len(), OPERATION_IDS.len(), "every listed id names an operation");
    }

    /// What a generated client relies on: one schema per id, money as
    /// decimal strings (never a JSON number), the headers of every answer.
    #[test]
    fn ids_money_and_headers_are_described_one_way() {
        let doc = document(super::super::openapi());
        let mut event_ids = 0;
        let mut decimals = 0;
        fn walk(v: &Value, path: &str, f: &mut dyn FnMut(&str, &Value)) {
            f(path, v);
            match v {
                Value::Object(o) => o.iter().for_each(|(k, x)| walk(x, &format!("{path}/{k}"), f)),
                Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| walk(x, &format!("{path}/{i}"), f)),
                _ => {}
            }
        }
        walk(&doc, "", &mut |path, v| {
            if path.ends_with("/properties/event_id") {
                event_ids += 1;
                assert!(v.to_string().contains("#/components/schemas/EventId"), "{path}: {v}");
            }
            if v.get("format").and_then(Value::as_str) == Some("decimal") {
                decimals += 1;
                assert!(v["type"].to_string().contains("string"), "{path}: {v}");
                assert!(v.get("pattern").is_some(), "{path}: a decimal without a pattern");
            }
            assert!(!matches!(v.get("type"), Some(t) if t == "number"), "{path}: a JSON number ({v})");
        });
        assert!(event_ids >= 9, "{event_ids}");
        assert!(decimals >= 50, "{decimals}");
        for prop in ["LedgerEntry/properties/amount", "BalancesView/properties/pending", "OrderView/properties/total"] {
            let v = doc.pointer(&format!("/components/schemas/{prop}")).unwrap();
            assert_eq!((&v["format"], &v["pattern"]), (&json!("decimal"), &json!(DECIMAL_PATTERN)), "{prop}");
        }
        let pattern = regex::Regex::new(DECIMAL_PATTERN).unwrap();
        for ok in ["0", "95000", "-21500", "1250.50", "-0.0001"] {
            assert!(pattern.is_match(ok), "{ok}");
        }
        for bad in ["", "1e5", "1.", ".5", "+1", "1,5", "NaN"] {
            assert!(!pattern.is_match(bad), "{bad}");
        }
        assert_eq!(doc["servers"][0]["url"], "/");
        // Two types of one name would share one component (the last wins):
        // a recompute's lines carry points, an explanation's steps.
        let line = |schema: &str, prop: &str| {
            let r =
                doc["components"]["schemas"][schema]["properties"][prop]["items"]["$ref"].as_str().unwrap().to_owned();
            doc.pointer(&r.replacen('#', "", 1)).unwrap().clone()
        };
        assert!(line("Recompute", "entitled")["properties"].get("points").is_some());
        assert!(line("ExplanationView", "commissions")["properties"].get("steps").is_some());
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                assert!(op["security"].is_array(), "{method} {path}: security stated");
                for (status, r) in op["responses"].as_object().unwrap() {
                    let h = &r["headers"];
                    assert!(h.get("X-Request-Id").is_some(), "{method} {path} {status}: X-Request-Id");
                    assert_eq!(
                        h.get("Retry-After").is_some(),
                        status == "429" || status == "503",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_constraint_lands_on_a_schema_that_exists() {
        let doc = document(super::super::openapi());
        for (pointer, _) in constraints() {
            assert!(doc.pointer(&pointer).is_some(), "{pointer}");
        }
        let order = &doc["paths"]["/v1/orders"]["post"]["responses"];
        for status in ["202", "400", "401", "413", "415", "422", "429", "500", "503"] {
            assert!(order.get(status).is_some(), "POST /v1/orders documents {status}");
        }
        assert!(doc["paths"]["/admin/reconcile"]["get"]["responses"].get("403").is_some());
        assert!(doc["paths"]["/v1/buyers/{id}/rewards"]["get"]["responses"].get("404").is_some());
        assert!(doc["paths"]["/healthz"]["get"]["responses"].get("401").is_none());
        // Nothing is added where a route has none (a `null` is not a list).
        assert!(doc["paths"]["/admin/events/replay"]["post"].get("parameters").is_none());
    }

    /// Each pattern accepts exactly what its parser accepts, on the edges
    /// it was written for and on every short string over their alphabet.
    #[test]
    fn the_format_patterns_say_what_the_parsers_accept() {
        use crate::domain::money::{parse_amount, parse_rate};
        let money = regex::Regex::new(MONEY_PATTERN).unwrap();
        let rate = regex::Regex::new(RATE_PATTERN).unwrap();
        let bonus = regex::Regex::new("^0*([0-9]{1,9}|1000000000)$").unwrap();
        let mut cases: Vec<String> = ["999999999999.9999", "1000000000000", "0000000000001.5", "1.23456", "1e5"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        cases.extend(
            ["1.000000", "1.000001", "0.1234567", "00.5", "1000000000", "1000000001", "0001000000000"]
                .map(String::from),
        );
        // Every string of up to 4 characters over "0", "1", "5", ".", "-".
        let mut frontier = vec![String::new()];
        for _ in 0..4 {
            frontier = frontier.iter().flat_map(|s| ['0', '1', '5', '.', '-'].map(|c| format!("{s}{c}"))).collect();
            cases.extend(frontier.iter().cloned());
        }
        for s in &cases {
            assert_eq!(money.is_match(s), parse_amount(s).is_ok(), "money {s:?}");
            assert_eq!(rate.is_match(s), parse_rate(s).is_ok(), "rate {s:?}");
            let whole = s.bytes().all(|b| b.is_ascii_digit())
                && !s.is_empty()
                && s.parse::<u64>().is_ok_and(|n| n <= 1_000_000_000);
            assert_eq!(bonus.is_match(s), whole, "first_order_bonus {s:?}");
        }
        let id = regex::Regex::new(ID_PATTERN).unwrap();
        for s in ["a", "A-z_0.9:", &"x".repeat(64)] {
            assert!(id.is_match(s) && crate::domain::ids::OrderId::parse(s).is_ok(), "{s}");
        }
        for s in ["", " a", "a/b", "ä", &"x".repeat(65)] {
            assert!(!id.is_match(s) && crate::domain::ids::OrderId::parse(s).is_err(), "{s}");
        }
    }
}
