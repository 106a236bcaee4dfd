//! The Inventory actor: the single writer of stock. It reserves, commits and
//! releases stock for orders and creates or replaces products, each as a write
//! through the store; after every committed change it updates the catalog snapshot.
//!
//! Readers (the catalog API and pages) never send it a message: they read the
//! snapshot through a [`CatalogReader`], so a burst of orders cannot slow down
//! browsing. The snapshot keeps, for each product, the row with the highest
//! version it has seen, so answers that arrive out of order cannot roll it back.
//!
//! On a database shared with other instances (Postgres), this actor sees only its
//! own process's changes, so a snapshot would go stale: there the reader reads
//! through to the database instead, and sees every acknowledged write.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, PoisonError};

use actix::prelude::*;
use arc_swap::ArcSwap;
use chrono::Utc;

use crate::domain::{OrderId, Product, ProductId, Quantity, Stock};
use crate::store::{
    self, ReservationState, ReserveOutcome, StockLevel, StockedProduct, Store, StoreError,
};

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("inventory storage failed")]
    Store(#[from] StoreError),
}

/// Create a product or replace its name, price and stock.
#[derive(Debug, Message)]
#[rtype(result = "Result<Product, InventoryError>")]
pub struct UpsertProduct(pub Product);

/// Hold `quantity` units of a product for an order. Idempotent per order.
#[derive(Debug, Message)]
#[rtype(result = "Result<Reservation, InventoryError>")]
pub struct Reserve {
    pub order_id: OrderId,
    pub product_id: ProductId,
    pub quantity: Quantity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// The order has its reservation: made now, or by an earlier run of its saga
    /// (which may since have committed or released it; the saga's later steps are
    /// idempotent and find out).
    Held,
    /// Not enough stock: nothing is held, now or ever, for this order.
    OutOfStock { available: Stock },
    /// An earlier run of the order's saga was refused for want of stock: that
    /// stands, even if stock has come back since.
    RefusedBefore,
    /// The product does not exist.
    UnknownProduct,
}

/// The order took its reserved units for good. A no-op when already done.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), InventoryError>")]
pub struct CommitReservation(pub OrderId);

/// Give an order's reserved units back. A no-op when already done.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), InventoryError>")]
pub struct ReleaseReservation(pub OrderId);

pub struct InventoryActor {
    store: Store,
    /// The snapshot it publishes to, unless readers read through to the database.
    catalog: Option<Arc<ArcSwap<Listings>>>,
}

type Listings = BTreeMap<ProductId, Arc<Listing>>;

/// One product in the snapshot. Its identity is stable: changes update it in place,
/// so a change never lands on a copy that was just replaced.
struct Listing(Mutex<ListingState>);

/// A product with the row version that last set each part of it. An upsert sets
/// name, price and stock; a reservation or release sets only stock. So the two
/// parts are ordered separately: a late upsert answer still brings its new name
/// and price even after a newer stock level has arrived.
struct ListingState {
    product: Product,
    details_version: i64,
    stock_version: i64,
}

impl Listing {
    fn new(row: StockedProduct) -> Listing {
        Listing(Mutex::new(ListingState {
            product: row.product,
            details_version: row.version,
            stock_version: row.version,
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ListingState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> Product {
        self.state().product.clone()
    }

    fn apply_row(&self, row: StockedProduct) {
        let mut state = self.state();
        if row.version > state.details_version {
            state.product.product_name = row.product.product_name;
            state.product.price = row.product.price;
            state.details_version = row.version;
        }
        if row.version > state.stock_version {
            state.product.stock = row.product.stock;
            state.stock_version = row.version;
        }
    }

    fn apply_stock(&self, level: StockLevel) {
        let mut state = self.state();
        if level.version > state.stock_version {
            state.product.stock = level.stock;
            state.stock_version = level.version;
        }
    }
}

/// A cheap, cloneable view of the catalog as last committed.
#[derive(Clone)]
pub struct CatalogReader {
    source: CatalogSource,
}

#[derive(Clone)]
enum CatalogSource {
    /// This process is the only writer: its snapshot is the truth.
    Snapshot(Arc<ArcSwap<Listings>>),
    /// Other instances write too: ask the database.
    Database(Store),
}

/// One page of the catalog, in product id order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogPage {
    pub products: Vec<Product>,
    /// The cursor for the next page, when there is one.
    pub next_after: Option<ProductId>,
}

impl CatalogReader {
    pub async fn product(&self, product_id: &ProductId) -> Result<Option<Product>, InventoryError> {
        Ok(match &self.source {
            CatalogSource::Snapshot(listings) => listings
                .load()
                .get(product_id)
                .map(|listing| listing.read()),
            CatalogSource::Database(store) => {
                store.product(product_id).await?.map(|row| row.product)
            }
        })
    }

    pub async fn page(
        &self,
        after: Option<&ProductId>,
        limit: usize,
    ) -> Result<CatalogPage, InventoryError> {
        // One more than asked for tells whether there is a next page.
        let wanted = limit.saturating_add(1);
        let mut products: Vec<Product> = match &self.source {
            CatalogSource::Snapshot(listings) => {
                let start = after.map_or(Bound::Unbounded, Bound::Excluded);
                listings
                    .load()
                    .range((start, Bound::Unbounded))
                    .take(wanted)
                    .map(|(_, listing)| listing.read())
                    .collect()
            }
            CatalogSource::Database(store) => store
                .catalog_page(after, u32::try_from(wanted).unwrap_or(u32::MAX))
                .await?
                .into_iter()
                .map(|row| row.product)
                .collect(),
        };
        let next_after = if products.len() > limit {
            products.truncate(limit);
            products.last().map(|p| p.product_id.clone())
        } else {
            None
        };
        Ok(CatalogPage {
            products,
            next_after,
        })
    }

    pub async fn is_empty(&self) -> Result<bool, InventoryError> {
        Ok(self.page(None, 1).await?.products.is_empty())
    }
}

/// The Inventory actor's address together with its snapshot.
#[derive(Clone)]
pub struct Inventory {
    pub addr: Addr<InventoryActor>,
    pub catalog: CatalogReader,
}

impl InventoryActor {
    /// Loads the catalog and starts the actor on the current arbiter.
    pub async fn start(store: Store) -> Result<Inventory, InventoryError> {
        Self::start_in(store, &actix_rt::Arbiter::current()).await
    }

    /// Loads the catalog (unless readers read through to the database) and starts
    /// the actor on `arbiter`.
    pub async fn start_in(
        store: Store,
        arbiter: &actix_rt::ArbiterHandle,
    ) -> Result<Inventory, InventoryError> {
        let (catalog, source) = if store.is_shared() {
            (None, CatalogSource::Database(store.clone()))
        } else {
            let listings: Listings = store
                .catalog()
                .await?
                .into_iter()
                .map(|row| (row.product.product_id.clone(), Arc::new(Listing::new(row))))
                .collect();
            let catalog = Arc::new(ArcSwap::from_pointee(listings));
            (Some(Arc::clone(&catalog)), CatalogSource::Snapshot(catalog))
        };
        let reader = CatalogReader { source };
        let addr =
            InventoryActor::start_in_arbiter(arbiter, move |_| InventoryActor { store, catalog });
        Ok(Inventory {
            addr,
            catalog: reader,
        })
    }
}

impl Actor for InventoryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
    }
}

/// Applies committed changes to the snapshot, if there is one. Cloned into each
/// write's future, so the actor's mailbox is free while the write waits for its
/// commit.
#[derive(Clone)]
struct Publisher(Option<Arc<ArcSwap<Listings>>>);

impl Publisher {
    fn product(&self, row: StockedProduct) {
        let Some(snapshot) = &self.0 else { return };
        let product_id = row.product.product_id.clone();
        if !snapshot.load().contains_key(&product_id) {
            // A new product: the only change that replaces the map itself.
            snapshot.rcu(|listings| {
                let mut listings = Listings::clone(listings);
                listings
                    .entry(product_id.clone())
                    .or_insert_with(|| Arc::new(Listing::new(row.clone())));
                listings
            });
        }
        if let Some(listing) = snapshot.load().get(&product_id) {
            listing.apply_row(row);
        }
    }

    /// A stock change for a product the snapshot does not hold yet is dropped: it
    /// cannot happen, because an order is only placed for a product the snapshot
    /// shows, and so after its creation was published.
    fn stock(&self, level: StockLevel) {
        let Some(snapshot) = &self.0 else { return };
        if let Some(listing) = snapshot.load().get(&level.product_id) {
            listing.apply_stock(level);
        }
    }
}

impl InventoryActor {
    fn publisher(&self) -> Publisher {
        Publisher(self.catalog.clone())
    }
}

impl Handler<UpsertProduct> for InventoryActor {
    type Result = ResponseFuture<Result<Product, InventoryError>>;

    fn handle(
        &mut self,
        UpsertProduct(product): UpsertProduct,
        _: &mut Context<Self>,
    ) -> Self::Result {
        let store = self.store.clone();
        let publish = self.publisher();
        Box::pin(async move {
            let row = store.upsert_product(product).await?;
            let product = row.product.clone();
            publish.product(row);
            Ok(product)
        })
    }
}

impl Handler<Reserve> for InventoryActor {
    type Result = ResponseFuture<Result<Reservation, InventoryError>>;

    fn handle(&mut self, msg: Reserve, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let publish = self.publisher();
        Box::pin(async move {
            let outcome = store
                .reserve(store::Reserve {
                    order_id: msg.order_id,
                    product_id: msg.product_id,
                    quantity: msg.quantity,
                    at: Utc::now(),
                })
                .await?;
            Ok(match outcome {
                ReserveOutcome::Reserved(level) => {
                    publish.stock(level);
                    Reservation::Held
                }
                ReserveOutcome::AlreadyDecided(ReservationState::Refused) => {
                    Reservation::RefusedBefore
                }
                ReserveOutcome::AlreadyDecided(_) => Reservation::Held,
                ReserveOutcome::Insufficient { available } => Reservation::OutOfStock { available },
                ReserveOutcome::UnknownProduct => Reservation::UnknownProduct,
            })
        })
    }
}

impl Handler<CommitReservation> for InventoryActor {
    type Result = ResponseFuture<Result<(), InventoryError>>;

    fn handle(
        &mut self,
        CommitReservation(order_id): CommitReservation,
        _: &mut Context<Self>,
    ) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move {
            store.commit_reservation(order_id).await?;
            Ok(())
        })
    }
}

impl Handler<ReleaseReservation> for InventoryActor {
    type Result = ResponseFuture<Result<(), InventoryError>>;

    fn handle(
        &mut self,
        ReleaseReservation(order_id): ReleaseReservation,
        _: &mut Context<Self>,
    ) -> Self::Result {
        let store = self.store.clone();
        let publish = self.publisher();
        Box::pin(async move {
            if let Some(level) = store.release_reservation(order_id).await? {
                publish.stock(level);
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests;
