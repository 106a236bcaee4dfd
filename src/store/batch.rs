//! A batch of writes, applied set-based in one transaction: each kind of write is
//! one statement for the whole batch (or one locked read and one statement), so a
//! commit costs the same few round trips whether it carries one saga step or
//! hundreds. Written once for both backends, over the writer's [`Tx`].
//!
//! The statements run in a fixed order: reservations given back (a declined
//! payment), which names the products whose stock comes back; payments,
//! reservations taken for good, new orders; the reservations made before, for
//! orders that ask again. Then one read of every product the batch touches,
//! locked in key order on Postgres, so that batches committing at once (here or
//! in another instance) take product locks in the same order and cannot
//! deadlock, and hold them for the fewest statements; product upserts (which
//! thereby count as the batch's first writes of stock). Stock is then decided in
//! memory, job by job in arrival order, exactly as if the jobs ran one by one,
//! and written in one statement, with one insert of the new reservation
//! rows (a row per line). Last, the order moves (each guarded by the step it
//! comes from) with their events, and one announcement of it all.
//!
//! What loses a race is a value, not an error: a key used before (`ON CONFLICT
//! DO NOTHING`, then read back), an order that moved on (the guard). Writes to
//! one row in one batch (two moves of an order, two upserts of a product) go in
//! rounds of the same statement, in the order they arrived.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::domain::{
    Item, Order, OrderEvent, OrderId, OrderStep, Payment, ProductId, Quantity, ShopperId, Stock,
    StockDecision,
};
use crate::store::rows::order_columns;
use crate::store::writer::{Cells, FromCells, Job, Tx, get};
use crate::store::{
    CartEdit, Changes, CreateOrderOutcome, ProductChange, Pruned, ReservationState, ReserveOutcome,
    Reserved, Settled, StockLevel, StockedProduct, StoreError, corrupt,
};

pub(super) async fn apply<T: Tx>(conn: &mut T, jobs: &mut [Job]) -> Result<(), StoreError> {
    let mut changes = Changes::default();
    housekeeping(conn, jobs).await?;
    let mut released = release(conn, jobs).await?;
    pay(conn, jobs).await?;
    commit_reservations(conn, jobs).await?;
    let placed = create_orders(conn, jobs).await?;
    carts(conn, jobs).await?;
    let before = decided_before(conn, jobs).await?;
    // From here to the commit, the batch holds its products' locks: as few
    // statements as can be.
    let mut stock = lock_products(conn, jobs, &released).await?;
    upsert(conn, jobs, &mut stock, &mut changes).await?;
    let (mut moves, reservations) = decide(jobs, &mut released, &mut stock, before, &mut changes)?;
    write_stock(conn, &stock, &reservations).await?;
    move_orders(conn, jobs, placed, &mut moves, &mut changes).await?;
    conn.announce(&changes).await
}

/// The inputs of the jobs of one kind, in arrival order.
macro_rules! inputs {
    ($jobs:expr, $kind:ident) => {
        $jobs
            .iter()
            .filter_map(|job| match job {
                Job::$kind(pending) => Some(&pending.input),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
}

async fn execute<T: Tx, R: Serialize + Sync>(
    conn: &mut T,
    template: &'static str,
    rows: &[R],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    conn.execute(template, rows).await
}

async fn fetch<T: Tx, R: FromCells + Send + 'static, I: Serialize + Sync>(
    conn: &mut T,
    template: &'static str,
    rows: &[I],
) -> Result<Vec<R>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    conn.fetch(template, rows).await
}

/// The ids of the rows a statement returns.
async fn fetch_ids<T: Tx, I: Serialize + Sync>(
    conn: &mut T,
    template: &'static str,
    rows: &[I],
) -> Result<HashSet<Uuid>, StoreError> {
    let ids: Vec<(Uuid,)> = fetch(conn, template, rows).await?;
    Ok(ids.into_iter().map(|(id,)| id).collect())
}

/// Admin sessions opened and ended, shared secrets, and what is pruned: rare
/// writes, each kind still one statement per batch.
async fn housekeeping<T: Tx>(conn: &mut T, jobs: &mut [Job]) -> Result<(), StoreError> {
    execute(
        conn,
        "INSERT INTO admin_session (session_id, token_digest, csrf, expires_at) \
         SELECT session_id, token_digest, csrf, expires_at \
         FROM #ROWS(session_id uuid, token_digest text, csrf text, expires_at int)",
        &inputs!(jobs, OpenSession),
    )
    .await?;
    let ended = fetch_ids(
        conn,
        "DELETE FROM admin_session \
         WHERE session_id IN (SELECT session_id FROM #ROWS(session_id uuid)) \
         RETURNING session_id",
        &inputs!(jobs, EndSession),
    )
    .await?;
    let secrets = inputs!(jobs, Secret);
    execute(
        conn,
        "INSERT INTO setting (name, value) SELECT name, value FROM #ROWS(name text, value text) \
         WHERE true ON CONFLICT (name) DO NOTHING",
        &secrets,
    )
    .await?;
    let stored: HashMap<String, String> = fetch::<_, (String, String), _>(
        conn,
        "SELECT name, value FROM setting WHERE name IN (SELECT name FROM #ROWS(name text))",
        &secrets,
    )
    .await?
    .into_iter()
    .collect();
    let stalled = fetch_ids(
        conn,
        "UPDATE shop_order SET stalled_since = COALESCE(shop_order.stalled_since, x.at), \
         last_error = x.error FROM #ROWS(order_id uuid, error text, at time) \
         WHERE shop_order.order_id = x.order_id AND shop_order.status = 'PENDING' \
         RETURNING shop_order.order_id",
        &inputs!(jobs, Stall),
    )
    .await?;
    let prunes = inputs!(jobs, Prune);
    let keys: Vec<(Uuid,)> = fetch(
        conn,
        "UPDATE shop_order SET idempotency_key = NULL FROM #ROWS(keys_after uuid, keys_before uuid) \
         WHERE shop_order.order_id >= x.keys_after AND shop_order.order_id < x.keys_before \
         AND shop_order.idempotency_key IS NOT NULL RETURNING shop_order.order_id",
        &prunes,
    )
    .await?;
    let sessions: Vec<(Uuid,)> = fetch(
        conn,
        "DELETE FROM admin_session WHERE expires_at < \
         (SELECT MAX(sessions_expired_before) FROM #ROWS(sessions_expired_before int)) \
         RETURNING session_id",
        &prunes,
    )
    .await?;
    for job in jobs.iter_mut() {
        match job {
            Job::OpenSession(open) => open.output = Some(()),
            Job::EndSession(end) => end.output = Some(ended.contains(&end.input.session_id)),
            Job::Secret(secret) => secret.output = stored.get(&secret.input.name).cloned(),
            Job::Stall(stall) => {
                stall.output = Some(stalled.contains(&stall.input.order_id.as_uuid()))
            }
            Job::Prune(prune) => {
                // Several prunes in one batch share the count; there is never more than one.
                prune.output = Some(Pruned {
                    keys: keys.len(),
                    sessions: sessions.len(),
                })
            }
            _ => {}
        }
    }
    Ok(())
}

/// The reservation rows each order's release gave back: (product, units).
type Released = HashMap<Uuid, Vec<(String, i64)>>;

/// Gives back the reservations of declined orders; every settle gets its answer.
async fn release<T: Tx>(conn: &mut T, jobs: &mut [Job]) -> Result<Released, StoreError> {
    let mut declined = Vec::new();
    for job in jobs.iter_mut() {
        if let Job::Settle(settle) = job {
            settle.output = Some(Settled {
                changed: false,
                released: Vec::new(),
                moved: None,
            });
            if !settle.input.paid {
                declined.push(&settle.input);
            }
        }
    }
    let given_back: Vec<(Uuid, String, i64)> = fetch(
        conn,
        "UPDATE reservation SET state = 'RELEASED', updated_at = x.at \
         FROM #ROWS(order_id uuid, at time) \
         WHERE reservation.order_id = x.order_id AND reservation.state = 'RESERVED' \
         RETURNING reservation.order_id, reservation.product_id, reservation.quantity",
        &declined,
    )
    .await?;
    let mut released = Released::new();
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

fn level((stock, version): (i64, i64)) -> Level {
    let changed = false;
    Level {
        stock,
        version,
        changed,
    }
}

/// Reads (and on Postgres locks, in key order) every product the batch touches.
async fn lock_products<T: Tx>(
    conn: &mut T,
    jobs: &[Job],
    released: &Released,
) -> Result<HashMap<String, Level>, StoreError> {
    #[derive(Serialize)]
    struct Key<'a> {
        product_id: &'a str,
    }
    let mut keys: Vec<Key<'_>> = released
        .values()
        .flatten()
        .map(|(id, _)| Key { product_id: id })
        .collect();
    for job in jobs {
        match job {
            Job::Upsert(upsert) => keys.push(Key {
                product_id: upsert.input.product_id.as_str(),
            }),
            Job::Reserve(reserve) => keys.extend(reserve.input.lines.iter().map(|line| Key {
                product_id: line.product_id.as_str(),
            })),
            _ => {}
        }
    }
    keys.sort_unstable_by_key(|key| key.product_id);
    keys.dedup_by_key(|key| key.product_id);
    let rows: Vec<(String, i64, i64)> = fetch(
        conn,
        "SELECT product_id, stock, version FROM product \
         WHERE product_id IN (SELECT product_id FROM #ROWS(product_id text)) \
         ORDER BY product_id #LOCK",
        &keys,
    )
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, stock, version)| (id, level((stock, version))))
        .collect())
}

/// Creates or replaces products.
async fn upsert<T: Tx>(
    conn: &mut T,
    jobs: &mut [Job],
    stock: &mut HashMap<String, Level>,
    changes: &mut Changes,
) -> Result<(), StoreError> {
    #[derive(Serialize)]
    struct Row<'a> {
        #[serde(flatten)]
        product: &'a crate::domain::Product,
        at: DateTime<Utc>,
    }
    let upserts: Vec<(usize, ProductId)> = (jobs.iter().enumerate())
        .filter_map(|(i, job)| match job {
            Job::Upsert(upsert) => Some((i, upsert.input.product_id.clone())),
            _ => None,
        })
        .collect();
    let at = Utc::now();
    for mut round in rounds(upserts, |(_, id)| id.clone()) {
        // In key order, as the locks: a new product's row is locked as it is
        // inserted, and two batches inserting the same new products must not
        // take them in opposite orders.
        round.sort_by(|a, b| a.1.cmp(&b.1));
        let rows: Vec<Row<'_>> = round
            .iter()
            .filter_map(|&(i, _)| match &jobs[i] {
                Job::Upsert(upsert) => Some(Row {
                    product: &upsert.input,
                    at,
                }),
                _ => None,
            })
            .collect();
        let versions: HashMap<String, i64> = fetch::<_, (String, i64), _>(
            conn,
            "INSERT INTO product (product_id, product_name, price, stock, version, updated_at) \
             SELECT product_id, product_name, price, stock, 1, at \
             FROM #ROWS(product_id text, product_name text, price int, stock int, at time) WHERE true \
             ON CONFLICT (product_id) DO UPDATE SET product_name = excluded.product_name, \
             price = excluded.price, stock = excluded.stock, version = product.version + 1, \
             updated_at = excluded.updated_at \
             RETURNING product_id, version",
            &rows,
        )
        .await?
        .into_iter()
        .collect();
        for &(i, _) in &round {
            let Job::Upsert(upsert) = &mut jobs[i] else {
                continue;
            };
            let product = upsert.input.clone();
            let version = *versions
                .get(product.product_id.as_str())
                .ok_or(StoreError::NotApplied)?;
            let id = product.product_id.as_str().to_owned();
            stock.insert(id, level((product.stock.units(), version)));
            let row = StockedProduct { product, version };
            changes.products.push(ProductChange::Product(row.clone()));
            upsert.output = Some(row);
        }
    }
    Ok(())
}

/// What was decided before for the orders that ask for stock.
async fn decided_before<T: Tx>(
    conn: &mut T,
    jobs: &[Job],
) -> Result<HashMap<Uuid, ReservationState>, StoreError> {
    let reserves = inputs!(jobs, Reserve);
    let rows: Vec<(Uuid, String)> = fetch(
        conn,
        "SELECT order_id, state FROM reservation \
         WHERE order_id IN (SELECT order_id FROM #ROWS(order_id uuid))",
        &reserves,
    )
    .await?;
    rows.into_iter()
        .map(|(order_id, state)| Ok((order_id, state.parse()?)))
        .collect()
}

/// An order's move, for the job at `job`: to `step`, from where its arrow leaves.
#[derive(Serialize)]
struct Move {
    #[serde(skip)]
    job: usize,
    #[serde(skip)]
    to: OrderStep,
    order_id: OrderId,
    from_step: Option<&'static str>,
    step: &'static str,
    status: &'static str,
    reason: Option<String>,
    at: DateTime<Utc>,
}

impl Move {
    fn new(
        job: usize,
        order_id: OrderId,
        to: OrderStep,
        reason: Option<String>,
        at: DateTime<Utc>,
    ) -> Move {
        Move {
            job,
            to,
            order_id,
            from_step: to.reached_from().map(OrderStep::as_str),
            step: to.as_str(),
            status: to.status().as_str(),
            reason,
            at,
        }
    }
}

/// A reservation row decided now: one per product of an order.
#[derive(Serialize)]
struct ReservationRow {
    order_id: OrderId,
    product_id: ProductId,
    quantity: i64,
    state: &'static str,
    at: DateTime<Utc>,
}

/// Decides stock job by job, in arrival order: releases give back, reservations
/// take every line or none (refusals are recorded too). Answers the moves the
/// decisions lead to, and the reservation rows to insert.
fn decide(
    jobs: &mut [Job],
    released: &mut Released,
    stock: &mut HashMap<String, Level>,
    mut decided: HashMap<Uuid, ReservationState>,
    changes: &mut Changes,
) -> Result<(Vec<Move>, Vec<ReservationRow>), StoreError> {
    let (mut moves, mut rows) = (Vec::new(), Vec::new());
    for (index, job) in jobs.iter_mut().enumerate() {
        let (order_id, then, at) = match job {
            Job::Settle(settle) => {
                let given_back = released.remove(&settle.input.order_id.as_uuid());
                if let Some(settled) = settle.output.as_mut() {
                    for (product_id, units) in given_back.into_iter().flatten() {
                        let level = take(stock, &product_id, -units)?;
                        changes.products.push(ProductChange::Stock(level.clone()));
                        settled.changed = true;
                        settled.released.push(level);
                    }
                }
                let then = settle
                    .input
                    .then
                    .clone()
                    .map(|then| (then.step, then.reason));
                (settle.input.order_id, then, settle.input.at)
            }
            Job::Reserve(reserve) => {
                let input = &reserve.input;
                let outcome = reserve_lines(input, stock, &mut decided, &mut rows, changes)?;
                let then = (input.advance_order)
                    .then(|| decision(&outcome, &input.lines).next_step())
                    .flatten();
                reserve.output = Some(Reserved {
                    outcome,
                    moved: None,
                });
                (input.order_id, then, input.at)
            }
            Job::Advance(advance) => {
                advance.output = Some(None);
                let input = &advance.input;
                (
                    input.order_id,
                    Some((input.step, input.reason.clone())),
                    input.at,
                )
            }
            _ => continue,
        };
        if let Some((step, reason)) = then {
            moves.push(Move::new(index, order_id, step, reason, at));
        }
    }
    Ok((moves, rows))
}

/// Takes `units` of the product's stock (gives back when negative).
fn take(
    stock: &mut HashMap<String, Level>,
    product_id: &str,
    units: i64,
) -> Result<StockLevel, StoreError> {
    let level = stock
        .get_mut(product_id)
        .ok_or_else(|| corrupt("reservation", format!("of unknown product {product_id:?}")))?;
    level.stock -= units;
    level.version += 1;
    level.changed = true;
    Ok(StockLevel {
        product_id: ProductId::parse(product_id).map_err(|e| corrupt("product_id", e))?,
        stock: Stock::saturating(level.stock),
        version: level.version,
    })
}

/// Decides one order's stock: as decided before, or every line's units now, or
/// none. The decision is noted in `decided` and, unless the product is unknown,
/// recorded as reservation rows (one per product) with the stock.
fn reserve_lines(
    reserve: &crate::store::Reserve,
    stock: &mut HashMap<String, Level>,
    decided: &mut HashMap<Uuid, ReservationState>,
    rows: &mut Vec<ReservationRow>,
    changes: &mut Changes,
) -> Result<ReserveOutcome, StoreError> {
    let (order_id, lines) = (reserve.order_id, &reserve.lines);
    if let Some(state) = decided.get(&order_id.as_uuid()) {
        return Ok(ReserveOutcome::AlreadyDecided(*state));
    }
    // The units wanted of each product, its lines added up.
    let mut wanted: Vec<(&ProductId, i64)> = Vec::with_capacity(lines.len());
    for line in lines {
        match wanted.iter_mut().find(|(id, _)| **id == line.product_id) {
            Some((_, total)) => *total += i64::from(line.quantity),
            None => wanted.push((&line.product_id, i64::from(line.quantity))),
        }
    }
    let level = |id: &ProductId| stock.get(id.as_str());
    if let Some((unknown, _)) = wanted.iter().find(|(id, _)| level(id).is_none()) {
        return Ok(ReserveOutcome::UnknownProduct((*unknown).clone()));
    }
    let short = wanted
        .iter()
        .find(|(id, units)| level(id).is_some_and(|l| l.stock < *units));
    let outcome = match short {
        Some((id, units)) => ReserveOutcome::Insufficient {
            product_id: (*id).clone(),
            requested: Quantity::parse(*units).map_err(|e| corrupt("quantity", e))?,
            available: Stock::saturating(level(id).map_or(0, |l| l.stock)),
        },
        None => {
            let mut levels = Vec::with_capacity(wanted.len());
            for (id, units) in &wanted {
                let level = take(stock, id.as_str(), *units)?;
                changes.products.push(ProductChange::Stock(level.clone()));
                levels.push(level);
            }
            ReserveOutcome::Reserved(levels)
        }
    };
    let state = if short.is_some() {
        ReservationState::Refused
    } else {
        ReservationState::Reserved
    };
    decided.insert(order_id.as_uuid(), state);
    rows.extend(wanted.into_iter().map(|(id, units)| ReservationRow {
        order_id,
        product_id: id.clone(),
        quantity: units,
        state: state.as_str(),
        at: reserve.at,
    }));
    Ok(outcome)
}

/// The decision in the saga's terms.
fn decision(outcome: &ReserveOutcome, lines: &[Item]) -> StockDecision {
    match outcome {
        ReserveOutcome::Reserved(_)
        | ReserveOutcome::AlreadyDecided(
            ReservationState::Reserved | ReservationState::Committed | ReservationState::Released,
        ) => StockDecision::Held,
        ReserveOutcome::AlreadyDecided(ReservationState::Refused) => match lines.first() {
            Some(line) => StockDecision::Short {
                product_id: line.product_id.clone(),
                requested: line.quantity,
                available: None,
            },
            None => StockDecision::UnknownProduct,
        },
        ReserveOutcome::Insufficient {
            product_id,
            requested,
            available,
        } => StockDecision::Short {
            product_id: product_id.clone(),
            requested: *requested,
            available: Some(available.units()),
        },
        ReserveOutcome::UnknownProduct(_) => StockDecision::UnknownProduct,
    }
}

/// Writes every changed product's stock, and the reservations decided now, at
/// once. The reservation's key (order, product) is the backstop: a second
/// decision for an order (another instance's) fails the batch, which is then
/// retried job by job.
async fn write_stock<T: Tx>(
    conn: &mut T,
    stock: &HashMap<String, Level>,
    reservations: &[ReservationRow],
) -> Result<(), StoreError> {
    #[derive(Serialize)]
    struct Row<'a> {
        product_id: &'a str,
        stock: i64,
        version: i64,
        at: DateTime<Utc>,
    }
    let at = Utc::now();
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
    execute(
        conn,
        "UPDATE product SET stock = x.stock, version = x.version, updated_at = x.at \
         FROM #ROWS(product_id text, stock int, version int, at time) \
         WHERE product.product_id = x.product_id",
        &rows,
    )
    .await?;
    execute(
        conn,
        "INSERT INTO reservation (order_id, product_id, quantity, state, updated_at) \
         SELECT order_id, product_id, quantity, state, at \
         FROM #ROWS(order_id uuid, product_id text, quantity int, state text, at time)",
        reservations,
    )
    .await
}

/// Records payments; an order that has one already gets that one back.
async fn pay<T: Tx>(conn: &mut T, jobs: &mut [Job]) -> Result<(), StoreError> {
    let payments = inputs!(jobs, Pay);
    let inserted = fetch_ids(
        conn,
        "INSERT INTO payment (payment_id, order_id, total_amount, status, reason, created_at) \
         SELECT payment_id, order_id, total_amount, status, reason, created_at \
         FROM #ROWS(payment_id uuid, order_id uuid, total_amount int, status text, reason text, \
         created_at time) \
         WHERE true ON CONFLICT (order_id) DO NOTHING RETURNING payment_id",
        &payments,
    )
    .await?;
    let lost: Vec<&Payment> = payments
        .into_iter()
        .filter(|p| !inserted.contains(&p.payment_id.as_uuid()))
        .collect();
    let existing: HashMap<OrderId, Payment> = fetch::<_, Payment, _>(
        conn,
        "SELECT payment_id, order_id, total_amount, status, reason, created_at FROM payment \
         WHERE order_id IN (SELECT order_id FROM #ROWS(order_id uuid))",
        &lost,
    )
    .await?
    .into_iter()
    .map(|payment| (payment.order_id, payment))
    .collect();
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

/// Takes the reservations of paid orders (`order_id`, `at`) for good.
pub(super) const TAKE_FOR_GOOD: &str = "UPDATE reservation SET state = 'COMMITTED', updated_at = x.at \
     FROM #ROWS(order_id uuid, at time) \
     WHERE reservation.order_id = x.order_id AND reservation.state = 'RESERVED' \
     RETURNING reservation.order_id";

/// Takes the paid orders' reserved stock for good.
async fn commit_reservations<T: Tx>(conn: &mut T, jobs: &mut [Job]) -> Result<(), StoreError> {
    let paid: Vec<_> = inputs!(jobs, Settle)
        .into_iter()
        .filter(|settle| settle.paid)
        .collect();
    let committed = fetch_ids(conn, TAKE_FOR_GOOD, &paid).await?;
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

/// Stores new orders; a key used before answers the order it made. Answers the
/// orders created now, whose first event is still to be recorded.
async fn create_orders<T: Tx>(conn: &mut T, jobs: &mut [Job]) -> Result<Vec<Order>, StoreError> {
    let orders = inputs!(jobs, Create);
    /// The order's row: its lines as JSON, and the first line in the seed's
    /// columns.
    #[derive(Serialize)]
    struct Row<'a> {
        order_id: OrderId,
        product_id: Option<&'a ProductId>,
        quantity: Option<Quantity>,
        total_amount: crate::domain::Money,
        lines: String,
        payment_method: Option<String>,
        idempotency_key: Option<&'a str>,
        shopper_id: Option<crate::domain::ShopperId>,
        at: DateTime<Utc>,
    }
    let claimed = claim_carts(conn, &orders).await?;
    let rows = (orders.iter())
        .filter(|order| !order.from_cart || claimed.contains(&order.order_id))
        .map(|order| {
            let first = order.lines.first();
            Ok(Row {
                order_id: order.order_id,
                product_id: first.map(|line| &line.product_id),
                quantity: first.map(|line| line.quantity),
                total_amount: order.total_amount,
                lines: to_json(&order.lines)?,
                payment_method: order.payment_method.as_ref().map(to_json).transpose()?,
                idempotency_key: order.idempotency_key.as_ref().map(|key| key.as_str()),
                shopper_id: order.shopper_id,
                at: order.at,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let inserted = fetch_ids(
        conn,
        "INSERT INTO shop_order (order_id, product_id, quantity, total_amount, lines, \
         payment_method, step, status, idempotency_key, shopper_id, created_at, updated_at) \
         SELECT order_id, product_id, quantity, total_amount, lines, payment_method, \
         'PLACED', 'PENDING', idempotency_key, shopper_id, at, at \
         FROM #ROWS(order_id uuid, product_id text, quantity int, total_amount int, lines text, \
         payment_method text, idempotency_key text, shopper_id uuid, at time) \
         WHERE true ON CONFLICT (idempotency_key) DO NOTHING RETURNING order_id",
        &rows,
    )
    .await?;
    let lost: Vec<_> = orders
        .iter()
        .filter(|order| {
            !inserted.contains(&order.order_id.as_uuid()) && order.idempotency_key.is_some()
        })
        .map(|order| KeyRow {
            idempotency_key: order.idempotency_key.as_ref().map(|key| key.as_str()),
        })
        .collect();
    // What an order checked out from a cart bought leaves the cart (units
    // added since stay), in rounds: one shopper's two checkouts in a batch.
    let bought = bought_from_carts(
        (orders.iter().copied()).filter(|order| inserted.contains(&order.order_id.as_uuid())),
    );
    for round in rounds(bought, |row| (row.shopper_id, row.product_id.clone())) {
        take_from_carts(conn, &round).await?;
    }
    let existing: Vec<KeyedOrderRow> = fetch(
        conn,
        concat!(
            "SELECT idempotency_key, ",
            order_columns!(),
            " FROM shop_order WHERE idempotency_key IN \
             (SELECT idempotency_key FROM #ROWS(idempotency_key text))"
        ),
        &lost,
    )
    .await?;
    let existing: HashMap<Option<String>, Order> = existing
        .into_iter()
        .map(|row| (row.idempotency_key, row.order))
        .collect();
    let mut placed = Vec::new();
    for job in jobs.iter_mut() {
        let Job::Create(create) = job else { continue };
        let order = &create.input;
        create.output = if inserted.contains(&order.order_id.as_uuid()) {
            let created = Order {
                order_id: order.order_id,
                lines: order.lines.clone(),
                payment_method: order.payment_method.clone(),
                total_amount: order.total_amount,
                step: OrderStep::Placed,
                reason: None,
                created_at: order.at,
                updated_at: order.at,
            };
            placed.push(created.clone());
            Some(CreateOrderOutcome::Created(created))
        } else {
            let key = order
                .idempotency_key
                .as_ref()
                .map(|key| key.as_str().to_owned());
            // A second checkout with the same key finds the cart taken: it
            // answers the order the first placed.
            let unclaimed = order.from_cart && !claimed.contains(&order.order_id);
            (existing
                .get(&key)
                .cloned()
                .map(CreateOrderOutcome::Existing))
            .or_else(|| unclaimed.then_some(CreateOrderOutcome::CartChanged))
        };
    }
    Ok(placed)
}

/// The orders checked out from a cart that still holds their lines. The
/// carts' lines are read (locked on Postgres, in key order, before any
/// product) and claimed order by order in arrival order, so that two
/// checkouts of one cart (two tabs, two instances) place one order.
async fn claim_carts<T: Tx>(
    conn: &mut T,
    orders: &[&crate::store::NewOrder],
) -> Result<HashSet<OrderId>, StoreError> {
    let wanted = bought_from_carts(orders.iter().copied());
    let held: Vec<(Uuid, String, i64)> = fetch(
        conn,
        "SELECT shopper_id, product_id, quantity FROM cart_line WHERE EXISTS (SELECT 1 \
         FROM #ROWS(shopper_id uuid, product_id text) \
         WHERE x.shopper_id = cart_line.shopper_id AND x.product_id = cart_line.product_id) \
         ORDER BY shopper_id, product_id #LOCK",
        &wanted,
    )
    .await?;
    let mut left: HashMap<(Uuid, String), i64> = (held.into_iter())
        .map(|(shopper, product, units)| ((shopper, product), units))
        .collect();
    let mut claimed = HashSet::new();
    let from_cart = (orders.iter())
        .filter(|order| order.from_cart)
        .filter_map(|order| order.shopper_id.map(|shopper| (shopper, *order)));
    for (shopper, order) in from_cart {
        let key =
            |line: &crate::domain::OrderLine| (shopper.as_uuid(), line.product_id.to_string());
        let held_all = (order.lines.iter()).all(|line| {
            left.get(&key(line))
                .is_some_and(|&units| units >= i64::from(line.quantity))
        });
        if held_all {
            for line in &order.lines {
                if let Some(units) = left.get_mut(&key(line)) {
                    *units -= i64::from(line.quantity);
                }
            }
            claimed.insert(order.order_id);
        }
    }
    Ok(claimed)
}

/// A value stored as JSON text.
fn to_json(value: &impl Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| corrupt("json", e))
}

#[derive(Serialize)]
struct KeyRow<'a> {
    idempotency_key: Option<&'a str>,
}

/// A cart line's change as a batch writes it.
#[derive(Serialize)]
struct CartRow<'a> {
    shopper_id: ShopperId,
    product_id: &'a ProductId,
    quantity: i64,
    /// When it was added, in microseconds since the epoch: lines list in
    /// the order they were added.
    added_at: i64,
}

/// Changes carts: units added (up to the most one line may hold), a line's
/// quantity set (only a line that is there), units taken out (a line with
/// none left goes). Changes to one line in one batch go in rounds, in the
/// order they arrived.
async fn carts<T: Tx>(conn: &mut T, jobs: &mut [Job]) -> Result<(), StoreError> {
    let changes = inputs!(jobs, Cart);
    for round in rounds(changes, |change| {
        (change.shopper_id, change.product_id.clone())
    }) {
        let rows = |wanted: fn(&CartEdit) -> Option<i64>| -> Vec<CartRow<'_>> {
            (round.iter())
                .filter_map(|change| {
                    wanted(&change.edit).map(|quantity| CartRow {
                        shopper_id: change.shopper_id,
                        product_id: &change.product_id,
                        quantity,
                        added_at: change.at.timestamp_micros(),
                    })
                })
                .collect()
        };
        let added = rows(|edit| match edit {
            CartEdit::Add(units) => Some(i64::from(*units)),
            _ => None,
        });
        execute(
            conn,
            "INSERT INTO cart_line (shopper_id, product_id, quantity, added_at) \
             SELECT shopper_id, product_id, quantity, added_at \
             FROM #ROWS(shopper_id uuid, product_id text, quantity int, added_at int) \
             WHERE true ON CONFLICT (shopper_id, product_id) DO UPDATE SET quantity = \
             CASE WHEN cart_line.quantity + excluded.quantity > 1000 THEN 1000 \
             ELSE cart_line.quantity + excluded.quantity END",
            &added,
        )
        .await?;
        let set = rows(|edit| match edit {
            CartEdit::Set(units) => Some(i64::from(*units)),
            _ => None,
        });
        execute(
            conn,
            "UPDATE cart_line SET quantity = x.quantity \
             FROM #ROWS(shopper_id uuid, product_id text, quantity int) \
             WHERE cart_line.shopper_id = x.shopper_id AND cart_line.product_id = x.product_id",
            &set,
        )
        .await?;
        let removed = rows(|edit| (*edit == CartEdit::Remove).then_some(i64::from(Quantity::MAX)));
        take_from_carts(conn, &removed).await?;
    }
    for job in jobs.iter_mut() {
        if let Job::Cart(change) = job {
            change.output = Some(());
        }
    }
    Ok(())
}

/// The cart lines the orders checked out from their shopper's cart buy:
/// (shopper, product, units), a row per line.
fn bought_from_carts<'a>(
    orders: impl Iterator<Item = &'a crate::store::NewOrder>,
) -> Vec<CartRow<'a>> {
    (orders.filter(|order| order.from_cart))
        .filter_map(|order| order.shopper_id.map(|shopper_id| (shopper_id, order)))
        .flat_map(|(shopper_id, order)| {
            (order.lines.iter()).map(move |line| CartRow {
                shopper_id,
                product_id: &line.product_id,
                quantity: i64::from(line.quantity),
                added_at: 0,
            })
        })
        .collect()
}

/// Takes each row's units out of its cart line; a line left with none goes.
async fn take_from_carts<T: Tx>(conn: &mut T, rows: &[CartRow<'_>]) -> Result<(), StoreError> {
    execute(
        conn,
        "DELETE FROM cart_line WHERE EXISTS (SELECT 1 \
         FROM #ROWS(shopper_id uuid, product_id text, quantity int) \
         WHERE x.shopper_id = cart_line.shopper_id AND x.product_id = cart_line.product_id \
         AND x.quantity >= cart_line.quantity)",
        rows,
    )
    .await?;
    execute(
        conn,
        "UPDATE cart_line SET quantity = cart_line.quantity - x.quantity \
         FROM #ROWS(shopper_id uuid, product_id text, quantity int) \
         WHERE cart_line.shopper_id = x.shopper_id AND cart_line.product_id = x.product_id",
        rows,
    )
    .await
}

/// An order with its idempotency key: the key first, then the order's columns.
struct KeyedOrderRow {
    idempotency_key: Option<String>,
    order: Order,
}

impl FromCells for KeyedOrderRow {
    fn from_cells_at(row: &impl Cells, at: usize) -> Result<Self, StoreError> {
        Ok(KeyedOrderRow {
            idempotency_key: get(row, at)?,
            order: Order::from_cells_at(row, at + 1)?,
        })
    }
}

/// Moves orders along the saga's arrows, each only from the step before the one
/// it moves to, and records an event for each move and each new order, numbered
/// on from the order's last.
async fn move_orders<T: Tx>(
    conn: &mut T,
    jobs: &mut [Job],
    placed: Vec<Order>,
    moves: &mut Vec<Move>,
    changes: &mut Changes,
) -> Result<(), StoreError> {
    // PLACED has no arrow into it: a move there moves nothing.
    moves.retain(|m| m.from_step.is_some());
    let mut rounds = rounds(std::mem::take(moves), |m| m.order_id);
    if rounds.is_empty() && !placed.is_empty() {
        rounds.push(Vec::new());
    }
    let mut placed = Some(placed);
    for round in rounds {
        let moved: HashMap<Uuid, i64> = fetch::<_, (Uuid, i64), _>(
            conn,
            "UPDATE shop_order SET step = x.step, status = x.status, reason = x.reason, \
             updated_at = x.at, last_seq = shop_order.last_seq + 1, \
             stalled_since = NULL, last_error = NULL \
             FROM #ROWS(order_id uuid, from_step text, step text, status text, reason text, at time) \
             WHERE shop_order.order_id = x.order_id AND shop_order.step = x.from_step \
             RETURNING shop_order.order_id, shop_order.last_seq",
            &round,
        )
        .await?
        .into_iter()
        .collect();
        let first = placed.take().unwrap_or_default().into_iter().map(|order| {
            let (order_id, at) = (order.order_id, order.created_at);
            (
                None,
                OrderEvent {
                    order_id,
                    seq: 1,
                    step: OrderStep::Placed,
                    reason: None,
                    at,
                },
            )
        });
        let mut events: Vec<(Option<usize>, OrderEvent)> = first.collect();
        for m in &round {
            if let Some(&seq) = moved.get(&m.order_id.as_uuid()) {
                let seq = u32::try_from(seq).map_err(|e| corrupt("seq", e))?;
                let (order_id, step, reason, at) = (m.order_id, m.to, m.reason.clone(), m.at);
                events.push((
                    Some(m.job),
                    OrderEvent {
                        order_id,
                        seq,
                        step,
                        reason,
                        at,
                    },
                ));
            }
        }
        #[derive(Serialize)]
        struct Row<'a> {
            #[serde(flatten)]
            event: &'a OrderEvent,
            status: &'static str,
        }
        let rows: Vec<Row<'_>> = (events.iter())
            .map(|(_, event)| Row {
                event,
                status: event.step.status().as_str(),
            })
            .collect();
        execute(
            conn,
            "INSERT INTO order_event (order_id, seq, step, status, reason, at) \
             SELECT order_id, seq, step, status, reason, at \
             FROM #ROWS(order_id uuid, seq int, step text, status text, reason text, at time)",
            &rows,
        )
        .await?;
        for (job, event) in events {
            match job.map(|job| &mut jobs[job]) {
                Some(Job::Reserve(reserve)) => {
                    if let Some(reserved) = reserve.output.as_mut() {
                        reserved.moved = Some(event.clone());
                    }
                }
                Some(Job::Settle(settle)) => {
                    if let Some(settled) = settle.output.as_mut() {
                        settled.moved = Some(event.clone());
                    }
                }
                Some(Job::Advance(advance)) => advance.output = Some(Some(event.clone())),
                _ => {}
            }
            changes.events.push(event);
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
        let at =
            (rounds.iter().rposition(|(keys, _)| keys.contains(&k))).map_or(0, |last| last + 1);
        if at == rounds.len() {
            rounds.push((HashSet::new(), Vec::new()));
        }
        rounds[at].0.insert(k);
        rounds[at].1.push(item);
    }
    rounds.into_iter().map(|(_, items)| items).collect()
}
