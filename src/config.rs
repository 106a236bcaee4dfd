//! Configuration: flags, each with an environment variable of the same meaning.
//! The variable names are a contract with operators and tests; keep them.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use clap::builder::PossibleValue;
use clap::{ArgAction, Parser, ValueEnum};
use subtle::ConstantTimeEq;

use crate::actors::SagaSettings;
use crate::actors::admission::AdmissionSettings;
use crate::actors::payment::PaymentSettings;
use crate::store::{SqliteSynchronous, StoreOptions};
use crate::telemetry::LogFormat;

const DEFAULT_ADDR: &str = "127.0.0.1:8080";
const DEFAULT_DATABASE_URL: &str = "sqlite://minimart.db";
const DEFAULT_PAYMENT_LATENCY_MS: u64 = 300;
const DEFAULT_PAYMENT_DEADLINE_MS: u64 = PaymentSettings::DEFAULT_DEADLINE.as_millis() as u64;
const DEFAULT_READ_CONNECTIONS: u32 = 4;
const DEFAULT_WRITE_CONNECTIONS: u32 = 1;
const DEFAULT_SHUTDOWN_TIMEOUT_SECS: u64 = 30;
const DEFAULT_DB_ACQUIRE_TIMEOUT_MS: u64 = 5_000;
const DEFAULT_DB_STATEMENT_TIMEOUT_MS: u64 = 5_000;
const DEFAULT_SAGA_LEASE_SECS: u64 = 30;
const DEFAULT_IDEMPOTENCY_TTL_SECS: u64 = 24 * 60 * 60;
const DEFAULT_QUEUE_DEADLINE_MS: u64 = AdmissionSettings::DEFAULT_QUEUE_DEADLINE.as_millis() as u64;

#[derive(Debug, Clone, Parser)]
#[command(name = "minimart", version, about = "A small, real e-commerce system")]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "MINIMART_ADDR", default_value = DEFAULT_ADDR)]
    pub addr: String,

    /// Database: `sqlite://PATH` (created and migrated at start) or
    /// `postgres://USER:PASSWORD@HOST:PORT/DB` (migrated at start).
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,

    /// Bearer token for product writes. When unset, one is generated and logged at start.
    #[arg(long, env = "MINIMART_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<AdminToken>,

    /// Share of payments the simulator declines, 0.0 to 1.0.
    #[arg(long, env = "MINIMART_PAYMENT_FAILURE_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub payment_failure_rate: f64,

    /// Simulated processing time of each payment, in milliseconds.
    #[arg(long, env = "MINIMART_PAYMENT_LATENCY_MS", default_value_t = DEFAULT_PAYMENT_LATENCY_MS)]
    pub payment_latency_ms: u64,

    /// How long the payment provider may take beyond its processing time
    /// (MINIMART_PAYMENT_LATENCY_MS) before a charge counts as failed and is
    /// retried, in milliseconds.
    #[arg(long, env = "MINIMART_PAYMENT_DEADLINE_MS", default_value_t = DEFAULT_PAYMENT_DEADLINE_MS)]
    pub payment_deadline_ms: u64,

    /// Seed for the payment simulator's decisions, for reproducible runs.
    #[arg(long, env = "MINIMART_PAYMENT_SEED")]
    pub payment_seed: Option<u64>,

    /// SQLite durability: `normal` survives a killed process, `full` also power loss.
    #[arg(
        long,
        env = "MINIMART_SQLITE_SYNCHRONOUS",
        value_enum,
        default_value = "normal"
    )]
    pub sqlite_synchronous: SqliteSynchronous,

    /// Connections in the database read pool.
    #[arg(long, env = "MINIMART_DB_READ_CONNECTIONS", default_value_t = DEFAULT_READ_CONNECTIONS)]
    pub db_read_connections: u32,

    /// Postgres: group commits in flight at once, each on a connection of its own,
    /// kept from batch to batch.
    #[arg(long, env = "MINIMART_DB_WRITE_CONNECTIONS", default_value_t = DEFAULT_WRITE_CONNECTIONS, value_parser = clap::value_parser!(u32).range(1..))]
    pub db_write_connections: u32,

    /// How long a database operation waits for a pooled connection before it
    /// fails (a request then answers 503), in milliseconds.
    #[arg(long, env = "MINIMART_DB_ACQUIRE_TIMEOUT_MS", default_value_t = DEFAULT_DB_ACQUIRE_TIMEOUT_MS)]
    pub db_acquire_timeout_ms: u64,

    /// Postgres: the longest one statement may run, in milliseconds.
    #[arg(long, env = "MINIMART_DB_STATEMENT_TIMEOUT_MS", default_value_t = DEFAULT_DB_STATEMENT_TIMEOUT_MS)]
    pub db_statement_timeout_ms: u64,

    /// Postgres: how long an instance keeps the sagas it runs without renewing
    /// their lease (it renews every half lease) before another live instance may
    /// take over those still unfinished, in seconds.
    #[arg(long, env = "MINIMART_SAGA_LEASE_SECS", default_value_t = DEFAULT_SAGA_LEASE_SECS, value_parser = clap::value_parser!(u64).range(1..))]
    pub saga_lease_secs: u64,

    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "MINIMART_WORKERS")]
    pub workers: Option<usize>,

    /// Seed a small demo catalog when the catalog is empty.
    #[arg(long, env = "MINIMART_DEMO_CATALOG", default_value_t = true, action = ArgAction::Set)]
    pub demo_catalog: bool,

    /// The shop's public origin, as browsers reach it (`https://shop.example`):
    /// form posts must come from it (their `Origin`), and with `https://`
    /// cookies are `Secure`. Default: `http://` and the address listened on.
    #[arg(long, env = "MINIMART_PUBLIC_URL")]
    pub public_url: Option<PublicUrl>,

    /// The secret that seals admin session cookies, at least 32 bytes. When
    /// unset, one is generated and kept in the database, which several
    /// instances on one database then share.
    #[arg(long, env = "MINIMART_SESSION_KEY", hide_env_values = true)]
    pub session_key: Option<SessionKey>,

    /// How long an idempotency key is remembered, in seconds; then it is
    /// forgotten, and the same key places a new order.
    #[arg(long, env = "MINIMART_IDEMPOTENCY_TTL_SECS", default_value_t = DEFAULT_IDEMPOTENCY_TTL_SECS, value_parser = clap::value_parser!(u64).range(1..))]
    pub idempotency_ttl_secs: u64,

    /// How long a saga's steps may keep failing before its order is marked
    /// stalled for the operator: seconds, or with a unit (`90s`, `5m`, `1h`).
    #[arg(long, env = "MINIMART_SAGA_STALL_AFTER", default_value = "5m", value_parser = parse_duration)]
    pub saga_stall_after: Duration,

    /// How log lines are written: `text`, or `json` (one object per line).
    #[arg(long, env = "MINIMART_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// Orders in flight at most: accepted and not yet decided, their requests
    /// included. The bound in force starts here and follows the time orders
    /// take to be stored, never below 64 (or this, if lower); above it a new
    /// order is refused at once (503 `overloaded`, `Retry-After`) before
    /// anything is stored.
    #[arg(long, env = "MINIMART_MAX_IN_FLIGHT", default_value_t = AdmissionSettings::DEFAULT_MAX_IN_FLIGHT, value_parser = parse_positive)]
    pub max_in_flight: usize,

    /// The longest a new order may wait in a queue (the Orders mailbox, the
    /// store's write queue) before it is refused (503 `overloaded`) rather
    /// than placed late, in milliseconds.
    #[arg(long, env = "MINIMART_QUEUE_DEADLINE_MS", default_value_t = DEFAULT_QUEUE_DEADLINE_MS, value_parser = clap::value_parser!(u64).range(1..))]
    pub queue_deadline_ms: u64,

    /// How long a graceful shutdown waits for in-flight requests, in seconds.
    #[arg(long, env = "MINIMART_SHUTDOWN_TIMEOUT_SECS", default_value_t = DEFAULT_SHUTDOWN_TIMEOUT_SECS)]
    pub shutdown_timeout_secs: u64,
}

impl Default for Config {
    /// The defaults, without reading flags or the environment.
    fn default() -> Self {
        Config {
            addr: DEFAULT_ADDR.to_owned(),
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            admin_token: None,
            payment_failure_rate: 0.0,
            payment_latency_ms: DEFAULT_PAYMENT_LATENCY_MS,
            payment_deadline_ms: DEFAULT_PAYMENT_DEADLINE_MS,
            payment_seed: None,
            sqlite_synchronous: SqliteSynchronous::Normal,
            db_read_connections: DEFAULT_READ_CONNECTIONS,
            db_write_connections: DEFAULT_WRITE_CONNECTIONS,
            db_acquire_timeout_ms: DEFAULT_DB_ACQUIRE_TIMEOUT_MS,
            db_statement_timeout_ms: DEFAULT_DB_STATEMENT_TIMEOUT_MS,
            saga_lease_secs: DEFAULT_SAGA_LEASE_SECS,
            workers: None,
            demo_catalog: true,
            public_url: None,
            session_key: None,
            idempotency_ttl_secs: DEFAULT_IDEMPOTENCY_TTL_SECS,
            log_format: LogFormat::Text,
            saga_stall_after: SagaSettings::default().stall_after,
            max_in_flight: AdmissionSettings::DEFAULT_MAX_IN_FLIGHT,
            queue_deadline_ms: DEFAULT_QUEUE_DEADLINE_MS,
            shutdown_timeout_secs: DEFAULT_SHUTDOWN_TIMEOUT_SECS,
        }
    }
}

impl Config {
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            read_connections: self.db_read_connections,
            write_connections: self.db_write_connections,
            acquire_timeout: Duration::from_millis(self.db_acquire_timeout_ms),
            statement_timeout: Duration::from_millis(self.db_statement_timeout_ms),
            lease: Duration::from_secs(self.saga_lease_secs),
            sqlite_synchronous: self.sqlite_synchronous,
            idempotency_ttl: Duration::from_secs(self.idempotency_ttl_secs),
            ..StoreOptions::new(&self.database_url)
        }
    }

    pub fn saga_settings(&self) -> SagaSettings {
        SagaSettings {
            stall_after: self.saga_stall_after,
        }
    }

    pub fn admission_settings(&self) -> AdmissionSettings {
        AdmissionSettings {
            max_in_flight: self.max_in_flight,
            queue_deadline: Duration::from_millis(self.queue_deadline_ms),
        }
    }

    pub fn payment_settings(&self) -> PaymentSettings {
        PaymentSettings {
            failure_rate: self.payment_failure_rate,
            latency: Duration::from_millis(self.payment_latency_ms),
            seed: self.payment_seed,
            deadline: Duration::from_millis(self.payment_deadline_ms),
        }
    }
}

/// `--sqlite-synchronous`: the store's durability setting, as operators name it.
/// The store knows nothing of the command line; its names and help live here.
impl ValueEnum for SqliteSynchronous {
    fn value_variants<'a>() -> &'a [Self] {
        &[SqliteSynchronous::Normal, SqliteSynchronous::Full]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            SqliteSynchronous::Normal => PossibleValue::new("normal").help(
                "Durable against a crashed or killed process; the last commits may be lost on power loss",
            ),
            SqliteSynchronous::Full => PossibleValue::new("full")
                .help("Durable against power loss too: one fsync per commit"),
        })
    }
}

/// `300`, `300s`, `5m` or `1h`.
fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let (number, unit) = match raw.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => raw.split_at(at),
        None => (raw, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 60 * 60,
        _ => return Err(format!("{raw:?} is not a duration like 90s, 5m or 1h")),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{raw:?} is not a duration like 90s, 5m or 1h"))
}

fn parse_positive(raw: &str) -> Result<usize, String> {
    match raw.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{raw:?} is not a whole number of at least 1")),
    }
}

fn parse_rate(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!("{raw:?} is not a rate between 0.0 and 1.0")),
    }
}

/// The admin bearer token. Its `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct AdminToken(String);

impl AdminToken {
    /// A fresh random token (122 random bits).
    pub fn generate() -> AdminToken {
        AdminToken(uuid::Uuid::new_v4().simple().to_string())
    }

    /// Compares in constant time, so response timing does not leak the token.
    pub fn matches(&self, candidate: &str) -> bool {
        self.0.as_bytes().ct_eq(candidate.as_bytes()).into()
    }

    /// The token itself, for the one log line that hands a generated token over.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl FromStr for AdminToken {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        if raw.trim().is_empty() {
            return Err("the admin token must not be empty".to_owned());
        }
        Ok(AdminToken(raw.to_owned()))
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// The shop's public origin: scheme, host and port, nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl(String);

impl PublicUrl {
    /// `http://` and the address the server listens on.
    pub fn of_listener(address: std::net::SocketAddr) -> PublicUrl {
        PublicUrl(format!("http://{address}"))
    }

    /// The origin as browsers send it in `Origin`.
    pub fn origin(&self) -> &str {
        &self.0
    }

    pub fn is_https(&self) -> bool {
        self.0.starts_with("https://")
    }
}

impl FromStr for PublicUrl {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("{raw:?} is not an origin like https://shop.example");
        let raw = raw.trim().trim_end_matches('/');
        let (scheme, host) = raw.split_once("://").ok_or_else(invalid)?;
        let scheme = scheme.to_ascii_lowercase();
        let valid_host = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
        if !matches!(scheme.as_str(), "http" | "https") || !valid_host {
            return Err(invalid());
        }
        Ok(PublicUrl(format!(
            "{scheme}://{}",
            host.to_ascii_lowercase()
        )))
    }
}

/// The secret that seals admin session cookies. Its `Debug` never shows it.
#[derive(Clone)]
pub struct SessionKey(String);

impl SessionKey {
    pub const MIN_LEN: usize = 32;

    /// A fresh random secret: 64 random bytes, as hex.
    pub fn generate() -> SessionKey {
        let bytes: [u8; 64] = rand::random();
        SessionKey(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl FromStr for SessionKey {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        if raw.len() < Self::MIN_LEN {
            return Err(format!(
                "the session key must be at least {} bytes",
                Self::MIN_LEN
            ));
        }
        Ok(SessionKey(raw.to_owned()))
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_with_their_defaults() {
        let config = Config::try_parse_from(["minimart", "--addr", "127.0.0.1:0"]);
        assert!(config.is_ok_and(|c| c.addr == "127.0.0.1:0"));
    }

    #[test]
    fn sqlite_synchronous_is_normal_or_full() {
        let parse = |value| Config::try_parse_from(["minimart", "--sqlite-synchronous", value]);
        assert!(parse("full").is_ok_and(|c| c.sqlite_synchronous == SqliteSynchronous::Full));
        assert!(parse("normal").is_ok_and(|c| c.sqlite_synchronous == SqliteSynchronous::Normal));
        let refused = parse("sometimes").map(|_| ()).unwrap_err().to_string();
        assert!(
            refused.contains("'sometimes'") && refused.contains("[possible values: normal, full]"),
            "{refused}"
        );
    }

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "m", "5d", "-1", "1.5m"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn admission_takes_a_positive_bound_and_deadline() {
        let parse = |flag, value| Config::try_parse_from(["minimart", flag, value]);
        assert!(parse("--max-in-flight", "64").is_ok_and(|c| c.max_in_flight == 64));
        assert!(parse("--queue-deadline-ms", "250").is_ok_and(|c| c.queue_deadline_ms == 250));
        for (flag, bad) in [
            ("--max-in-flight", "0"),
            ("--max-in-flight", "-1"),
            ("--queue-deadline-ms", "0"),
        ] {
            assert!(parse(flag, bad).is_err(), "{flag} {bad}");
        }
    }

    #[test]
    fn failure_rate_must_be_a_share() {
        assert!(parse_rate("0.25").is_ok());
        assert!(parse_rate("1").is_ok());
        assert!(parse_rate("1.5").is_err());
        assert!(parse_rate("-0.1").is_err());
        assert!(parse_rate("often").is_err());
    }

    #[test]
    fn tokens_compare_exactly_and_stay_hidden() {
        let token: AdminToken = "s3cret".parse().expect("a valid token");
        assert!(token.matches("s3cret"));
        assert!(!token.matches("s3cre"));
        assert!(!token.matches("s3cret!"));
        assert!(!format!("{token:?}").contains("s3cret"));
        assert!("  ".parse::<AdminToken>().is_err());
    }

    #[test]
    fn the_public_url_is_an_origin() {
        let url: PublicUrl = "HTTPS://Shop.Example/".parse().expect("an origin");
        assert_eq!(url.origin(), "https://shop.example");
        assert!(url.is_https());
        assert!("http://127.0.0.1:8000".parse::<PublicUrl>().is_ok());
        for bad in [
            "shop.example",
            "ftp://shop.example",
            "https://",
            "https://a/b",
        ] {
            assert!(bad.parse::<PublicUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn session_keys_are_long_and_stay_hidden() {
        assert!("short".parse::<SessionKey>().is_err());
        let key = SessionKey::generate();
        assert!(key.reveal().len() >= SessionKey::MIN_LEN);
        assert!(!format!("{key:?}").contains(key.reveal()));
    }
}
