//! The invariant check, after the load: everything is read back through the API,
//! as a client would see it.
//!
//! - No order is stuck: every order the run placed reaches a terminal status
//!   (waiting up to the drain period for stragglers).
//! - Stock is conserved, per product: seeded stock = current stock + the units of
//!   the lines of CONFIRMED orders that buy it.
//! - Orders add up: each line's total is its price times its quantity, and the
//!   order's total is the sum of its lines.
//! - Money is right: at most one SUCCEEDED payment per order, exactly one for each
//!   CONFIRMED order, none for an order that is not CONFIRMED.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::LoadError;
use super::client::Http;
use super::stats::PlacedOrder;

/// How often a still-pending order is read again during the check.
const RECHECK: Duration = Duration::from_millis(50);
/// How many violations are listed by name; the counts cover all of them.
const EXAMPLES: usize = 10;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Invariants {
    pub ok: bool,
    pub orders_checked: u64,
    pub by_status: BTreeMap<String, u64>,
    pub stock_conserved: bool,
    pub stuck_orders: u64,
    pub multiple_successful_payments: u64,
    pub confirmed_without_one_payment: u64,
    pub charged_but_not_confirmed: u64,
    /// Orders whose products are not the ones the run ordered.
    pub wrong_product: u64,
    /// Orders whose lines do not add up to their total.
    pub lines_not_summing: u64,
    /// Reads the check could not make: the invariants are then unproven.
    pub unreadable: u64,
    /// Orders whose POST never got an answer (their id is unknown, so the stock
    /// check may fail because of them).
    pub unacknowledged_orders: u64,
    pub violations: Vec<String>,
}

/// What one client thread found about its share of the orders.
#[derive(Debug, Default)]
pub struct Tally {
    by_status: BTreeMap<String, u64>,
    /// Units of CONFIRMED orders, per product index.
    confirmed_units: HashMap<usize, u64>,
    checked: u64,
    stuck: u64,
    multiple_successful_payments: u64,
    confirmed_without_one_payment: u64,
    charged_but_not_confirmed: u64,
    wrong_product: u64,
    lines_not_summing: u64,
    unreadable: u64,
    violations: Vec<String>,
}

impl Tally {
    fn violation(&mut self, text: String) {
        if self.violations.len() < EXAMPLES {
            self.violations.push(text);
        }
    }
}

#[derive(Deserialize)]
struct OrderBody {
    status: String,
    items: Vec<LineBody>,
    total_amount: i64,
}

#[derive(Deserialize)]
struct LineBody {
    product_id: String,
    quantity: u64,
    unit_price: i64,
    line_total: i64,
}

#[derive(Deserialize)]
struct PaymentList {
    payments: Vec<PaymentBody>,
}

#[derive(Deserialize)]
struct PaymentBody {
    status: String,
}

/// Checks the orders `thread`, `thread + threads`, ... of `orders`, `concurrency`
/// at a time.
#[allow(clippy::too_many_arguments)]
pub async fn check_orders(
    base: &str,
    orders: &[PlacedOrder],
    products: &[String],
    thread: usize,
    threads: usize,
    concurrency: usize,
    deadline: Instant,
    checked: &std::sync::atomic::AtomicU64,
) -> Result<Tally, LoadError> {
    let http = Http::new(base);
    let index_of: HashMap<&str, usize> = products
        .iter()
        .enumerate()
        .map(|(index, id)| (id.as_str(), index))
        .collect();
    let next = Rc::new(Cell::new(thread));
    let tally = Rc::new(RefCell::new(Tally::default()));
    let workers = (0..concurrency.max(1)).map(|_| {
        let (http, next, tally, index_of) =
            (http.clone(), Rc::clone(&next), Rc::clone(&tally), &index_of);
        async move {
            loop {
                let index = next.get();
                let Some(placed) = orders.get(index) else {
                    return;
                };
                next.set(index + threads);
                check_one(&http, placed, products, index_of, deadline, &tally).await;
                checked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    futures_util::future::join_all(workers).await;
    Rc::into_inner(tally)
        .map(RefCell::into_inner)
        .ok_or_else(|| LoadError::Client("a check outlived its phase".to_owned()))
}

async fn check_one(
    http: &Http,
    placed: &PlacedOrder,
    products: &[String],
    index_of: &HashMap<&str, usize>,
    deadline: Instant,
    tally: &RefCell<Tally>,
) {
    let order_id = uuid::Uuid::from_u128(placed.order_id);
    let order = loop {
        let Some(order) = read::<OrderBody>(http, &format!("/api/orders/{order_id}")).await else {
            tally.borrow_mut().unreadable += 1;
            return;
        };
        if order.status != "PENDING" || Instant::now() >= deadline {
            break order;
        }
        tokio::time::sleep(RECHECK).await;
    };
    let payments = read::<PaymentList>(http, &format!("/api/payments?order_id={order_id}")).await;

    let mut tally = tally.borrow_mut();
    tally.checked += 1;
    *tally.by_status.entry(order.status.clone()).or_insert(0) += 1;
    let ordered: Vec<Option<&str>> = (placed.products())
        .map(|index| products.get(index as usize).map(String::as_str))
        .collect();
    let bought: Vec<Option<&str>> = (order.items.iter())
        .map(|line| Some(line.product_id.as_str()))
        .collect();
    if ordered != bought {
        tally.wrong_product += 1;
        tally.violation(format!(
            "order {order_id} is for {bought:?}, the run ordered {ordered:?}"
        ));
    }
    let lines_total: i64 = order.items.iter().map(|line| line.line_total).sum();
    let lines_right = (order.items.iter()).all(|line| {
        i64::try_from(line.quantity).is_ok_and(|q| line.unit_price * q == line.line_total)
    });
    if !lines_right || lines_total != order.total_amount {
        tally.lines_not_summing += 1;
        tally.violation(format!(
            "order {order_id}'s lines add up to {lines_total}, its total is {}",
            order.total_amount
        ));
    }
    let confirmed = order.status == "CONFIRMED";
    if order.status == "PENDING" {
        tally.stuck += 1;
        tally.violation(format!("order {order_id} is still PENDING"));
    }
    if confirmed {
        for line in &order.items {
            match index_of.get(line.product_id.as_str()) {
                Some(&index) => *tally.confirmed_units.entry(index).or_insert(0) += line.quantity,
                None => tally.unreadable += 1,
            }
        }
    }
    let Some(payments) = payments else {
        tally.unreadable += 1;
        return;
    };
    let succeeded = payments
        .payments
        .iter()
        .filter(|payment| payment.status == "SUCCEEDED")
        .count();
    if succeeded > 1 {
        tally.multiple_successful_payments += 1;
        tally.violation(format!(
            "order {order_id} has {succeeded} SUCCEEDED payments"
        ));
    }
    if confirmed && succeeded != 1 {
        tally.confirmed_without_one_payment += 1;
        tally.violation(format!(
            "CONFIRMED order {order_id} has {succeeded} SUCCEEDED payments"
        ));
    }
    if !confirmed && order.status != "PENDING" && succeeded > 0 {
        tally.charged_but_not_confirmed += 1;
        tally.violation(format!(
            "{} order {order_id} has a SUCCEEDED payment",
            order.status
        ));
    }
}

/// GETs `path` and reads its JSON body; `None` if that fails (after a retry, so
/// one dropped connection does not fail the check).
async fn read<T: for<'de> Deserialize<'de>>(http: &Http, path: &str) -> Option<T> {
    for _ in 0..2 {
        if let Ok(reply) = http.get(path).await
            && reply.status == 200
            && let Ok(body) = serde_json::from_slice(&reply.body)
        {
            return Some(body);
        }
    }
    None
}

#[derive(Deserialize)]
struct ProductBody {
    stock: i64,
}

/// The current stock of each product, in order; `None` where it could not be read.
pub async fn stocks(base: &str, products: &[String]) -> Vec<Option<i64>> {
    let http = Http::new(base);
    let mut stocks = Vec::with_capacity(products.len());
    for product_id in products {
        let body = read::<ProductBody>(&http, &format!("/api/products/{product_id}")).await;
        stocks.push(body.map(|body| body.stock));
    }
    stocks
}

/// Puts the threads' tallies and the products' stock together.
pub fn conclude(
    tallies: Vec<Tally>,
    products: &[String],
    seeded: &[i64],
    stocks: &[Option<i64>],
    unacknowledged_orders: u64,
) -> Invariants {
    let mut total = Tally::default();
    for tally in tallies {
        for (status, count) in tally.by_status {
            *total.by_status.entry(status).or_insert(0) += count;
        }
        for (product, units) in tally.confirmed_units {
            *total.confirmed_units.entry(product).or_insert(0) += units;
        }
        total.checked += tally.checked;
        total.stuck += tally.stuck;
        total.multiple_successful_payments += tally.multiple_successful_payments;
        total.confirmed_without_one_payment += tally.confirmed_without_one_payment;
        total.charged_but_not_confirmed += tally.charged_but_not_confirmed;
        total.wrong_product += tally.wrong_product;
        total.lines_not_summing += tally.lines_not_summing;
        total.unreadable += tally.unreadable;
        for violation in tally.violations {
            total.violation(violation);
        }
    }

    let mut stock_conserved = true;
    for (index, (product_id, stock)) in products.iter().zip(stocks).enumerate() {
        let Some(stock) = *stock else {
            total.unreadable += 1;
            stock_conserved = false;
            continue;
        };
        let confirmed = total.confirmed_units.get(&index).copied().unwrap_or(0);
        let accounted = i128::from(stock) + i128::from(confirmed);
        let seeded_stock = seeded.get(index).copied().unwrap_or(0);
        if accounted != i128::from(seeded_stock) {
            stock_conserved = false;
            total.violation(format!(
                "{product_id}: seeded {seeded_stock}, now {stock} + {confirmed} confirmed = {accounted}"
            ));
        }
    }

    let ok = stock_conserved
        && total.stuck == 0
        && total.multiple_successful_payments == 0
        && total.confirmed_without_one_payment == 0
        && total.charged_but_not_confirmed == 0
        && total.wrong_product == 0
        && total.lines_not_summing == 0
        && total.unreadable == 0;
    Invariants {
        ok,
        orders_checked: total.checked,
        by_status: total.by_status,
        stock_conserved,
        stuck_orders: total.stuck,
        multiple_successful_payments: total.multiple_successful_payments,
        confirmed_without_one_payment: total.confirmed_without_one_payment,
        charged_but_not_confirmed: total.charged_but_not_confirmed,
        wrong_product: total.wrong_product,
        lines_not_summing: total.lines_not_summing,
        unreadable: total.unreadable,
        unacknowledged_orders,
        violations: total.violations,
    }
}
