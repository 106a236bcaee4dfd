//! The Inventory actor: the single writer of stock. It reserves, commits and
//! releases stock for orders and creates or replaces products, each as a write
//! through the store; after every committed change it updates the catalog snapshot.
//!
//! Readers (the catalog API and pages) never send it a message: they read the
//! snapshot through a [`CatalogReader`], so a burst of orders cannot slow down
//! browsing. The snapshot keeps, for each product, the row with the highest
//! version it has seen, so answers that arrive out of order cannot roll it back.
//!
//! On a database shared with other instances (Postgres), the store feeds the
//! snapshot the changes the other instances announce once they commit, and the
//! whole catalog again after the feed was away; a product this process has not
//! heard of yet (just created elsewhere) is read from the database. This
//! process's own changes are in the snapshot before the write is acknowledged.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, PoisonError};

use actix::prelude::*;
use arc_swap::ArcSwap;
use chrono::Utc;

use super::mailbox::{Mailbox, Named, tracked_handlers};
use crate::domain::{Item, OrderEvent, OrderId, Product, ProductId, Stock};
use crate::store::{
    self, OrderMove, ProductChange, ReservationState, ReserveOutcome, Settle, StockLevel,
    StockedProduct, Store, StoreError,
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

/// Hold every line's units for an order, or none. Idempotent per order: asked
/// again, it answers the first decision.
#[derive(Debug, Message)]
#[rtype(result = "Result<Reserved, InventoryError>")]
pub struct Reserve {
    pub order_id: OrderId,
    pub lines: Vec<Item>,
    /// Also move the order out of PLACED by the decision, in the same commit (the
    /// saga's own reservation; the order's move is the Orders actor's, carried
    /// through).
    pub advance_order: bool,
}

/// What a reservation decided, and the order's event if it moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserved {
    pub reservation: Reservation,
    pub moved: Option<OrderEvent>,
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

/// The order took its reserved units for good (a no-op when already done), and
/// moves as `then` says in the same commit. Answers the order's event if it moved.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<OrderEvent>, InventoryError>")]
pub struct CommitReservation {
    pub order_id: OrderId,
    pub then: Option<OrderMove>,
}

/// Give an order's reserved units back (a no-op when already done), and move the
/// order as `then` says in the same commit. Answers the order's event if it moved.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<OrderEvent>, InventoryError>")]
pub struct ReleaseReservation {
    pub order_id: OrderId,
    pub then: Option<OrderMove>,
}

pub struct InventoryActor {
    store: Store,
    /// The snapshot it publishes to.
    catalog: Arc<ArcSwap<Listings>>,
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
    listings: Arc<ArcSwap<Listings>>,
    /// Other instances write too: a product missing from the snapshot may have
    /// been created by one of them a moment ago.
    shared: Option<Store>,
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
        if let Some(listing) = self.listings.load().get(product_id) {
            return Ok(Some(listing.read()));
        }
        let Some(store) = &self.shared else {
            return Ok(None);
        };
        let Some(row) = store.product(product_id).await? else {
            return Ok(None);
        };
        let product = row.product.clone();
        Publisher(Arc::clone(&self.listings)).product(row);
        Ok(Some(product))
    }

    pub async fn page(
        &self,
        after: Option<&ProductId>,
        limit: usize,
    ) -> Result<CatalogPage, InventoryError> {
        // One more than asked for tells whether there is a next page.
        let wanted = limit.saturating_add(1);
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut products: Vec<Product> = self
            .listings
            .load()
            .range((start, Bound::Unbounded))
            .take(wanted)
            .map(|(_, listing)| listing.read())
            .collect();
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
    pub addr: Mailbox<InventoryActor>,
    pub catalog: CatalogReader,
}

impl InventoryActor {
    /// Loads the catalog and starts the actor on the current arbiter.
    pub async fn start(store: Store) -> Result<Inventory, InventoryError> {
        Self::start_in(store, &actix_rt::Arbiter::current()).await
    }

    /// Loads the catalog and starts the actor on `arbiter`; with other instances
    /// on the database, the store feeds the snapshot their changes from then on.
    pub async fn start_in(
        store: Store,
        arbiter: &actix_rt::ArbiterHandle,
    ) -> Result<Inventory, InventoryError> {
        let listings: Listings = store
            .catalog()
            .await?
            .into_iter()
            .map(|row| (row.product.product_id.clone(), Arc::new(Listing::new(row))))
            .collect();
        let catalog = Arc::new(ArcSwap::from_pointee(listings));
        if store.is_shared() {
            let publish = Publisher(Arc::clone(&catalog));
            store.feed_products(Arc::new(move |change| publish.change(change)));
        }
        let reader = CatalogReader {
            listings: Arc::clone(&catalog),
            shared: store.is_shared().then(|| store.clone()),
        };
        let addr = Mailbox::new(InventoryActor::start_in_arbiter(arbiter, move |_| {
            InventoryActor { store, catalog }
        }));
        Ok(Inventory {
            addr,
            catalog: reader,
        })
    }
}

impl Named for InventoryActor {
    const NAME: &'static str = "inventory";
}
tracked_handlers!(InventoryActor: UpsertProduct, Reserve, CommitReservation, ReleaseReservation);

impl Actor for InventoryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
    }
}

/// Applies committed changes to the snapshot. Cloned into each write's future,
/// so the actor's mailbox is free while the write waits for its commit.
#[derive(Clone)]
struct Publisher(Arc<ArcSwap<Listings>>);

impl Publisher {
    fn product(&self, row: StockedProduct) {
        let product_id = row.product.product_id.clone();
        if !self.0.load().contains_key(&product_id) {
            // A new product: the only change that replaces the map itself.
            self.0.rcu(|listings| {
                let mut listings = Listings::clone(listings);
                listings
                    .entry(product_id.clone())
                    .or_insert_with(|| Arc::new(Listing::new(row.clone())));
                listings
            });
        }
        if let Some(listing) = self.0.load().get(&product_id) {
            listing.apply_row(row);
        }
    }

    /// A stock change for a product the snapshot does not hold yet is dropped: an
    /// order is only placed for a product the snapshot shows, and so after its
    /// creation was published; another instance's product is read whole when
    /// first asked for.
    fn stock(&self, level: StockLevel) {
        if let Some(listing) = self.0.load().get(&level.product_id) {
            listing.apply_stock(level);
        }
    }

    fn change(&self, change: ProductChange) {
        match change {
            ProductChange::Product(row) => self.product(row),
            ProductChange::Stock(level) => self.stock(level),
            ProductChange::Everything(rows) => rows.into_iter().for_each(|row| self.product(row)),
        }
    }
}

impl InventoryActor {
    fn publisher(&self) -> Publisher {
        Publisher(Arc::clone(&self.catalog))
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
    type Result = ResponseFuture<Result<Reserved, InventoryError>>;

    fn handle(&mut self, msg: Reserve, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let publish = self.publisher();
        Box::pin(async move {
            let reserved = store
                .reserve(store::Reserve {
                    order_id: msg.order_id,
                    lines: msg.lines,
                    advance_order: msg.advance_order,
                    at: Utc::now(),
                })
                .await?;
            let reservation = match reserved.outcome {
                ReserveOutcome::Reserved(levels) => {
                    levels.into_iter().for_each(|level| publish.stock(level));
                    Reservation::Held
                }
                ReserveOutcome::AlreadyDecided(ReservationState::Refused) => {
                    Reservation::RefusedBefore
                }
                ReserveOutcome::AlreadyDecided(_) => Reservation::Held,
                ReserveOutcome::Insufficient { available, .. } => {
                    Reservation::OutOfStock { available }
                }
                ReserveOutcome::UnknownProduct(_) => Reservation::UnknownProduct,
            };
            Ok(Reserved {
                reservation,
                moved: reserved.moved,
            })
        })
    }
}

impl InventoryActor {
    /// Takes or gives back the order's reserved stock, and moves the order.
    fn settle(
        &self,
        order_id: OrderId,
        paid: bool,
        then: Option<OrderMove>,
    ) -> ResponseFuture<Result<Option<OrderEvent>, InventoryError>> {
        let store = self.store.clone();
        let publish = self.publisher();
        Box::pin(async move {
            let settled = store
                .settle(Settle {
                    order_id,
                    paid,
                    then,
                    at: Utc::now(),
                })
                .await?;
            settled
                .released
                .into_iter()
                .for_each(|level| publish.stock(level));
            Ok(settled.moved)
        })
    }
}

impl Handler<CommitReservation> for InventoryActor {
    type Result = ResponseFuture<Result<Option<OrderEvent>, InventoryError>>;

    fn handle(&mut self, msg: CommitReservation, _: &mut Context<Self>) -> Self::Result {
        self.settle(msg.order_id, true, msg.then)
    }
}

impl Handler<ReleaseReservation> for InventoryActor {
    type Result = ResponseFuture<Result<Option<OrderEvent>, InventoryError>>;

    fn handle(&mut self, msg: ReleaseReservation, _: &mut Context<Self>) -> Self::Result {
        self.settle(msg.order_id, false, msg.then)
    }
}

#[cfg(test)]
mod tests;
