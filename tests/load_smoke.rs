//! The load benchmark in `--quick` mode against the in-process server: it runs to
//! the end, orders get decided, and every invariant holds. No timing assertions:
//! CI runs this in debug mode on a shared machine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use minimart_load as load;

use clap::Parser;

fn quick(scenario: &str) -> load::Results {
    let options = load::Options::try_parse_from([
        "load",
        "--quick",
        "--no-progress",
        "--scenario",
        scenario,
        "--payment-failure-rate",
        "0.2",
        // Orders of one to three lines: stock is conserved line by line, and
        // every order's lines add up to its total.
        "--lines",
        "1-3",
    ])
    .expect("valid flags");
    load::run(&options).expect("the quick run completes")
}

#[test]
fn a_quick_journey_run_keeps_every_invariant() {
    let results = quick("journey");
    assert_invariants(&results);
    assert!(results.orders_per_s > 0.0, "{}", results.table());
    assert!(results.floor_rps > 0.0);
    assert!(results.invariants.orders_checked > 0);
    // With a fifth of payments declined, both outcomes occur and are checked.
    assert!(results.outcomes.confirmed > 0 && results.outcomes.payment_failed > 0);

    let json = serde_json::to_value(&results).unwrap();
    for key in [
        "orders_per_s",
        "floor_rps",
        "scenario",
        "orders_ratio",
        "order_p99_ms",
        "invariants_ok",
    ] {
        assert!(json.get(key).is_some(), "the JSON has {key}");
    }
    assert_eq!(json["scenario"], "journey");
}

#[test]
fn a_quick_orders_run_that_sells_out_conserves_stock_and_writes_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let options = load::Options::try_parse_from([
        "load",
        "--quick",
        "--no-progress",
        "--scenario",
        "orders",
        "--stock",
        "25",
    ])
    .expect("valid flags");
    let results = load::run(&options).expect("the quick run completes");
    assert_invariants(&results);
    // 25 units per product sell out within the run: later orders are rejected.
    assert!(results.outcomes.rejected > 0, "{}", results.table());
    assert!(results.outcomes.confirmed > 0, "{}", results.table());

    results.write_report(dir.path()).unwrap();
    let page = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
    assert!(page.contains("<svg") && page.contains("Latency over time"));
    assert!(!page.contains("<script"), "the report is static");
}

/// The overload figures of a quick run, as `--json` writes them.
fn overload_json(scenario: &str, extra: &[&str]) -> (load::Results, serde_json::Value) {
    let mut args = vec!["load", "--quick", "--no-progress", "--scenario", scenario];
    args.extend_from_slice(extra);
    let options = load::Options::try_parse_from(args).expect("valid flags");
    let results = load::run(&options).expect("the quick run completes");
    assert_invariants(&results);
    let json = serde_json::to_value(&results).unwrap();
    for key in [
        "capacity_per_s",
        "goodput_per_s",
        "goodput_ratio",
        "admitted_post_p99_ms",
        "admitted_outcome_p99_ms",
        "shed_per_s",
        "shed_p99_ms",
        "recovery_s",
        "invariants_ok",
    ] {
        assert!(json.get(key).is_some(), "the JSON has {key}: {json}");
    }
    assert_eq!(json["scenario"], scenario);
    (results, json)
}

#[test]
fn a_quick_overload_run_sheds_the_excess_and_keeps_every_invariant() {
    // A small bound, so that a debug build on a shared machine sheds too.
    let (results, json) = overload_json("overload", &["--server-max-in-flight", "8"]);
    assert!(json["capacity_per_s"].as_f64().unwrap() > 0.0);
    assert!(json["goodput_per_s"].as_f64().unwrap() > 0.0);
    assert!(
        json["shed"].as_u64().unwrap() > 0,
        "3 × the capacity against 8 in flight sheds: {}",
        results.table()
    );
    assert!(
        results.errors.is_empty(),
        "a shed order is not an error: {:?}",
        results.errors
    );
}

#[test]
fn a_quick_flash_sale_sells_exactly_its_stock() {
    let (results, json) = overload_json("flash-sale", &[]);
    let sale = &json["flash_sale"];
    assert_eq!(sale["sold_exactly"], true, "{}", results.table());
    assert_eq!(sale["oversold"], false);
    assert_eq!(sale["sold"], sale["expected_sold"]);
}

/// Fails, with the run's table, unless every invariant held.
fn assert_invariants(results: &load::Results) {
    assert!(
        results.invariants_ok,
        "invariants: {:#?}\n{}",
        results.invariants,
        results.table()
    );
}
