//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default `info`), as
//! text for people or, with `MINIMART_LOG_FORMAT=json`, one JSON object per
//! line for a log pipeline (timestamp, level, target, the spans' fields, the
//! message and the event's fields).

use std::fmt;
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("{other:?} is not a log format: text or json")),
        }
    }
}

/// Installs the global subscriber. A second call (tests start many apps) is a no-op.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    let _ = subscriber(filter, std::io::stderr, ansi, format).try_init();
}

fn subscriber<W>(
    filter: EnvFilter,
    writer: W,
    ansi: bool,
    format: LogFormat,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let lines = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(lines.with_ansi(ansi).finish().with(QuietMalformedRequests)),
        LogFormat::Json => Box::new(
            lines
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(true)
                .finish()
                .with(QuietMalformedRequests),
        ),
    }
}

/// actix-http answers a request it cannot parse (bad syntax, a bad header) with
/// 400 itself, before the app sees it, and then logs it as an ERROR: one line
/// per bad request, which any client can send by the hundred. Those lines are
/// dropped; actix-http logs the same error at TRACE (`parse error: ...`) too.
/// Its other errors, and everyone else's, are kept.
struct QuietMalformedRequests;

const DISPATCHER: &str = "actix_http::h1::dispatcher";
const PARSE_ERROR: &str = "stream error: request parse error";

impl<S: Subscriber> Layer<S> for QuietMalformedRequests {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let metadata = event.metadata();
        if metadata.target() != DISPATCHER || *metadata.level() != Level::ERROR {
            return true;
        }
        let mut message = MessageStartsWith {
            prefix: PARSE_ERROR,
            found: false,
        };
        event.record(&mut message);
        !message.found
    }
}

struct MessageStartsWith {
    prefix: &'static str,
    found: bool,
}

impl Visit for MessageStartsWith {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.found = format!("{value:?}").starts_with(self.prefix);
        }
    }
}

/// An error followed by its causes, for the log: `outer: middle: root cause`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// What a subscriber writes, kept for the test to read (here and in the
    /// request id's tests).
    #[derive(Clone, Default)]
    pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        pub(crate) fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("the log").clone()).expect("UTF-8")
        }
    }

    /// The app's subscriber in `format`, writing into the returned capture.
    fn captured(format: LogFormat) -> (Captured, Box<dyn Subscriber + Send + Sync>) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = subscriber(
            EnvFilter::new("info"),
            move || writer.clone(),
            false,
            format,
        );
        (captured, subscriber)
    }

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("the log").extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_request_actix_http_cannot_parse_is_no_error_line_but_other_errors_are() {
        let (captured, subscriber) = captured(LogFormat::Text);

        tracing::subscriber::with_default(subscriber, || {
            // What actix-http 3 writes, word for word.
            let parse = "request parse error: invalid Header provided";
            tracing::error!(target: "actix_http::h1::dispatcher", "stream error: {}", parse);
            tracing::error!(target: "actix_http::h1::dispatcher", "stream error: {}", "internal error");
            tracing::error!(target: "minimart::http", "request failed");
        });

        let log = captured.text();
        assert!(!log.contains("parse error"), "{log}");
        assert!(log.contains("stream error: internal error"), "{log}");
        assert!(log.contains("request failed"), "{log}");
    }

    #[test]
    fn json_lines_carry_time_level_target_spans_and_message() {
        let (captured, subscriber) = captured(LogFormat::Json);

        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("saga", request_id = "r-1");
            span.in_scope(|| tracing::info!(outcome = "CONFIRMED", "order decided"));
        });

        let log = captured.text();
        let line: serde_json::Value = serde_json::from_str(log.trim()).unwrap();
        assert!(line["timestamp"].is_string(), "{line}");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["target"], "minimart::telemetry::tests");
        assert_eq!(line["message"], "order decided");
        assert_eq!(line["outcome"], "CONFIRMED");
        assert_eq!(line["spans"][0]["request_id"], "r-1");
    }
}
