//! Start-up: open and migrate the store, start the actors, seed the demo catalog,
//! resume unfinished sagas, and only then serve HTTP on a listener bound here.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};

use crate::actors::Actors;
use crate::actors::inventory::{InventoryError, UpsertProduct};
use crate::actors::orders::{OrderError, ResumeUnfinished};
use crate::config::{AdminToken, Config, SessionKey};
use crate::domain::{ParseError, Price, Product, ProductId, ProductName, Stock};
use crate::http::{self, AdminAuth, ServerSettings, Site};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("could not open the database")]
    Store(#[from] StoreError),
    #[error("could not start the actors")]
    Actors(#[from] crate::actors::StartError),
    #[error("could not seed the demo catalog")]
    Inventory(#[from] InventoryError),
    #[error("could not resume unfinished orders")]
    Orders(#[from] OrderError),
    #[error("an actor stopped during start-up")]
    Mailbox(#[from] actix::MailboxError),
    #[error("the demo catalog is invalid")]
    DemoCatalog(#[from] ParseError),
    #[error("the stored session key is not valid: {0}")]
    SessionKey(String),
    #[error("could not listen on {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where the generated session key is kept in the database.
const SESSION_KEY_SETTING: &str = "session_key";

/// A built application, serving once awaited.
pub struct Application {
    address: SocketAddr,
    server: Server,
}

impl Application {
    /// Must be called inside an actix system (`#[actix_web::main]`, `#[actix_web::test]`).
    pub async fn build(config: Config) -> Result<Application, StartupError> {
        // Before anything is counted (the actors count their mailboxes).
        crate::meters::install();
        let store = Store::open(&config.store_options()).await?;
        let actors = Actors::start(
            store.clone(),
            config.payment_settings(),
            config.saga_settings(),
        )
        .await?
        .with_admission(config.admission_settings());

        if config.demo_catalog && actors.inventory.catalog.is_empty().await? {
            seed_demo_catalog(&actors).await?;
        }
        let resumed = actors.orders.send(ResumeUnfinished).await??;
        if resumed > 0 {
            tracing::info!(orders = resumed, "resumed unfinished orders");
        }

        let admin_token = config.admin_token.clone().unwrap_or_else(|| {
            let token = AdminToken::generate();
            tracing::warn!(
                admin_token = token.reveal(),
                "MINIMART_ADMIN_TOKEN is not set: generated an admin token for this run"
            );
            token
        });

        let session_key = match config.session_key.clone() {
            Some(key) => key,
            None => store
                .shared_secret(
                    SESSION_KEY_SETTING,
                    SessionKey::generate().reveal().to_owned(),
                )
                .await?
                .parse()
                .map_err(StartupError::SessionKey)?,
        };
        let admin = AdminAuth::new(admin_token, &session_key, store);

        let bind_error = |source| StartupError::Bind {
            addr: config.addr.clone(),
            source,
        };
        let listener = TcpListener::bind(&config.addr).map_err(bind_error)?;
        let address = listener.local_addr().map_err(bind_error)?;
        if config.public_url.is_none() && !address.ip().is_loopback() {
            tracing::warn!(
                "MINIMART_PUBLIC_URL is not set: browsers' form posts are accepted only from http://{address}"
            );
        }
        let site = Site::new(config.public_url.as_ref(), address);
        let server = http::serve(
            listener,
            actors,
            admin,
            site,
            ServerSettings {
                workers: config.workers,
                shutdown_timeout: Duration::from_secs(config.shutdown_timeout_secs),
            },
        )
        .map_err(bind_error)?;
        tracing::info!(%address, database = %redact_url(&config.database_url), "minimart is serving");
        Ok(Application { address, server })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Stops the server gracefully, from outside (tests).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped through its handle.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }

    /// Serves until SIGINT or SIGTERM, then stops gracefully: no new connections,
    /// and requests in flight finish (up to the shutdown timeout).
    pub async fn run_until_signalled(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        actix_rt::spawn(async move {
            let signal = shutdown_signal().await;
            tracing::info!(signal, "stopping gracefully");
            handle.stop(true).await;
        });
        self.server.await
    }
}

/// Waits for SIGINT or SIGTERM and names it. If a handler cannot be installed,
/// that signal keeps its default action (the process ends).
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    match (interrupt, terminate) {
        (Ok(mut interrupt), Ok(mut terminate)) => tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        },
        (Ok(mut interrupt), Err(_)) => {
            interrupt.recv().await;
            "SIGINT"
        }
        (Err(_), Ok(mut terminate)) => {
            terminate.recv().await;
            "SIGTERM"
        }
        (Err(_), Err(_)) => std::future::pending().await,
    }
}

/// A database URL for the log, without any password it may carry.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***{}", &url[..scheme_end], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// A few products so that a fresh install has something to sell.
const DEMO_CATALOG: &[(&str, &str, i64, i64)] = &[
    ("espresso-beans", "Espresso beans, 1 kg", 2490, 40),
    ("pour-over-kettle", "Pour-over kettle", 5900, 12),
    ("ceramic-mug", "Ceramic mug", 1450, 60),
    ("hand-grinder", "Hand grinder", 8900, 5),
    ("paper-filters", "Paper filters, 100 pack", 690, 150),
    ("tasting-notebook", "Tasting notebook", 1200, 3),
];

async fn seed_demo_catalog(actors: &Actors) -> Result<(), StartupError> {
    for &(id, name, price, stock) in DEMO_CATALOG {
        let product = Product {
            product_id: ProductId::parse(id)?,
            product_name: ProductName::parse(name)?,
            price: Price::parse(price)?,
            stock: Stock::parse(stock)?,
        };
        actors.inventory.addr.send(UpsertProduct(product)).await??;
    }
    tracing::info!(products = DEMO_CATALOG.len(), "seeded the demo catalog");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_stay_out_of_the_log() {
        assert_eq!(
            redact_url("postgres://shop:hunter2@db:5432/shop"),
            "postgres://***@db:5432/shop"
        );
        assert_eq!(redact_url("sqlite://minimart.db"), "sqlite://minimart.db");
    }
}
