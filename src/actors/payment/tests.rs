//! The Payment actor, messages in, state and replies out: every test opens its own
//! database and starts the actors over it. Orders that must wait at step RESERVED
//! without a payment are written straight into the store, so that no saga charges
//! them first.

use futures_util::future::join_all;

use super::*;
use crate::actors::Actors;
use crate::actors::orders::PlaceOrder;
use crate::actors::testing::*;
use crate::domain::Order;
use crate::store::{self, OrderTransition};

/// Places an order through the Orders actor and waits for its saga to finish.
async fn charged_order(actors: &Actors, units: i64) -> Order {
    let placed = actors
        .orders
        .send(PlaceOrder {
            items: tea_items(units),
            card: None,
            from_cart: false,
            idempotency_key: None,
            shopper: None,
            request_id: None,
            admitted: None,
        })
        .await
        .unwrap()
        .unwrap();
    until_terminal(&actors.orders, placed.order.order_id).await
}

/// An order at step RESERVED, its stock held and no payment made: what a saga
/// leaves just before it charges.
async fn reserved_order(store: &Store, units: i64) -> Order {
    let order = order_in_store(store, units).await;
    let reserved = store
        .reserve(store::Reserve {
            order_id: order.order_id,
            lines: order.items(),
            advance_order: false,
            at: Utc::now(),
        })
        .await
        .unwrap();
    assert!(matches!(
        reserved.outcome,
        store::ReserveOutcome::Reserved(_)
    ));
    assert!(
        store
            .advance_order(OrderTransition {
                order_id: order.order_id,
                step: OrderStep::Reserved,
                reason: None,
                at: Utc::now(),
            })
            .await
            .unwrap()
            .is_some()
    );
    let order = store.order(order.order_id).await.unwrap().unwrap();
    assert_eq!(order.step, OrderStep::Reserved);
    order
}

/// Charges the order as Orders knows it now, as the saga and the API do.
async fn charge(actors: &Actors, order_id: OrderId, cents: i64) -> Result<Payment, ChargeError> {
    let order = actors
        .order(order_id)
        .await
        .unwrap()
        .expect("a known order");
    actors
        .payment
        .send(Charge {
            order,
            amount: Money::from_cents(cents),
        })
        .await
        .unwrap()
}

#[actix_rt::test]
async fn a_second_charge_returns_the_first_payment() {
    let (_dir, store, actors) = shop(instant(0.0), 100).await;
    let order = charged_order(&actors, 2).await;
    assert_eq!(order.status(), OrderStatus::Confirmed);
    let first = store.payments_for_order(order.order_id).await.unwrap();
    assert_eq!(first.len(), 1);

    let again = charge(&actors, order.order_id, 700).await.unwrap();

    assert_eq!(again, first[0]);
    assert_eq!(again.status, PaymentStatus::Succeeded);
    assert_eq!(
        store.payments_for_order(order.order_id).await.unwrap(),
        first
    );
}

#[actix_rt::test]
async fn a_second_charge_of_a_declined_order_returns_the_decline() {
    let (_dir, store, actors) = shop(instant(1.0), 100).await;
    let order = charged_order(&actors, 1).await;
    assert_eq!(order.status(), OrderStatus::PaymentFailed);

    let again = charge(&actors, order.order_id, PRICE).await.unwrap();

    assert_eq!(again.status, PaymentStatus::Declined);
    assert_eq!(
        store.payments_for_order(order.order_id).await.unwrap(),
        [again]
    );
}

#[actix_rt::test]
async fn a_charge_for_the_wrong_amount_is_refused() {
    let (_dir, store, actors) = shop(instant(0.0), 100).await;
    let charged = charged_order(&actors, 2).await;
    let waiting = reserved_order(&store, 3).await;

    let against_payment = charge(&actors, charged.order_id, 699).await;
    let against_order = charge(&actors, waiting.order_id, 1051).await;

    assert!(
        matches!(against_payment, Err(ChargeError::AmountMismatch { expected }) if expected == Money::from_cents(700)),
        "{against_payment:?}"
    );
    assert!(
        matches!(against_order, Err(ChargeError::AmountMismatch { expected }) if expected == Money::from_cents(1050)),
        "{against_order:?}"
    );
    assert!(
        store
            .payments_for_order(waiting.order_id)
            .await
            .unwrap()
            .is_empty()
    );
}

#[actix_rt::test]
async fn an_order_whose_stock_is_not_held_cannot_be_charged() {
    let (_dir, store, actors) = shop(instant(0.0), 100).await;
    let order = order_in_store(&store, 1).await;

    let reply = charge(&actors, order.order_id, PRICE).await;

    assert!(
        matches!(
            reply,
            Err(ChargeError::NotPayable {
                order_id,
                status: OrderStatus::Pending,
                step: OrderStep::Placed,
            }) if order_id == order.order_id
        ),
        "{reply:?}"
    );
    assert!(
        store
            .payments_for_order(order.order_id)
            .await
            .unwrap()
            .is_empty()
    );
}

#[actix_rt::test]
async fn failure_rate_one_declines_every_charge() {
    let (_dir, store, actors) = shop(instant(1.0), 100).await;
    for _ in 0..5 {
        let order = reserved_order(&store, 1).await;

        let payment = charge(&actors, order.order_id, PRICE).await.unwrap();

        assert_eq!(payment.status, PaymentStatus::Declined);
        assert_eq!(payment.order_id, order.order_id);
        assert_eq!(payment.total_amount, Money::from_cents(PRICE));
    }
}

#[actix_rt::test]
async fn failure_rate_zero_accepts_every_charge() {
    let (_dir, store, actors) = shop(instant(0.0), 100).await;
    for _ in 0..5 {
        let order = reserved_order(&store, 2).await;

        let payment = charge(&actors, order.order_id, 700).await.unwrap();

        assert_eq!(payment.status, PaymentStatus::Succeeded);
        assert_eq!(payment.order_id, order.order_id);
        assert_eq!(payment.total_amount, Money::from_cents(700));
        assert_eq!(
            store.payment(payment.payment_id).await.unwrap(),
            Some(payment)
        );
    }
}

#[test]
fn seeded_decisions_are_reproducible_and_follow_the_rate() {
    let settings = PaymentSettings {
        failure_rate: 0.3,
        latency: Duration::ZERO,
        seed: Some(42),
        deadline: PaymentSettings::DEFAULT_DEADLINE,
    };
    let same_seed = PaymentSettings {
        failure_rate: 0.3,
        latency: Duration::from_millis(5),
        seed: Some(42),
        deadline: PaymentSettings::DEFAULT_DEADLINE,
    };
    let other_seed = PaymentSettings {
        seed: Some(43),
        ..settings
    };
    let order_ids: Vec<OrderId> = (0..1000).map(|_| OrderId::generate()).collect();

    let decisions: Vec<bool> = order_ids.iter().map(|id| settings.declines(*id)).collect();

    let declined = decisions.iter().filter(|d| **d).count();
    assert!(
        (200..=400).contains(&declined),
        "{declined} of 1000 declined"
    );
    for (order_id, decided) in order_ids.iter().zip(&decisions) {
        assert_eq!(settings.declines(*order_id), *decided);
        assert_eq!(same_seed.declines(*order_id), *decided);
    }
    let differ = order_ids
        .iter()
        .zip(&decisions)
        .filter(|(order_id, decided)| other_seed.declines(**order_id) != **decided)
        .count();
    assert!(differ > 0, "another seed should decide differently");
}

#[test]
fn the_rate_bounds_hold_with_and_without_a_seed() {
    for seed in [None, Some(7)] {
        let never = PaymentSettings {
            failure_rate: 0.0,
            latency: Duration::ZERO,
            seed,
            deadline: PaymentSettings::DEFAULT_DEADLINE,
        };
        let always = PaymentSettings {
            failure_rate: 1.0,
            ..never
        };
        for _ in 0..200 {
            let order_id = OrderId::generate();
            assert!(!never.declines(order_id), "seed {seed:?}");
            assert!(always.declines(order_id), "seed {seed:?}");
        }
    }
}

#[actix_rt::test]
async fn concurrent_charges_for_one_order_make_one_payment() {
    let (_dir, store, actors) = shop(
        PaymentSettings {
            latency: Duration::from_millis(50),
            ..instant(0.0)
        },
        100,
    )
    .await;
    let order = reserved_order(&store, 2).await;

    let replies = join_all((0..10).map(|_| {
        actors.payment.send(Charge {
            order: order.clone(),
            amount: Money::from_cents(700),
        })
    }))
    .await;

    let payments: Vec<Payment> = replies
        .into_iter()
        .map(|reply| reply.unwrap().unwrap())
        .collect();
    let stored = store.payments_for_order(order.order_id).await.unwrap();
    assert_eq!(stored.len(), 1);
    for payment in &payments {
        assert_eq!(payment.payment_id, stored[0].payment_id);
    }
}

#[actix_rt::test]
async fn a_charge_made_with_the_order_before_its_stock_was_held_does_not_answer_the_sagas() {
    let (_dir, store, actors) = shop(
        PaymentSettings {
            latency: Duration::from_millis(50),
            ..instant(0.0)
        },
        100,
    )
    .await;
    let order = reserved_order(&store, 2).await;
    // A client read the order while it was still PLACED, and charges with that.
    let stale = Order {
        step: OrderStep::Placed,
        ..order.clone()
    };

    // Both are queued before either is handled, for the same order and amount.
    let client = actors.payment.send(Charge {
        order: stale,
        amount: Money::from_cents(700),
    });
    let saga = actors.payment.send(Charge {
        order: order.clone(),
        amount: Money::from_cents(700),
    });
    let (client, saga) = futures_util::future::join(client, saga).await;

    assert!(
        matches!(client.unwrap(), Err(ChargeError::NotPayable { .. })),
        "not payable as the client saw it"
    );
    assert_eq!(saga.unwrap().unwrap().status, PaymentStatus::Succeeded);
}

#[actix_rt::test]
async fn a_joined_charge_for_the_wrong_amount_is_refused_alone() {
    let (_dir, store, actors) = shop(
        PaymentSettings {
            latency: Duration::from_millis(50),
            ..instant(0.0)
        },
        100,
    )
    .await;
    let order = reserved_order(&store, 2).await;

    // Both are queued before either is handled: the second joins the first.
    let right = actors.payment.send(Charge {
        order: order.clone(),
        amount: Money::from_cents(700),
    });
    let wrong = actors.payment.send(Charge {
        order: order.clone(),
        amount: Money::from_cents(1),
    });
    let (right, wrong) = futures_util::future::join(right, wrong).await;

    assert_eq!(right.unwrap().unwrap().status, PaymentStatus::Succeeded);
    assert!(
        matches!(wrong.unwrap(), Err(ChargeError::AmountMismatch { expected }) if expected == Money::from_cents(700))
    );
    assert_eq!(
        store
            .payments_for_order(order.order_id)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// A charge with the right amount that overlaps one with a wrong amount gets its
/// own answer, not the other charge's `AmountMismatch`.
#[actix_rt::test]
async fn a_joined_charge_for_the_right_amount_is_not_refused_for_another_charges_amount() {
    let (_dir, store, actors) = shop(instant(0.0), 100).await;
    let order = reserved_order(&store, 2).await;

    // Both are queued before either is handled: the second joins the first.
    let wrong = actors.payment.send(Charge {
        order: order.clone(),
        amount: Money::from_cents(1),
    });
    let right = actors.payment.send(Charge {
        order: order.clone(),
        amount: Money::from_cents(700),
    });
    let (wrong, right) = futures_util::future::join(wrong, right).await;

    assert!(matches!(
        wrong.unwrap(),
        Err(ChargeError::AmountMismatch { .. })
    ));
    let right = right.unwrap();
    assert!(
        matches!(&right, Ok(payment) if payment.status == PaymentStatus::Succeeded),
        "the charge for the right amount got {right:?}"
    );
}

#[actix_rt::test]
async fn payments_can_be_looked_up_by_id_and_by_order() {
    let (_dir, _store, actors) = shop(instant(0.0), 100).await;
    let order = charged_order(&actors, 1).await;

    let listed = actors
        .payment
        .send(ListPayments {
            order_id: order.order_id,
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(listed.len(), 1);
    let found = actors
        .payment
        .send(GetPayment(listed[0].payment_id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.as_ref(), Some(&listed[0]));

    let missing = actors
        .payment
        .send(GetPayment(PaymentId::generate()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(missing, None);
    let none = actors
        .payment
        .send(ListPayments {
            order_id: OrderId::generate(),
        })
        .await
        .unwrap()
        .unwrap();
    assert!(none.is_empty());
}
