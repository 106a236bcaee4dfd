//! What a run found, three ways: a table on stdout, JSON (`--json`), and an HTML
//! page with hand-drawn SVG charts (`--report`): no script, nothing fetched.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::LoadError;
use super::check::Invariants;
use super::options::Options;
use super::stats::{Endpoint, PlacedOrder, Recorder};

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    fn of<T: hdrhistogram::Counter>(histogram: &Histogram<T>) -> Option<Percentiles> {
        if histogram.is_empty() {
            return None;
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Some(Percentiles {
            count: histogram.len(),
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p90_ms: ms(histogram.value_at_quantile(0.90)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct EndpointFigures {
    pub endpoint: String,
    /// Successful answers inside the measured window.
    pub requests: u64,
    pub per_s: f64,
    /// `per_s / floor_rps`.
    pub ratio: f64,
    pub latency: Option<Percentiles>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcomes {
    pub confirmed: u64,
    pub rejected: u64,
    pub payment_failed: u64,
    /// Orders still pending when the shopper stopped following (drain deadline).
    pub unfollowed: u64,
    /// Orders whose POST got no answer after retries.
    pub unacknowledged: u64,
}

/// One second of the run.
#[derive(Debug, Clone, Serialize)]
pub struct SecondFigures {
    pub second: u64,
    pub requests: u64,
    pub decided: u64,
    pub confirmed: u64,
    pub errors: u64,
    pub request_p99_ms: Option<f64>,
    pub order_p50_ms: Option<f64>,
    pub order_p99_ms: Option<f64>,
    pub post_p99_ms: Option<f64>,
    pub rss_kib: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    pub from_ms: f64,
    pub to_ms: f64,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub scenario: String,
    /// `closed` or `open`.
    pub load: String,
    pub shoppers: usize,
    pub rate: Option<f64>,
    pub duration_s: f64,
    pub target: String,
    pub started_at: String,
    /// `GET /healthz` per second at full speed, same client and concurrency.
    pub floor_rps: f64,
    /// Orders reaching a terminal status per second.
    pub orders_per_s: f64,
    pub confirmed_per_s: f64,
    pub orders_ratio: f64,
    pub confirmed_ratio: f64,
    /// `GET /api/products/{id}` per second over the floor, when the scenario reads products.
    pub product_read_ratio: Option<f64>,
    /// Order to outcome (terminal status seen by the shopper), p99.
    pub order_p99_ms: Option<f64>,
    pub order_post_p99_ms: Option<f64>,
    pub order_confirmed_p99_ms: Option<f64>,
    pub endpoints: Vec<EndpointFigures>,
    pub order_to_outcome: Option<Percentiles>,
    pub order_to_confirmed: Option<Percentiles>,
    pub outcomes: Outcomes,
    pub errors: BTreeMap<String, u64>,
    /// VmRSS of this process (in-process: server and client together).
    pub rss_start_kib: Option<u64>,
    /// Once connections and caches are warm: at 5 s (or a quarter of a shorter run).
    pub rss_warm_kib: Option<u64>,
    /// The last sample inside the load window.
    pub rss_window_end_kib: Option<u64>,
    /// After the load, with the client's connections closed.
    pub rss_end_kib: Option<u64>,
    /// Memory the client itself keeps growing: one record per order placed.
    pub client_order_records_kib: u64,
    pub invariants: Invariants,
    pub invariants_ok: bool,
    pub series: Vec<SecondFigures>,
    /// Order to outcome (or, without orders, every request), log-spaced buckets.
    pub latency_histogram: Vec<Bucket>,
    #[serde(skip)]
    pub in_process: bool,
}

/// The raw material of [`Results`].
pub struct Measured<'a> {
    pub options: &'a Options,
    pub target: String,
    pub floor_rps: f64,
    pub load: &'a Recorder,
    pub rss_start: Option<u64>,
    pub rss_end: Option<u64>,
    pub rss_series: &'a [Option<u64>],
    pub in_process: bool,
    pub invariants: Invariants,
}

pub fn results(measured: Measured<'_>) -> Results {
    let Measured {
        options,
        target,
        floor_rps,
        load,
        rss_start,
        rss_end,
        rss_series,
        in_process,
        invariants,
    } = measured;
    let window = options.duration;
    let ratio = |per_s: f64| {
        if floor_rps > 0.0 {
            per_s / floor_rps
        } else {
            0.0
        }
    };
    let endpoints: Vec<EndpointFigures> = Endpoint::ALL
        .iter()
        .filter(|&&endpoint| endpoint != Endpoint::Healthz)
        .filter(|&&endpoint| !load.latency_of(endpoint).is_empty())
        .map(|&endpoint| {
            let requests = load.requests_in_window(endpoint);
            let per_s = requests as f64 / window;
            EndpointFigures {
                endpoint: endpoint.label().to_owned(),
                requests,
                per_s,
                ratio: ratio(per_s),
                latency: Percentiles::of(load.latency_of(endpoint)),
            }
        })
        .collect();
    let product_read_ratio = endpoints
        .iter()
        .find(|figures| figures.endpoint == Endpoint::Product.label())
        .map(|figures| figures.ratio);
    let orders_per_s = load.decided_in_window as f64 / window;
    let confirmed_per_s = load.confirmed_in_window as f64 / window;
    let order_to_outcome = Percentiles::of(&load.order_outcome);
    let order_to_confirmed = Percentiles::of(&load.order_confirmed);
    let post = Percentiles::of(load.latency_of(Endpoint::PlaceOrder));

    let series = load
        .series
        .iter()
        .enumerate()
        .map(|(second, figures)| SecondFigures {
            second: second as u64,
            requests: figures.requests,
            decided: figures.decided,
            confirmed: figures.confirmed,
            errors: figures.errors,
            request_p99_ms: Percentiles::of(&figures.any).map(|p| p.p99_ms),
            order_p50_ms: Percentiles::of(&figures.outcome).map(|p| p.p50_ms),
            order_p99_ms: Percentiles::of(&figures.outcome).map(|p| p.p99_ms),
            post_p99_ms: Percentiles::of(&figures.post).map(|p| p.p99_ms),
            rss_kib: rss_series.get(second).copied().flatten(),
        })
        // The series was sized for the whole drain period: drop the empty tail.
        .collect::<Vec<_>>();
    let last_busy = series
        .iter()
        .rposition(|s| s.requests > 0 || s.errors > 0)
        .map_or(0, |i| i + 1);
    let series = series.into_iter().take(last_busy).collect();

    let histogram_source = if load.order_outcome.is_empty() {
        let mut all = super::stats::latency_histogram();
        for endpoint in Endpoint::ALL {
            let _ = all.add(load.latency_of(endpoint));
        }
        all
    } else {
        load.order_outcome.clone()
    };

    Results {
        scenario: options.scenario.as_str().to_owned(),
        load: if options.rate.is_some() {
            "open"
        } else {
            "closed"
        }
        .to_owned(),
        shoppers: options.shoppers,
        rate: options.rate,
        duration_s: window,
        target,
        started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        floor_rps,
        orders_per_s,
        confirmed_per_s,
        orders_ratio: ratio(orders_per_s),
        confirmed_ratio: ratio(confirmed_per_s),
        product_read_ratio,
        order_p99_ms: order_to_outcome.as_ref().map(|p| p.p99_ms),
        order_post_p99_ms: post.as_ref().map(|p| p.p99_ms),
        order_confirmed_p99_ms: order_to_confirmed.as_ref().map(|p| p.p99_ms),
        endpoints,
        order_to_outcome,
        order_to_confirmed,
        outcomes: Outcomes {
            confirmed: load.confirmed,
            rejected: load.rejected,
            payment_failed: load.payment_failed,
            unfollowed: load.unfollowed,
            unacknowledged: load.unacknowledged,
        },
        errors: load.errors.clone(),
        rss_start_kib: rss_start,
        rss_warm_kib: rss_series.get(warm_second(window)).copied().flatten(),
        rss_window_end_kib: rss_series
            .iter()
            .take(window.ceil() as usize)
            .rev()
            .find_map(|sample| *sample),
        rss_end_kib: rss_end,
        client_order_records_kib: (load.orders.capacity() * std::mem::size_of::<PlacedOrder>()
            / 1024) as u64,
        invariants_ok: invariants.ok,
        invariants,
        series,
        latency_histogram: buckets(&histogram_source, 40),
        in_process,
    }
}

/// The second at which memory counts as warmed up.
fn warm_second(window: f64) -> usize {
    (window / 4.0).floor().clamp(0.0, 5.0) as usize
}

/// Log-spaced buckets from the smallest to the largest value recorded.
fn buckets(histogram: &Histogram<u64>, count: usize) -> Vec<Bucket> {
    if histogram.is_empty() {
        return Vec::new();
    }
    let low = (histogram.min().max(1) as f64).ln();
    let high = (histogram.max().max(2) as f64).ln() + 1e-9;
    let step = (high - low) / count as f64;
    let edge = |i: usize| (low + step * i as f64).exp() / 1000.0;
    let mut buckets: Vec<Bucket> = (0..count)
        .map(|i| Bucket {
            from_ms: edge(i),
            to_ms: edge(i + 1),
            count: 0,
        })
        .collect();
    for value in histogram.iter_recorded() {
        let micros = value.value_iterated_to().max(1) as f64;
        let index = (((micros.ln() - low) / step).floor().max(0.0) as usize).min(count - 1);
        buckets[index].count += value.count_at_value();
    }
    buckets
}

// The table.

fn thousands(value: f64) -> String {
    let whole = value.round() as i64;
    let digits = whole.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    if whole < 0 { format!("-{out}") } else { out }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

impl Results {
    /// The human-readable report.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let load = match self.rate {
            Some(rate) => format!("open load at {} runs/s", thousands(rate)),
            None => format!("closed load, {} shoppers", self.shoppers),
        };
        let _ = writeln!(
            out,
            "\nminimart load: {} scenario, {load}, {} s, against {}",
            self.scenario, self.duration_s, self.target
        );
        let _ = writeln!(
            out,
            "\n{:<34}{:>12}{:>10}",
            "throughput", "per s", "× floor"
        );
        let _ = writeln!(
            out,
            "  {:<32}{:>12}{:>10}",
            "floor: GET /healthz",
            thousands(self.floor_rps),
            "1.000"
        );
        if self.scenario != "reads" {
            let _ = writeln!(
                out,
                "  {:<32}{:>12}{:>10.3}",
                "orders decided",
                thousands(self.orders_per_s),
                self.orders_ratio
            );
            let _ = writeln!(
                out,
                "  {:<32}{:>12}{:>10.3}",
                "orders CONFIRMED",
                thousands(self.confirmed_per_s),
                self.confirmed_ratio
            );
        }
        for endpoint in &self.endpoints {
            let _ = writeln!(
                out,
                "  {:<32}{:>12}{:>10.3}",
                endpoint.endpoint,
                thousands(endpoint.per_s),
                endpoint.ratio
            );
        }

        let _ = writeln!(
            out,
            "\n{:<34}{:>10}{:>9}{:>9}{:>9}{:>9}{:>9}",
            "latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max"
        );
        let mut row = |name: &str, p: &Option<Percentiles>| {
            if let Some(p) = p {
                let _ = writeln!(
                    out,
                    "  {:<32}{:>10}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>9.2}",
                    name,
                    thousands(p.count as f64),
                    p.p50_ms,
                    p.p90_ms,
                    p.p99_ms,
                    p.p999_ms,
                    p.max_ms
                );
            }
        };
        for endpoint in &self.endpoints {
            row(&endpoint.endpoint, &endpoint.latency);
        }
        row("order to outcome", &self.order_to_outcome);
        row("order to CONFIRMED", &self.order_to_confirmed);
        if self.rate.is_some() {
            let _ = writeln!(
                out,
                "  (open load: a run's first request counts from its scheduled start, and so does the order in the orders scenario)"
            );
        }

        if self.scenario != "reads" {
            let o = &self.outcomes;
            let _ = writeln!(
                out,
                "\noutcomes: {} CONFIRMED, {} REJECTED, {} PAYMENT_FAILED; {} not followed to the end, {} POSTs unanswered",
                thousands(o.confirmed as f64),
                thousands(o.rejected as f64),
                thousands(o.payment_failed as f64),
                o.unfollowed,
                o.unacknowledged
            );
        }
        if self.errors.is_empty() {
            let _ = writeln!(out, "errors: none");
        } else {
            let _ = writeln!(out, "errors:");
            for (kind, count) in &self.errors {
                let _ = writeln!(out, "  {kind:<48}{:>10}", thousands(*count as f64));
            }
        }
        let _ = writeln!(out, "{}", self.memory_line());
        let _ = writeln!(out, "{}", self.invariants_line());
        for violation in &self.invariants.violations {
            let _ = writeln!(out, "  ! {violation}");
        }
        out
    }

    fn memory_line(&self) -> String {
        let kib = |value: Option<u64>| value.map_or_else(|| "n/a".to_owned(), mib);
        match (self.in_process, self.rss_warm_kib, self.rss_window_end_kib) {
            (true, Some(warm), Some(last)) => format!(
                "memory (VmRSS of this process: server and client): {} before the load, {} warm (at {} s), {} at the end of the load ({:+.1} MiB since warm; the client's list of orders holds {}), {} after",
                kib(self.rss_start_kib),
                mib(warm),
                warm_second(self.duration_s),
                mib(last),
                (last as f64 - warm as f64) / 1024.0,
                mib(self.client_order_records_kib),
                kib(self.rss_end_kib),
            ),
            (true, ..) => format!(
                "memory (VmRSS of this process: server and client): {} before the load, {} after",
                kib(self.rss_start_kib),
                kib(self.rss_end_kib)
            ),
            (false, ..) => "memory: n/a (the server runs elsewhere)".to_owned(),
        }
    }

    fn invariants_line(&self) -> String {
        let i = &self.invariants;
        let verdict = if i.ok { "OK" } else { "BROKEN" };
        format!(
            "invariants: {verdict}: {} orders checked; stock conserved: {}; stuck: {}; >1 SUCCEEDED payment: {}; CONFIRMED without exactly one: {}; charged but not CONFIRMED: {}; unreadable: {}",
            thousands(i.orders_checked as f64),
            if i.stock_conserved { "yes" } else { "NO" },
            i.stuck_orders,
            i.multiple_successful_payments,
            i.confirmed_without_one_payment,
            i.charged_but_not_confirmed,
            i.unreadable
        )
    }

    pub fn write_json(&self, path: &Path) -> Result<(), LoadError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| LoadError::Write {
            path: path.display().to_string(),
            source: std::io::Error::other(e),
        })?;
        write(path, &text)
    }

    /// Writes `index.html` into `dir`.
    pub fn write_report(&self, dir: &Path) -> Result<(), LoadError> {
        std::fs::create_dir_all(dir).map_err(|source| LoadError::Write {
            path: dir.display().to_string(),
            source,
        })?;
        write(&dir.join("index.html"), &self.html())
    }

    fn html(&self) -> String {
        let seconds = |f: &dyn Fn(&SecondFigures) -> Option<f64>| -> Vec<(f64, f64)> {
            self.series
                .iter()
                .filter_map(|s| f(s).map(|y| (s.second as f64 + 0.5, y)))
                .collect()
        };
        let mut latency_lines = Vec::new();
        if self.scenario != "reads" {
            latency_lines.push(Line {
                name: "order to outcome p50",
                color: "#4477aa",
                points: seconds(&|s| s.order_p50_ms),
                dashed: false,
            });
            latency_lines.push(Line {
                name: "order to outcome p99",
                color: "#cc3311",
                points: seconds(&|s| s.order_p99_ms),
                dashed: false,
            });
            latency_lines.push(Line {
                name: "POST /api/orders p99",
                color: "#ee7733",
                points: seconds(&|s| s.post_p99_ms),
                dashed: true,
            });
        }
        latency_lines.push(Line {
            name: "every request p99",
            color: "#228833",
            points: seconds(&|s| s.request_p99_ms),
            dashed: true,
        });
        let mut throughput_lines = vec![
            Line {
                name: "requests/s",
                color: "#228833",
                points: seconds(&|s| Some(s.requests as f64)),
                dashed: false,
            },
            Line {
                name: "floor (GET /healthz)",
                color: "#777777",
                points: self
                    .series
                    .first()
                    .zip(self.series.last())
                    .map(|(first, last)| {
                        vec![
                            (first.second as f64, self.floor_rps),
                            (last.second as f64 + 1.0, self.floor_rps),
                        ]
                    })
                    .unwrap_or_default(),
                dashed: true,
            },
        ];
        if self.scenario != "reads" {
            throughput_lines.push(Line {
                name: "orders decided/s",
                color: "#4477aa",
                points: seconds(&|s| Some(s.decided as f64)),
                dashed: false,
            });
            throughput_lines.push(Line {
                name: "CONFIRMED/s",
                color: "#aa3377",
                points: seconds(&|s| Some(s.confirmed as f64)),
                dashed: true,
            });
        }
        let rss_lines = [Line {
            name: "VmRSS (MiB)",
            color: "#4477aa",
            points: seconds(&|s| s.rss_kib.map(|kib| kib as f64 / 1024.0)),
            dashed: false,
        }];
        let histogram_title = if self.order_to_outcome.is_some() {
            "Order to outcome: latency histogram"
        } else {
            "Request latency histogram"
        };

        let mut page = String::new();
        let _ = write!(
            page,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>minimart load report: {scenario}</title>\
             <style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:1100px;color:#222}}\
             pre{{background:#f6f6f6;padding:1rem;overflow-x:auto;font-size:13px}}\
             h1{{font-size:1.5rem}} h2{{font-size:1.1rem;margin-top:2rem}}\
             .ok{{color:#1a7f37}} .broken{{color:#cf222e}}</style></head><body>\
             <h1>minimart load report: {scenario} scenario, {load} load</h1>\
             <p>{when}. Orders decided: <b>{orders:.0}/s</b> ({ratio:.3} × floor), \
             CONFIRMED {confirmed:.0}/s ({cratio:.3} × floor); floor {floor:.0} req/s. \
             Invariants: <b class=\"{class}\">{verdict}</b>.</p>",
            scenario = escape(&self.scenario),
            load = escape(&self.load),
            when = escape(&self.started_at),
            orders = self.orders_per_s,
            ratio = self.orders_ratio,
            confirmed = self.confirmed_per_s,
            cratio = self.confirmed_ratio,
            floor = self.floor_rps,
            class = if self.invariants_ok { "ok" } else { "broken" },
            verdict = if self.invariants_ok { "OK" } else { "BROKEN" },
        );
        let _ = write!(
            page,
            "<h2>Throughput over time</h2>{}",
            line_chart("per second", &throughput_lines)
        );
        let _ = write!(
            page,
            "<h2>Latency over time</h2>{}",
            line_chart("milliseconds", &latency_lines)
        );
        let _ = write!(
            page,
            "<h2>{histogram_title}</h2>{}",
            histogram_chart(&self.latency_histogram)
        );
        if self.in_process {
            let _ = write!(
                page,
                "<h2>Memory over time (server and client)</h2>{}",
                line_chart("MiB", &rss_lines)
            );
        }
        let _ = writeln!(
            page,
            "<h2>The figures</h2><pre>{}</pre></body></html>",
            escape(&self.table())
        );
        page
    }
}

fn write(path: &Path, text: &str) -> Result<(), LoadError> {
    std::fs::write(path, text).map_err(|source| LoadError::Write {
        path: path.display().to_string(),
        source,
    })
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

// Charts: plain SVG, drawn here.

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;

struct Line<'a> {
    name: &'a str,
    color: &'a str,
    points: Vec<(f64, f64)>,
    dashed: bool,
}

/// A round number at or above `value`, for an axis's top (1, 2 or 5 × 10^n).
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 || !value.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|step| step * magnitude)
        .find(|candidate| *candidate >= value)
        .unwrap_or(10.0 * magnitude)
}

fn short(value: f64) -> String {
    if value >= 10_000.0 {
        format!("{:.0}k", value / 1000.0)
    } else if value >= 100.0 || value == value.round() {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn frame(svg: &mut String, y_label: &str, x_max: f64, y_max: f64, x_label: &str) {
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"100%\" \
         font-family=\"system-ui,sans-serif\" font-size=\"12\" role=\"img\">\
         <rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"#fcfcfc\" stroke=\"#ccc\"/>"
    );
    for i in 0..=5 {
        let value = y_max * f64::from(i) / 5.0;
        let y = TOP + plot_h - plot_h * f64::from(i) / 5.0;
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" x2=\"{x2}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
             <text x=\"{tx}\" y=\"{ty:.1}\" text-anchor=\"end\">{label}</text>",
            x2 = WIDTH - RIGHT,
            tx = LEFT - 6.0,
            ty = y + 4.0,
            label = short(value)
        );
    }
    // Ticks at round numbers of seconds; `x_max` is a whole number of steps.
    let step = x_step(x_max);
    let mut value = 0.0;
    while value <= x_max + 1e-9 {
        let x = LEFT + plot_w * value / x_max;
        let _ = write!(
            svg,
            "<text x=\"{x:.1}\" y=\"{y}\" text-anchor=\"middle\">{label}</text>",
            y = HEIGHT - BOTTOM + 16.0,
            label = short(value)
        );
        value += step;
    }
    let _ = write!(
        svg,
        "<text x=\"{x}\" y=\"{y}\" text-anchor=\"middle\">{x_label}</text>\
         <text x=\"14\" y=\"{ly}\" transform=\"rotate(-90 14 {ly})\" text-anchor=\"middle\">{y_label}</text>",
        x = LEFT + plot_w / 2.0,
        y = HEIGHT - 6.0,
        ly = TOP + plot_h / 2.0,
        x_label = escape(x_label),
        y_label = escape(y_label),
    );
}

/// A round step for about ten ticks up to `max`.
fn x_step(max: f64) -> f64 {
    nice_ceiling(max / 10.0)
}

fn line_chart(y_label: &str, lines: &[Line<'_>]) -> String {
    let widest = lines
        .iter()
        .flat_map(|line| line.points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let step = x_step(widest);
    let x_max = (widest / step).ceil() * step;
    let y_max = nice_ceiling(
        lines
            .iter()
            .flat_map(|line| line.points.iter().map(|p| p.1))
            .fold(0.0, f64::max)
            * 1.05,
    );
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let mut svg = String::new();
    frame(&mut svg, y_label, x_max, y_max, "seconds into the run");
    for (index, line) in lines.iter().enumerate() {
        let points: Vec<String> = line
            .points
            .iter()
            .map(|&(x, y)| {
                format!(
                    "{:.1},{:.1}",
                    LEFT + plot_w * x / x_max,
                    TOP + plot_h - plot_h * (y / y_max).min(1.0)
                )
            })
            .collect();
        let dash = if line.dashed {
            " stroke-dasharray=\"6 4\""
        } else {
            ""
        };
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"{dash} points=\"{points}\"/>\
             <line x1=\"{lx}\" x2=\"{lx2}\" y1=\"{ly}\" y2=\"{ly}\" stroke=\"{color}\" stroke-width=\"2\"{dash}/>\
             <text x=\"{tx}\" y=\"{ty}\">{name}</text>",
            color = line.color,
            points = points.join(" "),
            lx = LEFT + 10.0 + 190.0 * index as f64,
            lx2 = LEFT + 34.0 + 190.0 * index as f64,
            ly = TOP - 12.0,
            tx = LEFT + 38.0 + 190.0 * index as f64,
            ty = TOP - 8.0,
            name = escape(line.name),
        );
    }
    svg.push_str("</svg>");
    svg
}

fn histogram_chart(buckets: &[Bucket]) -> String {
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let y_max = nice_ceiling(buckets.iter().map(|b| b.count).max().unwrap_or(1) as f64);
    let mut svg = String::new();
    // The x axis is the bucket index; label it with the buckets' edges instead.
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"100%\" \
         font-family=\"system-ui,sans-serif\" font-size=\"12\" role=\"img\">\
         <rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"#fcfcfc\" stroke=\"#ccc\"/>"
    );
    for i in 0..=5 {
        let y = TOP + plot_h - plot_h * f64::from(i) / 5.0;
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" x2=\"{x2}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
             <text x=\"{tx}\" y=\"{ty:.1}\" text-anchor=\"end\">{label}</text>",
            x2 = WIDTH - RIGHT,
            tx = LEFT - 6.0,
            ty = y + 4.0,
            label = short(y_max * f64::from(i) / 5.0)
        );
    }
    let width = plot_w / buckets.len().max(1) as f64;
    for (index, bucket) in buckets.iter().enumerate() {
        let height = plot_h * bucket.count as f64 / y_max;
        let x = LEFT + width * index as f64;
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{height:.1}\" fill=\"#4477aa\">\
             <title>{from:.2} to {to:.2} ms: {count}</title></rect>",
            y = TOP + plot_h - height,
            w = (width - 1.0).max(1.0),
            from = bucket.from_ms,
            to = bucket.to_ms,
            count = bucket.count,
        );
        if index % 5 == 0 {
            let _ = write!(
                svg,
                "<text x=\"{x:.1}\" y=\"{y}\" text-anchor=\"middle\">{label}</text>",
                y = HEIGHT - BOTTOM + 16.0,
                label = short(bucket.from_ms)
            );
        }
    }
    let _ = write!(
        svg,
        "<text x=\"{x}\" y=\"{y}\" text-anchor=\"middle\">milliseconds (log scale)</text>\
         <text x=\"14\" y=\"{ly}\" transform=\"rotate(-90 14 {ly})\" text-anchor=\"middle\">orders</text></svg>",
        x = LEFT + plot_w / 2.0,
        y = HEIGHT - 6.0,
        ly = TOP + plot_h / 2.0,
    );
    svg
}
