//! Micro-benchmarks of the pieces an order passes through: an actor message round
//! trip, one saga step against the real store (a reservation, committed), rendering
//! the catalog page, and parsing an order request into domain types.
//!
//! `cargo bench --bench micro`. Like the load benchmark, read the figures as
//! ratios within one run: this machine is shared.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use actix::prelude::*;
use criterion::{Criterion, criterion_group, criterion_main};
use serde::Deserialize;
use std::hint::black_box;

use minimart::actors::inventory::{InventoryActor, Reserve, UpsertProduct};
use minimart::domain::{
    IdempotencyKey, Item, Items, OrderId, Price, Product, ProductId, ProductName, Quantity, Stock,
};
use minimart::store::{Store, StoreOptions};
use minimart::views::catalog::{CatalogView, catalog_page};

/// The smallest actor: what a message round trip costs by itself.
struct Echo;

impl Actor for Echo {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "u64")]
struct Ping(u64);

impl Handler<Ping> for Echo {
    type Result = u64;
    fn handle(&mut self, Ping(n): Ping, _: &mut Context<Self>) -> u64 {
        n + 1
    }
}

fn product(n: usize, stock: i64) -> Product {
    Product {
        product_id: ProductId::parse(format!("p-{n:04}")).unwrap(),
        product_name: ProductName::parse(format!("Product number {n}")).unwrap(),
        price: Price::parse(1234).unwrap(),
        stock: Stock::parse(stock).unwrap(),
    }
}

fn actor_round_trip(c: &mut Criterion) {
    let system = System::new();
    let echo = system.block_on(async { Echo.start() });
    c.bench_function("actor message round trip", |b| {
        b.iter(|| system.block_on(echo.send(Ping(black_box(1)))).unwrap())
    });
}

fn saga_step(c: &mut Criterion) {
    let system = System::new();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let inventory = system.block_on(async {
        let store = Store::open(&StoreOptions::new(url)).await.unwrap();
        let inventory = InventoryActor::start(store).await.unwrap();
        inventory
            .addr
            .send(UpsertProduct(product(1, Stock::MAX)))
            .await
            .unwrap()
            .unwrap();
        inventory
    });
    let product_id = ProductId::parse("p-0001").unwrap();
    c.bench_function("saga step: reserve, committed", |b| {
        b.iter(|| {
            system
                .block_on(inventory.addr.send(Reserve {
                    order_id: OrderId::generate(),
                    lines: vec![Item {
                        product_id: product_id.clone(),
                        quantity: Quantity::parse(1).unwrap(),
                    }],
                    advance_order: false,
                }))
                .unwrap()
                .unwrap()
        })
    });
}

fn render_catalog(c: &mut Criterion) {
    let products: Vec<Product> = (0..24).map(|n| product(n, (n as i64) % 7)).collect();
    let keys: Vec<IdempotencyKey> = (0..24)
        .map(|n| IdempotencyKey::parse(&format!("key-{n}")).unwrap())
        .collect();
    let next = ProductId::parse("p-0024").unwrap();
    c.bench_function("render the catalog page (24 products)", |b| {
        b.iter(|| {
            catalog_page(&CatalogView {
                products: black_box(&products),
                next_after: Some(&next),
                paged: false,
                keys: &keys,
                shopping: Default::default(),
            })
            .into_string()
        })
    });
}

/// The order body as the API reads it: straight into domain types.
#[derive(Deserialize)]
struct OrderBody {
    #[allow(dead_code)]
    items: Items,
}

fn parse_request(c: &mut Criterion) {
    let body = br#"{"items":[{"product_id":"espresso-beans","quantity":2},{"product_id":"ceramic-mug","quantity":1}]}"#;
    c.bench_function("parse an order request", |b| {
        b.iter(|| serde_json::from_slice::<OrderBody>(black_box(body)).unwrap())
    });
}

criterion_group!(
    benches,
    actor_round_trip,
    saga_step,
    render_catalog,
    parse_request
);
criterion_main!(benches);
