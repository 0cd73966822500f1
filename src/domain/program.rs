//! The commission program (SPEC §4): its JSON document form, validation into a
//! typed `Program`, and the default version 1.
use super::attribution::{ClickModel, LinkMode, Rules as AttributionRules, Source};
use super::ids::is_valid_id;
use super::money::{self, Rounding};
use super::FieldError;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};

/// The JSON form exchanged over `GET/PUT /admin/program`. Every amount and rate
/// is a decimal string. Unknown fields are rejected.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgramDoc {
    pub currency: String,
    pub scale: u32,
    pub rounding: Rounding,
    pub timezone: String,
    pub levels: Vec<String>,
    #[serde(default)]
    pub category_rates: BTreeMap<String, String>,
    #[serde(default)]
    pub excluded_categories: Vec<String>,
    pub min_order_amount: String,
    pub max_commission_per_order: String,
    #[serde(default)]
    pub tiers: Vec<TierDoc>,
    #[serde(default)]
    pub milestones: Vec<MilestoneDoc>,
    pub skip_inactive_upline: bool,
    pub holding_days: u32,
    pub buyer_rewards: BuyerRewardsDoc,
    /// How orders are attributed beyond the referral code (all optional).
    #[serde(default, skip_serializing_if = "AttributionDoc::is_default")]
    pub attribution: AttributionDoc,
    /// Ancestors earn their level only while they sell themselves (absent: always).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upline_qualification: Option<UplineQualificationDoc>,
    /// Each affiliate's most as direct affiliate per day or month (docs/RULES.md "Caps and budgets").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub affiliate_caps: Vec<super::caps::CapDoc>,
    /// The program's most per month or in total, across all affiliates and buyers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<super::caps::BudgetDoc>,
    /// What a line that would pass a cap or budget gets: `clip` (default) or `zero`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_exhausted: Option<super::caps::OnExhausted>,
}

/// `upline_qualification` in the program document (docs/RULES.md rule 7).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UplineQualificationDoc {
    /// An ancestor earns its level commission on an order only when its own
    /// attributed orders placed earlier in the order's calendar month (program
    /// time zone) reach this eligible amount; above 0.
    pub min_personal_month_sales: String,
}

/// `attribution` in the program document (docs/RULES.md "Attribution").
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributionDoc {
    /// Which source wins when an order carries several, first first; a
    /// source left out never attributes. Default
    /// `["customer_link", "coupon", "click", "referral_code"]`.
    #[serde(default = "default_attribution_order")]
    pub order: Vec<String>,
    #[serde(default)]
    pub customer_link: CustomerLinkDoc,
    /// A click attributes an order placed at most this many days later (1-365, default 30).
    #[serde(default = "thirty")]
    pub click_window_days: u32,
    /// `last` (default) or `first`: which of several valid clicks attributes.
    #[serde(default = "last_click")]
    pub click_model: ClickModel,
    /// `no_commission` (default): the affiliate's own purchases pay it
    /// nothing (rule 2); `allowed`: they pay as any other order.
    #[serde(default = "no_commission")]
    pub self_referral: String,
}

/// `attribution.customer_link`: whether a buyer stays with the affiliate of
/// their first attributed order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerLinkDoc {
    /// `off` (default), `lifetime`, or `days`.
    #[serde(default = "off")]
    pub mode: String,
    /// With `days`: how long a link holds (1-3650).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<u32>,
    /// After a link expires, the buyer is never linked again (default false:
    /// the next attributed order links them anew).
    #[serde(default)]
    pub first_touch_only: bool,
}

impl Default for CustomerLinkDoc {
    fn default() -> Self {
        Self { mode: off(), days: None, first_touch_only: false }
    }
}

impl Default for AttributionDoc {
    fn default() -> Self {
        Self {
            order: default_attribution_order(),
            customer_link: CustomerLinkDoc::default(),
            click_window_days: 30,
            click_model: ClickModel::Last,
            self_referral: no_commission(),
        }
    }
}

impl AttributionDoc {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

fn default_attribution_order() -> Vec<String> {
    Source::ORDERABLE.iter().map(|s| s.as_str().to_owned()).collect()
}

fn off() -> String {
    "off".to_owned()
}

fn no_commission() -> String {
    "no_commission".to_owned()
}

fn last_click() -> ClickModel {
    ClickModel::Last
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TierDoc {
    pub monthly_sales_from: String,
    pub bonus_rate: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MilestoneDoc {
    pub nth_order_in_month: u32,
    pub bonus: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BuyerRewardsDoc {
    pub points_rate: String,
    /// Whole points, as a string of digits (e.g. "5000").
    pub first_order_bonus: String,
    /// Currency per point when spent (default "1").
    #[serde(default = "one")]
    pub points_value: String,
    /// Earned points expire this many days later, oldest first (0: never; the default).
    #[serde(default)]
    pub points_expire_days: u32,
    /// An uncaptured redemption hold gives its points back after this many minutes (default 30).
    #[serde(default = "thirty")]
    pub redemption_hold_minutes: u32,
}

fn one() -> String {
    "1".to_owned()
}

fn thirty() -> u32 {
    30
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tier {
    pub monthly_sales_from: Decimal,
    pub bonus_rate: Decimal,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Milestone {
    pub nth_order_in_month: u32,
    pub bonus: Decimal,
}

/// A validated program version. Immutable once stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    /// ISO 4217 style: exactly 3 uppercase ASCII letters.
    pub currency: String,
    /// Decimal places of every amount, 0..=4.
    pub scale: u32,
    pub rounding: Rounding,
    pub timezone: chrono_tz::Tz,
    /// levels[0] is the direct affiliate's default rate; 1..=10 levels, each in [0, 1].
    pub levels: Vec<Decimal>,
    pub category_rates: BTreeMap<String, Decimal>,
    pub excluded_categories: BTreeSet<String>,
    pub min_order_amount: Decimal,
    pub max_commission_per_order: Decimal,
    /// Sorted by `monthly_sales_from` ascending, strictly increasing.
    pub tiers: Vec<Tier>,
    /// Distinct `nth_order_in_month` (≥ 1).
    pub milestones: Vec<Milestone>,
    pub skip_inactive_upline: bool,
    /// 0..=3650.
    pub holding_days: u32,
    pub points_rate: Decimal,
    pub first_order_bonus: i64,
    /// Currency per point when spent.
    pub points_value: Decimal,
    /// 0..=3650; 0: points never expire.
    pub points_expire_days: u32,
    /// 1..=10080 (a week).
    pub redemption_hold_minutes: u32,
    pub attribution: AttributionRules,
    /// Rule 7's qualification: an ancestor's own sales in the month before
    /// the order must reach this (None: every active ancestor qualifies).
    pub upline_min_month_sales: Option<Decimal>,
    /// Caps on each direct affiliate's lines (an affiliate's own caps replace them).
    pub affiliate_caps: Vec<super::caps::Cap>,
    pub budgets: Vec<super::caps::Budget>,
    pub on_exhausted: super::caps::OnExhausted,
}

impl Program {
    /// Validates a document, reporting every problem with its JSON path
    /// (e.g. `levels[1]`, `tiers[0].bonus_rate`, `buyer_rewards.points_rate`).
    pub fn parse(doc: &ProgramDoc) -> Result<Program, Vec<FieldError>> {
        let mut c = Checker { errors: Vec::new(), scale: doc.scale.min(4) };
        if doc.scale > 4 {
            c.err("scale", "must be 0-4");
        }
        if !(doc.currency.len() == 3 && doc.currency.bytes().all(|b| b.is_ascii_uppercase())) {
            c.err("currency", "must be 3 uppercase letters");
        }
        let timezone = doc.timezone.parse::<chrono_tz::Tz>().unwrap_or_else(|_| {
            c.err("timezone", "must be an IANA time zone such as Asia/Jakarta");
            chrono_tz::UTC
        });
        if doc.levels.is_empty() || doc.levels.len() > 10 {
            c.err("levels", "must list 1-10 rates");
        }
        let levels: Vec<Decimal> =
            doc.levels.iter().enumerate().map(|(i, r)| c.rate(format!("levels[{i}]"), r)).collect();
        let (category_rates, excluded_categories) = c.categories(doc);
        let min_order_amount = c.amount("min_order_amount".into(), &doc.min_order_amount).unwrap_or(Decimal::ZERO);
        let max_commission_per_order = c.amount("max_commission_per_order".into(), &doc.max_commission_per_order);
        if max_commission_per_order.is_some_and(|max| max <= Decimal::ZERO) {
            c.err("max_commission_per_order", "must be above 0");
        }
        let tiers = c.tiers(doc);
        let milestones = c.milestones(doc);
        if doc.holding_days > 3650 {
            c.err("holding_days", "must be 0-3650");
        }
        let (points_rate, first_order_bonus, points_value) = c.rewards(&doc.buyer_rewards);
        let attribution = c.attribution(&doc.attribution);
        let upline_min_month_sales = doc.upline_qualification.as_ref().and_then(|q| {
            let field = "upline_qualification.min_personal_month_sales";
            let min = c.amount(field.into(), &q.min_personal_month_sales)?;
            if min <= Decimal::ZERO {
                c.err(field, "must be above 0");
            }
            Some(min)
        });
        let affiliate_caps = super::caps::parse_caps(&doc.affiliate_caps, "affiliate_caps", c.scale, &mut c.errors);
        let budgets = super::caps::parse_budgets(&doc.budgets, c.scale, &mut c.errors);
        if !c.errors.is_empty() {
            return Err(c.errors);
        }
        Ok(Program {
            currency: doc.currency.clone(),
            scale: c.scale,
            rounding: doc.rounding,
            timezone,
            levels,
            category_rates,
            excluded_categories,
            min_order_amount,
            max_commission_per_order: max_commission_per_order.unwrap_or(Decimal::ZERO),
            tiers,
            milestones,
            skip_inactive_upline: doc.skip_inactive_upline,
            holding_days: doc.holding_days,
            points_rate,
            first_order_bonus,
            points_value,
            points_expire_days: doc.buyer_rewards.points_expire_days,
            redemption_hold_minutes: doc.buyer_rewards.redemption_hold_minutes,
            attribution,
            upline_min_month_sales,
            affiliate_caps,
            budgets,
            on_exhausted: doc.on_exhausted.unwrap_or_default(),
        })
    }

    /// The document form; `Program::parse(&p.to_doc()) == Ok(p)`.
    pub fn to_doc(&self) -> ProgramDoc {
        ProgramDoc {
            currency: self.currency.clone(),
            scale: self.scale,
            rounding: self.rounding,
            timezone: self.timezone.name().to_owned(),
            levels: self.levels.iter().map(|r| money::format(*r)).collect(),
            category_rates: self.category_rates.iter().map(|(c, r)| (c.clone(), money::format(*r))).collect(),
            excluded_categories: self.excluded_categories.iter().cloned().collect(),
            min_order_amount: money::format(self.min_order_amount),
            max_commission_per_order: money::format(self.max_commission_per_order),
            tiers: self
                .tiers
                .iter()
                .map(|t| TierDoc {
                    monthly_sales_from: money::format(t.monthly_sales_from),
                    bonus_rate: money::format(t.bonus_rate),
                })
                .collect(),
            milestones: self
                .milestones
                .iter()
                .map(|m| MilestoneDoc { nth_order_in_month: m.nth_order_in_month, bonus: money::format(m.bonus) })
                .collect(),
            skip_inactive_upline: self.skip_inactive_upline,
            holding_days: self.holding_days,
            buyer_rewards: BuyerRewardsDoc {
                points_rate: money::format(self.points_rate),
                first_order_bonus: self.first_order_bonus.to_string(),
                points_value: money::format(self.points_value),
                points_expire_days: self.points_expire_days,
                redemption_hold_minutes: self.redemption_hold_minutes,
            },
            attribution: attribution_doc(&self.attribution),
            upline_qualification: self
                .upline_min_month_sales
                .map(|m| UplineQualificationDoc { min_personal_month_sales: money::format(m) }),
            affiliate_caps: super::caps::cap_docs(&self.affiliate_caps),
            budgets: super::caps::budget_docs(&self.budgets),
            on_exhausted: (self.on_exhausted != super::caps::OnExhausted::Clip).then_some(self.on_exhausted),
        }
    }

    /// The SPEC §4 example program, which a fresh database starts with as version 1.
    pub fn default_doc() -> ProgramDoc {
        let s = |x: &str| x.to_owned();
        ProgramDoc {
            currency: s("IDR"),
            scale: 0,
            rounding: Rounding::Floor,
            timezone: s("Asia/Jakarta"),
            levels: vec![s("0.10"), s("0.03"), s("0.01")],
            category_rates: BTreeMap::from([(s("electronics"), s("0.04"))]),
            excluded_categories: vec![s("gift-card")],
            min_order_amount: s("50000"),
            max_commission_per_order: s("1000000"),
            tiers: vec![TierDoc { monthly_sales_from: s("10000000"), bonus_rate: s("0.02") }],
            milestones: vec![MilestoneDoc { nth_order_in_month: 3, bonus: s("25000") }],
            skip_inactive_upline: true,
            holding_days: 14,
            buyer_rewards: BuyerRewardsDoc {
                points_rate: s("0.01"),
                first_order_bonus: s("5000"),
                points_value: s("1"),
                points_expire_days: 0,
                redemption_hold_minutes: 30,
            },
            attribution: AttributionDoc::default(),
            upline_qualification: None,
            affiliate_caps: Vec::new(),
            budgets: Vec::new(),
            on_exhausted: None,
        }
    }

    /// The level-1 rate of an item in `category`.
    pub fn level1_rate(&self, category: &str) -> Decimal {
        self.category_rates.get(category).copied().unwrap_or(self.levels.first().copied().unwrap_or(Decimal::ZERO))
    }

    /// Whether any cap or budget may cut this program's lines.
    pub fn has_limits(&self) -> bool {
        !self.affiliate_caps.is_empty() || !self.budgets.is_empty()
    }

    pub fn is_excluded(&self, category: &str) -> bool {
        self.excluded_categories.contains(category)
    }
}

/// Every problem of a program document, each with its JSON path.
struct Checker {
    errors: Vec<FieldError>,
    /// The program scale (amounts may have no more decimals).
    scale: u32,
}

/// The document form of validated attribution rules.
fn attribution_doc(r: &AttributionRules) -> AttributionDoc {
    let (mode, days) = match r.customer_link {
        LinkMode::Off => ("off", None),
        LinkMode::Lifetime => ("lifetime", None),
        LinkMode::Days(d) => ("days", Some(d)),
    };
    AttributionDoc {
        order: r.order.iter().map(|s| s.as_str().to_owned()).collect(),
        customer_link: CustomerLinkDoc { mode: mode.to_owned(), days, first_touch_only: r.first_touch_only },
        click_window_days: r.click_window_days,
        click_model: r.click_model,
        self_referral: if r.block_self_referral { "no_commission" } else { "allowed" }.to_owned(),
    }
}

impl Checker {
    fn attribution(&mut self, doc: &AttributionDoc) -> AttributionRules {
        let mut order = Vec::new();
        if doc.order.is_empty() {
            self.err("attribution.order", "must name at least one source");
        }
        for (i, name) in doc.order.iter().enumerate() {
            match Source::parse_orderable(name) {
                Some(s) if order.contains(&s) => self.err(format!("attribution.order[{i}]"), "named twice"),
                Some(s) => order.push(s),
                None => {
                    self.err(format!("attribution.order[{i}]"), "must be customer_link, coupon, click or referral_code")
                }
            }
        }
        let link = &doc.customer_link;
        let customer_link = match (link.mode.as_str(), link.days) {
            ("off", None) => LinkMode::Off,
            ("lifetime", None) => LinkMode::Lifetime,
            ("days", Some(d)) if (1..=3650).contains(&d) => LinkMode::Days(d),
            ("days", _) => {
                self.err("attribution.customer_link.days", "must be 1-3650 with mode days");
                LinkMode::Off
            }
            ("off" | "lifetime", Some(_)) => {
                self.err("attribution.customer_link.days", "only with mode days");
                LinkMode::Off
            }
            _ => {
                self.err("attribution.customer_link.mode", "must be off, lifetime or days");
                LinkMode::Off
            }
        };
        if !(1..=365).contains(&doc.click_window_days) {
            self.err("attribution.click_window_days", "must be 1-365");
        }
        let block_self_referral = match doc.self_referral.as_str() {
            "no_commission" => true,
            "allowed" => false,
            _ => {
                self.err("attribution.self_referral", "must be no_commission or allowed");
                true
            }
        };
        AttributionRules {
            customer_link,
            first_touch_only: link.first_touch_only,
            click_window_days: doc.click_window_days,
            click_model: doc.click_model,
            order,
            block_self_referral,
        }
    }

    fn err(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    fn rate(&mut self, field: String, s: &str) -> Decimal {
        money::parse_rate(s).unwrap_or_else(|e| {
            self.err(field, e.to_string());
            Decimal::ZERO
        })
    }

    /// None when the text is not an amount at all, so checks that compare
    /// the value (above 0, increasing tiers) do not pile a second error on
    /// the field.
    fn amount(&mut self, field: String, s: &str) -> Option<Decimal> {
        match money::parse_amount(s) {
            // Trailing zeros ("50000.00" at scale 0) are not finer than the scale.
            Ok(a) if a.normalize().scale() > self.scale => {
                let scale = self.scale;
                self.err(field, format!("must have at most {scale} decimal places (the program scale)"));
                Some(a)
            }
            Ok(a) => Some(a),
            Err(e) => {
                self.err(field, e.to_string());
                None
            }
        }
    }

    fn categories(&mut self, doc: &ProgramDoc) -> (BTreeMap<String, Decimal>, BTreeSet<String>) {
        let mut rates = BTreeMap::new();
        for (category, r) in &doc.category_rates {
            if !is_valid_id(category) {
                self.err(format!("category_rates.{category}"), "category names are 1-64 of [A-Za-z0-9_.:-]");
            }
            rates.insert(category.clone(), self.rate(format!("category_rates.{category}"), r));
        }
        let mut excluded = BTreeSet::new();
        for (i, category) in doc.excluded_categories.iter().enumerate() {
            if !is_valid_id(category) {
                self.err(format!("excluded_categories[{i}]"), "category names are 1-64 of [A-Za-z0-9_.:-]");
            }
            excluded.insert(category.clone());
        }
        (rates, excluded)
    }

    /// Tiers in strictly increasing thresholds. The highest threshold so far
    /// that parsed: a tier that fails to parse is reported once, and every
    /// tier not above all earlier ones is reported.
    fn tiers(&mut self, doc: &ProgramDoc) -> Vec<Tier> {
        let mut tiers = Vec::new();
        let mut highest_from: Option<Decimal> = None;
        for (i, t) in doc.tiers.iter().enumerate() {
            let from = self.amount(format!("tiers[{i}].monthly_sales_from"), &t.monthly_sales_from);
            if let Some(from) = from {
                if highest_from.is_some_and(|highest| highest >= from) {
                    self.err(
                        format!("tiers[{i}].monthly_sales_from"),
                        "tiers must be in strictly increasing monthly_sales_from",
                    );
                }
                highest_from = Some(highest_from.map_or(from, |highest| highest.max(from)));
            }
            tiers.push(Tier {
                monthly_sales_from: from.unwrap_or(Decimal::ZERO),
                bonus_rate: self.rate(format!("tiers[{i}].bonus_rate"), &t.bonus_rate),
            });
        }
        tiers
    }

    fn milestones(&mut self, doc: &ProgramDoc) -> Vec<Milestone> {
        let mut milestones: Vec<Milestone> = Vec::new();
        for (i, m) in doc.milestones.iter().enumerate() {
            if m.nth_order_in_month == 0 {
                self.err(format!("milestones[{i}].nth_order_in_month"), "must be 1 or more");
            } else if milestones.iter().any(|x| x.nth_order_in_month == m.nth_order_in_month) {
                self.err(format!("milestones[{i}].nth_order_in_month"), "each n may appear once");
            }
            let bonus = self.amount(format!("milestones[{i}].bonus"), &m.bonus).unwrap_or(Decimal::ZERO);
            milestones.push(Milestone { nth_order_in_month: m.nth_order_in_month, bonus });
        }
        milestones
    }

    /// (points rate, first-order bonus, value of a point).
    fn rewards(&mut self, r: &BuyerRewardsDoc) -> (Decimal, i64, Decimal) {
        let points_rate = self.rate("buyer_rewards.points_rate".into(), &r.points_rate);
        let bonus = &r.first_order_bonus;
        let first_order_bonus = match bonus.parse::<i64>() {
            Ok(n) if !bonus.is_empty() && bonus.bytes().all(|b| b.is_ascii_digit()) && n <= 1_000_000_000 => n,
            _ => {
                self.err("buyer_rewards.first_order_bonus", "must be whole points, 0-1000000000, as a string");
                0
            }
        };
        let points_value = money::parse_amount(&r.points_value).unwrap_or_else(|e| {
            self.err("buyer_rewards.points_value", e.to_string());
            Decimal::ZERO
        });
        if r.points_expire_days > 3650 {
            self.err("buyer_rewards.points_expire_days", "must be 0-3650");
        }
        if !(1..=10080).contains(&r.redemption_hold_minutes) {
            self.err("buyer_rewards.redemption_hold_minutes", "must be 1-10080 (a week)");
        }
        (points_rate, first_order_bonus, points_value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_program_is_valid_and_round_trips() {
        let program = Program::parse(&Program::default_doc()).expect("default program is valid");
        assert_eq!(program.levels.len(), 3);
        assert_eq!(program.level1_rate("electronics"), Decimal::new(4, 2));
        assert_eq!(program.level1_rate("fashion"), Decimal::new(10, 2));
        assert!(program.is_excluded("gift-card"));
        assert_eq!(program.first_order_bonus, 5000);
        assert_eq!(Program::parse(&program.to_doc()), Ok(program));
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let mut doc = Program::default_doc();
        doc.currency = "idr".into();
        doc.scale = 9;
        doc.timezone = "Mars/Olympus".into();
        doc.levels = vec!["0.10".into(), "2".into()];
        doc.category_rates.insert("bad name".into(), "0.1".into());
        doc.min_order_amount = "-5".into();
        doc.max_commission_per_order = "0".into();
        doc.tiers = vec![
            TierDoc { monthly_sales_from: "100".into(), bonus_rate: "0.01".into() },
            TierDoc { monthly_sales_from: "50".into(), bonus_rate: "1.01".into() },
        ];
        doc.milestones = vec![
            MilestoneDoc { nth_order_in_month: 0, bonus: "1".into() },
            MilestoneDoc { nth_order_in_month: 2, bonus: "1.5".into() },
        ];
        doc.holding_days = 4000;
        doc.buyer_rewards.points_rate = "x".into();
        doc.buyer_rewards.first_order_bonus = "5.5".into();
        let errors = Program::parse(&doc).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        for expected in [
            "currency",
            "scale",
            "timezone",
            "levels[1]",
            "category_rates.bad name",
            "min_order_amount",
            "max_commission_per_order",
            "tiers[1].monthly_sales_from",
            "tiers[1].bonus_rate",
            "milestones[0].nth_order_in_month",
            "holding_days",
            "buyer_rewards.points_rate",
            "buyer_rewards.first_order_bonus",
        ] {
            assert!(fields.contains(&expected), "{expected} missing from {fields:?}");
        }
    }

    #[test]
    fn the_other_paths_are_reported_once_each() {
        let mut doc = Program::default_doc();
        doc.levels = vec![];
        doc.category_rates = BTreeMap::from([("electronics".to_owned(), "0.5.0".to_owned())]);
        doc.excluded_categories = vec!["gift card".into()];
        doc.max_commission_per_order = "1e6".into();
        doc.tiers = vec![
            TierDoc { monthly_sales_from: "abc".into(), bonus_rate: "0.01".into() },
            TierDoc { monthly_sales_from: "100".into(), bonus_rate: "0.02".into() },
            TierDoc { monthly_sales_from: "100".into(), bonus_rate: "0.03".into() },
        ];
        doc.milestones = vec![
            MilestoneDoc { nth_order_in_month: 2, bonus: "25000.5".into() },
            MilestoneDoc { nth_order_in_month: 2, bonus: "1".into() },
        ];
        doc.buyer_rewards.first_order_bonus = "1000000001".into();
        let errors = Program::parse(&doc).unwrap_err();
        let mut fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            vec![
                "buyer_rewards.first_order_bonus",
                "category_rates.electronics",
                "excluded_categories[0]",
                "levels",
                "max_commission_per_order",
                "milestones[0].bonus",
                "milestones[1].nth_order_in_month",
                "tiers[0].monthly_sales_from",
                "tiers[2].monthly_sales_from",
            ]
        );
    }

    #[test]
    fn limits_at_their_edges() {
        let ok = |change: &dyn Fn(&mut ProgramDoc)| {
            let mut doc = Program::default_doc();
            change(&mut doc);
            Program::parse(&doc).map(|_| ()).map_err(|e| e.into_iter().map(|e| e.field).collect::<Vec<_>>())
        };
        assert_eq!(ok(&|d| d.levels = vec!["1".into(); 10]), Ok(()));
        assert_eq!(ok(&|d| d.levels = vec!["0.1".into(); 11]), Err(vec!["levels".to_owned()]));
        assert_eq!(ok(&|d| d.scale = 4), Ok(()));
        assert_eq!(ok(&|d| d.holding_days = 3650), Ok(()));
        assert_eq!(ok(&|d| d.holding_days = 3651), Err(vec!["holding_days".to_owned()]));
        assert_eq!(ok(&|d| d.buyer_rewards.first_order_bonus = "1000000000".into()), Ok(()));
        assert_eq!(ok(&|d| d.buyer_rewards.first_order_bonus = "0".into()), Ok(()));
        for bad in ["", "-1", "+1", "5.0", " 5", "99999999999999999999999"] {
            assert_eq!(
                ok(&|d| d.buyer_rewards.first_order_bonus = bad.into()),
                Err(vec!["buyer_rewards.first_order_bonus".to_owned()]),
                "{bad:?}"
            );
        }
        for bad in ["IDRX", "ID", "Idr", "ID1", "ÀBC"] {
            assert_eq!(ok(&|d| d.currency = bad.into()), Err(vec!["currency".to_owned()]), "{bad:?}");
        }
        assert_eq!(
            ok(&|d| d.max_commission_per_order = "0.0".into()),
            Err(vec!["max_commission_per_order".to_owned()])
        );
    }

    #[test]
    fn a_richer_program_round_trips() {
        let mut doc = Program::default_doc();
        doc.scale = 2;
        doc.rounding = Rounding::HalfEven;
        doc.timezone = "Europe/Berlin".into();
        doc.levels = vec!["0.125".into(), "0".into(), "1".into()];
        doc.category_rates.insert("food".into(), "0.000001".into());
        doc.excluded_categories = vec!["b".into(), "a".into()];
        doc.min_order_amount = "0.50".into();
        doc.tiers = vec![
            TierDoc { monthly_sales_from: "0".into(), bonus_rate: "0.01".into() },
            TierDoc { monthly_sales_from: "999999999999.99".into(), bonus_rate: "0.02".into() },
        ];
        doc.milestones = vec![
            MilestoneDoc { nth_order_in_month: 5, bonus: "0.01".into() },
            MilestoneDoc { nth_order_in_month: 1, bonus: "10".into() },
        ];
        let program = Program::parse(&doc).expect("valid");
        assert_eq!(program.to_doc().levels, vec!["0.125", "0", "1"]);
        assert_eq!(program.to_doc().min_order_amount, "0.5");
        assert_eq!(program.level1_rate("food"), Decimal::new(1, 6));
        assert_eq!(Program::parse(&program.to_doc()), Ok(program));
    }

    #[test]
    fn amounts_may_not_be_finer_than_the_scale() {
        let mut doc = Program::default_doc();
        doc.min_order_amount = "50000.5".into();
        assert_eq!(Program::parse(&doc).unwrap_err()[0].field, "min_order_amount");
        doc.min_order_amount = "50000.00".into();
        assert!(Program::parse(&doc).is_ok(), "trailing zeros are not finer");
        doc.scale = 2;
        doc.min_order_amount = "50000.5".into();
        assert!(Program::parse(&doc).is_ok());
    }
}
