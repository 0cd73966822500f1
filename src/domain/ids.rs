//! Identifiers given by the storefront: 1–64 chars of `[A-Za-z0-9_.:-]`.
//! Parsed once at the edge, so an invalid id cannot exist past it.
use std::fmt;

/// Whether `s` is a valid storefront-given identifier.
pub fn is_valid_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be 1-64 characters of A-Z, a-z, 0-9, '_', '.', ':' or '-'")]
pub struct InvalidId;

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                if is_valid_id(s) { Ok(Self(s.to_owned())) } else { Err(InvalidId) }
            }
            /// For values read back from the store, which only ever holds parsed ids.
            pub fn from_trusted(s: String) -> Self {
                Self(s)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(/// An affiliate's id.
    AffiliateId);
id_type!(/// An affiliate's referral code.
    ReferralCode);
id_type!(/// A storefront order id.
    OrderId);
id_type!(/// A shopper's id.
    BuyerId);
id_type!(/// A stock-keeping unit, unique within an order.
    Sku);
id_type!(/// A product category (rates and exclusions are keyed by it).
    Category);
id_type!(/// A storefront-given refund id (idempotency key of a refund).
    RefundId);
id_type!(/// A storefront-given redemption id (idempotency key of a points hold, per buyer).
    RedemptionId);
id_type!(/// An operator-given adjustment id (idempotency key of a manual adjustment).
    AdjustmentId);
