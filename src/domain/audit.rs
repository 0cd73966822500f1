//! The audit trail: who changed what through the API, and when. An entry is
//! written in the transaction of the write it records, so a change and its
//! entry commit (or roll back) together; reading the trail never changes it.
use chrono::{DateTime, Utc};
use serde_json::Value;

/// Who asked for a write: the name of the key the request authenticated
/// with (`KOMISI_ADMIN_KEYS=name:key`; never the key itself) and the
/// request's id (`X-Request-Id`), which the access log carries too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub key: String,
    pub request_id: Option<String>,
}

/// What an audited write did. The names are the API's (`GET /admin/audit?action=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub enum Action {
    #[serde(rename = "program.replace")]
    ProgramReplace,
    #[serde(rename = "fx_rates.replace")]
    FxRatesReplace,
    #[serde(rename = "affiliate.caps")]
    AffiliateCaps,
    #[serde(rename = "affiliate.update")]
    AffiliateUpdate,
    #[serde(rename = "payout.create")]
    PayoutCreate,
    #[serde(rename = "payout.complete")]
    PayoutComplete,
    #[serde(rename = "reconcile.start")]
    ReconcileStart,
    #[serde(rename = "event.replay")]
    EventReplay,
    #[serde(rename = "order.recompute")]
    OrderRecompute,
    #[serde(rename = "order.reattribute")]
    OrderReattribute,
    #[serde(rename = "buyer.link")]
    BuyerLink,
    #[serde(rename = "coupon.add")]
    CouponAdd,
    #[serde(rename = "coupon.delete")]
    CouponDelete,
    #[serde(rename = "webhook.create")]
    WebhookCreate,
    #[serde(rename = "webhook.update")]
    WebhookUpdate,
    #[serde(rename = "webhook.delete")]
    WebhookDelete,
    #[serde(rename = "webhook.rotate_secret")]
    WebhookRotateSecret,
    #[serde(rename = "webhook.resend")]
    WebhookResend,
    #[serde(rename = "webhook.recover")]
    WebhookRecover,
    #[serde(rename = "webhook.prune")]
    WebhookPrune,
    #[serde(rename = "simulation.submit")]
    SimulationSubmit,
    #[serde(rename = "simulation.cancel")]
    SimulationCancel,
    #[serde(rename = "adjustment.commission")]
    CommissionAdjustment,
    #[serde(rename = "adjustment.points")]
    PointsAdjustment,
}

impl Action {
    pub const ALL: [Action; 24] = [
        Self::ProgramReplace,
        Self::FxRatesReplace,
        Self::AffiliateCaps,
        Self::AffiliateUpdate,
        Self::PayoutCreate,
        Self::PayoutComplete,
        Self::ReconcileStart,
        Self::EventReplay,
        Self::OrderRecompute,
        Self::OrderReattribute,
        Self::BuyerLink,
        Self::CouponAdd,
        Self::CouponDelete,
        Self::WebhookCreate,
        Self::WebhookUpdate,
        Self::WebhookDelete,
        Self::WebhookRotateSecret,
        Self::WebhookResend,
        Self::WebhookRecover,
        Self::WebhookPrune,
        Self::SimulationSubmit,
        Self::SimulationCancel,
        Self::CommissionAdjustment,
        Self::PointsAdjustment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProgramReplace => "program.replace",
            Self::FxRatesReplace => "fx_rates.replace",
            Self::AffiliateCaps => "affiliate.caps",
            Self::AffiliateUpdate => "affiliate.update",
            Self::PayoutCreate => "payout.create",
            Self::PayoutComplete => "payout.complete",
            Self::ReconcileStart => "reconcile.start",
            Self::EventReplay => "event.replay",
            Self::OrderRecompute => "order.recompute",
            Self::OrderReattribute => "order.reattribute",
            Self::BuyerLink => "buyer.link",
            Self::CouponAdd => "coupon.add",
            Self::CouponDelete => "coupon.delete",
            Self::WebhookCreate => "webhook.create",
            Self::WebhookUpdate => "webhook.update",
            Self::WebhookDelete => "webhook.delete",
            Self::WebhookRotateSecret => "webhook.rotate_secret",
            Self::WebhookResend => "webhook.resend",
            Self::WebhookRecover => "webhook.recover",
            Self::WebhookPrune => "webhook.prune",
            Self::SimulationSubmit => "simulation.submit",
            Self::SimulationCancel => "simulation.cancel",
            Self::CommissionAdjustment => "adjustment.commission",
            Self::PointsAdjustment => "adjustment.points",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// One write to record: who, what, on which subject, and a summary of the
/// subject before and after (only what the write changed; secrets never).
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor: Actor,
    pub action: Action,
    /// What the write was on, as `kind:id` (e.g. `affiliate:A`, `payout:3`).
    pub subject: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

impl AuditEntry {
    pub fn new(actor: &Actor, action: Action, subject: impl Into<String>) -> Self {
        Self { actor: actor.clone(), action, subject: subject.into(), before: None, after: None }
    }

    pub fn before(mut self, v: Value) -> Self {
        self.before = Some(v);
        self
    }

    pub fn after(mut self, v: Value) -> Self {
        self.after = Some(v);
        self
    }

    /// `before` and `after` (JSON objects) cut to the keys whose values differ.
    pub fn change(mut self, before: Value, after: Value) -> Self {
        match (before, after) {
            (Value::Object(mut b), Value::Object(mut a)) => {
                let same: Vec<String> =
                    b.iter().filter(|(k, v)| a.get(*k) == Some(*v)).map(|(k, _)| k.clone()).collect();
                for k in same {
                    b.remove(&k);
                    a.remove(&k);
                }
                self.before = Some(Value::Object(b));
                self.after = Some(Value::Object(a));
            }
            (b, a) => {
                self.before = Some(b);
                self.after = Some(a);
            }
        }
        self
    }

    /// The entry with `key` = `value` added to its `after` summary: what is
    /// known only once the write is done (an id the store gave, an event's id).
    pub fn with(&self, key: &str, value: impl Into<Value>) -> Self {
        let mut entry = self.clone();
        match &mut entry.after {
            Some(Value::Object(map)) => {
                map.insert(key.to_owned(), value.into());
            }
            _ => entry.after = Some(serde_json::json!({ key: value.into() })),
        }
        entry
    }

    /// The entry of a write that created `key` = `id`.
    pub fn created(&self, key: &str, id: u64) -> Self {
        self.with(key, id)
    }
}

/// An entry as stored.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub id: u64,
    pub at: DateTime<Utc>,
    pub entry: AuditEntry,
}

/// `GET /admin/audit`'s filters (all optional, combined with AND).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<Action>,
    pub since: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_parses_back_from_its_name_and_the_names_are_the_serde_names() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(a));
            assert_eq!(serde_json::to_value(a).unwrap(), Value::String(a.as_str().to_owned()));
        }
        let names: std::collections::HashSet<_> = Action::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(names.len(), Action::ALL.len());
        assert_eq!(Action::parse("program"), None);
    }

    #[test]
    fn a_change_keeps_only_what_differs() {
        let actor = Actor { key: "ops".into(), request_id: Some("r1".into()) };
        let e = AuditEntry::new(&actor, Action::AffiliateUpdate, "affiliate:A").change(
            serde_json::json!({"name": "Ann", "status": "active", "parent_id": null}),
            serde_json::json!({"name": "Ann", "status": "suspended", "parent_id": null}),
        );
        assert_eq!(e.before, Some(serde_json::json!({"status": "active"})));
        assert_eq!(e.after, Some(serde_json::json!({"status": "suspended"})));
    }

    #[test]
    fn a_created_id_joins_the_after_summary() {
        let actor = Actor { key: "ops".into(), request_id: None };
        let e = AuditEntry::new(&actor, Action::PayoutCreate, "payouts").after(serde_json::json!({"total": "5"}));
        assert_eq!(e.created("payout_id", 7).after, Some(serde_json::json!({"total": "5", "payout_id": 7})));
        let bare = AuditEntry::new(&actor, Action::ProgramReplace, "program");
        assert_eq!(bare.created("version", 2).after, Some(serde_json::json!({"version": 2})));
    }
}
