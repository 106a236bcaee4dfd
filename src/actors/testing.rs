//! What the actor tests share: a shop (the actors over a fresh database) with tea
//! in stock, placing an order, an order written (and moved) behind the actors'
//! back, following an order to its end, the stock as the catalog snapshot and the
//! store hold it, and an order's payments.

use std::time::{Duration, Instant};

use actix::Addr;
use chrono::Utc;
use tempfile::TempDir;

use super::admission::Admitted;
use super::inventory::{Inventory, UpsertProduct};
use super::orders::{GetOrder, OrderError, OrdersActor, PlaceOrder, Placed};
use super::payment::PaymentSettings;
use super::{Actors, SagaSettings};
use crate::domain::{
    IdempotencyKey, Item, Items, Money, Order, OrderId, OrderLine, OrderStep, Payment, Price,
    Product, ProductId, ProductName, Quantity, Stock,
};
use crate::store::{self, CreateOrderOutcome, NewOrder, OrderTransition, Store, StoreOptions};

/// Tea's price, in cents.
pub(crate) const PRICE: i64 = 350;

pub(crate) fn tea() -> ProductId {
    ProductId::parse("tea").unwrap()
}

/// `units` of tea at $3.50, as a placed order's one line.
pub(crate) fn tea_line(units: i64) -> OrderLine {
    OrderLine {
        product_id: tea(),
        product_name: ProductName::parse("Tea").unwrap(),
        quantity: Quantity::parse(units).unwrap(),
        unit_price: Price::parse(PRICE).unwrap(),
    }
}

pub(crate) fn product(product_id: &str, name: &str, price: i64, stock: i64) -> Product {
    Product {
        product_id: ProductId::parse(product_id).unwrap(),
        product_name: ProductName::parse(name).unwrap(),
        price: Price::parse(price).unwrap(),
        stock: Stock::parse(stock).unwrap(),
    }
}

/// Payments that take no time and fail at `failure_rate`.
pub(crate) fn instant(failure_rate: f64) -> PaymentSettings {
    PaymentSettings {
        failure_rate,
        latency: Duration::ZERO,
        seed: None,
        deadline: PaymentSettings::DEFAULT_DEADLINE,
    }
}

/// A fresh SQLite database, kept alive by the returned directory.
pub(crate) async fn database() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    (dir, Store::open(&StoreOptions::new(url)).await.unwrap())
}

/// A fresh database, the actors over it and tea at $3.50 with `stock` units.
pub(crate) async fn shop(payments: PaymentSettings, stock: i64) -> (TempDir, Store, Actors) {
    let (dir, store) = database().await;
    let actors = Actors::start(store.clone(), payments, SagaSettings::default())
        .await
        .unwrap();
    restock(&actors, stock).await;
    (dir, store, actors)
}

/// Creates tea at $3.50, or sets its stock to `stock` units.
pub(crate) async fn restock(actors: &Actors, stock: i64) {
    upsert(&actors.inventory, product("tea", "Tea", PRICE, stock)).await;
}

/// Creates or replaces the product through Inventory; answers it as stored.
pub(crate) async fn upsert(inventory: &Inventory, product: Product) -> Product {
    let upsert = inventory.addr.send(UpsertProduct(product));
    upsert.await.unwrap().unwrap()
}

/// The product as the catalog snapshot lists it.
pub(crate) async fn listed(inventory: &Inventory, product_id: &str) -> Option<Product> {
    let product_id = ProductId::parse(product_id).unwrap();
    inventory.catalog.product(&product_id).await.unwrap()
}

/// An order for `quantity` of the product, as a shopper without a card places it.
pub(crate) fn one_line(
    product_id: ProductId,
    quantity: i64,
    idempotency_key: Option<IdempotencyKey>,
    admitted: Option<Admitted>,
) -> PlaceOrder {
    PlaceOrder {
        items: Items::one(Item {
            product_id,
            quantity: Quantity::parse(quantity).unwrap(),
        }),
        card: None,
        from_cart: false,
        idempotency_key,
        shopper: None,
        request_id: None,
        admitted,
    }
}

/// Places an order for `quantity` of the product through the Orders actor.
pub(crate) async fn place(
    actors: &Actors,
    product_id: ProductId,
    quantity: i64,
    idempotency_key: Option<IdempotencyKey>,
) -> Result<Placed, OrderError> {
    let order = one_line(product_id, quantity, idempotency_key, None);
    actors.orders.send(order).await.unwrap()
}

/// An order for `units` of tea written straight into the store, at step PLACED:
/// no saga runs it, and the Orders actor has never seen it.
pub(crate) async fn order_in_store(store: &Store, units: i64) -> Order {
    let outcome = store
        .create_order(NewOrder {
            order_id: OrderId::generate(),
            lines: vec![tea_line(units)],
            payment_method: None,
            total_amount: Money::from_cents(PRICE * units),
            idempotency_key: None,
            shopper_id: None,
            from_cart: false,
            at: Utc::now(),
        })
        .await
        .unwrap();
    let CreateOrderOutcome::Created(order) = outcome else {
        panic!("the order was not created: {outcome:?}");
    };
    order
}

/// Asks the store for the order's stock straight, as a run of its saga would.
pub(crate) async fn reserved_in_store(store: &Store, order: &Order) -> store::ReserveOutcome {
    store
        .reserve(store::Reserve {
            order_id: order.order_id,
            lines: order.items(),
            advance_order: false,
            at: Utc::now(),
        })
        .await
        .unwrap()
        .outcome
}

/// Moves the order straight in the store, as a run of its saga would; false when
/// the order may not move to `step`.
pub(crate) async fn moved_in_store(store: &Store, order_id: OrderId, step: OrderStep) -> bool {
    store
        .advance_order(OrderTransition {
            order_id,
            step,
            reason: None,
            at: Utc::now(),
        })
        .await
        .unwrap()
        .is_some()
}

/// Polls the order every 10 ms until its saga has decided; gives up after 30 s
/// (generous: a loaded machine is slow, and a stuck saga stays stuck).
pub(crate) async fn until_terminal(orders: &Addr<OrdersActor>, order_id: OrderId) -> Order {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let order = orders.send(GetOrder(order_id)).await.unwrap().unwrap();
        if let Some(order) = order.filter(|o| o.status().is_terminal()) {
            return order;
        }
        assert!(
            Instant::now() < deadline,
            "order {order_id} did not finish in time"
        );
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The stock the catalog snapshot shows.
pub(crate) async fn shown_stock(inventory: &Inventory, product_id: &str) -> i64 {
    listed(inventory, product_id).await.unwrap().stock.units()
}

/// The stock the database holds.
pub(crate) async fn stored_stock(store: &Store, product_id: &str) -> i64 {
    let product_id = ProductId::parse(product_id).unwrap();
    let mut catalog = store.catalog().await.unwrap().into_iter();
    let row = catalog.find(|row| row.product.product_id == product_id);
    row.unwrap().product.stock.units()
}

/// Checks the stock both as the catalog snapshot shows it and as the store holds it.
pub(crate) async fn assert_stock(
    inventory: &Inventory,
    store: &Store,
    product_id: &str,
    units: i64,
) {
    let shown = shown_stock(inventory, product_id).await;
    assert_eq!(shown, units, "the stock of {product_id} the snapshot shows");
    let stored = stored_stock(store, product_id).await;
    assert_eq!(stored, units, "the stock of {product_id} the store holds");
}

/// The payments the store holds for the order.
pub(crate) async fn payments_for(store: &Store, order_id: OrderId) -> Vec<Payment> {
    store.payments_for_order(order_id).await.unwrap()
}
