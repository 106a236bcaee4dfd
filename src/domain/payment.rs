use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::id::{unpredictable_v7, uuid_newtype};
use super::{Money, OrderId, ParseError};

/// A payment's id: a UUIDv7 like [`OrderId`], sorting by creation time, with 74
/// random bits so that no id can be guessed from another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PaymentId(Uuid);

impl PaymentId {
    /// A new id, of which at least 64 bits (74 here) are unpredictable.
    pub fn generate() -> PaymentId {
        PaymentId(unpredictable_v7())
    }
}

uuid_newtype!(PaymentId, "payment_id must be a UUID");

/// A payment's outcome. A decline is a normal answer from the provider, not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    Succeeded,
    Declined,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Succeeded => "SUCCEEDED",
            PaymentStatus::Declined => "DECLINED",
        }
    }
}

impl FromStr for PaymentStatus {
    type Err = ParseError;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw {
            "SUCCEEDED" => Ok(PaymentStatus::Succeeded),
            "DECLINED" => Ok(PaymentStatus::Declined),
            other => Err(ParseError::new(format!("unknown payment status {other:?}"))),
        }
    }
}

/// One charge attempt against an order. There is at most one per order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Payment {
    pub payment_id: PaymentId,
    pub order_id: OrderId,
    pub total_amount: Money,
    pub status: PaymentStatus,
    /// Why the provider declined it, when it said ("insufficient funds").
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl Payment {
    /// The reason a declined order gives the shopper.
    pub fn declined_reason(&self) -> String {
        match &self.reason {
            Some(reason) => format!("the payment was declined: {reason}"),
            None => "the payment was declined".to_owned(),
        }
    }
}
