//! Payout batches: approved entries grouped per affiliate, paid together.
use super::ids::AffiliateId;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct PayoutItem {
    pub affiliate_id: AffiliateId,
    pub amount: Decimal,
}

#[derive(Debug, Clone)]
pub struct Payout {
    pub id: u64,
    pub status: String,
    pub items: Vec<PayoutItem>,
    pub total: Decimal,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// A batch without its items, as the list of batches shows it.
#[derive(Debug, Clone)]
pub struct PayoutSummary {
    pub id: u64,
    pub status: String,
    /// How many affiliates the batch pays.
    pub items: u64,
    pub total: Decimal,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// One batch as an affiliate's payout history shows it: what it paid the
/// affiliate.
#[derive(Debug, Clone)]
pub struct AffiliatePayout {
    pub payout_id: u64,
    pub amount: Decimal,
    /// `open` (built, not yet marked paid) or `completed`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// A line of a batch's export for the bank or PayPal run.
#[derive(Debug, Clone)]
pub struct ExportLine {
    pub affiliate_id: AffiliateId,
    pub name: String,
    pub amount: Decimal,
}

/// What a payout request did.
#[derive(Debug, Clone)]
pub enum CreatePayout {
    /// A new batch.
    Created(Payout),
    /// The batch an earlier request with this idempotency key and the same
    /// `min_amount` built (also when the two ran at once).
    Repeated(Payout),
    /// No affiliate's approved, unbatched sum reached the minimum: nothing
    /// was stored (an empty batch would only be noise to complete).
    NothingToPay,
    /// The idempotency key was used before with another `min_amount`.
    KeyReused { min_amount: Decimal },
}

/// A batch to store: per affiliate its sum and the entries it pays.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPayout {
    pub key: Option<String>,
    pub min_amount: Decimal,
    pub total: Decimal,
    pub items: BTreeMap<AffiliateId, (Decimal, Vec<u64>)>,
    pub created_at: DateTime<Utc>,
}

/// The rule of a batch: each affiliate's approved, unbatched entries
/// (`(entry, affiliate, amount)`) are summed; an affiliate whose sum is
/// positive and reaches `min_amount` is paid it, all its entries together.
/// A negative or small sum stays and nets against later entries. None when
/// nobody is paid (no batch is stored).
pub fn plan(
    entries: &[(u64, AffiliateId, Decimal)],
    min_amount: Decimal,
    key: Option<&str>,
    now: DateTime<Utc>,
) -> Option<NewPayout> {
    let mut items: BTreeMap<AffiliateId, (Decimal, Vec<u64>)> = BTreeMap::new();
    for (entry, affiliate, amount) in entries {
        let slot = items.entry(affiliate.clone()).or_default();
        slot.0 += *amount;
        slot.1.push(*entry);
    }
    items.retain(|_, (sum, _)| *sum >= min_amount && *sum > Decimal::ZERO);
    if items.is_empty() {
        return None;
    }
    let total = items.values().map(|(sum, _)| *sum).sum();
    Some(NewPayout { key: key.map(str::to_owned), min_amount, total, items, created_at: now })
}

/// A request with an idempotency key met the batch built under it: the same
/// batch again when the minimum is the same, else a refusal.
pub fn keyed(first_min_amount: Decimal, min_amount: Decimal) -> Result<(), CreatePayout> {
    if first_min_amount == min_amount {
        Ok(())
    } else {
        Err(CreatePayout::KeyReused { min_amount: first_min_amount })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(s: &str) -> AffiliateId {
        AffiliateId::parse(s).unwrap()
    }

    #[test]
    fn sums_reaching_the_minimum_are_paid_with_all_their_entries() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        let entries = vec![
            (1, id("A"), d("30")),
            (2, id("B"), d("5")),
            (3, id("A"), d("-10")),
            (4, id("C"), d("-1")),
            (5, id("A"), d("0.5")),
        ];
        let now = Utc::now();
        let batch = plan(&entries, d("20"), Some("k"), now).expect("A is paid");
        assert_eq!(batch.items.len(), 1);
        assert_eq!(batch.items[&id("A")], (d("20.5"), vec![1, 3, 5]));
        assert_eq!(batch.total, d("20.5"));
        assert_eq!(batch.key.as_deref(), Some("k"));
        assert!(plan(&entries, d("21"), None, now).is_none());
        // A zero minimum still pays only positive sums.
        let all = plan(&entries, Decimal::ZERO, None, now).unwrap();
        assert_eq!(all.items.keys().cloned().collect::<Vec<_>>(), vec![id("A"), id("B")]);
    }

    #[test]
    fn a_key_is_reused_only_with_its_minimum() {
        assert!(keyed(Decimal::ONE, Decimal::ONE).is_ok());
        assert!(
            matches!(keyed(Decimal::ONE, Decimal::TWO), Err(CreatePayout::KeyReused { min_amount }) if min_amount == Decimal::ONE)
        );
    }

    proptest! {
        /// A batch's total is the sum of its items, each item is the sum of
        /// exactly its entries, no entry is paid twice, and every affiliate
        /// left out had a sum below the minimum or not positive.
        #[test]
        fn a_batch_pays_each_entry_at_most_once(
            raw in proptest::collection::vec((0usize..4, -5000i64..20000), 0..30),
            min in 0i64..10000,
        ) {
            let names = ["A", "B", "C", "D"];
            let entries: Vec<(u64, AffiliateId, Decimal)> = raw
                .iter()
                .enumerate()
                .map(|(n, (a, cents))| (n as u64, id(names[*a]), Decimal::new(*cents, 2)))
                .collect();
            let min = Decimal::new(min, 2);
            let batch = plan(&entries, min, None, Utc::now());
            let mut sums: BTreeMap<AffiliateId, Decimal> = BTreeMap::new();
            for (_, a, amount) in &entries {
                *sums.entry(a.clone()).or_default() += *amount;
            }
            let paid = batch.as_ref().map(|b| b.items.clone()).unwrap_or_default();
            let mut seen = std::collections::HashSet::new();
            for (a, (sum, ids)) in &paid {
                prop_assert_eq!(*sum, sums[a]);
                prop_assert!(*sum >= min && *sum > Decimal::ZERO);
                for i in ids {
                    prop_assert!(seen.insert(*i));
                    prop_assert_eq!(&entries[*i as usize].1, a);
                }
            }
            for (a, sum) in &sums {
                if !paid.contains_key(a) {
                    prop_assert!(*sum < min || *sum <= Decimal::ZERO);
                }
            }
            if let Some(b) = batch {
                prop_assert_eq!(b.total, paid.values().map(|(s, _)| *s).sum::<Decimal>());
            }
        }
    }
}
