//! A batch of writes, applied set-based in one transaction: each kind of write is
//! one statement for the whole batch (or one locked read and one statement), so a
//! commit costs the same few round trips whether it carries one saga step or
//! hundreds. Written once, compiled once per backend: `sqlite` and `postgres`
//! each include this file as their `batch`, with their own `Db`, `DIALECT` and
//! `announce`.
//!
//! The statements run in a fixed order:
//!
//! 1. reservations given back (a declined payment), which names the products
//!    whose stock comes back;
//! 2. one read of every product the batch touches, locked in key order on
//!    Postgres, so that batches committing at once (here or in another instance)
//!    take product locks in the same order and cannot deadlock;
//! 3. product upserts;
//! 4. reservations made before, for the orders that ask again;
//! 5. stock decided in memory, job by job in arrival order, exactly as if the
//!    jobs ran one by one; then one write of every product's new stock and one
//!    insert of every new reservation row (a row per line);
//! 6. payments, reservations taken for good, new orders;
//! 7. order moves (each guarded by the step it comes from) and their events;
//! 8. one announcement of the batch's changes to other instances.
//!
//! What loses a race is a value, not an error: a key used before (`ON CONFLICT
//! DO NOTHING`, then read back), an order that moved on (the guard). A write
//! that touches a row another write of the same batch touches (two moves of one
//! order, two upserts of one product) goes in a later round of the same
//! statement, as it would one by one.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use chrono::Utc;
use futures_util::future::BoxFuture;
use serde::Serialize;
use uuid::Uuid;

use super::{DIALECT, Db, announce};
use crate::domain::{
    Order, OrderEvent, OrderId, OrderStep, Payment, ProductId, Quantity, Stock, StockDecision,
};
use crate::store::dialect::{Id, Time, json};
use crate::store::rows::{OrderRow, PaymentRow};
use crate::store::writer::{ApplyBatch, Job};
use crate::store::{
    Changes, CreateOrderOutcome, Line, ProductChange, ReservationState, ReserveOutcome, Reserved,
    Settled, StockLevel, StockedProduct, StoreError, corrupt,
};

type Conn = <Db as sqlx::Database>::Connection;

impl ApplyBatch for Db {
    fn apply<'c>(conn: &'c mut Conn, jobs: &'c mut [Job]) -> BoxFuture<'c, Result<(), StoreError>> {
        Box::pin(apply(conn, jobs))
    }
}

async fn apply(conn: &mut Conn, jobs: &mut [Job]) -> Result<(), StoreError> {
    let mut changes = Changes::default();
    let mut released = release(conn, jobs).await?;
    let mut stock = lock_products(conn, jobs, &released).await?;
    upsert(conn, jobs, &mut stock, &mut changes).await?;
    let before = decided_before(conn, jobs).await?;
    let (reservations, moves) = decide(jobs, &mut released, &mut stock, before, &mut changes)?;
    write_stock(conn, &stock).await?;
    insert_reservations(conn, &reservations).await?;
    pay(conn, jobs).await?;
    commit_reservations(conn, jobs).await?;
    let placed = create_orders(conn, jobs).await?;
    move_orders(conn, jobs, placed, moves, &mut changes).await?;
    announce(conn, &changes).await
}

async fn execute(conn: &mut Conn, template: &'static str, rows: String) -> Result<(), StoreError> {
    sqlx::query(DIALECT.sql(template))
        .bind(rows)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn fetch<R>(
    conn: &mut Conn,
    template: &'static str,
    rows: String,
) -> Result<Vec<R>, StoreError>
where
    R: for<'r> sqlx::FromRow<'r, <Db as sqlx::Database>::Row> + Send + Unpin,
{
    Ok(sqlx::query_as::<Db, R>(DIALECT.sql(template))
        .bind(rows)
        .fetch_all(&mut *conn)
        .await?)
}

#[derive(Serialize)]
struct OrderAt {
    order_id: Id,
    at: Time,
}

#[derive(Serialize)]
struct OrderKey {
    order_id: Id,
}

/// The reservation rows each order's release gave back: (product, units).
type Released = HashMap<Uuid, Vec<(String, i64)>>;

/// Step 1: Gives back the reservations of declined orders; every settle gets its answer.
async fn release(conn: &mut Conn, jobs: &mut [Job]) -> Result<Released, StoreError> {
    let mut rows = Vec::new();
    for job in jobs.iter_mut() {
        if let Job::Settle(settle) = job {
            settle.output = Some(Settled {
                changed: false,
                released: Vec::new(),
                moved: None,
            });
            if !settle.input.paid {
                rows.push(OrderAt {
                    order_id: Id(settle.input.order_id.as_uuid()),
                    at: Time(settle.input.at),
                });
            }
        }
    }
    let mut released = Released::new();
    if rows.is_empty() {
        return Ok(released);
    }
    let given_back: Vec<(Uuid, String, i64)> = fetch(
        conn,
        "UPDATE reservation SET state = 'RELEASED', updated_at = x.at \
         FROM #ROWS(order_id uuid, at time) \
         WHERE reservation.order_id = x.order_id AND reservation.state = 'RESERVED' \
         RETURNING reservation.order_id, reservation.product_id, reservation.quantity",
        json(&rows)?,
    )
    .await?;
    for (order_id, product_id, units) in given_back {
        released
            .entry(order_id)
            .or_default()
            .push((product_id, units));
    }
    Ok(released)
}

/// A product's stock as the batch has it, and whether the batch changed it.
struct Level {
    stock: i64,
    version: i64,
    changed: bool,
}

/// Step 2: Reads (and on Postgres locks, in key order) every product the batch touches.
async fn lock_products(
    conn: &mut Conn,
    jobs: &[Job],
    released: &Released,
) -> Result<HashMap<String, Level>, StoreError> {
    let mut ids: Vec<&str> = released
        .values()
        .flatten()
        .map(|(product_id, _)| product_id.as_str())
        .collect();
    for job in jobs {
        match job {
            Job::Upsert(upsert) => ids.push(upsert.input.product_id.as_str()),
            Job::Reserve(reserve) => {
                ids.extend(reserve.input.lines.iter().map(|l| l.product_id.as_str()))
            }
            _ => {}
        }
    }
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    ids.sort_unstable();
    ids.dedup();
    #[derive(Serialize)]
    struct Key<'a> {
        product_id: &'a str,
    }
    let keys: Vec<Key<'_>> = ids
        .into_iter()
        .map(|product_id| Key { product_id })
        .collect();
    let rows: Vec<(String, i64, i64)> = fetch(
        conn,
        "SELECT product_id, stock, version FROM product \
         WHERE product_id IN (SELECT product_id FROM #ROWS(product_id text)) \
         ORDER BY product_id #LOCK",
        json(&keys)?,
    )
    .await?;
    Ok(rows
        .into_iter()
        .map(|(product_id, stock, version)| {
            let level = Level {
                stock,
                version,
                changed: false,
            };
            (product_id, level)
        })
        .collect())
}

/// Step 3: Creates or replaces products.
async fn upsert(
    conn: &mut Conn,
    jobs: &mut [Job],
    stock: &mut HashMap<String, Level>,
    changes: &mut Changes,
) -> Result<(), StoreError> {
    #[derive(Serialize)]
    struct Row<'a> {
        product_id: &'a str,
        product_name: &'a str,
        price: i64,
        stock: i64,
        at: Time,
    }
    let upserts: Vec<(usize, String)> = jobs
        .iter()
        .enumerate()
        .filter_map(|(i, job)| match job {
            Job::Upsert(upsert) => Some((i, upsert.input.product_id.as_str().to_owned())),
            _ => None,
        })
        .collect();
    let at = Time(Utc::now());
    for round in rounds(upserts, |(_, product_id)| product_id.clone()) {
        let rows: Vec<Row<'_>> = round
            .iter()
            .filter_map(|&(i, _)| match &jobs[i] {
                Job::Upsert(upsert) => Some(Row {
                    product_id: upsert.input.product_id.as_str(),
                    product_name: upsert.input.product_name.as_str(),
                    price: upsert.input.price.money().cents(),
                    stock: upsert.input.stock.units(),
                    at,
                }),
                _ => None,
            })
            .collect();
        let versions: HashMap<String, i64> = fetch::<(String, i64)>(
            conn,
            "INSERT INTO product (product_id, product_name, price, stock, version, updated_at) \
             SELECT product_id, product_name, price, stock, 1, at \
             FROM #ROWS(product_id text, product_name text, price int, stock int, at time) WHERE true \
             ON CONFLICT (product_id) DO UPDATE SET product_name = excluded.product_name, \
             price = excluded.price, stock = excluded.stock, version = product.version + 1, \
             updated_at = excluded.updated_at \
             RETURNING product_id, version",
            json(&rows)?,
        )
        .await?
        .into_iter()
        .collect();
        for &(i, _) in &round {
            let Job::Upsert(upsert) = &mut jobs[i] else {
                continue;
            };
            let product = &upsert.input;
            let version = *versions
                .get(product.product_id.as_str())
                .ok_or(StoreError::NotApplied)?;
            let row = StockedProduct {
                product: product.clone(),
                version,
            };
            stock.insert(
                product.product_id.as_str().to_owned(),
                Level {
                    stock: product.stock.units(),
                    version,
                    changed: false,
                },
            );
            changes.products.push(ProductChange::Product(row.clone()));
            upsert.output = Some(row);
        }
    }
    Ok(())
}

/// Step 4: What was decided before for the orders that ask for stock.
async fn decided_before(
    conn: &mut Conn,
    jobs: &[Job],
) -> Result<HashMap<Uuid, ReservationState>, StoreError> {
    let keys: Vec<OrderKey> = jobs
        .iter()
        .filter_map(|job| match job {
            Job::Reserve(reserve) => Some(OrderKey {
                order_id: Id(reserve.input.order_id.as_uuid()),
            }),
            _ => None,
        })
        .collect();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Uuid, String)> = fetch(
        conn,
        "SELECT order_id, state FROM reservation \
         WHERE order_id IN (SELECT order_id FROM #ROWS(order_id uuid))",
        json(&keys)?,
    )
    .await?;
    rows.into_iter()
        .map(|(order_id, state)| Ok((order_id, state.parse()?)))
        .collect()
}

#[derive(Serialize)]
struct ReservationRow {
    order_id: Id,
    product_id: String,
    quantity: i64,
    state: &'static str,
    at: Time,
}

/// An order's move, guarded by the step it comes from, for the job at `job`.
struct Move {
    job: usize,
    order_id: OrderId,
    step: OrderStep,
    reason: Option<String>,
    at: Time,
}

/// Step 5: Decides stock job by job, in arrival order: releases add, reservations take
/// every line or none. Answers the reservation rows to insert and the moves the
/// decisions lead to.
fn decide(
    jobs: &mut [Job],
    released: &mut Released,
    stock: &mut HashMap<String, Level>,
    mut decided: HashMap<Uuid, ReservationState>,
    changes: &mut Changes,
) -> Result<(Vec<ReservationRow>, Vec<Move>), StoreError> {
    let mut rows = Vec::new();
    let mut moves = Vec::new();
    for (index, job) in jobs.iter_mut().enumerate() {
        match job {
            Job::Settle(settle) => {
                let order_id = settle.input.order_id;
                let given_back = released.remove(&order_id.as_uuid());
                let Some(settled) = settle.output.as_mut() else {
                    continue;
                };
                for (product_id, units) in given_back.into_iter().flatten() {
                    let level = stock.get_mut(&product_id).ok_or_else(|| {
                        corrupt("reservation", "of a product that does not exist")
                    })?;
                    level.stock += units;
                    level.version += 1;
                    level.changed = true;
                    let level = stock_level(&product_id, level)?;
                    changes.products.push(ProductChange::Stock(level.clone()));
                    settled.changed = true;
                    settled.released.push(level);
                }
                if let Some(then) = &settle.input.then {
                    moves.push(Move {
                        job: index,
                        order_id,
                        step: then.step,
                        reason: then.reason.clone(),
                        at: Time(settle.input.at),
                    });
                }
            }
            Job::Reserve(reserve) => {
                let input = &reserve.input;
                let order_id = input.order_id.as_uuid();
                let wanted = wanted(&input.lines);
                let outcome = if let Some(state) = decided.get(&order_id) {
                    ReserveOutcome::AlreadyDecided(*state)
                } else if let Some((product_id, _)) = wanted
                    .iter()
                    .find(|(product_id, _)| !stock.contains_key(product_id.as_str()))
                {
                    ReserveOutcome::UnknownProduct((*product_id).clone())
                } else {
                    let short = wanted.iter().find(|(product_id, units)| {
                        stock
                            .get(product_id.as_str())
                            .is_some_and(|level| level.stock < *units)
                    });
                    let state = match short {
                        Some(_) => ReservationState::Refused,
                        None => ReservationState::Reserved,
                    };
                    decided.insert(order_id, state);
                    rows.extend(wanted.iter().map(|(product_id, units)| ReservationRow {
                        order_id: Id(order_id),
                        product_id: product_id.as_str().to_owned(),
                        quantity: *units,
                        state: state.as_str(),
                        at: Time(input.at),
                    }));
                    match short {
                        Some((product_id, units)) => ReserveOutcome::Insufficient {
                            product_id: (*product_id).clone(),
                            requested: Quantity::parse(*units)
                                .map_err(|e| corrupt("quantity", e))?,
                            available: Stock::saturating(
                                stock
                                    .get(product_id.as_str())
                                    .map_or(0, |level| level.stock),
                            ),
                        },
                        None => {
                            let mut levels = Vec::with_capacity(wanted.len());
                            for (product_id, units) in &wanted {
                                let Some(level) = stock.get_mut(product_id.as_str()) else {
                                    continue;
                                };
                                level.stock -= units;
                                level.version += 1;
                                level.changed = true;
                                let level = stock_level(product_id.as_str(), level)?;
                                changes.products.push(ProductChange::Stock(level.clone()));
                                levels.push(level);
                            }
                            ReserveOutcome::Reserved(levels)
                        }
                    }
                };
                if input.advance_order {
                    let (step, reason) = decision(&outcome, &input.lines).next_step();
                    moves.push(Move {
                        job: index,
                        order_id: input.order_id,
                        step,
                        reason,
                        at: Time(input.at),
                    });
                }
                reserve.output = Some(Reserved {
                    outcome,
                    moved: None,
                });
            }
            Job::Advance(advance) => {
                let input = &advance.input;
                advance.output = Some(None);
                moves.push(Move {
                    job: index,
                    order_id: input.order_id,
                    step: input.step,
                    reason: input.reason.clone(),
                    at: Time(input.at),
                });
            }
            _ => {}
        }
    }
    Ok((rows, moves))
}

/// The units an order wants of each product, its lines added up per product.
fn wanted(lines: &[Line]) -> Vec<(&ProductId, i64)> {
    let mut wanted: Vec<(&ProductId, i64)> = Vec::with_capacity(lines.len());
    for line in lines {
        let units = i64::from(line.quantity);
        match wanted.iter_mut().find(|(id, _)| **id == line.product_id) {
            Some((_, total)) => *total += units,
            None => wanted.push((&line.product_id, units)),
        }
    }
    wanted
}

/// The decision in the saga's terms.
fn decision(outcome: &ReserveOutcome, lines: &[Line]) -> StockDecision {
    match outcome {
        ReserveOutcome::Reserved(_)
        | ReserveOutcome::AlreadyDecided(
            ReservationState::Reserved | ReservationState::Committed | ReservationState::Released,
        ) => StockDecision::Held,
        ReserveOutcome::AlreadyDecided(ReservationState::Refused) => match lines.first() {
            Some(line) => StockDecision::Short {
                requested: line.quantity,
                available: None,
            },
            None => StockDecision::UnknownProduct,
        },
        ReserveOutcome::Insufficient {
            requested,
            available,
            ..
        } => StockDecision::Short {
            requested: *requested,
            available: Some(available.units()),
        },
        ReserveOutcome::UnknownProduct(_) => StockDecision::UnknownProduct,
    }
}

fn stock_level(product_id: &str, level: &Level) -> Result<StockLevel, StoreError> {
    Ok(StockLevel {
        product_id: ProductId::parse(product_id).map_err(|e| corrupt("product_id", e))?,
        stock: Stock::saturating(level.stock),
        version: level.version,
    })
}

/// Step 5: Writes every changed product's stock at once.
async fn write_stock(conn: &mut Conn, stock: &HashMap<String, Level>) -> Result<(), StoreError> {
    #[derive(Serialize)]
    struct Row<'a> {
        product_id: &'a str,
        stock: i64,
        version: i64,
        at: Time,
    }
    let at = Time(Utc::now());
    let rows: Vec<Row<'_>> = stock
        .iter()
        .filter(|(_, level)| level.changed)
        .map(|(product_id, level)| Row {
            product_id,
            stock: level.stock,
            version: level.version,
            at,
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    execute(
        conn,
        "UPDATE product SET stock = x.stock, version = x.version, updated_at = x.at \
         FROM #ROWS(product_id text, stock int, version int, at time) \
         WHERE product.product_id = x.product_id",
        json(&rows)?,
    )
    .await
}

/// Step 5: Records the reservations decided now, reserved or refused. The primary key
/// (order, product) is the backstop: a second decision for an order (another
/// instance's) fails the batch, which is then retried job by job.
async fn insert_reservations(conn: &mut Conn, rows: &[ReservationRow]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    execute(
        conn,
        "INSERT INTO reservation (order_id, product_id, quantity, state, updated_at) \
         SELECT order_id, product_id, quantity, state, at \
         FROM #ROWS(order_id uuid, product_id text, quantity int, state text, at time)",
        json(rows)?,
    )
    .await
}

/// Step 6: Records payments; an order that has one already gets that one back.
async fn pay(conn: &mut Conn, jobs: &mut [Job]) -> Result<(), StoreError> {
    #[derive(Serialize)]
    struct Row {
        payment_id: Id,
        order_id: Id,
        total_amount: i64,
        status: &'static str,
        created_at: Time,
    }
    let rows: Vec<Row> = jobs
        .iter()
        .filter_map(|job| match job {
            Job::Pay(pay) => Some(Row {
                payment_id: Id(pay.input.payment_id.as_uuid()),
                order_id: Id(pay.input.order_id.as_uuid()),
                total_amount: pay.input.total_amount.cents(),
                status: pay.input.status.as_str(),
                created_at: Time(pay.input.created_at),
            }),
            _ => None,
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let inserted: HashSet<Uuid> = fetch::<(Uuid,)>(
        conn,
        "INSERT INTO payment (payment_id, order_id, total_amount, status, created_at) \
         SELECT payment_id, order_id, total_amount, status, created_at \
         FROM #ROWS(payment_id uuid, order_id uuid, total_amount int, status text, created_at time) \
         WHERE true ON CONFLICT (order_id) DO NOTHING RETURNING payment_id",
        json(&rows)?,
    )
    .await?
    .into_iter()
    .map(|(id,)| id)
    .collect();
    let lost: Vec<OrderKey> = jobs
        .iter()
        .filter_map(|job| match job {
            Job::Pay(pay) if !inserted.contains(&pay.input.payment_id.as_uuid()) => {
                Some(OrderKey {
                    order_id: Id(pay.input.order_id.as_uuid()),
                })
            }
            _ => None,
        })
        .collect();
    let mut existing = HashMap::new();
    if !lost.is_empty() {
        let rows: Vec<PaymentRow> = fetch(
            conn,
            "SELECT payment_id, order_id, total_amount, status, created_at FROM payment \
             WHERE order_id IN (SELECT order_id FROM #ROWS(order_id uuid))",
            json(&lost)?,
        )
        .await?;
        for row in rows {
            let payment = Payment::try_from(row)?;
            existing.insert(payment.order_id, payment);
        }
    }
    for job in jobs.iter_mut() {
        if let Job::Pay(pay) = job {
            pay.output = if inserted.contains(&pay.input.payment_id.as_uuid()) {
                Some(pay.input.clone())
            } else {
                existing.get(&pay.input.order_id).cloned()
            };
        }
    }
    Ok(())
}

/// Step 6: Takes the paid orders' reserved stock for good.
async fn commit_reservations(conn: &mut Conn, jobs: &mut [Job]) -> Result<(), StoreError> {
    let rows: Vec<OrderAt> = jobs
        .iter()
        .filter_map(|job| match job {
            Job::Settle(settle) if settle.input.paid => Some(OrderAt {
                order_id: Id(settle.input.order_id.as_uuid()),
                at: Time(settle.input.at),
            }),
            _ => None,
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let committed: HashSet<Uuid> = fetch::<(Uuid,)>(
        conn,
        "UPDATE reservation SET state = 'COMMITTED', updated_at = x.at \
         FROM #ROWS(order_id uuid, at time) \
         WHERE reservation.order_id = x.order_id AND reservation.state = 'RESERVED' \
         RETURNING reservation.order_id",
        json(&rows)?,
    )
    .await?
    .into_iter()
    .map(|(id,)| id)
    .collect();
    for job in jobs.iter_mut() {
        if let Job::Settle(settle) = job
            && settle.input.paid
            && committed.contains(&settle.input.order_id.as_uuid())
            && let Some(settled) = settle.output.as_mut()
        {
            settled.changed = true;
        }
    }
    Ok(())
}

/// Step 6: Stores new orders; a key used before answers the order it made. Answers
/// the orders created now, whose first event is still to be recorded.
async fn create_orders(conn: &mut Conn, jobs: &mut [Job]) -> Result<Vec<Order>, StoreError> {
    #[derive(Serialize)]
    struct Row<'a> {
        order_id: Id,
        product_id: &'a str,
        quantity: i64,
        total_amount: i64,
        step: &'static str,
        status: &'static str,
        idempotency_key: Option<&'a str>,
        shopper_id: Option<Id>,
        at: Time,
    }
    let rows: Vec<Row<'_>> = jobs
        .iter()
        .filter_map(|job| match job {
            Job::Create(create) => {
                let order = &create.input;
                Some(Row {
                    order_id: Id(order.order_id.as_uuid()),
                    product_id: order.product_id.as_str(),
                    quantity: i64::from(order.quantity),
                    total_amount: order.total_amount.cents(),
                    step: OrderStep::Placed.as_str(),
                    status: OrderStep::Placed.status().as_str(),
                    idempotency_key: order.idempotency_key.as_ref().map(|key| key.as_str()),
                    shopper_id: order.shopper_id.map(|shopper| Id(shopper.as_uuid())),
                    at: Time(order.at),
                })
            }
            _ => None,
        })
        .collect();
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let inserted: HashSet<Uuid> = fetch::<(Uuid,)>(
        conn,
        "INSERT INTO shop_order (order_id, product_id, quantity, total_amount, step, status, \
         idempotency_key, shopper_id, created_at, updated_at) \
         SELECT order_id, product_id, quantity, total_amount, step, status, idempotency_key, \
         shopper_id, at, at \
         FROM #ROWS(order_id uuid, product_id text, quantity int, total_amount int, step text, \
         status text, idempotency_key text, shopper_id uuid, at time) \
         WHERE true ON CONFLICT (idempotency_key) DO NOTHING RETURNING order_id",
        json(&rows)?,
    )
    .await?
    .into_iter()
    .map(|(id,)| id)
    .collect();
    #[derive(Serialize)]
    struct Key<'a> {
        idempotency_key: &'a str,
    }
    let lost: Vec<Key<'_>> = rows
        .iter()
        .filter(|row| !inserted.contains(&row.order_id.0))
        .filter_map(|row| {
            row.idempotency_key
                .map(|idempotency_key| Key { idempotency_key })
        })
        .collect();
    let mut existing: HashMap<String, Order> = HashMap::new();
    if !lost.is_empty() {
        let rows: Vec<(Option<String>, OrderRow)> = fetch::<KeyedOrderRow>(
            conn,
            "SELECT idempotency_key, order_id, product_id, quantity, total_amount, step, reason, \
             created_at, updated_at FROM shop_order \
             WHERE idempotency_key IN (SELECT idempotency_key FROM #ROWS(idempotency_key text))",
            json(&lost)?,
        )
        .await?
        .into_iter()
        .map(|row| (row.idempotency_key, row.order))
        .collect();
        for (key, row) in rows {
            if let Some(key) = key {
                existing.insert(key, Order::try_from(row)?);
            }
        }
    }
    let mut placed = Vec::new();
    for job in jobs.iter_mut() {
        let Job::Create(create) = job else { continue };
        let order = &create.input;
        create.output = if inserted.contains(&order.order_id.as_uuid()) {
            let created = Order {
                order_id: order.order_id,
                product_id: order.product_id.clone(),
                quantity: order.quantity,
                total_amount: order.total_amount,
                step: OrderStep::Placed,
                reason: None,
                created_at: order.at,
                updated_at: order.at,
            };
            placed.push(created.clone());
            Some(CreateOrderOutcome::Created(created))
        } else {
            order
                .idempotency_key
                .as_ref()
                .and_then(|key| existing.get(key.as_str()))
                .cloned()
                .map(CreateOrderOutcome::Existing)
        };
    }
    Ok(placed)
}

#[derive(sqlx::FromRow)]
struct KeyedOrderRow {
    idempotency_key: Option<String>,
    #[sqlx(flatten)]
    order: OrderRow,
}

/// Step 7: Moves orders along the saga's arrows, each only from the step before the
/// one it moves to, and records an event for each move and each new order.
async fn move_orders(
    conn: &mut Conn,
    jobs: &mut [Job],
    placed: Vec<Order>,
    moves: Vec<Move>,
    changes: &mut Changes,
) -> Result<(), StoreError> {
    #[derive(Serialize)]
    struct MoveRow<'a> {
        order_id: Id,
        from_step: &'static str,
        step: &'static str,
        status: &'static str,
        reason: Option<&'a str>,
        at: Time,
    }
    #[derive(Serialize)]
    struct EventRow<'a> {
        order_id: Id,
        step: &'static str,
        status: &'static str,
        reason: Option<&'a str>,
        at: Time,
    }
    // A move to PLACED has no arrow into it: it moves nothing.
    let moves: Vec<Move> = moves
        .into_iter()
        .filter(|m| m.step.previous().is_some())
        .collect();
    let mut rounds = rounds(moves, |m| m.order_id);
    if rounds.is_empty() && !placed.is_empty() {
        rounds.push(Vec::new());
    }
    let mut placed = Some(placed);
    for round in rounds {
        let rows: Vec<MoveRow<'_>> = round
            .iter()
            .filter_map(|m| {
                Some(MoveRow {
                    order_id: Id(m.order_id.as_uuid()),
                    from_step: m.step.previous()?.as_str(),
                    step: m.step.as_str(),
                    status: m.step.status().as_str(),
                    reason: m.reason.as_deref(),
                    at: m.at,
                })
            })
            .collect();
        let moved: HashSet<Uuid> = if rows.is_empty() {
            HashSet::new()
        } else {
            fetch::<(Uuid,)>(
                conn,
                "UPDATE shop_order SET step = x.step, status = x.status, reason = x.reason, \
                 updated_at = x.at \
                 FROM #ROWS(order_id uuid, from_step text, step text, status text, reason text, at time) \
                 WHERE shop_order.order_id = x.order_id AND shop_order.step = x.from_step \
                 RETURNING shop_order.order_id",
                json(&rows)?,
            )
            .await?
            .into_iter()
            .map(|(id,)| id)
            .collect()
        };
        let mut events: Vec<OrderEvent> = placed
            .take()
            .unwrap_or_default()
            .into_iter()
            .map(|order| OrderEvent {
                order_id: order.order_id,
                seq: 0,
                step: OrderStep::Placed,
                reason: None,
                at: order.created_at,
            })
            .collect();
        let moved_here: Vec<&Move> = round
            .iter()
            .filter(|m| moved.contains(&m.order_id.as_uuid()))
            .collect();
        events.extend(moved_here.iter().map(|m| OrderEvent {
            order_id: m.order_id,
            seq: 0,
            step: m.step,
            reason: m.reason.clone(),
            at: m.at.0,
        }));
        if events.is_empty() {
            continue;
        }
        let rows: Vec<EventRow<'_>> = events
            .iter()
            .map(|event| EventRow {
                order_id: Id(event.order_id.as_uuid()),
                step: event.step.as_str(),
                status: event.step.status().as_str(),
                reason: event.reason.as_deref(),
                at: Time(event.at),
            })
            .collect();
        let seqs: HashMap<Uuid, i64> = fetch::<(Uuid, i64)>(
            conn,
            "INSERT INTO order_event (order_id, seq, step, status, reason, at) \
             SELECT order_id, \
             (SELECT COALESCE(MAX(e.seq), 0) + 1 FROM order_event e WHERE e.order_id = x.order_id), \
             step, status, reason, at \
             FROM #ROWS(order_id uuid, step text, status text, reason text, at time) \
             RETURNING order_id, seq",
            json(&rows)?,
        )
        .await?
        .into_iter()
        .collect();
        for mut event in events {
            let seq = seqs
                .get(&event.order_id.as_uuid())
                .ok_or(StoreError::NotApplied)?;
            event.seq = u32::try_from(*seq).map_err(|e| corrupt("seq", e))?;
            changes.events.push(event);
        }
        for m in moved_here {
            let Some(event) = changes
                .events
                .iter()
                .rev()
                .find(|event| event.order_id == m.order_id)
                .cloned()
            else {
                continue;
            };
            match &mut jobs[m.job] {
                Job::Reserve(reserve) => {
                    if let Some(reserved) = reserve.output.as_mut() {
                        reserved.moved = Some(event);
                    }
                }
                Job::Settle(settle) => {
                    if let Some(settled) = settle.output.as_mut() {
                        settled.moved = Some(event);
                    }
                }
                Job::Advance(advance) => advance.output = Some(Some(event)),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Splits items, in arrival order, into rounds in which no key appears twice, each
/// item in the first round after the last one holding its key: one statement per
/// round then touches a row at most once, and in the order the writes arrived.
fn rounds<T, K: Eq + Hash>(items: Vec<T>, key: impl Fn(&T) -> K) -> Vec<Vec<T>> {
    let mut rounds: Vec<(HashSet<K>, Vec<T>)> = Vec::new();
    for item in items {
        let k = key(&item);
        let at = rounds
            .iter()
            .rposition(|(keys, _)| keys.contains(&k))
            .map_or(0, |last| last + 1);
        if at == rounds.len() {
            rounds.push((HashSet::new(), Vec::new()));
        }
        rounds[at].0.insert(k);
        rounds[at].1.push(item);
    }
    rounds.into_iter().map(|(_, items)| items).collect()
}
