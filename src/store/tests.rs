//! The write path, on both backends: batches applied exactly as given, one
//! transaction each (as the writer applies them), and the same story run on
//! SQLite and Postgres leaving the same rows.

use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

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
    url: String,
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
        url,
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
        url,
        _dir: None,
    })
}

/// SQLite, then Postgres where there is one: each says which it is as a test
/// reaches it, so that a failure's output names the backend.
async fn both() -> impl Iterator<Item = Db> {
    let mut dbs = vec![sqlite().await];
    dbs.extend(postgres().await);
    dbs.into_iter().inspect(|db| eprintln!("on {}", db.name))
}

/// A job for `op`, and where its answer arrives once the batch is finished.
fn job<W: Write>(op: W) -> (Job, oneshot::Receiver<Result<W::Output, StoreError>>) {
    let (reply, answer) = oneshot::channel();
    (op.job(reply, None), answer)
}

async fn answer<T>(answer: oneshot::Receiver<Result<T, StoreError>>) -> Result<T, StoreError> {
    answer.await.unwrap()
}

/// Jobs for the writes, to commit as one batch without reading their answers.
macro_rules! batch {
    ($($op:expr),* $(,)?) => {
        vec![$(job($op).0),*]
    };
}

/// What the store said to an order: "created 2", "existing 2" (the order that
/// has its key) or "cart changed".
fn said(outcome: &CreateOrderOutcome) -> String {
    let number = |order: &Order| order.order_id.as_uuid().as_u128();
    match outcome {
        CreateOrderOutcome::Created(order) => format!("created {}", number(order)),
        CreateOrderOutcome::Existing(order) => format!("existing {}", number(order)),
        CreateOrderOutcome::CartChanged => "cart changed".to_owned(),
    }
}

impl Db {
    /// Applies the jobs in one transaction, as one batch: no retries.
    async fn transact(&mut self, jobs: &mut [Job]) -> Result<(), StoreError> {
        match &mut self.writes {
            Writes::Sqlite(conn) => writer::transact(conn, jobs).await,
            Writes::Postgres(conn) => writer::transact(conn, jobs).await,
        }
    }

    /// Commits the jobs as the writer commits one batch, and answers them;
    /// says whether the batch committed as one.
    async fn commit(&mut self, mut jobs: Vec<Job>) -> bool {
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

    /// Places the order alone: what the store said to it.
    async fn place(&mut self, order: NewOrder) -> String {
        said(&self.write(order).await)
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

    async fn stock(&mut self, id: &str) -> i64 {
        self.store
            .product(&product_id(id))
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

/// The rows of one table, of those `Db::rows` lists.
fn rows_of<'a>(rows: &'a [String], table: &str) -> Vec<&'a String> {
    let prefix = format!("{table}: ");
    rows.iter().filter(|row| row.starts_with(&prefix)).collect()
}

fn order_id(n: u128) -> OrderId {
    OrderId::from_uuid(Uuid::from_u128(n))
}

fn shopper(n: u128) -> ShopperId {
    ShopperId::from_uuid(Uuid::from_u128(n))
}

fn product_id(id: &str) -> ProductId {
    ProductId::parse(id).unwrap()
}

fn units(n: i64) -> Quantity {
    Quantity::parse(n).unwrap()
}

fn product(id: &str, stock: i64) -> Product {
    Product {
        product_id: product_id(id),
        product_name: ProductName::parse(format!("Product {id}")).unwrap(),
        price: Price::parse(250).unwrap(),
        stock: Stock::parse(stock).unwrap(),
    }
}

fn new_order(n: u128, id: &str, count: i64, key: Option<&str>) -> NewOrder {
    NewOrder {
        order_id: order_id(n),
        lines: vec![OrderLine {
            product_id: product_id(id),
            product_name: ProductName::parse(format!("The {id}")).unwrap(),
            quantity: units(count),
            unit_price: Price::parse(250).unwrap(),
        }],
        // Some paid by card, so that the card's column goes round too.
        payment_method: n.is_multiple_of(3).then(|| PaymentMethod {
            brand: CardBrand::Visa,
            last4: "4242".to_owned(),
            token: "tok_card".to_owned(),
        }),
        total_amount: Money::from_cents(250 * count),
        // The API's keys: the tests that need a shopper's own say so.
        idempotency_key: key.map(|key| IdempotencyKey::parse(key).unwrap().owned_by(None)),
        shopper_id: n.is_multiple_of(2).then(|| shopper(7)),
        from_cart: false,
        at: at(n as i64),
    }
}

fn reserve(n: u128, id: &str, count: i64, advance_order: bool) -> Reserve {
    Reserve {
        order_id: order_id(n),
        lines: vec![Item {
            product_id: product_id(id),
            quantity: units(count),
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
                product_id: product_id("hot"),
                stock: Stock::parse(stock).unwrap(),
                version,
            }])
        };
        let short = |count, available| ReserveOutcome::Insufficient {
            product_id: product_id("hot"),
            requested: units(count),
            available: Stock::parse(available).unwrap(),
        };
        let decided = [level(3, 2), short(4, 3), level(0, 3), short(1, 0)];
        assert_eq!(outcomes, decided);
        assert_eq!(db.stock("hot").await, 0);
        // Refusals are recorded too, so that they stand.
        let rows = db.rows().await;
        let states = rows_of(&rows, "reservation");
        assert_eq!(states.len(), 4, "{states:?}");
        let refused = states.iter().filter(|row| row.contains("REFUSED"));
        assert_eq!(refused.count(), 2);
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
        // Losing a race is an answer, not a failure: the batch commits as one.
        assert!(db.commit(vec![create, again, other, stale, fresh]).await);

        let CreateOrderOutcome::Created(first) = answer(created).await.unwrap() else {
            panic!("the first order with the key was not created");
        };
        let existing = CreateOrderOutcome::Existing(first);
        assert_eq!(answer(same_key).await.unwrap(), existing);
        assert_eq!(said(&answer(other_created).await.unwrap()), "created 5");
        assert_eq!(answer(stale_move).await.unwrap(), None);
        let moved = answer(fresh_move).await.unwrap().unwrap();
        assert_eq!((moved.seq, moved.step), (2, OrderStep::Reserved));
        assert!(db.store.order(order_id(4)).await.unwrap().is_none());
        let order_1 = db.store.order(order_id(1)).await.unwrap().unwrap();
        assert_eq!(order_1.step, OrderStep::Placed);
    }
}

/// A change to a line of the shopper's cart.
fn cart_change(shopper: ShopperId, id: &str, edit: CartEdit) -> CartChange {
    CartChange {
        shopper_id: shopper,
        product_id: product_id(id),
        edit,
        at: at(50),
    }
}

/// `count` more of tea in the shopper's cart, as the storefront adds them.
fn add_to_cart(shopper: ShopperId, count: i64) -> CartChange {
    cart_change(shopper, "tea", CartEdit::Add(units(count)))
}

/// A checkout of `count` of tea from the shopper's cart.
fn checkout(n: u128, shopper: ShopperId, count: i64, key: &str) -> NewOrder {
    NewOrder {
        shopper_id: Some(shopper),
        from_cart: true,
        idempotency_key: Some(IdempotencyKey::parse(key).unwrap().owned_by(Some(shopper))),
        ..new_order(n, "tea", count, None)
    }
}

#[tokio::test]
async fn a_carts_lines_are_bought_once_however_many_checkouts_race_for_them() {
    for mut db in both().await {
        let alice = shopper(41);
        db.write(product("tea", 10)).await;
        db.write(add_to_cart(alice, 3)).await;

        // Two tabs (two keys) and a double click (the first key again), in one batch.
        let (first, first_answer) = job(checkout(1, alice, 3, "tab-1"));
        let (second, second_answer) = job(checkout(2, alice, 3, "tab-2"));
        let (again, again_answer) = job(checkout(3, alice, 3, "tab-1"));
        db.commit(vec![first, second, again]).await;

        let CreateOrderOutcome::Created(placed) = answer(first_answer).await.unwrap() else {
            panic!("the first checkout was not placed");
        };
        let second = answer(second_answer).await.unwrap();
        assert_eq!(second, CreateOrderOutcome::CartChanged);
        let again = answer(again_answer).await.unwrap();
        assert_eq!(again, CreateOrderOutcome::Existing(placed));
        assert!(db.store.cart(alice).await.unwrap().is_empty());

        // In a later batch, a checkout of what the cart no longer holds is
        // refused too; units added since a checkout stay in the cart.
        db.write(add_to_cart(alice, 2)).await;
        let late = db.place(checkout(4, alice, 3, "tab-3")).await;
        assert_eq!(late, "cart changed");
        assert_eq!(db.place(checkout(5, alice, 1, "tab-4")).await, "created 5");
        let left = db.store.cart(alice).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].quantity.units(), 1);
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
        assert!(db.transact(&mut jobs).await.is_err());
        // One transaction: nothing of it stands, not even what came first.
        assert_eq!(db.rows().await, before);

        // As the writer commits it: the broken write fails alone (and the
        // committer knows the batch did not commit as one).
        assert!(!db.commit(jobs).await);
        assert!(answer(refused).await.is_err());
        let reserved = answer(reserved).await.unwrap();
        assert!(matches!(reserved.outcome, ReserveOutcome::Reserved(_)));
        let moved = reserved.moved.map(|event| event.step);
        assert_eq!(moved, Some(OrderStep::Reserved));
        assert_eq!(db.stock("tea").await, 3);
    }
}

/// Every kind of write, in batches, the same on both backends.
async fn story(db: &mut Db) -> Vec<String> {
    db.commit(batch![product("cake", 1), product("tea", 10)])
        .await;
    db.commit(batch![
        new_order(1, "tea", 2, Some("k1")),
        new_order(2, "tea", 3, None),
        new_order(3, "cake", 2, None),
        new_order(4, "tea", 2, Some("k1")),
        new_order(5, "tea", 1, None),
    ])
    .await;
    db.commit(batch![
        reserve(1, "tea", 2, true),
        reserve(2, "tea", 3, true),
        reserve(3, "cake", 2, true),
        reserve(1, "tea", 2, false),
        reserve(5, "tea", 1, true),
    ])
    .await;
    db.commit(batch![
        payment(1, 1, PaymentStatus::Succeeded),
        payment(2, 2, PaymentStatus::Declined),
        payment(3, 1, PaymentStatus::Declined),
    ])
    .await;
    db.commit(batch![
        settle(1, true),
        settle(2, false),
        transition(5, OrderStep::Rejected),
        transition(3, OrderStep::Confirmed),
    ])
    .await;
    db.commit(batch![product("tea", 20), settle(2, false)])
        .await;
    let ended = EndSession {
        session_id: Uuid::from_u128(1),
    };
    db.commit(batch![
        session(1, 500),
        session(2, 100),
        session(3, 900),
        ended,
        secret("first"),
        secret("second"),
    ])
    .await;
    db.commit(batch![prune(3, 200)]).await;
    // Carts: added to, set, a line removed, then two checkouts of one cart.
    let (alice, bob) = (shopper(41), shopper(42));
    db.commit(batch![
        add_to_cart(alice, 2),
        cart_change(alice, "cake", CartEdit::Add(units(1))),
        add_to_cart(alice, 1),
        cart_change(alice, "cake", CartEdit::Set(units(4))),
        cart_change(bob, "cake", CartEdit::Add(units(1))),
        cart_change(bob, "tea", CartEdit::Set(units(9))),
        cart_change(bob, "cake", CartEdit::Remove),
    ])
    .await;
    db.commit(batch![
        checkout(6, alice, 2, "tab-1"),
        checkout(7, alice, 5, "tab-2"),
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
    for row in [
        "product: tea | Product tea | Some(250) | Some(20) | Some(6)",
        "product: cake | Product cake | Some(250) | Some(1) | Some(1)",
        // Of the secrets, the first stands.
        "setting: key | first",
    ] {
        assert!(rows.iter().any(|r| r == row), "{row}: {rows:#?}");
    }
    let count = |table| rows_of(&rows, table).len();
    let counts = ["shop_order", "payment", "order_event", "cart_line"].map(count);
    // Carts: alice's tea (3, 2 checked out) and cake (set to 4); bob's tea was
    // set where there was no line, his cake removed; her second checkout (7)
    // found the cart taken.
    assert_eq!(counts, [5, 2, 11, 2]);
    // Sessions 1 (ended) and 2 (expired) are gone.
    assert_eq!(count("admin_session"), 1, "{rows:#?}");
    for (table, cells) in [
        ("cart_line", "| tea | Some(1) |"),
        ("cart_line", "| cake | Some(4) |"),
        ("admin_session", "csrf-3"),
        ("shop_order", "| CONFIRMED |"),
        ("shop_order", "| PAYMENT_FAILED |"),
        ("shop_order", "| REJECTED |"),
        ("shop_order", "| RESERVED |"),
    ] {
        let found = rows_of(&rows, table).iter().any(|row| row.contains(cells));
        assert!(found, "{table} with {cells}: {rows:#?}");
    }
    let Some(mut postgres) = postgres().await else {
        return;
    };
    assert_eq!(story(&mut postgres).await, rows);
}

/// Waits, up to a deadline, until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Everything the store's product feed hears from now on.
fn hear(store: &Store) -> Arc<Mutex<Vec<ProductChange>>> {
    let heard: Arc<Mutex<Vec<ProductChange>>> = Arc::default();
    let feed = Arc::clone(&heard);
    store.feed_products(Arc::new(move |change| {
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
            let key = IdempotencyKey::parse("k").unwrap();
            order.idempotency_key = Some(key.owned_by(order.shopper_id));
            order
        };
        let from_api = |n| new_order(n, "tea", 1, Some("k"));
        assert_eq!(db.place(from_shopper(2)).await, "created 2");
        assert_eq!(db.place(from_api(3)).await, "created 3");
        assert_eq!(db.place(from_shopper(4)).await, "existing 2");

        let pruned = db.write(prune(3, 0)).await;
        assert_eq!(pruned.keys, 1);
        // A forgotten key places a new order.
        assert_eq!(db.place(from_shopper(6)).await, "created 6");
        // The API's key was not pruned (order 3 is not before order 3).
        assert_eq!(db.place(from_api(5)).await, "existing 3");
    }
}

#[tokio::test]
async fn instances_agree_on_the_first_secret_stored() {
    for db in both().await {
        let first = db.store.shared_secret("s", "one".to_owned()).await.unwrap();
        let second = db.store.shared_secret("s", "two".to_owned()).await.unwrap();
        assert_eq!((first.as_str(), second.as_str()), ("one", "one"));
    }
}

#[tokio::test]
async fn a_session_ends_when_it_is_ended() {
    for db in both().await {
        let (opened, id) = (session(9, 4_000_000_000), Uuid::from_u128(9));
        db.store.open_session(opened.clone()).await.unwrap();
        let found = db.store.admin_session(id).await.unwrap();
        assert_eq!(found, Some(opened));
        assert!(db.store.end_session(id).await.unwrap());
        assert!(!db.store.end_session(id).await.unwrap());
        assert_eq!(db.store.admin_session(id).await.unwrap(), None);
    }
}

#[tokio::test]
async fn taking_reservations_for_good_reads_only_the_batchs_whatever_the_plan_was_made_on() {
    let Some(mut db) = postgres().await else {
        return;
    };
    db.write(product("tea", 1_000_000)).await;
    let Writes::Postgres(conn) = &mut db.writes else {
        unreachable!()
    };
    // As a write connection plans, its plan made once, on the empty table.
    let generic = [("plan_cache_mode", "force_generic_plan")];
    for (setting, value) in postgres::JOINS.iter().chain(&generic) {
        (sqlx::query(&format!("SET {setting} = {value}"))
            .execute(&mut *conn)
            .await)
            .unwrap();
    }
    #[derive(serde::Serialize)]
    struct Paid {
        order_id: Uuid,
        at: DateTime<Utc>,
    }
    let (sql, _) = dialect::postgres::<Paid>(batch::TAKE_FOR_GOOD, &[]).unwrap();
    let prepared = format!("PREPARE take(json) AS {sql}");
    sqlx::raw_sql(&prepared).execute(&mut *conn).await.unwrap();
    sqlx::raw_sql("EXECUTE take('[]')")
        .execute(&mut *conn)
        .await
        .unwrap();

    // The shop has reserved 20,003 times and taken all but three for good
    // since the table was last vacuumed.
    sqlx::raw_sql(
        "INSERT INTO reservation (order_id, product_id, quantity, state, updated_at) \
         SELECT gen_random_uuid(), 'tea', 1, 'RESERVED', now() FROM generate_series(1, 20003); \
         UPDATE reservation SET state = 'COMMITTED' WHERE order_id IN \
             (SELECT order_id FROM reservation ORDER BY order_id OFFSET 3)",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    let paid: Vec<Paid> =
        sqlx::query_scalar("SELECT order_id FROM reservation WHERE state = 'RESERVED'")
            .fetch_all(&mut *conn)
            .await
            .unwrap()
            .into_iter()
            .map(|order_id| Paid {
                order_id,
                at: Utc::now(),
            })
            .collect();
    let rows = serde_json::to_string(&paid).unwrap().replace('\'', "''");
    let explain = format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE take('{rows}')");
    let plan: serde_json::Value = sqlx::query_scalar(&explain)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let top = &plan[0]["Plan"];
    assert_eq!(top["Actual Rows"], 3, "{plan:#}");
    let read =
        top["Shared Hit Blocks"].as_u64().unwrap() + top["Shared Read Blocks"].as_u64().unwrap();
    // The in-flight index still holds the entries of the reservations taken
    // since the last vacuum (about 300 blocks with them); the primary key's
    // scan read every row (20,000 blocks and more).
    assert!(
        read < 1_000,
        "taking three reservations read {read} blocks: {plan:#}"
    );
}

#[tokio::test]
async fn a_committer_with_the_pools_only_connection_writes_again_after_a_pause() {
    let Some(db) = postgres().await else {
        return;
    };
    // The default: one write connection. A pool that waited for it while the
    // committer still held it would time out, so the wait is short.
    let mut options = StoreOptions::new(db.url.as_str());
    options.acquire_timeout = Duration::from_millis(500);
    let store = Store::open(&options).await.unwrap();
    store.upsert_product(product("tea", 10)).await.unwrap();
    // Longer than a committer keeps its connection unchecked: the next batch
    // takes it from the pool again.
    tokio::time::sleep(postgres::KEEP_WHILE_BUSY * 2).await;
    let created = store.create_order(new_order(1, "tea", 1, None)).await;
    assert!(
        matches!(created, Ok(CreateOrderOutcome::Created(_))),
        "{created:?}"
    );
    store.upsert_product(product("tea", 12)).await.unwrap();
}
