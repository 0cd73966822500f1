//! Every metric komisi exports, named once, and the Prometheus recorder with
//! explicit histogram buckets (so p99 can be aggregated across instances).
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

pub const HTTP_REQUESTS_TOTAL: &str = "komisi_http_requests_total";
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "komisi_http_request_duration_seconds";
pub const EVENTS_TOTAL: &str = "komisi_events_total";
pub const EVENT_PROCESSING_DURATION_SECONDS: &str = "komisi_event_processing_duration_seconds";
pub const EVENT_LAG_SECONDS: &str = "komisi_event_lag_seconds";
pub const EVENT_BATCH_SIZE: &str = "komisi_event_batch_size";
pub const EVENT_BATCH_FALLBACKS_TOTAL: &str = "komisi_event_batch_fallbacks_total";
pub const EVENTS_PENDING: &str = "komisi_events_pending";
pub const EVENTS_DEAD: &str = "komisi_events_dead";
pub const INTAKE_REFUSED_TOTAL: &str = "komisi_intake_refused_total";
pub const RATE_LIMITED_TOTAL: &str = "komisi_http_rate_limited_total";
pub const ACTORS_ACTIVE: &str = "komisi_actors_active";
pub const ACTOR_RESTARTS_TOTAL: &str = "komisi_actor_restarts_total";
pub const WORKER_RESTARTS_TOTAL: &str = "komisi_worker_restarts_total";
pub const COMMISSION_AMOUNT_TOTAL: &str = "komisi_commission_amount_total";
pub const COMMISSION_REVERSED_AMOUNT_TOTAL: &str = "komisi_commission_reversed_amount_total";
pub const JOURNAL_ERRORS_TOTAL: &str = "komisi_journal_errors_total";
pub const EVENTS_REJOURNALED_TOTAL: &str = "komisi_events_rejournaled_total";
pub const JOURNAL_STALE_TOTAL: &str = "komisi_journal_stale_total";
pub const JOURNAL_LIVE_ENTRIES: &str = "komisi_journal_live_entries";
pub const EVENTS_PARKED: &str = "komisi_events_parked";
pub const READY: &str = "komisi_ready";
pub const POINTS_TOTAL: &str = "komisi_points_total";
pub const POINTS_HELD: &str = "komisi_points_held";
pub const CAPS_BOUND_TOTAL: &str = "komisi_caps_bound_total";
pub const BUDGET_USED_RATIO: &str = "komisi_budget_used_ratio";
pub const PARTITIONS_OWNED: &str = "komisi_partitions_owned";
pub const LEASE_RENEWALS_TOTAL: &str = "komisi_lease_renewals_total";
pub const LEASE_LOSSES_TOTAL: &str = "komisi_lease_losses_total";
pub const LEASE_TAKEOVERS_TOTAL: &str = "komisi_lease_takeovers_total";
pub const LEASE_RELEASES_TOTAL: &str = "komisi_lease_releases_total";
pub const EVENTS_FENCED_TOTAL: &str = "komisi_events_fenced_total";
pub const INSTANCE_INFO: &str = "komisi_instance_info";
pub const BUILD_INFO: &str = "komisi_build_info";
pub const WEBHOOK_MESSAGES_TOTAL: &str = "komisi_webhook_messages_total";
pub const WEBHOOK_ATTEMPTS_TOTAL: &str = "komisi_webhook_attempts_total";
pub const WEBHOOK_DELIVERY_LAG_SECONDS: &str = "komisi_webhook_delivery_lag_seconds";
pub const WEBHOOK_MESSAGES_PENDING: &str = "komisi_webhook_messages_pending";
pub const WEBHOOK_ENDPOINTS_DISABLED: &str = "komisi_webhook_endpoints_disabled";
pub const WEBHOOK_ENDPOINTS_DISABLED_TOTAL: &str = "komisi_webhook_endpoints_disabled_total";
pub const RECONCILE_VIOLATIONS: &str = "komisi_reconcile_violations";
pub const RECONCILE_LAST_SUCCESS: &str = "komisi_reconcile_last_success_timestamp_seconds";
pub const RECONCILE_RUNS_TOTAL: &str = "komisi_reconcile_runs_total";
pub const RECONCILE_DURATION_SECONDS: &str = "komisi_reconcile_duration_seconds";
pub const ORDERS_ATTRIBUTED_TOTAL: &str = "komisi_orders_attributed_total";
pub const CLICKS_TOTAL: &str = "komisi_clicks_total";
pub const ORDERS_CONVERTED_TOTAL: &str = "komisi_orders_converted_total";

/// Every metric komisi exports, with its Prometheus type. Dashboards and alert
/// rules may only use these (a test checks).
pub const ALL: &[(&str, &str)] = &[
    (HTTP_REQUESTS_TOTAL, "counter"),
    (HTTP_REQUEST_DURATION_SECONDS, "histogram"),
    (EVENTS_TOTAL, "counter"),
    (EVENT_PROCESSING_DURATION_SECONDS, "histogram"),
    (EVENT_LAG_SECONDS, "histogram"),
    (WEBHOOK_MESSAGES_TOTAL, "counter"),
    (WEBHOOK_ATTEMPTS_TOTAL, "counter"),
    (WEBHOOK_DELIVERY_LAG_SECONDS, "histogram"),
    (WEBHOOK_MESSAGES_PENDING, "gauge"),
    (WEBHOOK_ENDPOINTS_DISABLED, "gauge"),
    (WEBHOOK_ENDPOINTS_DISABLED_TOTAL, "counter"),
    (EVENT_BATCH_SIZE, "histogram"),
    (EVENT_BATCH_FALLBACKS_TOTAL, "counter"),
    (EVENTS_PENDING, "gauge"),
    (EVENTS_DEAD, "gauge"),
    (INTAKE_REFUSED_TOTAL, "counter"),
    (RATE_LIMITED_TOTAL, "counter"),
    (ACTORS_ACTIVE, "gauge"),
    (ACTOR_RESTARTS_TOTAL, "counter"),
    (WORKER_RESTARTS_TOTAL, "counter"),
    (COMMISSION_AMOUNT_TOTAL, "counter"),
    (COMMISSION_REVERSED_AMOUNT_TOTAL, "counter"),
    (JOURNAL_ERRORS_TOTAL, "counter"),
    (EVENTS_REJOURNALED_TOTAL, "counter"),
    (JOURNAL_STALE_TOTAL, "counter"),
    (JOURNAL_LIVE_ENTRIES, "gauge"),
    (EVENTS_PARKED, "gauge"),
    (READY, "gauge"),
    (POINTS_TOTAL, "counter"),
    (POINTS_HELD, "gauge"),
    (CAPS_BOUND_TOTAL, "counter"),
    (BUDGET_USED_RATIO, "gauge"),
    (PARTITIONS_OWNED, "gauge"),
    (LEASE_RENEWALS_TOTAL, "counter"),
    (LEASE_LOSSES_TOTAL, "counter"),
    (LEASE_TAKEOVERS_TOTAL, "counter"),
    (LEASE_RELEASES_TOTAL, "counter"),
    (EVENTS_FENCED_TOTAL, "counter"),
    (INSTANCE_INFO, "gauge"),
    (BUILD_INFO, "gauge"),
    (RECONCILE_VIOLATIONS, "gauge"),
    (RECONCILE_LAST_SUCCESS, "gauge"),
    (RECONCILE_RUNS_TOTAL, "counter"),
    (RECONCILE_DURATION_SECONDS, "histogram"),
    (ORDERS_ATTRIBUTED_TOTAL, "counter"),
    (CLICKS_TOTAL, "counter"),
    (ORDERS_CONVERTED_TOTAL, "counter"),
];

/// Sources of `komisi_orders_attributed_total` (`none`: unattributed).
pub const ATTRIBUTION_SOURCES: [&str; 6] =
    ["customer_link", "coupon", "click", "referral_code", "affiliate_id", "none"];

/// Movements of `komisi_points_total`.
pub const POINT_MOVEMENTS: [&str; 6] = ["earned", "reversed", "held", "released", "redeemed", "expired"];

/// Outcomes of `komisi_events_total`.
pub const OUTCOMES: [&str; 4] = ["done", "noop", "failed", "dead"];

const HTTP_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
const PROCESSING_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];
const LAG_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
const RECONCILE_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];

/// How often buffered histogram samples are folded into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The process-wide recorder. The `metrics` facade has one global recorder, so
/// several app instances in one process (tests) share it; counters then sum
/// over instances.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(HTTP_REQUEST_DURATION_SECONDS.into()), HTTP_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(EVENT_PROCESSING_DURATION_SECONDS.into()),
                        PROCESSING_BUCKETS,
                    )
                })
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(EVENT_LAG_SECONDS.into()), LAG_BUCKETS))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(WEBHOOK_DELIVERY_LAG_SECONDS.into()), LAG_BUCKETS))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(EVENT_BATCH_SIZE.into()), BATCH_BUCKETS))
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(RECONCILE_DURATION_SECONDS.into()), RECONCILE_BUCKETS)
                })
                .expect("bucket lists are non-empty constants")
                .build_recorder();
            let handle = recorder.handle();
            // Histogram samples wait in buffers until they are folded into
            // the buckets: a scrape does that, and so must this, or a komisi
            // nobody scrapes (the embedded default) grows by every sample
            // (~80 bytes a request, found by the soak: docs/RELIABILITY.md).
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new().name("komisi-metrics-upkeep".into()).spawn(move || loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            });
            // Another recorder may already be installed (e.g. by an embedding
            // program); then ours only renders what it sees, which is nothing.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            register_zeroes();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(HTTP_REQUESTS_TOTAL, "HTTP requests by method, route template and status");
    describe_histogram!(HTTP_REQUEST_DURATION_SECONDS, Unit::Seconds, "HTTP request latency");
    describe_counter!(EVENTS_TOTAL, "Events processed by type and outcome (done, noop, failed, dead)");
    describe_histogram!(EVENT_PROCESSING_DURATION_SECONDS, Unit::Seconds, "One event's transaction");
    describe_histogram!(EVENT_LAG_SECONDS, Unit::Seconds, "Order commit to event applied");
    describe_histogram!(EVENT_BATCH_SIZE, "Events applied by one shared transaction");
    describe_counter!(EVENT_BATCH_FALLBACKS_TOTAL, "Batches rolled back and applied event by event");
    describe_gauge!(EVENTS_PENDING, "Events not yet applied (pending, processing, failed)");
    describe_gauge!(EVENTS_DEAD, "Events that exhausted their attempts");
    describe_counter!(INTAKE_REFUSED_TOTAL, "Orders refused by backpressure (reason: backlog), 503 and not stored");
    describe_counter!(
        RATE_LIMITED_TOTAL,
        "Requests refused with 429 (reason: key = a key over its rate, auth = an address over its failed attempts)"
    );
    describe_gauge!(ACTORS_ACTIVE, "Commission actors alive");
    describe_counter!(ACTOR_RESTARTS_TOTAL, "Commission actors restarted after a panic");
    describe_counter!(WORKER_RESTARTS_TOTAL, "Batch workers (intake, event application) restarted after a panic");
    describe_counter!(COMMISSION_AMOUNT_TOTAL, "Commission written, by kind, in program currency units");
    describe_counter!(COMMISSION_REVERSED_AMOUNT_TOTAL, "Commission reversed, by kind, in program currency units");
    describe_counter!(JOURNAL_ERRORS_TOTAL, "Failed journal operations");
    describe_counter!(EVENTS_REJOURNALED_TOTAL, "Events journaled again by recovery");
    describe_counter!(
        JOURNAL_STALE_TOTAL,
        "Journal entries of events already done or dead, acknowledged without a transaction"
    );
    describe_gauge!(JOURNAL_LIVE_ENTRIES, "Events with a live journal entry (at most one each)");
    describe_gauge!(EVENTS_PARKED, "Entries read beyond their partition's share, waiting at its actor");
    describe_gauge!(READY, "1 when the last recovery sweep reached MySQL and Redis, else 0");
    describe_counter!(
        POINTS_TOTAL,
        "Buyer points moved, by movement: earned, reversed (refunds, cancels), held, released (released or \
         expired holds), redeemed (captured holds), expired"
    );
    describe_gauge!(
        PARTITIONS_OWNED,
        "Journal partitions this instance owns (holds the lease and the fencing token of)"
    );
    describe_counter!(LEASE_RENEWALS_TOTAL, "Partition leases renewed");
    describe_counter!(LEASE_LOSSES_TOTAL, "Partition leases found taken or expired at renewal");
    describe_counter!(
        LEASE_TAKEOVERS_TOTAL,
        "Partitions acquired (from: other = its fencing token was last held by another instance, whose lease \
         expired or was released; free = never owned before, or last owned by this instance)"
    );
    describe_counter!(LEASE_RELEASES_TOTAL, "Partition leases given up (rebalancing, shutdown)");
    describe_counter!(EVENTS_FENCED_TOTAL, "Entries left to a partition's new owner: their fencing token had moved on");
    describe_gauge!(INSTANCE_INFO, "1, labelled with this instance's id (KOMISI_INSTANCE_ID)");
    describe_gauge!(BUILD_INFO, "1, labelled with the version and the git commit this binary was built from");
    describe_gauge!(POINTS_HELD, "Points held by open redemptions, as last counted by the wallet sweep");
    describe_counter!(
        CAPS_BOUND_TOTAL,
        "Ledger and reward lines cut by a cap or budget, by bound (affiliate_day, affiliate_month, budget_month, \
         budget_total)"
    );
    describe_gauge!(
        BUDGET_USED_RATIO,
        "A program budget's use of its current window (month, total), by measure (commission, points), as a \
         ratio of its maximum; set by each event transaction that moves it (0 until then, and for a budget the \
         program does not have)"
    );
    describe_gauge!(RECONCILE_VIOLATIONS, "Violations the last finished reconcile run found (0: the ledger is exact)");
    describe_gauge!(
        RECONCILE_LAST_SUCCESS,
        "When a reconcile run of this kind (incremental, full) last finished, in Unix seconds (0: not yet)"
    );
    describe_counter!(RECONCILE_RUNS_TOTAL, "Reconcile runs ended, by kind and outcome (done, failed)");
    describe_histogram!(RECONCILE_DURATION_SECONDS, Unit::Seconds, "One reconcile run, by kind");
    describe_counter!(WEBHOOK_MESSAGES_TOTAL, "Webhook messages written (one per subscribed endpoint), by type");
    describe_counter!(
        WEBHOOK_ATTEMPTS_TOTAL,
        "Webhook delivery attempts, by outcome (delivered, retry, failed = the last attempt failed, gone = 410)"
    );
    describe_histogram!(WEBHOOK_DELIVERY_LAG_SECONDS, Unit::Seconds, "Change committed to its message delivered");
    describe_gauge!(WEBHOOK_MESSAGES_PENDING, "Webhook messages waiting for an attempt, as last counted");
    describe_gauge!(
        WEBHOOK_ENDPOINTS_DISABLED,
        "Webhook endpoints disabled (by an operator, 410, or failing too long)"
    );
    describe_counter!(
        WEBHOOK_ENDPOINTS_DISABLED_TOTAL,
        "Webhook endpoints disabled by delivery (410, failing too long)"
    );
}

/// Creates every series whose labels are known in advance at zero, so alerts
/// and rates see a series from the start instead of an absent one.
fn register_zeroes() {
    for kind in crate::domain::event::EventType::ALL {
        for outcome in OUTCOMES {
            metrics::counter!(EVENTS_TOTAL, "type" => kind.as_str(), "outcome" => outcome).absolute(0);
        }
    }
    for kind in ["commission", "tier_bonus", "milestone_bonus"] {
        metrics::counter!(COMMISSION_AMOUNT_TOTAL, "kind" => kind).absolute(0);
        metrics::counter!(COMMISSION_REVERSED_AMOUNT_TOTAL, "kind" => kind).absolute(0);
    }
    for op in ["publish", "read", "ack", "ensure"] {
        metrics::counter!(JOURNAL_ERRORS_TOTAL, "op" => op).absolute(0);
    }
    metrics::counter!(ACTOR_RESTARTS_TOTAL).absolute(0);
    for worker in ["intake", "apply"] {
        metrics::counter!(WORKER_RESTARTS_TOTAL, "worker" => worker).absolute(0);
    }
    metrics::counter!(EVENTS_REJOURNALED_TOTAL).absolute(0);
    for c in [LEASE_RENEWALS_TOTAL, LEASE_LOSSES_TOTAL, LEASE_RELEASES_TOTAL, EVENTS_FENCED_TOTAL] {
        metrics::counter!(c).absolute(0);
    }
    for from in ["free", "other"] {
        metrics::counter!(LEASE_TAKEOVERS_TOTAL, "from" => from).absolute(0);
    }
    metrics::gauge!(PARTITIONS_OWNED).set(0.0);
    for kind in crate::domain::webhook::MessageType::ALL {
        metrics::counter!(WEBHOOK_MESSAGES_TOTAL, "type" => kind.as_str()).absolute(0);
    }
    for outcome in ["delivered", "retry", "failed", "gone"] {
        metrics::counter!(WEBHOOK_ATTEMPTS_TOTAL, "outcome" => outcome).absolute(0);
    }
    metrics::counter!(WEBHOOK_ENDPOINTS_DISABLED_TOTAL).absolute(0);
    for source in ATTRIBUTION_SOURCES {
        metrics::counter!(ORDERS_ATTRIBUTED_TOTAL, "source" => source).absolute(0);
    }
    metrics::counter!(CLICKS_TOTAL).absolute(0);
    for source in ["order", "table"] {
        metrics::counter!(ORDERS_CONVERTED_TOTAL, "source" => source).absolute(0);
    }
    for bound in ["affiliate_day", "affiliate_month", "budget_month", "budget_total"] {
        metrics::counter!(CAPS_BOUND_TOTAL, "bound" => bound).absolute(0);
    }
    for period in ["month", "total"] {
        for measure in ["commission", "points"] {
            metrics::gauge!(BUDGET_USED_RATIO, "period" => period, "measure" => measure).set(0.0);
        }
    }
    metrics::gauge!(WEBHOOK_MESSAGES_PENDING).set(0.0);
    metrics::gauge!(WEBHOOK_ENDPOINTS_DISABLED).set(0.0);
    // Registered, so the series is there (count 0) before the first delivery.
    let _ = metrics::histogram!(WEBHOOK_DELIVERY_LAG_SECONDS);
    for movement in POINT_MOVEMENTS {
        metrics::counter!(POINTS_TOTAL, "movement" => movement).absolute(0);
    }
    metrics::counter!(INTAKE_REFUSED_TOTAL, "reason" => "backlog").absolute(0);
    for reason in ["key", "auth"] {
        metrics::counter!(RATE_LIMITED_TOTAL, "reason" => reason).absolute(0);
    }
    metrics::counter!(JOURNAL_STALE_TOTAL).absolute(0);
    metrics::gauge!(JOURNAL_LIVE_ENTRIES).set(0.0);
    metrics::gauge!(EVENTS_PARKED).set(0.0);
    metrics::counter!(EVENT_BATCH_FALLBACKS_TOTAL).absolute(0);
    metrics::gauge!(ACTORS_ACTIVE).set(0.0);
    metrics::gauge!(EVENTS_PENDING).set(0.0);
    metrics::gauge!(EVENTS_DEAD).set(0.0);
    metrics::gauge!(RECONCILE_VIOLATIONS).set(0.0);
    for kind in ["incremental", "full"] {
        metrics::gauge!(RECONCILE_LAST_SUCCESS, "kind" => kind).set(0.0);
        for outcome in ["done", "failed"] {
            metrics::counter!(RECONCILE_RUNS_TOTAL, "kind" => kind, "outcome" => outcome).absolute(0);
        }
    }
}
