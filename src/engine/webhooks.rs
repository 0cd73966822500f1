//! Outbound webhooks: endpoints (the operator's use cases), the outbox every
//! money-moving transaction writes to ([`publish`], written once for all of
//! them), and delivery ([`Deliverer`]: claim due messages, sign, send,
//! record the attempt, retry on the schedule, disable an endpoint that keeps
//! failing).
use super::{Engine, Result};
use crate::domain::audit::{Action, Actor, AuditEntry};
use crate::domain::event::{EventId, EventType};
use crate::domain::ids::{AffiliateId, BuyerId, OrderId};
use crate::domain::money;
use crate::domain::payout::PayoutItem;
use crate::domain::webhook::{
    self as wh, AfterAttempt, Attempt, Endpoint, Message, MessageFilter, MessageStatus, MessageType, Notice, OutboxRow,
    RetrySchedule, SubjectKind, Verdict,
};
use crate::metrics as m;
use crate::store::{Backend, LedgerRow, NotifyTx, RewardRow};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use rust_decimal::Decimal;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How webhooks are delivered.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Endpoints may be plain `http` and name private, loopback and
    /// link-local addresses (tests, local development).
    pub allow_private: bool,
    pub retry: RetrySchedule,
    /// An attempt's answer must come within this.
    pub timeout: Duration,
    /// An endpoint whose every attempt failed for this long is disabled.
    pub disable_after: Duration,
    /// Attempts in flight per endpoint, at most.
    pub per_endpoint: usize,
    /// How often the worker looks for due messages.
    pub poll: Duration,
    /// Delivered messages are deleted this long after they were created.
    pub retention: Duration,
    /// How signing secrets are stored.
    pub sealer: Sealer,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            allow_private: false,
            retry: RetrySchedule::parse(RetrySchedule::DEFAULT).expect("the default schedule parses"),
            timeout: Duration::from_secs(15),
            disable_after: Duration::from_secs(5 * 24 * 3600),
            per_endpoint: 8,
            poll: Duration::from_millis(200),
            retention: Duration::from_secs(30 * 24 * 3600),
            sealer: Sealer::default(),
        }
    }
}

/// How long the old secret keeps signing after a rotation.
pub const ROTATION_OVERLAP: chrono::TimeDelta = chrono::TimeDelta::hours(24);

// ---- the outbox

/// Messages written in a transaction, counted once it commits.
#[must_use = "count the messages once the transaction commits"]
#[derive(Debug, Default)]
pub struct Published(BTreeMap<MessageType, u64>);

impl Published {
    /// The transaction committed: the messages exist.
    pub fn committed(self) {
        for (kind, n) in self.0 {
            metrics::counter!(m::WEBHOOK_MESSAGES_TOTAL, "type" => kind.as_str()).increment(n);
        }
    }
}

/// The outbox, written once for every transaction that moves money: reads
/// which enabled endpoints subscribe to what, and only when one does builds
/// the notices (`notices`) and writes one message per subscribed endpoint,
/// in the transaction — so a rolled-back change has no message and a
/// committed one has all of its. Call it after the change's writes: they
/// hold the row lock of each message's subject, which numbers one subject's
/// messages in commit order.
pub async fn publish(
    tx: &mut dyn NotifyTx,
    now: DateTime<Utc>,
    notices: impl FnOnce() -> Vec<Notice>,
) -> Result<Published> {
    let subscribers = tx.subscribers().await?;
    if subscribers.is_empty() {
        return Ok(Published::default());
    }
    let mut rows = Vec::new();
    let mut published = Published::default();
    for notice in notices() {
        let data = serde_json::Value::Object(notice.data.clone()).to_string();
        for s in subscribers.iter().filter(|s| wh::subscribed(&s.patterns, notice.kind)) {
            rows.push(OutboxRow {
                message_id: format!("msg_{}", uuid::Uuid::now_v7().simple()),
                endpoint_id: s.id.clone(),
                kind: notice.kind,
                subject_kind: notice.subject.0,
                subject_id: notice.subject.1.clone(),
                data: data.clone(),
            });
            *published.0.entry(notice.kind).or_default() += 1;
        }
    }
    if !rows.is_empty() {
        tx.enqueue(&rows, now).await?;
    }
    Ok(published)
}

// ---- what each change says

fn amount(d: Decimal) -> String {
    money::format(d)
}

/// An applied event as the notices need it.
pub struct AppliedEvent<'a> {
    pub id: EventId,
    pub kind: EventType,
    pub order_id: &'a OrderId,
    pub buyer_id: &'a BuyerId,
    pub program_version: u64,
    pub currency: &'a str,
}

/// The event transaction's notices: per event and beneficiary, what the
/// delta earned (`commission.created`) or took back (`commission.reversed`,
/// refunds, cancels and recomputes), the buyer's points earned or reversed,
/// and the commissions approved in the same transaction.
pub fn apply_notices(
    events: &[AppliedEvent<'_>],
    ledger: &[LedgerRow],
    rewards: &[RewardRow],
    approved: &[(OrderId, Vec<(AffiliateId, Decimal)>)],
) -> Vec<Notice> {
    let by_id: HashMap<EventId, &AppliedEvent<'_>> = events.iter().map(|e| (e.id, e)).collect();
    let mut notices = Vec::new();
    // (event, affiliate, reversal) → lines; in ledger order.
    let mut commissions: BTreeMap<(String, &str, bool), Vec<&LedgerRow>> = BTreeMap::new();
    for row in ledger.iter().filter(|r| !r.amount.is_zero()) {
        commissions
            .entry((row.event_id.to_string(), row.affiliate_id.as_str(), row.amount.is_sign_negative()))
            .or_default()
            .push(row);
    }
    for ((_, affiliate, reversal), lines) in commissions {
        let Some(ev) = by_id.get(&lines[0].event_id) else { continue };
        let total: Decimal = lines.iter().map(|l| l.amount).sum();
        let kind = if reversal { MessageType::CommissionReversed } else { MessageType::CommissionCreated };
        notices.push(Notice::new(
            kind,
            SubjectKind::Affiliate,
            affiliate,
            json!({
                "affiliate_id": affiliate,
                "order_id": ev.order_id,
                "buyer_id": ev.buyer_id,
                "event_id": ev.id.to_string(),
                "event_type": ev.kind.as_str(),
                "amount": amount(total),
                "currency": ev.currency,
                "status": lines[0].status.as_str(),
                "lines": lines.iter().map(|l| {
                    let mut line = json!({"level": l.level, "kind": l.kind.as_str(), "amount": amount(l.amount)});
                    if let Some(cut) = l.cut {
                        line["capped_by"] = cut.by.as_str().into();
                        line["cut"] = amount(cut.amount).into();
                    }
                    line
                }).collect::<Vec<_>>(),
                "program_version": ev.program_version,
            }),
        ));
    }
    let mut points: BTreeMap<(String, &str, bool), Vec<&RewardRow>> = BTreeMap::new();
    for row in rewards.iter().filter(|r| r.points != 0) {
        points.entry((row.event_id.to_string(), row.buyer_id.as_str(), row.points < 0)).or_default().push(row);
    }
    for ((_, buyer, reversal), lines) in points {
        let Some(ev) = by_id.get(&lines[0].event_id) else { continue };
        let total: i64 = lines.iter().map(|l| l.points).sum();
        let kind = if reversal { MessageType::RewardReversed } else { MessageType::RewardEarned };
        notices.push(Notice::new(
            kind,
            SubjectKind::Buyer,
            buyer,
            json!({
                "buyer_id": buyer,
                "order_id": ev.order_id,
                "event_id": ev.id.to_string(),
                "event_type": ev.kind.as_str(),
                "points": total.to_string(),
                "lines": lines.iter().map(|l| json!({"kind": l.kind.as_str(), "points": l.points.to_string()}))
                    .collect::<Vec<_>>(),
                "expires_at": lines.iter().filter_map(|l| l.expires_at).min(),
                "program_version": ev.program_version,
            }),
        ));
    }
    let currency_of: HashMap<&OrderId, &str> = events.iter().map(|e| (e.order_id, e.currency)).collect();
    for (order, sums) in approved {
        notices.extend(approval_notices(order, sums, currency_of.get(order).copied().unwrap_or_default()));
    }
    notices
}

/// `commission.approved`: an order's holding period is over.
pub fn approval_notices(order: &OrderId, sums: &[(AffiliateId, Decimal)], currency: &str) -> Vec<Notice> {
    sums.iter()
        .filter(|(_, a)| !a.is_zero())
        .map(|(affiliate, sum)| {
            Notice::new(
                MessageType::CommissionApproved,
                SubjectKind::Affiliate,
                affiliate.as_str(),
                json!({"affiliate_id": affiliate, "order_id": order, "amount": amount(*sum), "currency": currency,
                       "status": "approved"}),
            )
        })
        .collect()
}

/// `payout.created` / `payout.paid`: one message per affiliate of the batch.
pub fn payout_notices(kind: MessageType, payout: u64, items: &[PayoutItem], currency: &str) -> Vec<Notice> {
    let status = if kind == MessageType::PayoutPaid { "paid" } else { "created" };
    items
        .iter()
        .map(|i| {
            Notice::new(
                kind,
                SubjectKind::Payout,
                payout.to_string(),
                json!({"payout_id": payout.to_string(), "affiliate_id": i.affiliate_id, "amount": amount(i.amount),
                       "currency": currency, "status": status}),
            )
        })
        .collect()
}

/// A wallet change's notice, from the event it records (its payload names
/// the buyer, the redemption and the points).
pub fn wallet_notice(buyer: &BuyerId, kind: EventType, payload: &str) -> Option<Notice> {
    let kind = match kind {
        EventType::RedemptionHeld => MessageType::RedemptionHeld,
        EventType::RedemptionCaptured => MessageType::RedemptionCaptured,
        EventType::RedemptionReleased => MessageType::RedemptionReleased,
        EventType::RedemptionExpired => MessageType::RedemptionExpired,
        EventType::PointsExpired => MessageType::PointsExpired,
        _ => return None,
    };
    let mut data: serde_json::Value = serde_json::from_str(payload).ok()?;
    if let Some(obj) = data.as_object_mut() {
        // Points as decimal strings, like every amount.
        if let Some(p) = obj.get("points").and_then(serde_json::Value::as_i64) {
            obj.insert("points".into(), p.to_string().into());
        }
        obj.insert("buyer_id".into(), buyer.as_str().into());
    }
    Some(Notice::new(kind, SubjectKind::Buyer, buyer.as_str(), data))
}

/// `event.dead`: an event failed for good and waits for an operator.
pub fn dead_notice(id: EventId, kind: EventType, order: Option<&OrderId>, attempts: u32, error: &str) -> Notice {
    Notice::new(
        MessageType::EventDead,
        SubjectKind::Event,
        id.to_string(),
        json!({"event_id": id.to_string(), "event_type": kind.as_str(), "order_id": order, "attempts": attempts,
               "error": error.chars().take(500).collect::<String>()}),
    )
}

// ---- the operator's use cases

/// A new endpoint's settings.
pub struct NewEndpoint {
    pub url: String,
    pub event_types: Vec<String>,
    pub description: Option<String>,
}

/// Changes to an endpoint (None: unchanged).
#[derive(Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub description: Option<Option<String>>,
    pub disabled: Option<bool>,
}

/// Why an endpoint's settings were refused: (field, message).
pub type Refused = Vec<(&'static str, String)>;

impl Engine {
    fn webhook_config(&self) -> &WebhookConfig {
        &self.inner.config.webhooks
    }

    /// Checks an endpoint URL: its own rules, then — unless private
    /// addresses are allowed — that its name resolves to no address a
    /// message may not go to (checked again at every connection).
    async fn check_endpoint_url(&self, raw: &str) -> std::result::Result<String, String> {
        let allow = self.webhook_config().allow_private;
        let url = wh::check_url(raw, allow)?;
        if !allow {
            if let Some(url::Host::Domain(name)) = url.host() {
                let port = url.port_or_known_default().unwrap_or(443);
                // A name that does not resolve now is accepted: it is
                // checked at every connection.
                if let Ok(Ok(addrs)) =
                    tokio::time::timeout(Duration::from_secs(5), tokio::net::lookup_host((name, port))).await
                {
                    if addrs.into_iter().any(|a| !wh::public_ip(a.ip())) {
                        return Err(format!("{name} resolves to a loopback, private, link-local or multicast address"));
                    }
                }
            }
        }
        Ok(url.to_string())
    }

    /// Registers an endpoint; returns it with its secret (shown only now).
    pub async fn create_endpoint(
        &self,
        new: NewEndpoint,
        actor: &Actor,
    ) -> Result<std::result::Result<(Endpoint, String), Refused>> {
        let mut refused = Refused::new();
        let url = self.check_endpoint_url(&new.url).await.map_err(|e| refused.push(("url", e))).ok();
        let types = wh::parse_patterns(&new.event_types).map_err(|e| refused.push(("event_types", e))).ok();
        let (Some(url), Some(event_types)) = (url, types) else { return Ok(Err(refused)) };
        let now = Utc::now();
        let secret = wh::new_secret();
        if !self.webhook_config().sealer.seals() {
            tracing::warn!("webhook signing secrets are stored unsealed: set KOMISI_WEBHOOK_SECRET_KEY");
        }
        let endpoint = Endpoint {
            id: format!("ep_{}", uuid::Uuid::now_v7().simple()),
            url,
            event_types,
            description: new.description,
            secret: self.webhook_config().sealer.seal(&secret),
            previous_secret: None,
            previous_secret_expires_at: None,
            disabled: false,
            disabled_reason: None,
            failing_since: None,
            created_at: now,
            updated_at: now,
        };
        let audit = AuditEntry::new(actor, Action::WebhookCreate, format!("webhook_endpoint:{}", endpoint.id))
            .after(audited(&endpoint));
        self.store().insert_endpoint(&endpoint, &audit).await?;
        Ok(Ok((endpoint, secret)))
    }

    pub async fn endpoints(&self) -> Result<Vec<Endpoint>> {
        Ok(self.store().webhook_endpoints().await?)
    }

    pub async fn endpoint(&self, id: &str) -> Result<Option<Endpoint>> {
        Ok(self.store().webhook_endpoint(id).await?)
    }

    /// Changes an endpoint's settings; None when there is no such endpoint.
    /// Enabling it clears why it was disabled and how long it was failing.
    pub async fn update_endpoint(
        &self,
        id: &str,
        patch: EndpointPatch,
        actor: &Actor,
    ) -> Result<Option<std::result::Result<Endpoint, Refused>>> {
        let Some(mut e) = self.endpoint(id).await? else { return Ok(None) };
        let before = audited(&e);
        let mut refused = Refused::new();
        if let Some(url) = &patch.url {
            match self.check_endpoint_url(url).await {
                Ok(url) => e.url = url,
                Err(why) => refused.push(("url", why)),
            }
        }
        if let Some(types) = &patch.event_types {
            match wh::parse_patterns(types) {
                Ok(types) => e.event_types = types,
                Err(why) => refused.push(("event_types", why)),
            }
        }
        if !refused.is_empty() {
            return Ok(Some(Err(refused)));
        }
        if let Some(description) = patch.description {
            e.description = description;
        }
        match patch.disabled {
            Some(true) if !e.disabled => {
                e.disabled = true;
                e.disabled_reason = Some("disabled by an operator".into());
            }
            Some(false) if e.disabled => {
                e.disabled = false;
                e.disabled_reason = None;
                e.failing_since = None;
            }
            _ => {}
        }
        e.updated_at = Utc::now();
        let audit =
            AuditEntry::new(actor, Action::WebhookUpdate, format!("webhook_endpoint:{id}")).change(before, audited(&e));
        Ok(self.store().update_endpoint(&e, &audit).await?.then_some(Ok(e)))
    }

    pub async fn delete_endpoint(&self, id: &str, actor: &Actor) -> Result<bool> {
        let audit = AuditEntry::new(actor, Action::WebhookDelete, format!("webhook_endpoint:{id}"));
        Ok(self.store().delete_endpoint(id, &audit).await?)
    }

    /// A new secret; the old one also signs for [`ROTATION_OVERLAP`].
    pub async fn rotate_secret(&self, id: &str, actor: &Actor) -> Result<Option<(Endpoint, String)>> {
        let Some(mut e) = self.endpoint(id).await? else { return Ok(None) };
        let now = Utc::now();
        let secret = wh::new_secret();
        e.previous_secret = Some(std::mem::replace(&mut e.secret, self.webhook_config().sealer.seal(&secret)));
        e.previous_secret_expires_at = Some(now + ROTATION_OVERLAP);
        e.updated_at = now;
        // Never a secret in the trail: only when the old one stops signing.
        let audit = AuditEntry::new(actor, Action::WebhookRotateSecret, format!("webhook_endpoint:{id}"))
            .after(json!({ "previous_secret_expires_at": e.previous_secret_expires_at }));
        Ok(self.store().update_endpoint(&e, &audit).await?.then_some((e, secret)))
    }

    /// Sends the endpoint's failed messages of a window again; None when
    /// there is no such endpoint.
    pub async fn recover_messages(
        &self,
        endpoint: &str,
        since: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
        actor: &Actor,
    ) -> Result<Option<u64>> {
        if self.endpoint(endpoint).await?.is_none() {
            return Ok(None);
        }
        let now = Utc::now();
        let until = until.unwrap_or(now);
        let audit = AuditEntry::new(actor, Action::WebhookRecover, format!("webhook_endpoint:{endpoint}"))
            .after(json!({ "since": since, "until": until }));
        Ok(Some(self.store().requeue_failed(endpoint, since, until, now, &audit).await?))
    }

    /// Sends one message again, whatever its status.
    pub async fn resend_message(&self, id: &str, actor: &Actor) -> Result<Option<Message>> {
        let audit = AuditEntry::new(actor, Action::WebhookResend, format!("webhook_message:{id}"));
        if !self.store().requeue_message(id, Utc::now(), &audit).await? {
            return Ok(None);
        }
        Ok(self.store().webhook_message(id).await?)
    }

    pub async fn webhook_messages(&self, f: &MessageFilter, before: Option<u64>, limit: u32) -> Result<Vec<Message>> {
        Ok(self.store().webhook_messages(f, before, limit).await?)
    }

    pub async fn webhook_message(&self, id: &str) -> Result<Option<Message>> {
        Ok(self.store().webhook_message(id).await?)
    }

    /// Deletes failed messages created before `before` (of one endpoint, or all).
    /// Each transaction (up to 1 000 messages) is one audit entry.
    pub async fn prune_failed(&self, before: DateTime<Utc>, endpoint: Option<&str>, actor: &Actor) -> Result<u64> {
        let audit = AuditEntry::new(
            actor,
            Action::WebhookPrune,
            endpoint.map_or("webhook_messages".to_owned(), |e| format!("webhook_endpoint:{e}")),
        )
        .after(json!({ "status": "failed", "before": before }));
        let mut deleted = 0;
        loop {
            let n = self.store().prune_messages(MessageStatus::Failed, before, endpoint, 1000, Some(&audit)).await?;
            deleted += n;
            if n < 1000 {
                return Ok(deleted);
            }
        }
    }

    /// The delivery worker's handle (one per instance).
    pub fn deliverer(&self, instance: &str) -> Arc<Deliverer> {
        Arc::new(Deliverer::new(self.inner.store.clone(), self.webhook_config().clone(), instance))
    }
}

// ---- secrets at rest

/// How signing secrets are stored: sealed with AES-256-GCM under the key
/// `KOMISI_WEBHOOK_SECRET_KEY` names (`aead:<base64 of nonce ‖ ciphertext>`),
/// so a copy of the database alone cannot sign; without a key, as they are
/// (`plain:…`, and komisi warns at start). A secret is stored the way the
/// key in force says; both forms are read.
#[derive(Clone, Default)]
pub struct Sealer(Option<[u8; 32]>);

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself.
        f.write_str(if self.0.is_some() { "Sealer(aead)" } else { "Sealer(plain)" })
    }
}

impl Sealer {
    /// A key: the base64 of 32 bytes.
    pub fn from_base64(raw: &str) -> Result<Self, String> {
        use base64::Engine as _;
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(raw.trim()).map_err(|e| format!("not base64: {e}"))?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| "must be 32 bytes (base64 of 32 random bytes)".to_owned())?;
        Ok(Self(Some(key)))
    }

    pub fn seals(&self) -> bool {
        self.0.is_some()
    }

    pub(crate) fn seal(&self, secret: &str) -> String {
        use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
        use base64::Engine as _;
        let Some(key) = &self.0 else { return format!("plain:{secret}") };
        let cipher = aes_gcm::Aes256Gcm::new(key.into());
        let nonce = aes_gcm::Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = cipher.encrypt(&nonce, secret.as_bytes()).expect("AES-GCM seals any secret");
        let mut out = nonce.to_vec();
        out.extend(sealed);
        format!("aead:{}", base64::engine::general_purpose::STANDARD.encode(out))
    }

    /// The HMAC key of a stored secret (None: unreadable — a sealed one
    /// without the key, or another key).
    pub(crate) fn open(&self, stored: &str) -> Option<Vec<u8>> {
        use aes_gcm::aead::{Aead, KeyInit};
        use base64::Engine as _;
        if let Some(plain) = stored.strip_prefix("plain:") {
            return wh::secret_key(plain);
        }
        let bytes = base64::engine::general_purpose::STANDARD.decode(stored.strip_prefix("aead:")?).ok()?;
        if bytes.len() < 12 {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(12);
        let cipher = aes_gcm::Aes256Gcm::new(self.0.as_ref()?.into());
        let secret = cipher.decrypt(nonce.into(), sealed).ok()?;
        wh::secret_key(std::str::from_utf8(&secret).ok()?)
    }

    /// The keys that sign now: the current secret's, then the previous
    /// one's while its overlap lasts.
    fn signing_keys(&self, e: &Endpoint, now: DateTime<Utc>) -> Vec<Vec<u8>> {
        let mut keys: Vec<Vec<u8>> = self.open(&e.secret).into_iter().collect();
        if e.previous_secret_expires_at.is_some_and(|at| at > now) {
            keys.extend(e.previous_secret.as_deref().and_then(|s| self.open(s)));
        }
        keys
    }
}

// ---- delivery

/// Resolves names to public addresses only: a name that resolves to a
/// private one at send time (DNS rebinding) is not connected to.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let public: Vec<std::net::SocketAddr> = addrs.filter(|a| wh::public_ip(a.ip())).collect();
            if public.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Response bytes read at most (the rest is not read).
const RESPONSE_CAP: usize = 64 * 1024;
/// Response bytes kept with an attempt.
const RESPONSE_KEPT: usize = 1024;

/// What came back from one attempt.
struct Answer {
    status: Option<u16>,
    retry_after: Option<String>,
    response: Option<String>,
    error: Option<String>,
}

/// Messages one claim takes, per place in flight: a worker sends a batch of
/// `places × CLAIM_PER_PLACE` and records it in one transaction.
const CLAIM_PER_PLACE: usize = 8;

/// Sends due messages. Each enabled endpoint gets a worker of its own: it
/// claims a batch of the endpoint's due messages under a lease, sends them
/// with at most [`WebhookConfig::per_endpoint`] in flight, records every
/// attempt in one transaction, and goes on while batches come full — so a
/// slow endpoint only holds up its own messages. A message is claimed by one
/// instance at a time; one whose instance died mid-batch is taken by any
/// instance once the lease has passed.
pub struct Deliverer {
    store: Arc<dyn Backend>,
    config: WebhookConfig,
    client: reqwest::Client,
    instance: String,
    /// The endpoints with a worker running.
    workers: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    last_prune: Mutex<Option<Instant>>,
}

/// One attempt's result, to record.
struct Tried {
    row: u64,
    created_at: DateTime<Utc>,
    attempt: Attempt,
    verdict: Verdict,
    after: AfterAttempt,
}

impl Deliverer {
    pub fn new(store: Arc<dyn Backend>, config: WebhookConfig, instance: &str) -> Self {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("komisi-webhooks/", env!("CARGO_PKG_VERSION")))
            .no_proxy();
        if !config.allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        let client = builder.build().expect("the webhook HTTP client builds");
        Self {
            store,
            config,
            client,
            instance: instance.to_owned(),
            workers: Mutex::default(),
            last_prune: Mutex::default(),
        }
    }

    pub fn poll_interval(&self) -> Duration {
        self.config.poll
    }

    fn places(&self) -> usize {
        self.config.per_endpoint.max(1)
    }

    /// How long a claim holds its batch: every round of the batch timing
    /// out, and half a timeout more (at least 5 s) to record it.
    pub fn lease(&self) -> Duration {
        self.config.timeout * CLAIM_PER_PLACE as u32 + (self.config.timeout / 2).max(Duration::from_secs(5))
    }

    /// One round: starts a worker for every enabled endpoint that has none
    /// running (a worker ends when no message of its endpoint is due); now
    /// and then counts the pending messages and prunes old delivered ones.
    /// Returns how many workers it started.
    pub async fn tick(self: &Arc<Self>) -> Result<usize> {
        let endpoints = self.store.webhook_endpoints().await?;
        metrics::gauge!(m::WEBHOOK_ENDPOINTS_DISABLED).set(endpoints.iter().filter(|e| e.disabled).count() as f64);
        let mut started = 0;
        {
            let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
            // A worker that ended (or panicked) makes room for a new one.
            workers.retain(|_, w| !w.is_finished());
            for e in endpoints.into_iter().filter(|e| !e.disabled) {
                if workers.contains_key(&e.id) {
                    continue;
                }
                let me = self.clone();
                workers.insert(e.id.clone(), tokio::spawn(async move { me.work(e).await }));
                started += 1;
            }
        }
        self.housekeeping().await;
        Ok(started)
    }

    /// Sends the endpoint's due messages, a batch at a time, while batches
    /// come full; a failure leaves the batch's leases to run out.
    async fn work(self: Arc<Self>, mut e: Endpoint) {
        let batch = self.places() * CLAIM_PER_PLACE;
        loop {
            let now = Utc::now();
            let claim = format!("{}:{}", self.instance, uuid::Uuid::now_v7().simple());
            let until = now + chrono::TimeDelta::from_std(self.lease()).unwrap_or(chrono::TimeDelta::MAX);
            let messages = match self.store.claim_messages(&e.id, batch as u32, &claim, now, until).await {
                Ok(m) => m,
                Err(err) => {
                    tracing::warn!(error = %err, endpoint = %e.id, "could not claim webhook messages");
                    return;
                }
            };
            if messages.is_empty() {
                return;
            }
            let full = messages.len() == batch;
            let endpoint = Arc::new(e.clone());
            let attempts = messages.into_iter().map(|m| {
                let (me, endpoint) = (self.clone(), endpoint.clone());
                async move { me.attempt(&endpoint, &m).await }
            });
            let tried: Vec<Tried> = futures::stream::iter(attempts).buffer_unordered(self.places()).collect().await;
            match self.record(&e, &claim, &tried).await {
                Ok(false) => {}
                Ok(true) => return,
                Err(err) => {
                    // The leases run out and the messages are tried again.
                    tracing::warn!(error = %err, endpoint = %e.id, "could not record webhook attempts");
                    return;
                }
            }
            if !full {
                return;
            }
            // More may be due: go on with the endpoint as it is now (an
            // operator may have changed or disabled it).
            match self.store.webhook_endpoint(&e.id).await {
                Ok(Some(now)) if !now.disabled => e = now,
                _ => return,
            }
        }
    }

    /// Records a batch's attempts and the endpoint's health in one
    /// transaction; whether the endpoint was disabled by it.
    async fn record(&self, e: &Endpoint, claim: &str, tried: &[Tried]) -> Result<bool> {
        let now = Utc::now();
        let delivered = tried.iter().any(|t| t.verdict == Verdict::Delivered);
        let health = crate::domain::webhook::Health {
            delivered,
            gone: tried.iter().any(|t| t.verdict == Verdict::Gone),
            was_failing: e.failing_since.is_some(),
            disable_before: now
                - chrono::TimeDelta::from_std(self.config.disable_after).unwrap_or(chrono::TimeDelta::MAX),
            now,
        };
        let rows: Vec<(u64, &Attempt, AfterAttempt)> = tried.iter().map(|t| (t.row, &t.attempt, t.after)).collect();
        let disabled = self.store.record_attempts(&e.id, claim, &rows, &health).await?;
        for t in tried {
            let outcome = match (t.verdict, t.after) {
                (Verdict::Delivered, _) => "delivered",
                (Verdict::Gone, _) => "gone",
                (_, AfterAttempt::Failed) => "failed",
                _ => "retry",
            };
            metrics::counter!(m::WEBHOOK_ATTEMPTS_TOTAL, "outcome" => outcome).increment(1);
            if t.verdict == Verdict::Delivered {
                let lag = (t.attempt.at - t.created_at).to_std().unwrap_or_default()
                    + Duration::from_millis(t.attempt.duration_ms);
                metrics::histogram!(m::WEBHOOK_DELIVERY_LAG_SECONDS).record(lag.as_secs_f64());
            }
        }
        if disabled {
            metrics::counter!(m::WEBHOOK_ENDPOINTS_DISABLED_TOTAL).increment(1);
            tracing::warn!(endpoint = %e.id, url = %e.url, "webhook endpoint disabled");
        }
        Ok(disabled)
    }

    /// Every minute: the pending gauge; every hour: delivered messages past retention.
    async fn housekeeping(&self) {
        let due = {
            let mut last = self.last_prune.lock().unwrap_or_else(|p| p.into_inner());
            let due = last.is_none_or(|at| at.elapsed() >= Duration::from_secs(60));
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if !due {
            return;
        }
        match self.store.pending_messages().await {
            Ok(n) => metrics::gauge!(m::WEBHOOK_MESSAGES_PENDING).set(n as f64),
            Err(e) => tracing::warn!(error = %e, "could not count pending webhook messages"),
        }
        let before = Utc::now() - chrono::TimeDelta::from_std(self.config.retention).unwrap_or(chrono::TimeDelta::MAX);
        loop {
            match self.store.prune_messages(MessageStatus::Delivered, before, None, 1000, None).await {
                Ok(1000) => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "could not prune delivered webhook messages");
                    break;
                }
            }
        }
    }

    /// One attempt, and what the message becomes after it.
    async fn attempt(&self, e: &Endpoint, msg: &Message) -> Tried {
        let at = Utc::now();
        let started = Instant::now();
        let answer = self.send(e, msg, at).await;
        let duration_ms = started.elapsed().as_millis() as u64;
        let verdict = Verdict::of(answer.status, answer.retry_after.as_deref());
        let now = Utc::now();
        let after = match verdict {
            Verdict::Delivered => AfterAttempt::Delivered,
            Verdict::Gone => AfterAttempt::Failed,
            Verdict::Retry(asked) => match self.config.retry.next(msg.tries + 1, rand::random::<f64>() * 2.0 - 1.0) {
                None => AfterAttempt::Failed,
                Some(pause) => AfterAttempt::Retry(
                    now + chrono::TimeDelta::from_std(asked.unwrap_or(pause)).unwrap_or(chrono::TimeDelta::MAX),
                ),
            },
        };
        let attempt =
            Attempt { at, status_code: answer.status, duration_ms, response: answer.response, error: answer.error };
        Tried { row: msg.row, created_at: msg.created_at, attempt, verdict, after }
    }

    /// One POST, signed now; never follows a redirect, reads at most
    /// [`RESPONSE_CAP`] of the answer.
    async fn send(&self, e: &Endpoint, msg: &Message, at: DateTime<Utc>) -> Answer {
        let failed = |error: String| Answer { status: None, retry_after: None, response: None, error: Some(error) };
        // Checked again at every attempt: the rules may have changed, and an
        // address in the URL itself is not resolved.
        if let Err(why) = wh::check_url(&e.url, self.config.allow_private) {
            return failed(format!("the URL is not allowed: {why}"));
        }
        let keys = self.config.sealer.signing_keys(e, at);
        if keys.is_empty() {
            return failed("the endpoint's secret cannot be read".into());
        }
        let body = msg.body();
        let timestamp = at.timestamp();
        let signature = wh::signature_header(&keys, &msg.id, timestamp, &body);
        let request = self
            .client
            .post(&e.url)
            .header("content-type", "application/json")
            .header("webhook-id", &msg.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body);
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(err) => return failed(describe(&err)),
        };
        let status = response.status().as_u16();
        let retry_after =
            response.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut bytes = Vec::new();
        let mut error = None;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    bytes.extend_from_slice(&chunk);
                    if bytes.len() >= RESPONSE_CAP {
                        break;
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    error = Some(describe(&err));
                    break;
                }
            }
        }
        bytes.truncate(RESPONSE_KEPT);
        let response = (!bytes.is_empty()).then(|| String::from_utf8_lossy(&bytes).into_owned());
        Answer { status: Some(status), retry_after, response, error }
    }
}

/// An HTTP error: what failed and its causes (never the URL, whose query
/// may hold a token).
fn describe(err: &reqwest::Error) -> String {
    let mut text = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else if err.is_body() || err.is_decode() {
        "the answer broke off"
    } else {
        "the request failed"
    }
    .to_owned();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// What an audit entry says of an endpoint: its settings, never its secrets.
fn audited(e: &Endpoint) -> serde_json::Value {
    json!({
        "url": e.url,
        "event_types": e.event_types,
        "description": e.description,
        "disabled": e.disabled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_with_its_key() {
        let secret = wh::new_secret();
        let key = wh::secret_key(&secret).unwrap();
        let sealer = Sealer::from_base64("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap();
        let sealed = sealer.seal(&secret);
        assert!(sealed.starts_with("aead:") && !sealed.contains(&secret[6..]), "{sealed}");
        assert_ne!(sealed, sealer.seal(&secret), "a fresh nonce each time");
        assert_eq!(sealer.open(&sealed), Some(key.clone()));
        assert_eq!(Sealer::default().open(&sealed), None, "no key");
        let other = Sealer::from_base64("ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=").unwrap();
        assert_eq!(other.open(&sealed), None, "another key");
        // Plain secrets (stored before a key was set) are still read.
        assert_eq!(sealer.open(&Sealer::default().seal(&secret)), Some(key));
        assert!(Sealer::from_base64("c2hvcnQ=").is_err());
        assert_eq!(format!("{sealer:?}"), "Sealer(aead)");
    }
}
