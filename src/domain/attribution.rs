//! Attribution: which affiliate an order is credited to, decided once at
//! intake from everything the order carries — the buyer's link to an
//! affiliate, coupon codes, signed click ids, a referral code or affiliate
//! id — in the program's `attribution_order`, and stored on the order with
//! what was ignored and why (docs/RULES.md "Attribution"). Replays and
//! recomputes read the stored decision; nothing here runs again for an order.
use super::ids::{is_valid_id, AffiliateId, InvalidId};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Where an attribution came from. `ReferralCode` and `AffiliateId` share one
/// place in `attribution_order` (`"referral_code"`): an order carries one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    CustomerLink,
    Coupon,
    Click,
    ReferralCode,
    AffiliateId,
    /// Set by an operator (`POST /admin/orders/{id}/attribution`).
    Manual,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CustomerLink => "customer_link",
            Self::Coupon => "coupon",
            Self::Click => "click",
            Self::ReferralCode => "referral_code",
            Self::AffiliateId => "affiliate_id",
            Self::Manual => "manual",
        }
    }

    /// The sources that may be named in `attribution_order`.
    pub const ORDERABLE: [Source; 4] = [Self::CustomerLink, Self::Coupon, Self::Click, Self::ReferralCode];

    pub fn parse_orderable(s: &str) -> Option<Self> {
        Self::ORDERABLE.into_iter().find(|k| k.as_str() == s)
    }
}

/// Why something the order carried did not attribute it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IgnoredReason {
    /// A source earlier in `attribution_order` attributed the order.
    Outranked,
    /// No active coupon has this code.
    UnknownCoupon,
    UnknownReferralCode,
    UnknownAffiliateId,
    /// The click id's signature does not verify (forged, tampered, or not komisi's).
    InvalidClick,
    /// The click is older than the program's `click_window_days` at the order's time.
    ClickExpired,
    /// The click is dated after the order (more than a few minutes).
    ClickAfterOrder,
    /// Another valid click won under `click_model`.
    ClickNotChosen,
    /// The buyer's link has expired.
    LinkExpired,
    /// The linked affiliate is suspended: the link stays, but does not attribute.
    LinkedAffiliateSuspended,
    /// An operator moved the order to another affiliate (this was the decision before).
    Reassigned,
}

impl IgnoredReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Outranked => "outranked",
            Self::UnknownCoupon => "unknown_coupon",
            Self::UnknownReferralCode => "unknown_referral_code",
            Self::UnknownAffiliateId => "unknown_affiliate_id",
            Self::InvalidClick => "invalid_click",
            Self::ClickExpired => "click_expired",
            Self::ClickAfterOrder => "click_after_order",
            Self::ClickNotChosen => "click_not_chosen",
            Self::LinkExpired => "link_expired",
            Self::LinkedAffiliateSuspended => "linked_affiliate_suspended",
            Self::Reassigned => "reassigned",
        }
    }
}

/// One thing the order carried that did not attribute it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Ignored {
    pub source: Source,
    /// The code, the click's affiliate and time, or the linked affiliate.
    pub detail: String,
    pub reason: IgnoredReason,
    /// The affiliate it would have credited, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affiliate_id: Option<AffiliateId>,
}

/// The decision stored on the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Decision {
    /// None: the order is unattributed.
    pub affiliate_id: Option<AffiliateId>,
    pub source: Option<Source>,
    /// The code, click, or link that attributed it.
    pub detail: Option<String>,
    pub decided_at: DateTime<Utc>,
    #[serde(default)]
    pub ignored: Vec<Ignored>,
    /// Set by an operator's reassignment: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Decision {
    /// The decision of an order stored without one: its referral code or
    /// affiliate id alone decided (see `Placement::stored_decision`), or it
    /// was taken before decisions were stored.
    pub fn derived(
        affiliate_id: Option<AffiliateId>,
        referral_code: Option<&str>,
        note: Option<&str>,
        decided_at: DateTime<Utc>,
    ) -> Self {
        let (source, detail) = match (&affiliate_id, referral_code) {
            (Some(_), Some(code)) => (Some(Source::ReferralCode), Some(code.to_owned())),
            (Some(a), None) => (Some(Source::AffiliateId), Some(a.to_string())),
            (None, _) => (None, None),
        };
        let ignored = match (note, referral_code) {
            (Some("unknown_referral_code"), code) => vec![Ignored {
                source: Source::ReferralCode,
                detail: code.unwrap_or_default().to_owned(),
                reason: IgnoredReason::UnknownReferralCode,
                affiliate_id: None,
            }],
            (Some("unknown_affiliate_id"), _) => vec![Ignored {
                source: Source::AffiliateId,
                detail: String::new(),
                reason: IgnoredReason::UnknownAffiliateId,
                affiliate_id: None,
            }],
            _ => Vec::new(),
        };
        Self { affiliate_id, source, detail, decided_at, ignored, reason: None }
    }

    /// The stored `orders.attribution` column, or the derived decision.
    pub fn of_stored(
        json: Option<&str>,
        affiliate_id: Option<AffiliateId>,
        referral_code: Option<&str>,
        note: Option<&str>,
        created_at: DateTime<Utc>,
    ) -> Result<Self, String> {
        match json {
            Some(j) => serde_json::from_str(j).map_err(|e| format!("an order's attribution: {e}")),
            None => Ok(Self::derived(affiliate_id, referral_code, note, created_at)),
        }
    }

    /// The stored order's decision as JSON (the `orders.attribution` column).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a decision serialises")
    }
}

/// What an operator's reassignment to `to` makes of the order's decision:
/// the manual one, with the decision before first among the ignored.
pub fn reassigned(before: &Decision, to: &AffiliateId, reason: &str, now: DateTime<Utc>) -> Decision {
    let mut ignored = Vec::with_capacity(before.ignored.len() + 1);
    if let (Some(source), Some(a)) = (before.source, &before.affiliate_id) {
        ignored.push(Ignored {
            source,
            detail: before.detail.clone().unwrap_or_default(),
            reason: IgnoredReason::Reassigned,
            affiliate_id: Some(a.clone()),
        });
    }
    ignored.extend(before.ignored.iter().cloned());
    Decision {
        affiliate_id: Some(to.clone()),
        source: Some(Source::Manual),
        detail: Some(to.to_string()),
        decided_at: now,
        ignored,
        reason: Some(reason.to_owned()),
    }
}

/// The program's attribution settings (validated from the document).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub customer_link: LinkMode,
    /// After a link has expired, is the buyer never linked again?
    pub first_touch_only: bool,
    pub click_window_days: u32,
    pub click_model: ClickModel,
    /// A permutation of [`Source::ORDERABLE`] (a subset is allowed: a source
    /// left out never attributes).
    pub order: Vec<Source>,
    /// Whether an order of the affiliate's own buyer account (or e-mail)
    /// pays that affiliate nothing (rule 2 `self_referral`).
    pub block_self_referral: bool,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            customer_link: LinkMode::Off,
            first_touch_only: false,
            click_window_days: 30,
            click_model: ClickModel::Last,
            order: Source::ORDERABLE.to_vec(),
            block_self_referral: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    Off,
    Lifetime,
    Days(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClickModel {
    /// The newest valid click attributes (last touch).
    Last,
    /// The oldest valid click inside the window attributes (first touch).
    First,
}

/// A coupon code: an id (1–64 of `A–Z a–z 0–9 _ . : -`), compared without
/// regard to case, so stored and looked up uppercase.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct CouponCode(String);

impl CouponCode {
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        if is_valid_id(s) {
            Ok(Self(s.to_ascii_uppercase()))
        } else {
            Err(InvalidId)
        }
    }
    pub fn from_trusted(s: String) -> Self {
        Self(s)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A coupon as stored (a deleted one stays, with `deleted_at`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coupon {
    pub code: CouponCode,
    pub affiliate_id: AffiliateId,
    pub created_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// What adding a coupon did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddCoupon {
    Added(Coupon),
    /// The affiliate holds this code already.
    Exists(Coupon),
    /// Another affiliate holds it.
    Taken(AffiliateId),
    NoAffiliate,
}

/// A buyer's link as stored, for the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerLink {
    pub affiliate_id: AffiliateId,
    /// `order` or `manual`.
    pub source: String,
    pub order_id: Option<String>,
    pub reason: Option<String>,
    pub linked_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// A buyer's stored link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub affiliate_id: AffiliateId,
    pub linked_at: DateTime<Utc>,
    /// None: for the buyer's lifetime.
    pub expires_at: Option<DateTime<Utc>>,
    pub affiliate_suspended: bool,
}

impl Link {
    pub fn holds_at(&self, at: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|e| at < e)
    }
}

/// A link intake writes: a buyer's first attributed order links them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLink {
    pub affiliate_id: AffiliateId,
    pub linked_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The buyer had an expired link, which this one replaces.
    pub replaces_expired: bool,
}

/// A click id as verified: whose it is and when the click happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Click {
    pub affiliate_id: AffiliateId,
    pub at: DateTime<Utc>,
}

/// A click id the order carried: verified, or not komisi's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClickCheck {
    Valid(Click),
    Invalid(String),
}

/// Everything the order carries, with what intake looked up about it.
#[derive(Debug, Clone, Default)]
pub struct Claims<'a> {
    /// The buyer's link (stored, or made earlier in the same batch).
    pub link: Option<&'a Link>,
    /// Coupon codes in the order given, each with the affiliate holding it.
    pub coupons: Vec<(&'a str, Option<AffiliateId>)>,
    /// Click ids in the order given (newest last).
    pub clicks: Vec<ClickCheck>,
    /// A referral code or an affiliate id: the source, what was sent, whose it is.
    pub code: Option<(Source, &'a str, Option<AffiliateId>)>,
}

/// How far a click may be dated after the order (clocks differ).
pub const CLICK_SKEW: TimeDelta = TimeDelta::minutes(5);

/// A candidate for one source: the affiliate it names and its detail.
struct Candidate {
    affiliate_id: AffiliateId,
    detail: String,
}

/// Decides the order's attribution: the first source in `rules.order` that
/// names an affiliate wins; everything else it carried is recorded as
/// ignored, with the reason. Pure: the same claims give the same decision.
pub fn decide(claims: &Claims<'_>, rules: &Rules, placed_at: DateTime<Utc>, now: DateTime<Utc>) -> Decision {
    let mut ignored = Vec::new();
    let mut winner: Option<(Source, Candidate)> = None;
    for source in &rules.order {
        let candidates = match source {
            Source::CustomerLink => link_candidate(claims, rules, placed_at, &mut ignored),
            Source::Coupon => coupon_candidates(claims, &mut ignored),
            Source::Click => click_candidate(claims, rules, placed_at, &mut ignored),
            Source::ReferralCode => code_candidate(claims, &mut ignored),
            Source::AffiliateId | Source::Manual => Vec::new(),
        };
        let mut candidates = candidates.into_iter();
        let actual = actual_source(claims, *source);
        if winner.is_none() {
            if let Some(first) = candidates.next() {
                winner = Some((actual, first));
            }
        }
        for c in candidates {
            ignored.push(Ignored {
                source: actual,
                detail: c.detail,
                reason: IgnoredReason::Outranked,
                affiliate_id: Some(c.affiliate_id),
            });
        }
    }
    // Sources not in the order never attribute; what they named is ignored.
    for source in Source::ORDERABLE {
        if !rules.order.contains(&source) {
            let named: Vec<Candidate> = match source {
                Source::CustomerLink => link_candidate(claims, rules, placed_at, &mut Vec::new()),
                Source::Coupon => coupon_candidates(claims, &mut Vec::new()),
                Source::Click => click_candidate(claims, rules, placed_at, &mut Vec::new()),
                _ => code_candidate(claims, &mut Vec::new()),
            };
            let actual = actual_source(claims, source);
            for c in named {
                ignored.push(Ignored {
                    source: actual,
                    detail: c.detail,
                    reason: IgnoredReason::Outranked,
                    affiliate_id: Some(c.affiliate_id),
                });
            }
        }
    }
    let (affiliate_id, source, detail) = match winner {
        Some((s, c)) => (Some(c.affiliate_id), Some(s), Some(c.detail)),
        None => (None, None, None),
    };
    Decision { affiliate_id, source, detail, decided_at: now, ignored, reason: None }
}

/// `referral_code` in the order stands for whichever of referral code and
/// affiliate id the order carries.
fn actual_source(claims: &Claims<'_>, source: Source) -> Source {
    match source {
        Source::ReferralCode => claims.code.as_ref().map_or(Source::ReferralCode, |(s, _, _)| *s),
        s => s,
    }
}

fn link_candidate(
    claims: &Claims<'_>,
    rules: &Rules,
    placed_at: DateTime<Utc>,
    ignored: &mut Vec<Ignored>,
) -> Vec<Candidate> {
    let Some(link) = claims.link else { return Vec::new() };
    if rules.customer_link == LinkMode::Off {
        return Vec::new();
    }
    let detail = link.affiliate_id.to_string();
    let reason = if !link.holds_at(placed_at) {
        IgnoredReason::LinkExpired
    } else if link.affiliate_suspended {
        IgnoredReason::LinkedAffiliateSuspended
    } else {
        return vec![Candidate { affiliate_id: link.affiliate_id.clone(), detail }];
    };
    ignored.push(Ignored {
        source: Source::CustomerLink,
        detail,
        reason,
        affiliate_id: Some(link.affiliate_id.clone()),
    });
    Vec::new()
}

fn coupon_candidates(claims: &Claims<'_>, ignored: &mut Vec<Ignored>) -> Vec<Candidate> {
    let mut out = Vec::new();
    for (code, holder) in &claims.coupons {
        match holder {
            Some(a) => out.push(Candidate { affiliate_id: a.clone(), detail: (*code).to_owned() }),
            None => ignored.push(Ignored {
                source: Source::Coupon,
                detail: (*code).to_owned(),
                reason: IgnoredReason::UnknownCoupon,
                affiliate_id: None,
            }),
        }
    }
    out
}

/// The click detail: the affiliate and the click's time.
fn click_detail(c: &Click) -> String {
    format!("{} at {}", c.affiliate_id, c.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

fn click_candidate(
    claims: &Claims<'_>,
    rules: &Rules,
    placed_at: DateTime<Utc>,
    ignored: &mut Vec<Ignored>,
) -> Vec<Candidate> {
    let window = TimeDelta::days(i64::from(rules.click_window_days));
    let mut valid: Vec<&Click> = Vec::new();
    for check in &claims.clicks {
        match check {
            ClickCheck::Invalid(raw) => ignored.push(Ignored {
                source: Source::Click,
                detail: raw.clone(),
                reason: IgnoredReason::InvalidClick,
                affiliate_id: None,
            }),
            ClickCheck::Valid(c) => {
                let reason = if c.at > placed_at + CLICK_SKEW {
                    Some(IgnoredReason::ClickAfterOrder)
                } else if placed_at - c.at > window {
                    Some(IgnoredReason::ClickExpired)
                } else {
                    None
                };
                match reason {
                    Some(reason) => ignored.push(Ignored {
                        source: Source::Click,
                        detail: click_detail(c),
                        reason,
                        affiliate_id: Some(c.affiliate_id.clone()),
                    }),
                    None => valid.push(c),
                }
            }
        }
    }
    // Newest last as sent; the click's own time decides, the list order breaks ties.
    let chosen = match rules.click_model {
        ClickModel::Last => valid.iter().enumerate().max_by_key(|(i, c)| (c.at, *i)).map(|(i, _)| i),
        ClickModel::First => valid.iter().enumerate().min_by_key(|(i, c)| (c.at, *i)).map(|(i, _)| i),
    };
    let mut out = Vec::new();
    for (i, c) in valid.into_iter().enumerate() {
        if Some(i) == chosen {
            out.insert(0, Candidate { affiliate_id: c.affiliate_id.clone(), detail: click_detail(c) });
        } else {
            ignored.push(Ignored {
                source: Source::Click,
                detail: click_detail(c),
                reason: IgnoredReason::ClickNotChosen,
                affiliate_id: Some(c.affiliate_id.clone()),
            });
        }
    }
    out
}

fn code_candidate(claims: &Claims<'_>, ignored: &mut Vec<Ignored>) -> Vec<Candidate> {
    let Some((source, sent, whose)) = &claims.code else { return Vec::new() };
    match whose {
        Some(a) => vec![Candidate { affiliate_id: a.clone(), detail: (*sent).to_owned() }],
        None => {
            let reason = match source {
                Source::AffiliateId => IgnoredReason::UnknownAffiliateId,
                _ => IgnoredReason::UnknownReferralCode,
            };
            ignored.push(Ignored { source: *source, detail: (*sent).to_owned(), reason, affiliate_id: None });
            Vec::new()
        }
    }
}

/// The link the order's decision makes, if any: the first attributed order
/// of a buyer without a link (or whose link expired, unless
/// `first_touch_only`) links the buyer to the order's affiliate.
pub fn new_link(
    decision: &Decision,
    stored: Option<&Link>,
    rules: &Rules,
    placed_at: DateTime<Utc>,
) -> Option<NewLink> {
    let expires_at = match rules.customer_link {
        LinkMode::Off => return None,
        LinkMode::Lifetime => None,
        LinkMode::Days(d) => Some(placed_at + TimeDelta::days(i64::from(d))),
    };
    let affiliate_id = decision.affiliate_id.clone()?;
    if decision.source == Some(Source::CustomerLink) {
        return None;
    }
    let replaces_expired = match stored {
        None => false,
        Some(l) if !l.holds_at(placed_at) && !rules.first_touch_only => true,
        Some(_) => return None,
    };
    Some(NewLink { affiliate_id, linked_at: placed_at, expires_at, replaces_expired })
}

/// The longest click id komisi accepts at the edge (its own are about 80 characters).
pub const MAX_CLICK_ID: usize = 256;

/// Whether `s` has the shape of a click id (anything else is a 422 at the
/// edge; a well-shaped id that does not verify is ignored, not refused).
pub fn is_click_id_shape(s: &str) -> bool {
    (1..=MAX_CLICK_ID).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

const CLICK_PREFIX: &str = "c1";

fn click_mac(key: &[u8], body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts every key length");
    mac.update(body.as_bytes());
    URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..16])
}

/// A click id: `c1.<affiliate id, base64url>.<unix milliseconds>.<HMAC-SHA256, 128 bits>`.
/// It carries everything attribution needs, so a click stores no row.
pub fn sign_click(key: &[u8], click: &Click) -> String {
    let body = format!(
        "{CLICK_PREFIX}.{}.{}",
        URL_SAFE_NO_PAD.encode(click.affiliate_id.as_str()),
        click.at.timestamp_millis()
    );
    let mac = click_mac(key, &body);
    format!("{body}.{mac}")
}

/// The click a click id names, if komisi signed it with `key`.
pub fn verify_click(key: &[u8], id: &str) -> Option<Click> {
    let (body, mac) = id.rsplit_once('.')?;
    let expected = click_mac(key, body);
    // Constant time: the comparison says nothing about how much matched.
    if !bool::from(subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), mac.as_bytes())) {
        return None;
    }
    let mut parts = body.split('.');
    let (prefix, affiliate, millis) = (parts.next()?, parts.next()?, parts.next()?);
    if prefix != CLICK_PREFIX || parts.next().is_some() {
        return None;
    }
    let affiliate = String::from_utf8(URL_SAFE_NO_PAD.decode(affiliate).ok()?).ok()?;
    let at = DateTime::<Utc>::from_timestamp_millis(millis.parse().ok()?)?;
    Some(Click { affiliate_id: AffiliateId::parse(&affiliate).ok()?, at })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn a(s: &str) -> AffiliateId {
        AffiliateId::parse(s).unwrap()
    }

    fn t(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, day, 12, 0, 0).unwrap()
    }

    fn link(to: &str, expires: Option<DateTime<Utc>>) -> Link {
        Link { affiliate_id: a(to), linked_at: t(1), expires_at: expires, affiliate_suspended: false }
    }

    fn click(to: &str, at: DateTime<Utc>) -> ClickCheck {
        ClickCheck::Valid(Click { affiliate_id: a(to), at })
    }

    fn rules() -> Rules {
        Rules { customer_link: LinkMode::Lifetime, ..Rules::default() }
    }

    fn who(d: &Decision) -> (Option<&str>, Option<Source>) {
        (d.affiliate_id.as_ref().map(|a| a.as_str()), d.source)
    }

    #[test]
    fn a_linked_customer_beats_another_affiliates_coupon() {
        let l = link("A", None);
        let claims = Claims { link: Some(&l), coupons: vec![("SUMMER10", Some(a("B")))], ..Default::default() };
        let d = decide(&claims, &rules(), t(20), t(20));
        assert_eq!(who(&d), (Some("A"), Some(Source::CustomerLink)));
        assert_eq!(
            d.ignored,
            vec![Ignored {
                source: Source::Coupon,
                detail: "SUMMER10".into(),
                reason: IgnoredReason::Outranked,
                affiliate_id: Some(a("B"))
            }]
        );
    }

    #[test]
    fn a_coupon_beats_a_click_which_beats_a_referral_code() {
        let claims = Claims {
            coupons: vec![("X", Some(a("B")))],
            clicks: vec![click("C", t(19))],
            code: Some((Source::ReferralCode, "code-D", Some(a("D")))),
            ..Default::default()
        };
        let d = decide(&claims, &rules(), t(20), t(20));
        assert_eq!(who(&d), (Some("B"), Some(Source::Coupon)));
        let reasons: Vec<(Source, IgnoredReason)> = d.ignored.iter().map(|i| (i.source, i.reason)).collect();
        assert_eq!(
            reasons,
            vec![(Source::Click, IgnoredReason::Outranked), (Source::ReferralCode, IgnoredReason::Outranked)]
        );
        let no_coupon = Claims { coupons: vec![], ..claims.clone() };
        assert_eq!(who(&decide(&no_coupon, &rules(), t(20), t(20))), (Some("C"), Some(Source::Click)));
        let code_only = Claims { clicks: vec![], ..no_coupon };
        assert_eq!(who(&decide(&code_only, &rules(), t(20), t(20))), (Some("D"), Some(Source::ReferralCode)));
    }

    #[test]
    fn the_program_order_decides_and_a_left_out_source_never_attributes() {
        let claims = Claims {
            coupons: vec![("X", Some(a("B")))],
            code: Some((Source::AffiliateId, "D", Some(a("D")))),
            ..Default::default()
        };
        let code_first = Rules { order: vec![Source::ReferralCode, Source::Coupon], ..rules() };
        let d = decide(&claims, &code_first, t(20), t(20));
        assert_eq!(who(&d), (Some("D"), Some(Source::AffiliateId)));
        let no_coupons = Rules { order: vec![Source::Click], ..rules() };
        let d = decide(&claims, &no_coupons, t(20), t(20));
        assert_eq!(who(&d), (None, None));
        assert_eq!(d.ignored.len(), 2, "{:?}", d.ignored);
    }

    #[test]
    fn clicks_outside_the_window_or_after_the_order_are_ignored() {
        let claims = Claims {
            clicks: vec![click("A", t(20) - TimeDelta::days(31)), click("B", t(20) + TimeDelta::hours(1))],
            ..Default::default()
        };
        let d = decide(&claims, &rules(), t(20), t(20));
        assert_eq!(who(&d), (None, None));
        let reasons: Vec<IgnoredReason> = d.ignored.iter().map(|i| i.reason).collect();
        assert_eq!(reasons, vec![IgnoredReason::ClickExpired, IgnoredReason::ClickAfterOrder]);
        let inside = Claims { clicks: vec![click("A", t(20) - TimeDelta::days(30))], ..Default::default() };
        assert_eq!(
            who(&decide(&inside, &rules(), t(20), t(20))),
            (Some("A"), Some(Source::Click)),
            "the window's edge"
        );
    }

    #[test]
    fn first_and_last_click() {
        let claims = Claims {
            clicks: vec![click("A", t(10)), click("B", t(12)), ClickCheck::Invalid("c1.x.y.z".into())],
            ..Default::default()
        };
        let last = decide(&claims, &rules(), t(20), t(20));
        assert_eq!(who(&last), (Some("B"), Some(Source::Click)));
        let first = decide(&claims, &Rules { click_model: ClickModel::First, ..rules() }, t(20), t(20));
        assert_eq!(who(&first), (Some("A"), Some(Source::Click)));
        let reasons: Vec<IgnoredReason> = first.ignored.iter().map(|i| i.reason).collect();
        assert_eq!(reasons, vec![IgnoredReason::InvalidClick, IgnoredReason::ClickNotChosen]);
    }

    #[test]
    fn an_expired_link_or_a_suspended_linked_affiliate_does_not_attribute() {
        let expired = link("A", Some(t(10)));
        let claims = Claims { link: Some(&expired), coupons: vec![("X", Some(a("B")))], ..Default::default() };
        let d = decide(&claims, &rules(), t(20), t(20));
        assert_eq!(who(&d), (Some("B"), Some(Source::Coupon)));
        assert_eq!(d.ignored[0].reason, IgnoredReason::LinkExpired);
        let suspended = Link { affiliate_suspended: true, ..link("A", None) };
        let claims = Claims { link: Some(&suspended), ..Default::default() };
        let d = decide(&claims, &rules(), t(20), t(20));
        assert_eq!(who(&d), (None, None));
        assert_eq!(d.ignored[0].reason, IgnoredReason::LinkedAffiliateSuspended);
        let off = Rules { customer_link: LinkMode::Off, ..rules() };
        let live = link("A", None);
        let d = decide(&Claims { link: Some(&live), ..Default::default() }, &off, t(20), t(20));
        assert_eq!((who(&d), d.ignored.len()), ((None, None), 0), "links are not read when the program has them off");
    }

    #[test]
    fn unknown_codes_are_recorded_not_refused() {
        let claims = Claims {
            coupons: vec![("NOBODY", None)],
            code: Some((Source::ReferralCode, "gone", None)),
            ..Default::default()
        };
        let d = decide(&claims, &rules(), t(20), t(20));
        assert_eq!(who(&d), (None, None));
        let reasons: Vec<IgnoredReason> = d.ignored.iter().map(|i| i.reason).collect();
        assert_eq!(reasons, vec![IgnoredReason::UnknownCoupon, IgnoredReason::UnknownReferralCode]);
    }

    #[test]
    fn the_first_attributed_order_links_and_only_then() {
        let by_coupon = Decision {
            affiliate_id: Some(a("B")),
            source: Some(Source::Coupon),
            detail: Some("X".into()),
            decided_at: t(20),
            ignored: vec![],
            reason: None,
        };
        let days = Rules { customer_link: LinkMode::Days(90), ..rules() };
        let made = new_link(&by_coupon, None, &days, t(20)).unwrap();
        assert_eq!((made.expires_at, made.replaces_expired), (Some(t(20) + TimeDelta::days(90)), false));
        assert_eq!(new_link(&by_coupon, None, &rules(), t(20)).unwrap().expires_at, None, "lifetime");
        let live = link("A", None);
        assert_eq!(new_link(&by_coupon, Some(&live), &rules(), t(20)), None, "a live link stays");
        let expired = link("A", Some(t(10)));
        assert!(new_link(&by_coupon, Some(&expired), &days, t(20)).unwrap().replaces_expired);
        let first_only = Rules { first_touch_only: true, ..days };
        assert_eq!(new_link(&by_coupon, Some(&expired), &first_only, t(20)), None);
        let off = Rules { customer_link: LinkMode::Off, ..rules() };
        assert_eq!(new_link(&by_coupon, None, &off, t(20)), None);
        let unattributed = Decision { affiliate_id: None, source: None, ..by_coupon };
        assert_eq!(new_link(&unattributed, None, &rules(), t(20)), None);
    }

    #[test]
    fn coupon_codes_compare_without_case() {
        assert_eq!(CouponCode::parse("Summer-10").unwrap().as_str(), "SUMMER-10");
        assert!(CouponCode::parse("has space").is_err());
        assert!(CouponCode::parse("").is_err());
    }

    proptest! {
        #[test]
        fn a_signed_click_verifies_and_any_change_breaks_it(
            affiliate in "[A-Za-z0-9_.:-]{1,64}",
            millis in 0i64..4_102_444_800_000,
            flip in any::<prop::sample::Index>(),
            key in prop::collection::vec(any::<u8>(), 32),
        ) {
            let click = Click { affiliate_id: a(&affiliate), at: DateTime::from_timestamp_millis(millis).unwrap() };
            let id = sign_click(&key, &click);
            prop_assert!(is_click_id_shape(&id));
            prop_assert_eq!(verify_click(&key, &id), Some(click.clone()));
            let mut other_key = key.clone();
            other_key[0] ^= 1;
            prop_assert_eq!(verify_click(&other_key, &id), None);
            let mut bytes = id.clone().into_bytes();
            let i = flip.index(bytes.len());
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(bytes).unwrap();
            if changed != id {
                prop_assert_eq!(verify_click(&key, &changed), None);
            }
        }

        #[test]
        fn exactly_one_winner_and_everything_else_accounted_for(
            linked in proptest::option::of(0usize..3),
            coupons in prop::collection::vec(proptest::option::of(0usize..3), 0..3),
            clicks in prop::collection::vec((0usize..3, 0i64..40), 0..3),
            code in proptest::option::of(proptest::option::of(0usize..3)),
        ) {
            let names = ["A", "B", "C"];
            let l = linked.map(|i| link(names[i], None));
            let claims = Claims {
                link: l.as_ref(),
                coupons: coupons.iter().map(|c| ("K", c.map(|i| a(names[i])))).collect(),
                clicks: clicks.iter().map(|(i, d)| click(names[*i], t(20) - TimeDelta::days(*d))).collect(),
                code: code.map(|c| (Source::ReferralCode, "code", c.map(|i| a(names[i])))),
            };
            let d = decide(&claims, &rules(), t(20), t(20));
            let carried = usize::from(linked.is_some()) + coupons.len() + clicks.len() + usize::from(code.is_some());
            let won = usize::from(d.affiliate_id.is_some());
            prop_assert_eq!(won + d.ignored.len(), carried, "{:?}", d);
            // The winner is the first source in the order that named someone.
            let first = if let Some(i) = linked { Some(names[i]) }
                else if let Some(i) = coupons.iter().flatten().next() { Some(names[*i]) }
                else if let Some((i, _)) = clicks.iter().filter(|(_, d)| *d <= 30).max_by_key(|(_, d)| -d) { Some(names[*i]) }
                else { code.flatten().map(|i| names[i]) };
            prop_assert_eq!(d.affiliate_id.as_ref().map(|a| a.as_str()), first);
        }
    }
}
