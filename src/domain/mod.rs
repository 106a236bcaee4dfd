//! The shop's vocabulary. Every value here is parsed once, at the edge, and trusted
//! afterwards: a `Quantity` is always between 1 and [`Quantity::MAX`], a `ProductId`
//! is always a well-formed key, money is always integer cents. The domain depends
//! on nothing else in the crate.

mod card;
mod id;
mod money;
mod order;
mod payment;
mod product;

pub use card::{Card, CardBrand, CardNumber, Cvc, Expiry, PaymentMethod};
pub use money::Money;
pub use order::{
    IdempotencyKey, Item, Items, Order, OrderEvent, OrderId, OrderLine, OrderStatus, OrderStep,
    OwnedKey, Quantity, SagaOutcome, ShopperId, StockDecision,
};
pub use payment::{Payment, PaymentId, PaymentStatus};
pub use product::{Price, Product, ProductId, ProductName, Stock};

/// Why a raw value was refused. The message names the rule, so an API client can
/// show it as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub(crate) String);

impl ParseError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ParseError(message.into())
    }
}

/// `TryFrom<$raw>` through the type's `parse`, and back to `$raw` with
/// `|$value| $back`: the pair that `#[serde(try_from, into)]` goes through.
macro_rules! raw_conversions {
    ($type:ident, $raw:ty, |$value:ident| $back:expr) => {
        impl TryFrom<$raw> for $type {
            type Error = $crate::domain::ParseError;
            fn try_from(raw: $raw) -> Result<Self, Self::Error> {
                $type::parse(raw)
            }
        }

        impl From<$type> for $raw {
            fn from($value: $type) -> $raw {
                $back
            }
        }
    };
}
pub(crate) use raw_conversions;
