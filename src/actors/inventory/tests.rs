//! The Inventory actor, messages in, state and replies out: every test opens its
//! own database, sends messages, and checks the replies, the catalog snapshot and
//! what the store holds.

use futures_util::future::join_all;
use tempfile::TempDir;

use super::*;
use crate::actors::testing::*;
use crate::domain::{Item, Quantity};

fn id(raw: &str) -> ProductId {
    ProductId::parse(raw).unwrap()
}

fn units(units: i64) -> Quantity {
    Quantity::parse(units).unwrap()
}

/// A fresh database and an Inventory actor over it, holding `products`.
async fn inventory_with(products: &[Product]) -> (TempDir, Store, Inventory) {
    let (dir, store) = database().await;
    let inventory = InventoryActor::start(store.clone()).await.unwrap();
    for product in products {
        upsert(&inventory, product.clone()).await;
    }
    (dir, store, inventory)
}

async fn reserve(
    inventory: &Inventory,
    order_id: OrderId,
    product_id: &str,
    n: i64,
) -> Reservation {
    inventory
        .addr
        .send(Reserve {
            order_id,
            lines: vec![line(product_id, n)],
            advance_order: false,
        })
        .await
        .unwrap()
        .unwrap()
        .reservation
}

fn line(product_id: &str, n: i64) -> Item {
    Item {
        product_id: id(product_id),
        quantity: units(n),
    }
}

/// Settles the order's reservation: its stock is sold.
async fn commit(inventory: &Inventory, order_id: OrderId) {
    let then = None;
    let commit = inventory.addr.send(CommitReservation { order_id, then });
    commit.await.unwrap().unwrap();
}

/// Gives the order's reserved stock back.
async fn release(inventory: &Inventory, order_id: OrderId) {
    let then = None;
    let release = inventory.addr.send(ReleaseReservation { order_id, then });
    release.await.unwrap().unwrap();
}

/// The snapshot's tea at `units` in stock, at `version`.
fn tea_stock(units: i64, version: i64) -> StockLevel {
    StockLevel {
        product_id: id("tea"),
        stock: Stock::parse(units).unwrap(),
        version,
    }
}

#[actix_rt::test]
async fn upsert_creates_a_product_then_replaces_it() {
    let (_dir, store, inventory) = inventory_with(&[]).await;
    assert!(inventory.catalog.is_empty().await.unwrap());

    let created = upsert(&inventory, product("tea", "Tea", 350, 5)).await;
    assert_eq!(created, product("tea", "Tea", 350, 5));
    assert_eq!(
        listed(&inventory, "tea").await,
        Some(product("tea", "Tea", 350, 5))
    );

    let replaced = upsert(&inventory, product("tea", "Green tea", 420, 9)).await;
    assert_eq!(replaced, product("tea", "Green tea", 420, 9));
    assert_eq!(
        listed(&inventory, "tea").await,
        Some(product("tea", "Green tea", 420, 9))
    );
    assert!(!inventory.catalog.is_empty().await.unwrap());

    let rows = store.catalog().await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].product, product("tea", "Green tea", 420, 9));
    assert_eq!(rows[0].version, 2, "a replacement is a new version");
}

#[actix_rt::test]
async fn a_restarted_inventory_loads_the_catalog_from_the_store() {
    let (_dir, store, first) = inventory_with(&[product("tea", "Tea", 350, 5)]).await;
    reserve(&first, OrderId::generate(), "tea", 2).await;

    let second = InventoryActor::start(store).await.unwrap();

    assert_eq!(
        listed(&second, "tea").await,
        Some(product("tea", "Tea", 350, 3))
    );
}

#[actix_rt::test]
async fn reserve_takes_stock_and_the_snapshot_shows_it() {
    let (_dir, store, inventory) = inventory_with(&[product("tea", "Tea", 350, 5)]).await;

    let reply = reserve(&inventory, OrderId::generate(), "tea", 2).await;

    assert_eq!(reply, Reservation::Held);
    assert_stock(&inventory, &store, "tea", 3).await;
}

#[actix_rt::test]
async fn reserving_twice_for_the_same_order_holds_once() {
    let (_dir, store, inventory) = inventory_with(&[product("tea", "Tea", 350, 5)]).await;
    let order_id = OrderId::generate();

    let first = reserve(&inventory, order_id, "tea", 2).await;
    let second = reserve(&inventory, order_id, "tea", 2).await;

    assert_eq!(first, Reservation::Held);
    assert_eq!(second, Reservation::Held);
    assert_stock(&inventory, &store, "tea", 3).await;
}

#[actix_rt::test]
async fn reserve_never_takes_more_than_is_in_stock() {
    let (_dir, store, inventory) = inventory_with(&[product("tea", "Tea", 350, 3)]).await;
    let order_id = OrderId::generate();

    let reply = reserve(&inventory, order_id, "tea", 4).await;

    assert_eq!(
        reply,
        Reservation::OutOfStock {
            available: Stock::parse(3).unwrap()
        }
    );
    assert_stock(&inventory, &store, "tea", 3).await;
}

#[actix_rt::test]
async fn a_refusal_stands_when_stock_comes_back() {
    // Another run of the order's saga may have rejected the order on the first
    // answer: a later one must not hold stock for it.
    let (_dir, store, inventory) = inventory_with(&[product("tea", "Tea", 350, 3)]).await;
    let order_id = OrderId::generate();
    let first = reserve(&inventory, order_id, "tea", 4).await;
    assert!(matches!(first, Reservation::OutOfStock { .. }), "{first:?}");

    upsert(&inventory, product("tea", "Tea", 350, 10)).await;
    let again = reserve(&inventory, order_id, "tea", 4).await;

    assert_eq!(again, Reservation::RefusedBefore);
    assert_stock(&inventory, &store, "tea", 10).await;
    // Another order gets the stock.
    let other = reserve(&inventory, OrderId::generate(), "tea", 4).await;
    assert_eq!(other, Reservation::Held);
    assert_eq!(stored_stock(&store, "tea").await, 6);
}

#[actix_rt::test]
async fn reserving_an_unknown_product_holds_nothing() {
    let (_dir, store, inventory) = inventory_with(&[product("tea", "Tea", 350, 3)]).await;

    let reply = reserve(&inventory, OrderId::generate(), "coffee", 1).await;

    assert_eq!(reply, Reservation::UnknownProduct);
    assert_eq!(listed(&inventory, "coffee").await, None);
    assert_eq!(shown_stock(&inventory, "tea").await, 3);
    assert_eq!(store.catalog().await.unwrap().len(), 1);
}

#[actix_rt::test]
async fn release_gives_stock_back_exactly_once() {
    let (_dir, store, inventory) = inventory_with(&[product("tea", "Tea", 350, 5)]).await;
    let order_id = OrderId::generate();
    reserve(&inventory, order_id, "tea", 2).await;

    release(&inventory, order_id).await;
    assert_stock(&inventory, &store, "tea", 5).await;

    release(&inventory, order_id).await;
    assert_stock(&inventory, &store, "tea", 5).await;
}

#[actix_rt::test]
async fn release_after_commit_gives_nothing_back() {
    let (_dir, store, inventory) = inventory_with(&[product("tea", "Tea", 350, 5)]).await;
    let order_id = OrderId::generate();
    reserve(&inventory, order_id, "tea", 2).await;

    commit(&inventory, order_id).await;
    release(&inventory, order_id).await;

    assert_stock(&inventory, &store, "tea", 3).await;
}

#[actix_rt::test]
async fn commit_and_release_without_a_reservation_are_no_ops() {
    let (_dir, store, inventory) = inventory_with(&[product("tea", "Tea", 350, 5)]).await;
    let stranger = OrderId::generate();

    commit(&inventory, stranger).await;
    release(&inventory, stranger).await;

    assert_stock(&inventory, &store, "tea", 5).await;
}

#[actix_rt::test]
async fn catalog_pages_follow_product_id_order() {
    let products: Vec<Product> = ["e", "a", "c", "b", "d"]
        .into_iter()
        .map(|key| product(key, key, 100, 1))
        .collect();
    let (_dir, _store, inventory) = inventory_with(&products).await;
    let ids = |page: &CatalogPage| -> Vec<String> {
        page.products
            .iter()
            .map(|p| p.product_id.as_str().to_owned())
            .collect()
    };

    let first = inventory.catalog.page(None, 2).await.unwrap();
    assert_eq!(ids(&first), ["a", "b"]);
    assert_eq!(first.next_after, Some(id("b")));

    let second = inventory
        .catalog
        .page(first.next_after.as_ref(), 2)
        .await
        .unwrap();
    assert_eq!(ids(&second), ["c", "d"]);
    assert_eq!(second.next_after, Some(id("d")));

    let last = inventory
        .catalog
        .page(second.next_after.as_ref(), 2)
        .await
        .unwrap();
    assert_eq!(ids(&last), ["e"]);
    assert_eq!(last.next_after, None);

    // A page that ends exactly at the last product is the last page.
    let exact = inventory.catalog.page(Some(&id("b")), 3).await.unwrap();
    assert_eq!(ids(&exact), ["c", "d", "e"]);
    assert_eq!(exact.next_after, None);

    // A cursor need not be a product that exists.
    let between = inventory.catalog.page(Some(&id("bb")), 10).await.unwrap();
    assert_eq!(ids(&between), ["c", "d", "e"]);
    assert_eq!(between.next_after, None);

    let past_the_end = inventory.catalog.page(Some(&id("z")), 10).await.unwrap();
    assert!(past_the_end.products.is_empty());
    assert_eq!(past_the_end.next_after, None);
}

#[actix_rt::test]
async fn concurrent_reserves_never_oversell() {
    let (_dir, store, inventory) = inventory_with(&[product("tea", "Tea", 350, 20)]).await;

    let replies = join_all((0..50).map(|_| {
        inventory.addr.send(Reserve {
            order_id: OrderId::generate(),
            lines: vec![line("tea", 1)],
            advance_order: false,
        })
    }))
    .await;

    let replies: Vec<Reservation> = replies
        .into_iter()
        .map(|reply| reply.unwrap().unwrap().reservation)
        .collect();
    let held = replies.iter().filter(|r| **r == Reservation::Held).count();
    let refused = replies
        .iter()
        .filter(|r| matches!(r, Reservation::OutOfStock { .. }))
        .count();
    assert_eq!(held, 20);
    assert_eq!(refused, 30);
    assert_stock(&inventory, &store, "tea", 0).await;
}

#[actix_rt::test]
async fn the_snapshot_never_goes_back_to_an_older_version() {
    let (_dir, _store, inventory) = inventory_with(&[product("tea", "Tea", 350, 5)]).await;
    let publish = Publisher(Arc::clone(&inventory.catalog.listings));

    // The upsert made version 1; two reservations made 2 and 3, whose answers
    // arrive out of order.
    publish.stock(tea_stock(3, 3));
    publish.stock(tea_stock(4, 2));
    assert_eq!(shown_stock(&inventory, "tea").await, 3);

    // The upsert's own answer, arriving last.
    publish.product(StockedProduct {
        product: product("tea", "Tea", 350, 5),
        version: 1,
    });
    assert_eq!(
        listed(&inventory, "tea").await,
        Some(product("tea", "Tea", 350, 3))
    );

    publish.product(StockedProduct {
        product: product("tea", "New tea", 400, 8),
        version: 4,
    });
    assert_eq!(
        listed(&inventory, "tea").await,
        Some(product("tea", "New tea", 400, 8))
    );
}

/// An upsert (version 2: new name and price) and a reservation after it (version
/// 3: stock only) whose answers arrive out of order: the snapshot takes the
/// upsert's name and price, and keeps the newer stock.
#[actix_rt::test]
async fn a_late_upsert_answer_is_not_lost_behind_a_newer_stock_level() {
    let (_dir, _store, inventory) = inventory_with(&[product("tea", "Tea", 350, 5)]).await;
    let publish = Publisher(Arc::clone(&inventory.catalog.listings));

    publish.stock(tea_stock(7, 3));
    publish.product(StockedProduct {
        product: product("tea", "Green tea", 420, 8),
        version: 2,
    });

    assert_eq!(
        listed(&inventory, "tea").await,
        Some(product("tea", "Green tea", 420, 7))
    );
}
