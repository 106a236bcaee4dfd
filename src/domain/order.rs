use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::id::{unpredictable_v7, uuid_newtype};
use super::{Money, ParseError, PaymentMethod, Price, ProductId, ProductName, raw_conversions};

/// An order's id: a UUIDv7, so ids sort by creation time (to the millisecond),
/// whose other 74 bits are random, so that no id can be guessed from another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderId(Uuid);

impl OrderId {
    /// A new id, of which at least 64 bits (74 here) are unpredictable.
    pub fn generate() -> OrderId {
        OrderId(unpredictable_v7())
    }

    /// The smallest id an order placed at `at` (or later) can have.
    pub fn first_at(at: DateTime<Utc>) -> OrderId {
        let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
        OrderId(uuid::Builder::from_unix_timestamp_millis(millis, &[0; 10]).into_uuid())
    }
}

uuid_newtype!(OrderId, "order_id must be a UUID");

/// How many units one order buys: 1 to [`Quantity::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Quantity(u32);

impl Quantity {
    pub const MAX: u32 = 1_000;

    pub fn parse(units: i64) -> Result<Quantity, ParseError> {
        match u32::try_from(units) {
            Ok(units @ 1..=Self::MAX) => Ok(Quantity(units)),
            _ => Err(ParseError::new(format!(
                "quantity must be a whole number between 1 and {}",
                Self::MAX
            ))),
        }
    }

    pub fn units(self) -> u32 {
        self.0
    }
}

raw_conversions!(Quantity, i64, |quantity| i64::from(quantity.0));

/// The public status of an order: `PENDING` until the saga decides, then exactly
/// one terminal status, which never changes again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Rejected,
    PaymentFailed,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "PENDING",
            OrderStatus::Confirmed => "CONFIRMED",
            OrderStatus::Rejected => "REJECTED",
            OrderStatus::PaymentFailed => "PAYMENT_FAILED",
        }
    }

    pub fn is_terminal(self) -> bool {
        self != OrderStatus::Pending
    }

    pub const ALL: [OrderStatus; 4] = [
        OrderStatus::Pending,
        OrderStatus::Confirmed,
        OrderStatus::Rejected,
        OrderStatus::PaymentFailed,
    ];

    /// `PENDING`, `CONFIRMED`, `REJECTED` or `PAYMENT_FAILED`.
    pub fn parse(raw: &str) -> Result<OrderStatus, ParseError> {
        OrderStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == raw)
            .ok_or_else(|| {
                ParseError::new("status must be PENDING, CONFIRMED, REJECTED or PAYMENT_FAILED")
            })
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an order's saga stands. Persisted with the order, so that a restart knows
/// where to resume and a shopper can watch the steps. It moves only along the
/// saga's arrows (see [`OrderStep::next`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStep {
    Placed,
    Reserved,
    Confirmed,
    Rejected,
    PaymentFailed,
}

/// What settles a pending step of the saga: Inventory's decision on the stock,
/// then the payment's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SagaOutcome {
    StockHeld,
    StockRefused,
    Paid,
    Declined,
}

/// Every arrow of the saga, (from, on, to): the one place its rules are written.
/// A step no arrow leaves is decided.
#[rustfmt::skip]
const ARROWS: [(OrderStep, SagaOutcome, OrderStep); 4] = [
    (OrderStep::Placed,   SagaOutcome::StockHeld,    OrderStep::Reserved),
    (OrderStep::Placed,   SagaOutcome::StockRefused, OrderStep::Rejected),
    (OrderStep::Reserved, SagaOutcome::Paid,         OrderStep::Confirmed),
    (OrderStep::Reserved, SagaOutcome::Declined,     OrderStep::PaymentFailed),
];

impl OrderStep {
    pub fn status(self) -> OrderStatus {
        match self {
            OrderStep::Placed | OrderStep::Reserved => OrderStatus::Pending,
            OrderStep::Confirmed => OrderStatus::Confirmed,
            OrderStep::Rejected => OrderStatus::Rejected,
            OrderStep::PaymentFailed => OrderStatus::PaymentFailed,
        }
    }

    /// Where the saga's arrow from this step on `outcome` leads; `None` when
    /// there is no such arrow.
    pub fn next(self, outcome: SagaOutcome) -> Option<OrderStep> {
        let arrow = ARROWS
            .iter()
            .find(|&&(from, on, _)| (from, on) == (self, outcome));
        arrow.map(|&(.., to)| to)
    }

    /// The step an order must be at to move to this one: each step has at most
    /// one arrow into it, and PLACED, where every order starts, has none.
    pub fn reached_from(self) -> Option<OrderStep> {
        let arrow = ARROWS.iter().find(|&&(.., to)| to == self);
        arrow.map(|&(from, ..)| from)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStep::Placed => "PLACED",
            OrderStep::Reserved => "RESERVED",
            OrderStep::Confirmed => "CONFIRMED",
            OrderStep::Rejected => "REJECTED",
            OrderStep::PaymentFailed => "PAYMENT_FAILED",
        }
    }
}

/// What Inventory decided about an order's stock, in the saga's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StockDecision {
    /// Every line's stock is held for the order.
    Held,
    /// A line lacked stock (`available`, when known): nothing is held.
    Short {
        product_id: ProductId,
        requested: Quantity,
        available: Option<i64>,
    },
    /// A line's product does not exist.
    UnknownProduct,
}

impl StockDecision {
    /// The arrow a PLACED order takes once its stock is decided, and the reason
    /// a rejected order gives the shopper.
    pub fn next_step(&self) -> Option<(OrderStep, Option<String>)> {
        let (outcome, reason) = match self {
            StockDecision::Held => (SagaOutcome::StockHeld, None),
            StockDecision::Short {
                product_id,
                requested,
                available,
            } => {
                let requested = requested.units();
                let available = available
                    .map(|n| format!(", {n} available"))
                    .unwrap_or_default();
                (
                    SagaOutcome::StockRefused,
                    Some(format!(
                        "not enough stock of {product_id}: {requested} requested{available}"
                    )),
                )
            }
            StockDecision::UnknownProduct => (
                SagaOutcome::StockRefused,
                Some("the product is no longer sold".to_owned()),
            ),
        };
        OrderStep::Placed.next(outcome).map(|step| (step, reason))
    }
}

impl FromStr for OrderStep {
    type Err = ParseError;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Ok(match raw {
            "PLACED" => OrderStep::Placed,
            "RESERVED" => OrderStep::Reserved,
            "CONFIRMED" => OrderStep::Confirmed,
            "REJECTED" => OrderStep::Rejected,
            "PAYMENT_FAILED" => OrderStep::PaymentFailed,
            other => return Err(ParseError::new(format!("unknown order step {other:?}"))),
        })
    }
}

/// A client's `Idempotency-Key`: 1 to 255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_LEN: usize = 255;

    pub fn parse(raw: &str) -> Result<IdempotencyKey, ParseError> {
        if raw.is_empty() || raw.len() > Self::MAX_LEN || !raw.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(ParseError::new(format!(
                "Idempotency-Key must be 1 to {} visible ASCII characters",
                Self::MAX_LEN
            )));
        }
        Ok(IdempotencyKey(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key in its owner's space: a storefront key belongs to the shopper
    /// (the browser's cookie) who sent it, so another browser sending the same
    /// key places an order of its own. An API client has no identity here: its
    /// keys share one space, and a key is a secret of the client that made it.
    pub fn owned_by(&self, shopper: Option<ShopperId>) -> OwnedKey {
        OwnedKey(match shopper {
            Some(shopper) => format!("shopper:{}:{}", shopper.0.simple(), self.0),
            None => format!("api:{}", self.0),
        })
    }
}

/// An idempotency key with its owner, as it is stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct OwnedKey(String);

impl OwnedKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An anonymous shopper: one browser, known by a cookie. It scopes "my orders";
/// it is not an account and proves nothing beyond "the same browser".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ShopperId(Uuid);

impl ShopperId {
    pub fn generate() -> ShopperId {
        ShopperId(Uuid::new_v4())
    }
}

uuid_newtype!(ShopperId, "the shopper id must be a UUID");

/// One recorded change of an order's step: the outbox row behind live
/// notifications. `seq` counts from 1 per order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderEvent {
    pub order_id: OrderId,
    pub seq: u32,
    pub step: OrderStep,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

/// What a shopper asks to buy: so many units of a product.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Item {
    pub product_id: ProductId,
    pub quantity: Quantity,
}

/// The items of one order: 1 to [`Items::MAX`], each product at most once, in
/// the order the shopper listed them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Items(Vec<Item>);

impl Items {
    pub const MAX: usize = 50;

    pub fn parse(items: Vec<Item>) -> Result<Items, ParseError> {
        if items.is_empty() || items.len() > Self::MAX {
            return Err(ParseError::new(format!(
                "items must hold 1 to {} lines",
                Self::MAX
            )));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(at) = items.iter().position(|item| !seen.insert(&item.product_id)) {
            return Err(ParseError::new(format!(
                "items[{at}] names a product that an earlier line has: a product appears at most once"
            )));
        }
        Ok(Items(items))
    }

    pub fn one(item: Item) -> Items {
        Items(vec![item])
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Item> {
        self.0.iter()
    }
}

impl<'de> Deserialize<'de> for Items {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Items::parse(Vec::<Item>::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// One line of a placed order: the product's name and price as they were when
/// the order was placed, which later changes to the product do not alter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub product_id: ProductId,
    pub product_name: ProductName,
    pub quantity: Quantity,
    pub unit_price: Price,
}

impl OrderLine {
    /// At most `Price::MAX_CENTS` × `Quantity::MAX`: it always fits.
    pub fn line_total(&self) -> Money {
        Money::from_cents(i64::from(self.unit_price) * i64::from(self.quantity))
    }
}

/// An order as the Orders actor owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub order_id: OrderId,
    /// At least one line, each product at most once.
    pub lines: Vec<OrderLine>,
    /// The card it is paid with, when the shopper gave one.
    pub payment_method: Option<PaymentMethod>,
    /// The sum of the lines.
    pub total_amount: Money,
    pub step: OrderStep,
    /// Why the order failed, in words a shopper understands; `None` unless failed.
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Order {
    pub fn status(&self) -> OrderStatus {
        self.step.status()
    }

    /// The order's only line, when it has one: the seed's shape of an order.
    pub fn single_line(&self) -> Option<&OrderLine> {
        match self.lines.as_slice() {
            [line] => Some(line),
            _ => None,
        }
    }

    /// The stock each line holds, for Inventory.
    pub fn items(&self) -> Vec<Item> {
        (self.lines.iter())
            .map(|line| Item {
                product_id: line.product_id.clone(),
                quantity: line.quantity,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_bounded_whole_numbers() {
        for bad in [0, -1, i64::from(Quantity::MAX) + 1, i64::MAX, i64::MIN] {
            assert!(Quantity::parse(bad).is_err(), "{bad} should be refused");
        }
        assert_eq!(Quantity::parse(1).map(Quantity::units), Ok(1));
        assert!(Quantity::parse(i64::from(Quantity::MAX)).is_ok());
    }

    #[test]
    fn only_terminal_steps_have_terminal_statuses() {
        assert_eq!(OrderStep::Placed.status(), OrderStatus::Pending);
        assert_eq!(OrderStep::Reserved.status(), OrderStatus::Pending);
        assert!(OrderStep::Confirmed.status().is_terminal());
        assert!(OrderStep::Rejected.status().is_terminal());
        assert!(OrderStep::PaymentFailed.status().is_terminal());
    }

    use OrderStep::{Confirmed, PaymentFailed, Placed, Rejected, Reserved};
    use SagaOutcome::{Declined, Paid, StockHeld, StockRefused};

    const STEPS: [OrderStep; 5] = [Placed, Reserved, Confirmed, Rejected, PaymentFailed];
    const OUTCOMES: [SagaOutcome; 4] = [StockHeld, StockRefused, Paid, Declined];

    #[test]
    fn steps_round_trip_through_their_names() {
        for step in STEPS {
            assert_eq!(step.as_str().parse::<OrderStep>(), Ok(step));
        }
    }

    #[test]
    fn every_step_on_every_outcome_moves_as_the_table_says() {
        #[rustfmt::skip]
        let expected: [(OrderStep, [Option<OrderStep>; 4]); 5] = [
            // on:           StockHeld,      StockRefused,   Paid,            Declined
            (Placed,        [Some(Reserved), Some(Rejected), None,            None]),
            (Reserved,      [None,           None,           Some(Confirmed), Some(PaymentFailed)]),
            (Confirmed,     [None; 4]),
            (Rejected,      [None; 4]),
            (PaymentFailed, [None; 4]),
        ];
        assert_eq!(expected.map(|(step, _)| step), STEPS);
        for (step, row) in expected {
            for (outcome, to) in OUTCOMES.into_iter().zip(row) {
                assert_eq!(step.next(outcome), to, "{step:?} on {outcome:?}");
            }
        }
    }

    #[test]
    fn pending_steps_have_a_way_on_and_decided_steps_none() {
        for step in STEPS {
            let ways_on = OUTCOMES.into_iter().filter_map(|o| step.next(o)).count();
            assert_eq!(ways_on == 0, step.status().is_terminal(), "{step:?}");
        }
    }

    #[test]
    fn a_step_is_reached_only_from_where_its_arrow_leaves() {
        for to in STEPS {
            let into: Vec<OrderStep> = (STEPS.into_iter())
                .filter(|from| OUTCOMES.into_iter().any(|o| from.next(o) == Some(to)))
                .collect();
            assert!(into.len() <= 1, "{to:?} is reached from {into:?}");
            assert_eq!(to.reached_from(), into.first().copied(), "{to:?}");
        }
        assert_eq!(Placed.reached_from(), None);
    }

    #[test]
    fn no_order_comes_back_to_a_step_it_left() {
        // A walk of as many arrows as there are steps would visit a step twice.
        let mut walks = STEPS.to_vec();
        for _ in STEPS {
            walks = (walks.into_iter())
                .flat_map(|step| OUTCOMES.into_iter().filter_map(move |o| step.next(o)))
                .collect();
        }
        assert_eq!(walks, []);
    }

    #[test]
    fn a_stock_decision_moves_a_placed_order_with_the_shoppers_reason() {
        let short = StockDecision::Short {
            product_id: ProductId::parse("tea").unwrap_or_else(|e| panic!("{e}")),
            requested: Quantity(3),
            available: Some(1),
        };
        let reason = "not enough stock of tea: 3 requested, 1 available".to_owned();
        assert_eq!(StockDecision::Held.next_step(), Some((Reserved, None)));
        assert_eq!(short.next_step(), Some((Rejected, Some(reason))));
        let gone = StockDecision::UnknownProduct.next_step();
        assert_eq!(gone.map(|(step, _)| step), Some(Rejected));
    }

    #[test]
    fn idempotency_keys_are_visible_ascii() {
        assert!(IdempotencyKey::parse("retry-7f3a").is_ok());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse("has space").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
    }

    #[test]
    fn a_key_belongs_to_its_shopper() {
        let key = IdempotencyKey::parse("buy-1").expect("a key");
        let (alice, bob) = (ShopperId::generate(), ShopperId::generate());
        assert_eq!(key.owned_by(Some(alice)), key.owned_by(Some(alice)));
        assert_ne!(key.owned_by(Some(alice)), key.owned_by(Some(bob)));
        assert_ne!(key.owned_by(Some(alice)), key.owned_by(None));
        assert_eq!(key.owned_by(None).as_str(), "api:buy-1");
    }

    #[test]
    fn ids_sort_after_the_first_id_of_their_time() {
        let before = Utc::now();
        let id = OrderId::generate();
        assert!(OrderId::first_at(before) <= id);
        assert!(id < OrderId::first_at(before + chrono::Duration::milliseconds(2)));
    }

    #[test]
    fn order_ids_must_be_uuids() {
        assert!(OrderId::parse("not-a-uuid").is_err());
        let id = OrderId::generate();
        assert_eq!(OrderId::parse(&id.to_string()), Ok(id));
    }
}
