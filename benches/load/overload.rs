//! The overload scenarios: how the shop behaves when more arrives than it can
//! do, and how fast it is itself again afterwards.
//!
//! 1. **capacity**: closed load (`--shoppers`, `--capacity-duration`): orders
//!    decided per second when every shopper waits for the last answer. That is
//!    what the shop can do; the POST p99 here is the baseline for recovery.
//! 2. **overload** (`overload`): open load at `--overload-factor` (3) × the
//!    capacity for `--duration`; or **the sale** (`flash-sale`):
//!    `--flash-shoppers` shoppers ordering one unit each of one product with
//!    `--flash-stock` units, all arriving within `--flash-window`. A 503
//!    `overloaded` is a shed order, timed to its answer and not retried.
//! 3. **recovery**: open load at 0.5 × the capacity for `--recovery`, at once
//!    after the overload. `recovery_s` is how long after the end of the
//!    overload the POST p99 (in 250 ms steps) is back, for good, under twice
//!    its value in the capacity phase.
//!
//! Then every order of all three phases is read back and checked, as in the
//! other scenarios; the flash sale must also have sold exactly its stock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::options::Scenario;
use super::shoppers::{self, Picker, Plan, Segment};
use super::stats::{Endpoint, Live};
use super::target::{self, Target};
use super::{
    LoadError, Options, Progress, Results, check_invariants, merge,
    on_client_threads_with_progress, on_one_thread, phase, report,
};

/// Time for the client threads to open their connections before the open
/// load's schedule starts.
const WARM_UP: Duration = Duration::from_millis(250);

/// The figures of an overload or flash-sale run, written at the top level of
/// `--json` next to the usual ones (which describe the overload phase).
#[derive(Debug, Clone, Serialize)]
pub struct OverloadFigures {
    /// Orders decided per second under closed load.
    pub capacity_per_s: f64,
    /// Orders offered per second in the overload phase (open load).
    pub offered_per_s: f64,
    /// Orders decided per second during the overload phase.
    pub goodput_per_s: f64,
    /// goodput ÷ capacity.
    pub goodput_ratio: f64,
    /// `POST /api/orders` answered 202, p99, from the scheduled start.
    pub admitted_post_p99_ms: Option<f64>,
    /// Admitted orders, from the scheduled start to the outcome seen, p99.
    pub admitted_outcome_p99_ms: Option<f64>,
    pub admitted: u64,
    /// Orders refused at once (503 `overloaded`) per second of the overload phase.
    pub shed_per_s: f64,
    /// From the scheduled start to the 503, p99.
    pub shed_p99_ms: Option<f64>,
    pub shed: u64,
    /// POST p99 in the capacity phase: recovery is back under twice this.
    pub baseline_post_p99_ms: Option<f64>,
    /// From the end of the overload until the POST p99 stays under twice the
    /// baseline (250 ms steps); `None`: not within `--recovery`.
    pub recovery_s: Option<f64>,
    /// Orders decided per second in the recovery phase.
    pub recovery_goodput_per_s: f64,
    /// The flash sale's own figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flash_sale: Option<FlashSaleFigures>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FlashSaleFigures {
    pub shoppers: usize,
    pub stock: i64,
    /// Units CONFIRMED: the product's stock at the start minus at the end.
    pub sold: i64,
    /// What must have sold: the stock, or every admitted order if fewer.
    pub expected_sold: i64,
    pub sold_exactly: bool,
    pub oversold: bool,
    /// Each shopper from arrival to its outcome (admitted) or its 503 (shed), p99.
    pub settled_p99_ms: Option<f64>,
}

/// Runs the scenario after the floor; answers the results.
pub(super) fn run(
    options: &Options,
    target: &Target,
    products: &[String],
    plan: &Arc<Plan>,
    live: &Arc<Live>,
    floor_rps: f64,
    progress: &Progress,
) -> Result<Results, LoadError> {
    let threads = options.client_threads;
    let flash = options.scenario == Scenario::FlashSale;

    // 1. Capacity.
    live.reset();
    let capacity_window = Duration::from_secs_f64(options.capacity_duration);
    progress.phase("capacity: closed load", capacity_window);
    let capacity_phase = phase(capacity_window, options.drain());
    let measuring = Instant::now();
    let capacity = merge(on_client_threads_with_progress(
        threads,
        progress,
        live,
        |thread| {
            let shoppers = shoppers::share_of(options.shoppers, threads, thread);
            shoppers::closed(Arc::clone(plan), thread, shoppers, capacity_phase, false)
        },
    )?)?;
    // Every order the phase decided, over the whole phase (its last orders are
    // decided a moment after the window: closed load stops starting, then ends).
    let decided = capacity.confirmed + capacity.rejected + capacity.payment_failed;
    let capacity_per_s = decided as f64 / measuring.elapsed().as_secs_f64();
    if capacity_per_s <= 0.0 {
        return Err(LoadError::Setup(
            "no order was decided while measuring the capacity".to_owned(),
        ));
    }
    let baseline_post_p99_ms = p99_ms(capacity.latency_of(Endpoint::PlaceOrder));

    // 2. The overload or the sale, then 3. recovery.
    let flash_id = format!("{}-flash", products.first().map_or("load", String::as_str));
    let (overload_plan, offered_per_s, overload_window) = if flash {
        on_one_thread(shoppers::seed(
            &target.base,
            &target.admin_token,
            std::slice::from_ref(&flash_id),
            options.flash_stock,
            1,
        ))?;
        let sale = Arc::new(Plan {
            scenario: options.scenario,
            base: plan.base.clone(),
            products: vec![flash_id.clone()],
            picker: Picker {
                products: 1,
                hot: 0,
                hot_share: 0.0,
            },
            poll: plan.poll,
            order_page_share: 0.0,
            run_id: plan.run_id.clone(),
            live: Arc::clone(live),
            quantity: Some(1),
            lines: (1, 1),
            shed_is_final: true,
        });
        let rate = options.flash_shoppers as f64 / options.flash_window;
        (sale, rate, Duration::from_secs_f64(options.flash_window))
    } else {
        (
            Arc::clone(plan),
            capacity_per_s * options.overload_factor,
            options.duration(),
        )
    };
    let recovery_window = Duration::from_secs_f64(options.recovery);
    let recovery_rate = capacity_per_s * 0.5;

    live.reset();
    let rss_start = target::rss_kib();
    // The threads open their connections first (see `open_segments`).
    let start = Instant::now() + WARM_UP;
    progress.phase(
        if flash {
            "flash sale, then recovery"
        } else {
            "overload, then recovery"
        },
        overload_window + recovery_window,
    );
    let seconds = (overload_window + recovery_window + options.drain())
        .as_secs_f64()
        .ceil() as usize
        + 1;
    let mut rss_series: Vec<Option<u64>> = Vec::with_capacity(seconds);
    let mut next_sample = start;
    let per_thread = shoppers::on_client_threads(
        threads,
        |thread| {
            let segments = vec![
                Segment {
                    plan: Arc::clone(&overload_plan),
                    rate: offered_per_s,
                    duration: overload_window,
                },
                Segment {
                    plan: Arc::clone(plan),
                    rate: recovery_rate,
                    duration: recovery_window,
                },
            ];
            // A sale's shoppers all arrive within its window: none waits for a slot.
            let max_in_flight = if flash {
                options.max_in_flight.max(options.flash_shoppers)
            } else {
                options.max_in_flight
            };
            let in_flight = shoppers::share_of(max_in_flight, threads, thread).max(1);
            let warm = shoppers::share_of(options.shoppers, threads, thread);
            shoppers::open_segments(
                segments,
                thread,
                threads,
                in_flight,
                warm,
                start,
                options.drain(),
            )
        },
        || {
            progress.tick(live, start);
            if Instant::now() >= next_sample && rss_series.len() < rss_series.capacity() {
                rss_series.push(target::rss_kib());
                next_sample += Duration::from_secs(1);
            }
        },
    )?;
    let rss_end = target::rss_kib();
    progress.finish();
    let (mut overload, mut recovery) = (Vec::new(), Vec::new());
    for mut recorders in per_thread {
        recovery.extend(recorders.pop());
        overload.extend(recorders.pop());
    }
    let overload = merge(overload)?;
    let recovery = merge(recovery)?;

    // The check: every order of every phase, the sale's on its own product.
    let mut all_products = products.to_vec();
    let mut seeded = vec![options.stock; products.len()];
    let mut orders = capacity.orders.clone();
    orders.extend(recovery.orders.iter().cloned());
    let mut sale_orders = overload.orders.clone();
    if flash {
        all_products.push(flash_id.clone());
        seeded.push(options.flash_stock);
        let index = u32::try_from(products.len()).unwrap_or(u32::MAX);
        for order in &mut sale_orders {
            order.product = index;
        }
    }
    orders.extend(sale_orders);
    let invariants = check_invariants(
        options,
        target,
        &all_products,
        &seeded,
        orders,
        capacity.unacknowledged + overload.unacknowledged + recovery.unacknowledged,
    )?;

    let window = overload_window.as_secs_f64();
    let goodput_per_s = overload.decided_in_window as f64 / window;
    let flash_sale = if flash {
        let left = on_one_thread(async {
            Ok(super::check::stocks(&target.base, std::slice::from_ref(&flash_id)).await)
        })?;
        let sold = left
            .first()
            .copied()
            .flatten()
            .map_or(-1, |left| options.flash_stock - left);
        let admitted = i64::try_from(overload.orders.len()).unwrap_or(i64::MAX);
        let expected_sold = options.flash_stock.min(admitted);
        let mut settled = overload.order_outcome.clone();
        let _ = settled.add(&overload.shed_latency);
        Some(FlashSaleFigures {
            shoppers: options.flash_shoppers,
            stock: options.flash_stock,
            sold,
            expected_sold,
            sold_exactly: sold == expected_sold,
            oversold: sold > options.flash_stock,
            settled_p99_ms: p99_ms(&settled),
        })
    } else {
        None
    };
    let figures = OverloadFigures {
        capacity_per_s,
        offered_per_s,
        goodput_per_s,
        goodput_ratio: goodput_per_s / capacity_per_s,
        admitted_post_p99_ms: p99_ms(overload.latency_of(Endpoint::PlaceOrder)),
        admitted_outcome_p99_ms: p99_ms(&overload.order_outcome),
        admitted: overload.orders.len() as u64,
        shed_per_s: overload.shed_in_window as f64 / window,
        shed_p99_ms: p99_ms(&overload.shed_latency),
        shed: overload.shed,
        recovery_s: baseline_post_p99_ms.and_then(|baseline| {
            recovered_after(&recovery.post_samples, 2.0 * baseline, recovery_window)
        }),
        baseline_post_p99_ms,
        recovery_goodput_per_s: recovery.decided_in_window as f64 / options.recovery,
        flash_sale,
    };

    // The usual figures describe the overload phase.
    let as_run = Options {
        duration: window,
        rate: Some(offered_per_s),
        ..options.clone()
    };
    let mut results = report::results(report::Measured {
        options: &as_run,
        target: target.describe(),
        floor_rps,
        load: &overload,
        rss_start,
        rss_end,
        rss_series: &rss_series,
        in_process: target.is_in_process(),
        invariants,
    });
    if let Some(sale) = &figures.flash_sale
        && (!sale.sold_exactly || sale.oversold)
    {
        results.invariants_ok = false;
        results.invariants.ok = false;
        results.invariants.violations.push(format!(
            "the flash sale sold {} units, not {}",
            sale.sold, sale.expected_sold
        ));
    }
    results.overload = Some(figures);
    Ok(results)
}

fn p99_ms<T: hdrhistogram::Counter>(histogram: &Histogram<T>) -> Option<f64> {
    (!histogram.is_empty()).then(|| histogram.value_at_quantile(0.99) as f64 / 1000.0)
}

/// The time after which every 250 ms step of admitted POSTs (`(ms since the
/// start, µs)`) has its p99 under `threshold_ms`; `None` if the last one does not.
fn recovered_after(samples: &[(u32, u32)], threshold_ms: f64, window: Duration) -> Option<f64> {
    const STEP_MS: u32 = 250;
    let steps = (window.as_millis() as u32).div_ceil(STEP_MS).max(1) as usize;
    let mut by_step: Vec<Vec<u32>> = vec![Vec::new(); steps];
    for &(at, latency) in samples {
        if let Some(step) = by_step.get_mut((at / STEP_MS) as usize) {
            step.push(latency);
        }
    }
    let over = |latencies: &mut Vec<u32>| {
        if latencies.is_empty() {
            return false;
        }
        latencies.sort_unstable();
        let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
        f64::from(p99) / 1000.0 > threshold_ms
    };
    let mut recovered_from = Some(0);
    for (index, latencies) in by_step.iter_mut().enumerate() {
        if over(latencies) {
            recovered_from = (index + 1 < steps).then_some(index + 1);
        }
    }
    recovered_from.map(|step| f64::from(STEP_MS) * step as f64 / 1000.0)
}

impl OverloadFigures {
    /// Lines for the printed table.
    pub fn lines(&self) -> String {
        let ms =
            |value: Option<f64>| value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1} ms"));
        let mut out = format!(
            "overload: capacity {:.0} orders/s (closed load); offered {:.0}/s; goodput {:.0} orders/s = {:.2} of capacity; \
             admitted {} (POST p99 {}, to outcome p99 {}); shed {} = {:.0}/s (p99 {}); \
             recovery {} (POST p99 back under 2 × {}), then {:.0} orders/s",
            self.capacity_per_s,
            self.offered_per_s,
            self.goodput_per_s,
            self.goodput_ratio,
            self.admitted,
            ms(self.admitted_post_p99_ms),
            ms(self.admitted_outcome_p99_ms),
            self.shed,
            self.shed_per_s,
            ms(self.shed_p99_ms),
            self.recovery_s.map_or_else(
                || "not within the recovery phase".to_owned(),
                |s| format!("{s:.2} s")
            ),
            ms(self.baseline_post_p99_ms),
            self.recovery_goodput_per_s,
        );
        if let Some(sale) = &self.flash_sale {
            out.push_str(&format!(
                "\nflash sale: {} shoppers, {} units: sold {} (expected {}: {}), oversold: {}; every shopper decided or refused within {} (p99)",
                sale.shoppers,
                sale.stock,
                sale.sold,
                sale.expected_sold,
                if sale.sold_exactly { "exact" } else { "NOT EXACT" },
                if sale.oversold { "YES" } else { "no" },
                ms(sale.settled_p99_ms),
            ));
        }
        out
    }
}

#[cfg(test)]
#[allow(dead_code, unused_imports)] // dead in the bench, which runs no test
mod tests {
    use super::*;

    #[test]
    fn recovery_is_when_every_later_step_is_back_under_the_threshold() {
        let window = Duration::from_secs(2);
        // Slow (20 ms) for the first 600 ms, then fast (1 ms).
        let samples: Vec<(u32, u32)> = (0..2000)
            .map(|ms| (ms, if ms < 600 { 20_000 } else { 1_000 }))
            .collect();
        assert_eq!(recovered_after(&samples, 5.0, window), Some(0.75));
        assert_eq!(recovered_after(&samples, 50.0, window), Some(0.0));
        let never: Vec<(u32, u32)> = (0..2000).map(|ms| (ms, 20_000)).collect();
        assert_eq!(recovered_after(&never, 5.0, window), None);
    }
}
