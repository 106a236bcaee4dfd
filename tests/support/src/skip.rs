//! A test that cannot run here (no chromium, nginx, Postgres) says so loudly and
//! returns; in CI (`CI=true`) it fails instead. libtest has no hook for the end of
//! a run, so the first skip registers an `atexit` handler: once every test has
//! finished and the harness exits (with any status), it prints one line of what
//! was skipped and why, under the harness's own summary.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Mutex, PoisonError};

/// How many tests were skipped so far, by reason.
static SKIPPED: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());

/// Says loudly (once per reason) that the running test is skipped, and why, and
/// counts it for the summary; in CI, fails instead.
pub fn skip(why: &str) {
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
    let mut skipped = SKIPPED.lock().unwrap_or_else(PoisonError::into_inner);
    if skipped.is_empty() {
        at_exit(summary);
    }
    let count = skipped.entry(why.to_owned()).or_default();
    if *count == 0 {
        // Straight to the process's stderr: the test harness would hide `eprintln!`.
        let _ = writeln!(std::io::stderr(), "\n!!! SKIPPED: {why} !!!\n");
    }
    *count += 1;
}

extern "C" fn summary() {
    let skipped = SKIPPED.lock().unwrap_or_else(PoisonError::into_inner);
    let count: usize = skipped.values().sum();
    let reasons: Vec<String> = skipped
        .iter()
        .map(|(why, count)| format!("{count} × {why}"))
        .collect();
    let binary = std::env::current_exe().ok().and_then(|exe| {
        let name = exe.file_name()?.to_string_lossy().into_owned();
        Some(
            name.rsplit_once('-')
                .map_or(name.clone(), |(name, _)| name.to_owned()),
        )
    });
    let _ = writeln!(
        std::io::stderr(),
        "!!! {}: {count} test(s) SKIPPED: {} !!!",
        binary.as_deref().unwrap_or("tests"),
        reasons.join("; ")
    );
}

#[allow(unsafe_code)]
fn at_exit(print: extern "C" fn()) {
    // SAFETY: atexit only records the function; it takes nothing, and it cannot
    // unwind: it never panics.
    unsafe { libc::atexit(print) };
}
