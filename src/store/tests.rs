//! The write path, on both backends: batches applied exactly as given, one
//! transaction each (as the writer applies them), and the same story run on
//! SQLite and Postgres leaving the same rows.

use std::str::FromStr;
use std::sync::OnceLock;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::postgres::PgConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, Row};
use tempfile::TempDir;
use tokio::sync::oneshot;
use uuid::Uuid;

use support::postgres::Cluster;

use super::writer::{self, Job, Write};
use super::*;
use crate::domain::{
    CardBrand, IdempotencyKey, Item, OrderLine, Payment, PaymentMethod, PaymentStatus, Price,
    ProductName,
};

/// A store and connections of its own to the same database: one to apply
/// batches through as the writer does, one to read rows back as the reads do.
struct Db {
    name: &'static str,
    store: Store,
    writes: Writes,
    reads: Reads,
    _dir: Option<TempDir>,
}

enum Writes {
    Sqlite(rusqlite::Connection),
    Postgres(PgConnection),
}

enum Reads {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

async fn sqlite() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::open(&StoreOptions::new(url.as_str())).await.unwrap();
    let reads = SqliteConnectOptions::from_str(&url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let writes = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
    writes.pragma_update(None, "foreign_keys", "ON").unwrap();
    Db {
        name: "SQLite",
        store,
        writes: Writes::Sqlite(writes),
        reads: Reads::Sqlite(reads),
        _dir: Some(dir),
    }
}

/// `None`, after saying so loudly, without Postgres (in CI that fails).
async fn postgres() -> Option<Db> {
    static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();
    let cluster = CLUSTER.get_or_init(Cluster::dedicated).as_ref()?;
    let url = cluster.fresh_database().await;
    let store = Store::open(&StoreOptions::new(url.as_str())).await.unwrap();
    Some(Db {
        name: "Postgres",
        store,
        writes: Writes::Postgres(PgConnection::connect(&url).await.unwrap()),
        reads: Reads::Postgres(PgConnection::connect(&url).await.unwrap()),
        _dir: None,
    })
}

async fn both() -> Vec<Db> {
    let mut dbs = vec![sqlite().await];
    dbs.extend(postgres().await);
    dbs
}

/// A job for `op`, and where its answer arrives once the batch is finished.
fn job<W: Write>(op: W) -> (Job, oneshot::Receiver<Result<W::Output, StoreError>>) {
    let (reply, answer) = oneshot::channel();
    (op.job(reply, None), answer)
}

async fn answer<T>(answer: oneshot::Receiver<Result<T, StoreError>>) -> Result<T, StoreError> {
    answer.await.unwrap()
}

impl Db {
    /// Applies the jobs in one transaction, as one batch: no retries.
    async fn transact(&mut self, jobs: &mut [Job]) -> Result<(), StoreError> {
        match &mut self.writes {
            Writes::Sqlite(conn) => writer::transact(conn, jobs).await,
            Writes::Postgres(conn) => writer::transact(conn, jobs).await,
        }
    }

    /// Commits the jobs as the writer commits one batch, and answers them.
    async fn commit(&mut self, mut jobs: Vec<Job>) {
        match &mut self.writes {
            Writes::Sqlite(conn) => writer::commit(conn, &mut jobs).await,
            Writes::Postgres(conn) => writer::commit(conn, &mut jobs).await,
        }
    }

    /// Commits one job alone and answers it.
    async fn write<W: Write>(&mut self, op: W) -> W::Output {
        let (job, reply) = job(op);
        self.commit(vec![job]).await;
        answer(reply).await.unwrap()
    }

    /// Every row the writes write, as text, table by table in key order: each
    /// value as the first of integer, UUID, time or text that it decodes as. (A
    /// product's `updated_at` is left out: it is when the batch ran.)
    async fn rows(&mut self) -> Vec<String> {
        const TABLES: [(&str, &str, &str); 8] = [
            (
                "product",
                "product_id, product_name, price, stock, version",
                "product_id",
            ),
            ("reservation", "*", "order_id, product_id"),
            (
                "shop_order",
                "order_id, product_id, quantity, total_amount, step, status, reason, \
              idempotency_key, shopper_id, created_at, updated_at, lines, payment_method",
                "order_id",
            ),
            ("cart_line", "*", "shopper_id, product_id"),
            ("order_event", "*", "order_id, seq"),
            ("payment", "*", "payment_id"),
            ("admin_session", "*", "session_id"),
            ("setting", "*", "name"),
        ];
        macro_rules! rows {
            ($conn:expr) => {{
                let mut rows = Vec::new();
                for (table, columns, key) in TABLES {
                    let sql = format!("SELECT {columns} FROM {table} ORDER BY {key}");
                    for row in sqlx::query(&sql).fetch_all(&mut *$conn).await.unwrap() {
                        let cells: Vec<String> = (0..row.len())
                            .map(|i| {
                                (row.try_get::<Option<i64>, _>(i).map(|v| format!("{v:?}")))
                                    .or_else(|_| row.try_get::<Uuid, _>(i).map(|v| v.to_string()))
                                    .or_else(|_| {
                                        row.try_get::<DateTime<Utc>, _>(i).map(|v| v.to_rfc3339())
                                    })
                                    .or_else(|_| row.try_get::<String, _>(i))
                                    .unwrap()
                            })
                            .collect();
                        rows.push(format!("{table}: {}", cells.join(" | ")));
                    }
                }
                rows
            }};
        }
        match &mut self.reads {
            Reads::Sqlite(conn) => rows!(conn),
            Reads::Postgres(conn) => rows!(conn),
        }
    }

    async fn stock(&mut self, product_id: &str) -> i64 {
        let id = ProductId::parse(product_id).unwrap();
        self.store
            .product(&id)
            .await
            .unwrap()
            .unwrap()
            .product
            .stock
            .units()
    }
}

/// A time with the microseconds both backends keep.
fn at(second: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + second, 123_456_000)
        .unwrap()
}

fn order_id(n: u128) -> OrderId {
    OrderId::from_uuid(Uuid::from_u128(n))
}

fn product(product_id: &str, stock: i64) -> Product {
    Product {
        product_id: ProductId::parse(product_id).unwrap(),
        product_name: ProductName::parse(format!("Product {product_id}")).unwrap(),
        price: Price::parse(250).unwrap(),
        stock: Stock::parse(stock).unwrap(),
    }
}

fn new_order(n: u128, product_id: &str, units: i64, key: Option<&str>) -> NewOrder {
    let shopper = n
        .is_multiple_of(2)
        .then(|| ShopperId::from_uuid(Uuid::from_u128(7)));
    NewOrder {
        order_id: order_id(n),
        lines: vec![OrderLine {
            product_id: ProductId::parse(product_id).unwrap(),
            product_name: ProductName::parse(format!("The {product_id}")).unwrap(),
            quantity: Quantity::parse(units).unwrap(),
            unit_price: Price::parse(250).unwrap(),
        }],
        // Some paid by card, so that the card's column goes round too.
        payment_method: n.is_multiple_of(3).then(|| PaymentMethod {
            brand: CardBrand::Visa,
            last4: "4242".to_owned(),
            token: "tok_card".to_owned(),
        }),
        total_amount: Money::from_cents(250 * units),
        // The API's keys: the tests that need a shopper's own say so.
        idempotency_key: key.map(|key| IdempotencyKey::parse(key).unwrap().owned_by(None)),
        shopper_id: shopper,
        from_cart: false,
        at: at(n as i64),
    }
}

fn reserve(n: u128, product_id: &str, units: i64, advance_order: bool) -> Reserve {
    Reserve {
        order_id: order_id(n),
        lines: vec![Item {
            product_id: ProductId::parse(product_id).unwrap(),
            quantity: Quantity::parse(units).unwrap(),
        }],
        advance_order,
        at: at(100 + n as i64),
    }
}

fn payment(n: u128, order: u128, status: PaymentStatus) -> Payment {
    Payment {
        payment_id: PaymentId::from_uuid(Uuid::from_u128(1000 + n)),
        order_id: order_id(order),
        total_amount: Money::from_cents(500),
        status,
        reason: (status == PaymentStatus::Declined).then(|| "insufficient funds".to_owned()),
        created_at: at(200 + n as i64),
    }
}

fn settle(order: u128, paid: bool) -> Settle {
    let (step, reason) = if paid {
        (OrderStep::Confirmed, None)
    } else {
        (OrderStep::PaymentFailed, Some("declined".to_owned()))
    };
    Settle {
        order_id: order_id(order),
        paid,
        then: Some(OrderMove { step, reason }),
        at: at(300 + order as i64),
    }
}

fn transition(order: u128, step: OrderStep) -> OrderTransition {
    OrderTransition {
        order_id: order_id(order),
        step,
        reason: None,
        at: at(400 + order as i64),
    }
}

#[tokio::test]
async fn orders_for_one_hot_product_in_a_batch_are_decided_in_arrival_order() {
    for mut db in both().await {
        db.write(product("hot", 5)).await;
        let wants = [2, 4, 3, 1];
        let (mut jobs, replies): (Vec<Job>, Vec<_>) = wants
            .iter()
            .enumerate()
            .map(|(n, &units)| job(reserve(n as u128 + 1, "hot", units, false)))
            .unzip();
        db.transact(&mut jobs).await.unwrap();
        let outcomes: Vec<ReserveOutcome> = jobs
            .into_iter()
            .map(|job| match job {
                Job::Reserve(reserve) => reserve.output.unwrap().outcome,
                _ => unreachable!(),
            })
            .collect();
        drop(replies);
        // One by one: 5 - 2 = 3; 4 > 3 refused; 3 - 3 = 0; 1 > 0 refused.
        let level = |stock, version: i64| {
            ReserveOutcome::Reserved(vec![StockLevel {
                product_id: ProductId::parse("hot").unwrap(),
                stock: Stock::parse(stock).unwrap(),
                version,
            }])
        };
        let short = |units, available| ReserveOutcome::Insufficient {
            product_id: ProductId::parse("hot").unwrap(),
            requested: Quantity::parse(units).unwrap(),
            available: Stock::parse(available).unwrap(),
        };
        assert_eq!(
            outcomes,
            [level(3, 2), short(4, 3), level(0, 3), short(1, 0)],
            "{}",
            db.name
        );
        assert_eq!(db.stock("hot").await, 0, "{}", db.name);
        // Refusals are recorded too, so that they stand.
        let states: Vec<String> = db
            .rows()
            .await
            .into_iter()
            .filter(|row| row.starts_with("reservation"))
            .collect();
        assert_eq!(states.len(), 4, "{}: {states:?}", db.name);
        assert_eq!(
            states.iter().filter(|row| row.contains("REFUSED")).count(),
            2
        );
    }
}

#[tokio::test]
async fn a_write_that_loses_a_race_fails_alone_and_the_rest_of_its_batch_commits() {
    for mut db in both().await {
        db.write(product("tea", 10)).await;
        db.write(new_order(1, "tea", 1, None)).await;
        db.write(new_order(2, "tea", 1, None)).await;

        let (create, created) = job(new_order(3, "tea", 2, Some("key")));
        let (again, same_key) = job(new_order(4, "tea", 2, Some("key")));
        let (other, other_created) = job(new_order(5, "tea", 1, None));
        // Order 1 is at PLACED: CONFIRMED comes from RESERVED, so this is stale.
        let (stale, stale_move) = job(transition(1, OrderStep::Confirmed));
        let (fresh, fresh_move) = job(transition(2, OrderStep::Reserved));
        db.commit(vec![create, again, other, stale, fresh]).await;

        let CreateOrderOutcome::Created(first) = answer(created).await.unwrap() else {
            panic!("{}: the first order with the key was not created", db.name);
        };
        assert_eq!(
            answer(same_key).await.unwrap(),
            CreateOrderOutcome::Existing(first.clone()),
            "{}",
            db.name
        );
        assert!(matches!(
            answer(other_created).await.unwrap(),
            CreateOrderOutcome::Created(_)
        ));
        assert_eq!(answer(stale_move).await.unwrap(), None, "{}", db.name);
        let moved = answer(fresh_move).await.unwrap().unwrap();
        assert_eq!((moved.seq, moved.step), (2, OrderStep::Reserved));
        assert!(db.store.order(order_id(4)).await.unwrap().is_none());
        assert_eq!(
            db.store.order(order_id(1)).await.unwrap().unwrap().step,
            OrderStep::Placed
        );
    }
}

/// A change to a line of the shopper's cart.
fn cart_change(shopper: ShopperId, product_id: &str, edit: CartEdit) -> CartChange {
    CartChange {
        shopper_id: shopper,
        product_id: ProductId::parse(product_id).unwrap(),
        edit,
        at: at(50),
    }
}

/// `units` more of tea in the shopper's cart, as the storefront adds them.
fn add_to_cart(shopper: ShopperId, units: i64) -> CartChange {
    cart_change(
        shopper,
        "tea",
        CartEdit::Add(Quantity::parse(units).unwrap()),
    )
}

/// A checkout of `units` of tea from the shopper's cart.
fn checkout(n: u128, shopper: ShopperId, units: i64, key: &str) -> NewOrder {
    NewOrder {
        shopper_id: Some(shopper),
        from_cart: true,
        idempotency_key: Some(IdempotencyKey::parse(key).unwrap().owned_by(Some(shopper))),
        ..new_order(n, "tea", units, None)
    }
}

#[tokio::test]
async fn a_carts_lines_are_bought_once_however_many_checkouts_race_for_them() {
    for mut db in both().await {
        let shopper = ShopperId::from_uuid(Uuid::from_u128(41));
        db.write(product("tea", 10)).await;
        db.write(add_to_cart(shopper, 3)).await;

        // Two tabs (two keys) and a double click (the first key again), in one batch.
        let (first, first_answer) = job(checkout(1, shopper, 3, "tab-1"));
        let (second, second_answer) = job(checkout(2, shopper, 3, "tab-2"));
        let (again, again_answer) = job(checkout(3, shopper, 3, "tab-1"));
        db.commit(vec![first, second, again]).await;

        let CreateOrderOutcome::Created(placed) = answer(first_answer).await.unwrap() else {
            panic!("{}: the first checkout was not placed", db.name);
        };
        assert_eq!(
            answer(second_answer).await.unwrap(),
            CreateOrderOutcome::CartChanged,
            "{}",
            db.name
        );
        assert_eq!(
            answer(again_answer).await.unwrap(),
            CreateOrderOutcome::Existing(placed),
            "{}",
            db.name
        );
        assert!(
            db.store.cart(shopper).await.unwrap().is_empty(),
            "{}",
            db.name
        );

        // In a later batch, a checkout of what the cart no longer holds is
        // refused too; units added since a checkout stay in the cart.
        db.write(add_to_cart(shopper, 2)).await;
        let late = db.write(checkout(4, shopper, 3, "tab-3")).await;
        assert_eq!(late, CreateOrderOutcome::CartChanged, "{}", db.name);
        let fewer = db.write(checkout(5, shopper, 1, "tab-4")).await;
        assert!(
            matches!(fewer, CreateOrderOutcome::Created(_)),
            "{}",
            db.name
        );
        let left = db.store.cart(shopper).await.unwrap();
        assert_eq!(left.len(), 1, "{}", db.name);
        assert_eq!(left[0].quantity.units(), 1, "{}", db.name);
    }
}

#[tokio::test]
async fn a_batch_that_fails_part_way_leaves_nothing_written() {
    for mut db in both().await {
        db.write(product("tea", 5)).await;
        db.write(new_order(1, "tea", 2, None)).await;
        let before = db.rows().await;

        // The reservation's statements run, then the new order breaks a CHECK.
        let mut broken = new_order(2, "tea", 1, None);
        broken.total_amount = Money::from_cents(-1);
        let (reserve_job, reserved) = job(reserve(1, "tea", 2, true));
        let (broken_job, refused) = job(broken);
        let mut jobs = vec![reserve_job, broken_job];
        assert!(db.transact(&mut jobs).await.is_err(), "{}", db.name);
        // One transaction: nothing of it stands, not even what came first.
        assert_eq!(db.rows().await, before, "{}", db.name);

        // As the writer commits it: the broken write fails alone.
        db.commit(jobs).await;
        assert!(answer(refused).await.is_err());
        let reserved = answer(reserved).await.unwrap();
        assert!(matches!(reserved.outcome, ReserveOutcome::Reserved(_)));
        assert_eq!(
            reserved.moved.map(|event| event.step),
            Some(OrderStep::Reserved)
        );
        assert_eq!(db.stock("tea").await, 3, "{}", db.name);
    }
}

/// Every kind of write, in batches, the same on both backends.
async fn story(db: &mut Db) -> Vec<String> {
    db.commit(
        [product("cake", 1), product("tea", 10)]
            .map(|p| job(p).0)
            .into(),
    )
    .await;
    db.commit(vec![
        job(new_order(1, "tea", 2, Some("k1"))).0,
        job(new_order(2, "tea", 3, None)).0,
        job(new_order(3, "cake", 2, None)).0,
        job(new_order(4, "tea", 2, Some("k1"))).0,
        job(new_order(5, "tea", 1, None)).0,
    ])
    .await;
    db.commit(vec![
        job(reserve(1, "tea", 2, true)).0,
        job(reserve(2, "tea", 3, true)).0,
        job(reserve(3, "cake", 2, true)).0,
        job(reserve(1, "tea", 2, false)).0,
        job(reserve(5, "tea", 1, true)).0,
    ])
    .await;
    db.commit(vec![
        job(payment(1, 1, PaymentStatus::Succeeded)).0,
        job(payment(2, 2, PaymentStatus::Declined)).0,
        job(payment(3, 1, PaymentStatus::Declined)).0,
    ])
    .await;
    db.commit(vec![
        job(settle(1, true)).0,
        job(settle(2, false)).0,
        job(transition(5, OrderStep::Rejected)).0,
        job(transition(3, OrderStep::Confirmed)).0,
    ])
    .await;
    db.commit(vec![job(product("tea", 20)).0, job(settle(2, false)).0])
        .await;
    db.commit(vec![
        job(session(1, 500)).0,
        job(session(2, 100)).0,
        job(session(3, 900)).0,
        job(EndSession {
            session_id: Uuid::from_u128(1),
        })
        .0,
        job(secret("first")).0,
        job(secret("second")).0,
    ])
    .await;
    db.commit(vec![job(prune(3, 200)).0]).await;
    // Carts: added to, set, a line removed, then two checkouts of one cart.
    let (alice, bob) = (
        ShopperId::from_uuid(Uuid::from_u128(41)),
        ShopperId::from_uuid(Uuid::from_u128(42)),
    );
    let units = |n| Quantity::parse(n).unwrap();
    db.commit(vec![
        job(add_to_cart(alice, 2)).0,
        job(cart_change(alice, "cake", CartEdit::Add(units(1)))).0,
        job(add_to_cart(alice, 1)).0,
        job(cart_change(alice, "cake", CartEdit::Set(units(4)))).0,
        job(cart_change(bob, "cake", CartEdit::Add(units(1)))).0,
        job(cart_change(bob, "tea", CartEdit::Set(units(9)))).0,
        job(cart_change(bob, "cake", CartEdit::Remove)).0,
    ])
    .await;
    db.commit(vec![
        job(checkout(6, alice, 2, "tab-1")).0,
        job(checkout(7, alice, 5, "tab-2")).0,
    ])
    .await;
    db.rows().await
}

fn session(n: u128, expires_at: i64) -> AdminSessionRow {
    AdminSessionRow {
        session_id: Uuid::from_u128(n),
        token_digest: "digest".to_owned(),
        csrf: format!("csrf-{n}"),
        expires_at,
    }
}

fn secret(value: &str) -> SharedSecret {
    SharedSecret {
        name: "key".to_owned(),
        value: value.to_owned(),
    }
}

/// Forget the keys of the orders before `order` and the sessions that expired
/// before `expired_before`.
fn prune(order: u128, expired_before: i64) -> Prune {
    Prune {
        keys_after: Uuid::nil(),
        keys_before: order_id(order).as_uuid(),
        sessions_expired_before: expired_before,
    }
}

#[tokio::test]
async fn every_write_leaves_the_same_rows_on_both_backends() {
    let mut sqlite = sqlite().await;
    let rows = story(&mut sqlite).await;
    // The story itself: tea taken by orders 1 (confirmed) and 5 (held: REJECTED
    // is no arrow out of RESERVED), given back by 2, then replaced by 20, six
    // changes in all; cake refused to 3; 4 was 1's key again.
    let has = |row: &str| rows.iter().any(|r| r == row);
    assert!(
        has("product: tea | Product tea | Some(250) | Some(20) | Some(6)"),
        "{rows:#?}"
    );
    assert!(has(
        "product: cake | Product cake | Some(250) | Some(1) | Some(1)"
    ));
    let count = |table: &str| rows.iter().filter(|row| row.starts_with(table)).count();
    assert_eq!(
        (
            count("shop_order:"),
            count("payment:"),
            count("order_event:"),
            count("cart_line:")
        ),
        // Carts: alice's tea (3, 2 checked out) and cake (set to 4); bob's
        // tea was set where there was no line, his cake removed; her second
        // checkout (7) found the cart taken.
        (5, 2, 11, 2)
    );
    assert!(
        rows.iter()
            .any(|r| r.starts_with("cart_line:") && r.contains("| tea | Some(1) |")),
        "{rows:#?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.starts_with("cart_line:") && r.contains("| cake | Some(4) |")),
        "{rows:#?}"
    );
    // Sessions 1 (ended) and 2 (expired) are gone; the first secret stands.
    let sessions: Vec<_> = rows
        .iter()
        .filter(|r| r.starts_with("admin_session:"))
        .collect();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert!(sessions[0].contains("csrf-3"));
    assert!(has("setting: key | first"), "{rows:#?}");
    for status in [
        "| CONFIRMED |",
        "| PAYMENT_FAILED |",
        "| REJECTED |",
        "| RESERVED |",
    ] {
        assert!(
            rows.iter()
                .any(|row| row.starts_with("shop_order:") && row.contains(status))
        );
    }
    let Some(mut postgres) = postgres().await else {
        return;
    };
    assert_eq!(story(&mut postgres).await, rows);
}

/// Waits, up to a deadline, until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Everything the store's product feed hears from now on.
fn hear(store: &Store) -> std::sync::Arc<std::sync::Mutex<Vec<ProductChange>>> {
    let heard: std::sync::Arc<std::sync::Mutex<Vec<ProductChange>>> = std::sync::Arc::default();
    let feed = std::sync::Arc::clone(&heard);
    store.feed_products(std::sync::Arc::new(move |change| {
        feed.lock().unwrap().push(change);
    }));
    heard
}

#[tokio::test]
async fn after_losing_its_feed_an_instance_reads_the_catalog_again() {
    let Some(mut db) = postgres().await else {
        return;
    };
    let heard = hear(&db.store);
    let reloads = || {
        let heard = heard.lock().unwrap();
        let reloads = heard.iter().filter_map(|change| match change {
            ProductChange::Everything(rows) => Some(rows.clone()),
            _ => None,
        });
        reloads.collect::<Vec<_>>()
    };
    until("the feed starts with the catalog", || reloads().len() == 1).await;

    // The database drops the listening connection; a product changes meanwhile.
    let Reads::Postgres(admin) = &mut db.reads else {
        unreachable!()
    };
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .execute(&mut *admin)
    .await
    .unwrap();
    db.write(product("new", 7)).await;

    // Back, the feed reads the catalog again, with what it missed.
    until("the catalog is read again", || {
        let reloads = reloads();
        reloads.len() >= 2
            && (reloads[reloads.len() - 1].iter())
                .any(|row| row.product.product_id.as_str() == "new")
    })
    .await;
}

#[tokio::test]
async fn another_instance_hears_a_product_change_whatever_its_name_holds() {
    let Some(mut db) = postgres().await else {
        return;
    };
    let heard = hear(&db.store);
    // The feed listens before it reads the catalog.
    until("the feed starts", || !heard.lock().unwrap().is_empty()).await;
    let name = r#"O'Brien's "tea" \ with a backslash \' and $$ dollars"#;
    let mut written = product("quoted", 3);
    written.product_name = ProductName::parse(name).unwrap();
    db.write(written).await;
    until("the change is announced", || {
        heard.lock().unwrap().iter().any(|change| {
            matches!(change, ProductChange::Product(row) if row.product.product_name.as_str() == name)
        })
    })
    .await;
}

#[tokio::test]
async fn a_key_is_its_owners_and_is_forgotten_when_pruned() {
    for mut db in both().await {
        db.write(product("tea", 10)).await;
        // Order 2 comes from a shopper: the same key from the API is another key.
        let from_shopper = |n| {
            let mut order = new_order(n, "tea", 1, None);
            order.idempotency_key = Some(
                IdempotencyKey::parse("k")
                    .unwrap()
                    .owned_by(order.shopper_id),
            );
            order
        };
        let first = db.write(from_shopper(2)).await;
        assert!(
            matches!(first, CreateOrderOutcome::Created(_)),
            "{}",
            db.name
        );
        let api = db.write(new_order(3, "tea", 1, Some("k"))).await;
        assert!(matches!(api, CreateOrderOutcome::Created(_)), "{}", db.name);
        let again = db.write(from_shopper(4)).await;
        assert!(
            matches!(again, CreateOrderOutcome::Existing(ref order) if order.order_id == order_id(2)),
            "{}: {again:?}",
            db.name
        );

        let pruned = db.write(prune(3, 0)).await;
        assert_eq!(pruned.keys, 1, "{}", db.name);
        let after = db.write(from_shopper(6)).await;
        assert!(
            matches!(after, CreateOrderOutcome::Created(_)),
            "{}: a forgotten key places a new order",
            db.name
        );
        // The API's key was not pruned (order 3 is not before order 3).
        let api_again = db.write(new_order(5, "tea", 1, Some("k"))).await;
        assert!(
            matches!(api_again, CreateOrderOutcome::Existing(ref order) if order.order_id == order_id(3)),
            "{}",
            db.name
        );
    }
}

#[tokio::test]
async fn instances_agree_on_the_first_secret_stored() {
    for db in both().await {
        let first = db.store.shared_secret("s", "one".to_owned()).await.unwrap();
        let second = db.store.shared_secret("s", "two".to_owned()).await.unwrap();
        assert_eq!(
            (first.as_str(), second.as_str()),
            ("one", "one"),
            "{}",
            db.name
        );
    }
}

#[tokio::test]
async fn a_session_ends_when_it_is_ended() {
    for db in both().await {
        db.store
            .open_session(session(9, 4_000_000_000))
            .await
            .unwrap();
        let found = db.store.admin_session(Uuid::from_u128(9)).await.unwrap();
        assert_eq!(found, Some(session(9, 4_000_000_000)), "{}", db.name);
        assert!(db.store.end_session(Uuid::from_u128(9)).await.unwrap());
        assert!(!db.store.end_session(Uuid::from_u128(9)).await.unwrap());
        let gone = db.store.admin_session(Uuid::from_u128(9)).await.unwrap();
        assert_eq!(gone, None, "{}", db.name);
    }
}
