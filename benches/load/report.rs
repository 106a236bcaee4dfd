//! What a run found, three ways: a table on stdout, JSON (`--json`), and an HTML
//! page (maud) with SVG charts drawn by plotters (`--report`): no script, nothing
//! fetched.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use plotters::coord::Shift;
use plotters::coord::cartesian::Cartesian2d;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::element::{DashedPathElement, DynElement, IntoDynElement, PathElement, Rectangle};
use plotters::prelude::{
    ChartBuilder, ChartContext, Color, DrawingArea, DrawingBackend, IntoDrawingArea, IntoFont,
    IntoLogRange, RGBColor, SVGBackend, TRANSPARENT, Text, TextStyle,
};
use plotters::style::text_anchor::{HPos, Pos, VPos};
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
    /// The overload and flash-sale scenarios' own figures (`capacity_per_s`,
    /// `goodput_ratio`, `recovery_s`, ...), at the top level.
    #[serde(flatten)]
    pub overload: Option<super::overload::OverloadFigures>,
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
        overload: None,
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
        if let Some(overload) = &self.overload {
            let _ = writeln!(out, "{}", overload.lines());
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
            "invariants: {verdict}: {} orders checked; stock conserved: {}; stuck: {}; >1 SUCCEEDED payment: {}; CONFIRMED without exactly one: {}; charged but not CONFIRMED: {}; lines not adding up: {}; unreadable: {}",
            thousands(i.orders_checked as f64),
            if i.stock_conserved { "yes" } else { "NO" },
            i.stuck_orders,
            i.multiple_successful_payments,
            i.confirmed_without_one_payment,
            i.charged_but_not_confirmed,
            i.lines_not_summing,
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

    /// The series of a line chart, those about orders only when there are orders.
    fn lines(&self, series: &[Series]) -> Vec<Line> {
        let orders = self.scenario != "reads";
        let at = |value: fn(&SecondFigures) -> Option<f64>| {
            let at = |s: &SecondFigures| value(s).map(|y| (s.second as f64 + 0.5, y));
            self.series.iter().filter_map(at).collect()
        };
        let series = series.iter().filter(|series| orders || !series.3);
        series
            .map(|&(name, color, stroke, _, value)| Line(name, color, stroke, at(value)))
            .collect()
    }

    fn html(&self) -> String {
        let mut throughput = self.lines(&THROUGHPUT);
        let ends = self.series.first().zip(self.series.last());
        let floor = ends.map(|(first, last)| [first.second as f64, last.second as f64 + 1.0]);
        let floor = floor.into_iter().flatten().map(|x| (x, self.floor_rps));
        let floor = Line("floor (GET /healthz)", GREY, Dashed, floor.collect());
        throughput.insert(1, floor);
        let histogram_title = if self.order_to_outcome.is_some() {
            "Order to outcome: latency histogram"
        } else {
            "Request latency histogram"
        };
        let verdict = if self.invariants_ok { "OK" } else { "BROKEN" };
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    title { "minimart load report: " (self.scenario) }
                    style { (STYLE) }
                }
                body {
                    h1 { "minimart load report: " (self.scenario) " scenario, " (self.load) " load" }
                    p {
                        (self.started_at) ". Orders decided: "
                        b { (format!("{:.0}/s", self.orders_per_s)) }
                        (format!(
                            " ({:.3} × floor), CONFIRMED {:.0}/s ({:.3} × floor); floor {:.0} req/s. ",
                            self.orders_ratio, self.confirmed_per_s, self.confirmed_ratio, self.floor_rps
                        ))
                        "Invariants: " b class=(verdict.to_lowercase()) { (verdict) } "."
                    }
                    h2 { "Throughput over time" } (line_chart("per second", &throughput))
                    h2 { "Latency over time" } (line_chart("milliseconds", &self.lines(&LATENCY)))
                    h2 { (histogram_title) } (histogram_chart(&self.latency_histogram))
                    @if self.in_process {
                        h2 { "Memory over time (server and client)" }
                        (line_chart("MiB", &self.lines(&MEMORY)))
                    }
                    h2 { "The figures" } pre { (self.table()) }
                }
            }
        }
        .into_string()
    }
}

fn write(path: &Path, text: &str) -> Result<(), LoadError> {
    std::fs::write(path, text).map_err(|source| LoadError::Write {
        path: path.display().to_string(),
        source,
    })
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem;max-width:1100px;color:#222}\
    pre{background:#f6f6f6;padding:1rem;overflow-x:auto;font-size:13px}\
    h1{font-size:1.5rem} h2{font-size:1.1rem;margin-top:2rem} svg{width:100%;height:auto}\
    .ok{color:#1a7f37} .broken{color:#cf222e}";

// Charts: SVG drawn by plotters, inline in the page.

const BLUE: RGBColor = RGBColor(0x44, 0x77, 0xaa);
const RED: RGBColor = RGBColor(0xcc, 0x33, 0x11);
const ORANGE: RGBColor = RGBColor(0xee, 0x77, 0x33);
const GREEN: RGBColor = RGBColor(0x22, 0x88, 0x33);
const PURPLE: RGBColor = RGBColor(0xaa, 0x33, 0x77);
const GREY: RGBColor = RGBColor(0x77, 0x77, 0x77);

#[derive(Clone, Copy)]
enum Stroke {
    Solid,
    Dashed,
}
use Stroke::{Dashed, Solid};

/// A line of a chart: its name in the legend, colour, stroke, whether it is about
/// orders (none in the reads scenario), and its value in a second of the run.
#[rustfmt::skip]
type Series = (&'static str, RGBColor, Stroke, bool, fn(&SecondFigures) -> Option<f64>);

#[rustfmt::skip]
const THROUGHPUT: [Series; 3] = [
    ("requests/s", GREEN, Solid, false, |s| Some(s.requests as f64)),
    ("orders decided/s", BLUE, Solid, true, |s| Some(s.decided as f64)),
    ("CONFIRMED/s", PURPLE, Dashed, true, |s| Some(s.confirmed as f64)),
];
#[rustfmt::skip]
const LATENCY: [Series; 4] = [
    ("order to outcome p50", BLUE, Solid, true, |s| s.order_p50_ms),
    ("order to outcome p99", RED, Solid, true, |s| s.order_p99_ms),
    ("POST /api/orders p99", ORANGE, Dashed, true, |s| s.post_p99_ms),
    ("every request p99", GREEN, Dashed, false, |s| s.request_p99_ms),
];
#[rustfmt::skip]
const MEMORY: [Series; 1] = [
    ("VmRSS (MiB)", BLUE, Solid, false, |s| s.rss_kib.map(|kib| kib as f64 / 1024.0)),
];

/// A line as drawn: name, colour, stroke and (second, value) points.
struct Line(&'static str, RGBColor, Stroke, Vec<(f64, f64)>);

type Drawn = Result<(), Box<dyn std::error::Error>>;
/// A chart with a y axis from 0 up.
type Chart<'c, 'b, X> = ChartContext<'c, SVGBackend<'b>, Cartesian2d<X, RangedCoordf64>>;

/// The SVG that `draw` makes, or a line saying why there is none. Plotters
/// escapes the text it writes, so the SVG goes into the page as it is.
fn svg(draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Drawn) -> Markup {
    let mut text = String::new();
    let drawn = {
        let root = SVGBackend::with_string(&mut text, (1000, 300)).into_drawing_area();
        draw(&root).and_then(|()| Ok(root.present()?))
    };
    match drawn {
        Ok(()) => PreEscaped(text),
        Err(error) => html! { p.broken { "The chart could not be drawn: " (error.to_string()) } },
    }
}

/// A path through `points` in `line`'s colour and stroke (dashes 6 px, gaps 4).
fn path<DB: DrawingBackend, C: Clone + 'static>(
    points: Vec<C>,
    line: &Line,
) -> DynElement<'static, DB, C> {
    let style = line.1.stroke_width(2);
    match line.2 {
        Solid => PathElement::new(points, style).into_dyn(),
        Dashed => DashedPathElement::new(points, 6, 4, style).into_dyn(),
    }
}

fn line_chart(y_label: &str, lines: &[Line]) -> Markup {
    let points = || lines.iter().flat_map(|line| line.3.iter());
    let x_max = points().map(|p| p.0).fold(1.0, f64::max);
    let y_max = points().map(|p| p.1).fold(0.0, f64::max) * 1.05;
    let y_max = if y_max > 0.0 { y_max } else { 1.0 };
    svg(|root| {
        // The legend: one row above the plot, so that it hides no line.
        let (legend, plot) = root.split_vertically(30);
        for (index, line) in lines.iter().enumerate() {
            let x = 80 + 190 * index as i32;
            legend.draw(&path(vec![(x, 15), (x + 24, 15)], line))?;
            let font = ("sans-serif", 15).into_font();
            let font = TextStyle::from(font).pos(Pos::new(HPos::Left, VPos::Center));
            legend.draw(&Text::new(line.0, (x + 30, 15), font))?;
        }
        let descriptions = ("seconds into the run", y_label);
        let mut chart = axes(&plot, 0.0..x_max, y_max, descriptions)?;
        for line in lines {
            chart.draw_series([path(line.3.clone(), line)])?;
        }
        Ok(())
    })
}

/// The log-spaced buckets as bars on a log axis.
fn histogram_chart(buckets: &[Bucket]) -> Markup {
    let ends = buckets.first().zip(buckets.last());
    let (low, high) = ends.map_or((0.01, 1.0), |(first, last)| (first.from_ms, last.to_ms));
    let y_max = buckets.iter().map(|b| b.count).max().unwrap_or(0).max(1) as f64 * 1.05;
    svg(|root| {
        let descriptions = ("milliseconds (log scale)", "orders");
        let mut chart = axes(root, (low..high).log_scale(), y_max, descriptions)?;
        chart.draw_series(buckets.iter().map(|bucket| {
            let corners = [(bucket.from_ms, 0.0), (bucket.to_ms, bucket.count as f64)];
            let mut bar = Rectangle::new(corners, BLUE.filled());
            bar.set_margin(0, 0, 0, 1);
            bar
        }))?;
        Ok(())
    })
}

/// A chart on `area` from 0 to `y_max` high, its axes drawn with their labels.
fn axes<'c, 'b, X>(
    area: &DrawingArea<SVGBackend<'b>, Shift>,
    x: X,
    y_max: f64,
    (x_desc, y_desc): (&str, &str),
) -> Result<Chart<'c, 'b, X::CoordDescType>, Box<dyn std::error::Error>>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .light_line_style(TRANSPARENT)
        .x_label_formatter(&|value| short(*value))
        .y_label_formatter(&|value| short(*value))
        .draw()?;
    Ok(chart)
}

/// An axis's tick label: 12k, 250, 3, 0.5.
fn short(value: f64) -> String {
    if value >= 10_000.0 {
        format!("{:.0}k", value / 1000.0)
    } else if value >= 100.0 || value == value.round() {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, dead_code)] // dead in the bench, which runs no test
mod tests {
    use std::time::{Duration, Instant};

    use clap::Parser;

    use super::*;

    const HOSTILE: &str = "<script>alert(1)</script>";

    /// Three made-up seconds of an orders run, with a hostile scenario name.
    fn sample() -> Results {
        let options = Options::try_parse_from(["load", "--scenario", "orders", "--duration", "3"]);
        let options = options.unwrap();
        let (start, window) = (Instant::now(), Duration::from_secs(3));
        let mut load = Recorder::new(start, window, 3, Default::default());
        for (second, figures) in (1..).zip(load.series.iter_mut()) {
            (figures.requests, figures.decided, figures.confirmed) = (900 * second, 300, 250);
            for micros in [800, 2_000, 9_000 * second] {
                figures.any.record(micros).unwrap();
                figures.outcome.record(micros).unwrap();
                figures.post.record(micros / 2).unwrap();
            }
        }
        for micros in [700, 1_200, 2_500, 4_000, 30_000] {
            load.order_outcome.record(micros).unwrap();
        }
        let error = format!("POST /api/orders: {HOSTILE}");
        load.errors.insert(error, 2);
        let mut results = results(Measured {
            options: &options,
            target: "in-process".to_owned(),
            floor_rps: 1_000.0,
            load: &load,
            rss_start: Some(40_000),
            rss_end: Some(50_000),
            rss_series: &[Some(41_000), Some(45_000), Some(46_000)],
            in_process: true,
            invariants: Invariants::default(),
        });
        results.scenario = HOSTILE.to_owned();
        results
    }

    /// Each `<h2>` with the number of charts under it, once the page is known
    /// to close every element it opens, in order (`<meta>` aside).
    fn sections<'a>(page: &'a str) -> Vec<(&'a str, usize)> {
        let mut open = Vec::new();
        for tag in page.split('<').skip(1).filter_map(|s| s.split_once('>')) {
            match tag.0.strip_prefix('/') {
                Some(name) => assert_eq!(open.pop(), Some(name), "{page}"),
                None if tag.0.starts_with('!') || tag.0.ends_with('/') => {}
                None => open.extend(tag.0.split(' ').next().filter(|name| *name != "meta")),
            }
        }
        assert!(open.is_empty(), "{open:?} left open");
        let sections = page.split("<h2>").filter_map(|s| s.split_once("</h2>"));
        let charts = |(title, rest): (&'a str, &str)| (title, rest.matches("<svg").count());
        sections.map(charts).collect()
    }

    #[test]
    fn the_report_has_its_sections_with_a_chart_each_and_escapes_what_it_shows() {
        let mut results = sample();
        let page = results.html();
        let charts = [
            ("Throughput over time", 1),
            ("Latency over time", 1),
            ("Order to outcome: latency histogram", 1),
            ("Memory over time (server and client)", 1),
            ("The figures", 0),
        ];
        assert_eq!(sections(&page), charts);
        assert!(page.contains("CONFIRMED/s"));
        let labels = ["seconds into the run", "milliseconds (log scale)", "VmRSS"];
        assert!(labels.iter().all(|label| page.contains(label)), "{page}");
        // In the title, the heading and the table twice (run line, errors), as text.
        assert!(!page.contains("<script"), "{page}");
        let escaped = page.matches("&lt;script&gt;alert(1)&lt;/script&gt;");
        assert_eq!(escaped.count(), 4);

        // Reads against a server elsewhere: no order lines, no memory chart.
        (results.scenario, results.in_process) = ("reads".to_owned(), false);
        results.order_to_outcome = None;
        let page = results.html();
        let charts = [
            ("Throughput over time", 1),
            ("Latency over time", 1),
            ("Request latency histogram", 1),
            ("The figures", 0),
        ];
        assert_eq!(sections(&page), charts);
        assert!(!page.contains("CONFIRMED/s"));
    }
}
