//! What the actor tests share: a shop (the actors over a fresh database) with tea
//! in stock, an order written behind the actors' back, following an order to its
//! end, and the stock as the catalog snapshot and the store hold it.

use std::time::{Duration, Instant};

use actix::Addr;
use chrono::Utc;
use tempfile::TempDir;

use super::inventory::{Inventory, UpsertProduct};
use super::orders::{GetOrder, OrdersActor};
use super::payment::PaymentSettings;
use super::{Actors, SagaSettings};
use crate::domain::{
    Item, Items, Money, Order, OrderId, OrderLine, Price, Product, ProductId, ProductName,
    Quantity, Stock,
};
use crate::store::{CreateOrderOutcome, NewOrder, Store, StoreOptions};

/// Tea's price, in cents.
pub(crate) const PRICE: i64 = 350;

pub(crate) fn tea() -> ProductId {
    ProductId::parse("tea").unwrap()
}

/// `units` of tea, as an order's one item.
pub(crate) fn tea_items(units: i64) -> Items {
    Items::one(Item {
        product_id: tea(),
        quantity: Quantity::parse(units).unwrap(),
    })
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
    let tea = product("tea", "Tea", PRICE, stock);
    let upsert = actors.inventory.addr.send(UpsertProduct(tea));
    upsert.await.unwrap().unwrap();
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
    let product_id = ProductId::parse(product_id).unwrap();
    let product = inventory.catalog.product(&product_id).await.unwrap();
    product.unwrap().stock.units()
}

/// The stock the database holds.
pub(crate) async fn stored_stock(store: &Store, product_id: &str) -> i64 {
    let product_id = ProductId::parse(product_id).unwrap();
    let mut catalog = store.catalog().await.unwrap().into_iter();
    let row = catalog.find(|row| row.product.product_id == product_id);
    row.unwrap().product.stock.units()
}
