//! The Orders actor: owns orders and their idempotency keys, and runs each order's
//! saga. Placing an order commits it (with its idempotency key and first event)
//! before the caller hears back; the saga then runs as its own task, so any number
//! of orders are in flight at once and none waits for another's payment. At start
//! the actor resumes every order that had not reached a terminal status.

pub mod watchers;

use actix::prelude::*;
use chrono::Utc;

use super::admission::{Admitted, Overloaded};
use super::book::OrderBook;
use super::inventory::{Inventory, InventoryError};
use super::mailbox::{Mailbox, Named, tracked_handlers};
use super::payment::{self, PaymentActor};
use super::saga::{Saga, SagaSettings};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use watchers::{Watch, Watchers};

use crate::domain::{
    Card, IdempotencyKey, Item, Items, Money, Order, OrderEvent, OrderId, OrderLine, OrderStatus,
    ProductId, ShopperId,
};
use crate::meters;
use crate::store::{
    CartChange, CartEdit, CreateOrderOutcome, NewOrder, StalledOrder, Store, StoreError,
};
use crate::telemetry::error_chain;

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("product {product_id} does not exist")]
    UnknownProduct {
        product_id: ProductId,
        /// The order's line that names it, from 0.
        line: usize,
    },
    #[error("the order total does not fit in the shop's money type")]
    TotalTooLarge,
    #[error("the cart no longer holds what the order was to buy")]
    CartChanged,
    #[error("product {0} is not sold here")]
    NotSold(ProductId),
    #[error("the cart holds {} products, the most an order may have", Items::MAX)]
    CartFull,
    #[error("this Idempotency-Key was already used for a different order")]
    IdempotencyKeyReused,
    #[error("order storage failed")]
    Store(#[from] StoreError),
    #[error("the catalog could not be read")]
    Catalog(#[from] InventoryError),
    #[error("the orders actor did not answer")]
    Mailbox(#[from] MailboxError),
    /// Refused unstored: the shop is at its limit (see `actors::admission`).
    #[error(transparent)]
    Overloaded(#[from] Overloaded),
}

/// The shopper's cart: a line per product, in the order they were added.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<Item>, OrderError>")]
pub struct GetCart(pub ShopperId);

/// The order a shopper (or, without one, an API client) placed with this
/// idempotency key, if any.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<Order>, OrderError>")]
pub struct OrderForKey {
    pub key: IdempotencyKey,
    pub shopper: Option<ShopperId>,
}

/// What the shop's pages show of a shopper: the units in their cart, and
/// whether an order of theirs is still undecided.
#[derive(Debug, Message)]
#[rtype(result = "Result<ShopperSummary, OrderError>")]
pub struct GetShopper(pub ShopperId);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShopperSummary {
    pub cart_units: u32,
    pub awaiting: bool,
}

/// Change a line of the shopper's cart. `Add` checks what it adds: a product
/// the shop does not sell, or a new line in a cart that has [`Items::MAX`]
/// already, is refused. `Set` changes only a line that is there; `Remove`
/// takes a line out.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), OrderError>")]
pub struct ChangeCart {
    pub shopper: ShopperId,
    pub product_id: ProductId,
    pub edit: CartEdit,
}

/// Place an order for its items, paid with the card when one is given (else
/// the simulated provider decides as its settings say).
#[derive(Debug, Message)]
#[rtype(result = "Result<Placed, OrderError>")]
pub struct PlaceOrder {
    pub items: Items,
    pub card: Option<Card>,
    /// Checked out from the shopper's cart: the lines it buys leave the cart
    /// when the order is stored.
    pub from_cart: bool,
    pub idempotency_key: Option<IdempotencyKey>,
    /// The browser placing it, when it comes from the storefront.
    pub shopper: Option<ShopperId>,
    /// The id of the request that placed it: every log line of its saga
    /// carries it.
    pub request_id: Option<String>,
    /// Its place among the orders in flight, held by its saga until the order
    /// is decided; an order that waited past the place's deadline is refused
    /// unstored. [`Actors::place`](super::Actors::place) gives it one;
    /// `None` for orders that are not counted (tests of one actor).
    pub admitted: Option<Admitted>,
}

#[derive(Debug, Clone)]
pub struct Placed {
    pub order: Order,
    /// True when the idempotency key matched an earlier order, which is returned.
    pub replayed: bool,
}

#[derive(Debug, Message)]
#[rtype(result = "Result<Option<Order>, OrderError>")]
pub struct GetOrder(pub OrderId);

/// Follow an order's progress: the events recorded after `after_seq` (0 for all)
/// and a live feed of the events committed from now on. `None` for an unknown order.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<OrderWatch>, OrderError>")]
pub struct WatchOrder {
    pub order_id: OrderId,
    pub after_seq: u32,
}

pub struct OrderWatch {
    /// The order as it is now.
    pub order: Order,
    /// Recorded events after `after_seq`, in order.
    pub missed: Vec<OrderEvent>,
    /// This order's events committed since the watch began (the watcher skips what
    /// `missed` already held, by `seq`). The feed ends when the watcher falls
    /// behind; it re-reads what it missed with a new watch.
    pub live: Watch,
}

/// The orders a shopper placed from the storefront, newest first.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<Order>, OrderError>")]
pub struct ListShopperOrders {
    pub shopper: ShopperId,
    pub limit: u32,
}

/// The most recent orders, newest first, of one status or of any: the admin's
/// view of the shop.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<Order>, OrderError>")]
pub struct ListOrders {
    pub status: Option<OrderStatus>,
    pub limit: u32,
}

/// An order with every event it has recorded, oldest first; `None` for an
/// unknown order.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<(Order, Vec<OrderEvent>)>, OrderError>")]
pub struct GetOrderTimeline(pub OrderId);

/// The orders whose sagas are stalled, newest first.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<StalledOrder>, OrderError>")]
pub struct ListStalled {
    pub limit: u32,
}

/// Retry the order's saga now instead of at its next retry; false when its saga
/// does not run in this process (another instance's, or none).
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct RetryNow(pub OrderId);

/// Resume the sagas of the unfinished orders this process should drive (every one
/// with SQLite; the stalled ones with Postgres, see `Store::claim_unfinished_orders`,
/// which also keeps the lease of the sagas running here). Answers how many were
/// resumed.
#[derive(Debug, Message)]
#[rtype(result = "Result<usize, OrderError>")]
pub struct ResumeUnfinished;

pub struct OrdersActor {
    store: Store,
    inventory: Inventory,
    saga: Saga,
    events: broadcast::Sender<OrderEvent>,
    /// Who follows which order; fed from `events` by the dispatcher task.
    watchers: Watchers,
    dispatcher: Option<JoinHandle<()>>,
    /// The orders whose saga runs here, as last committed.
    book: OrderBook,
}

/// How many committed events a live watcher may fall behind before it lags.
const EVENT_BACKLOG: usize = 4096;

impl OrdersActor {
    pub fn new(
        store: Store,
        inventory: Inventory,
        payment: Mailbox<PaymentActor>,
        book: OrderBook,
        settings: SagaSettings,
    ) -> Self {
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        OrdersActor {
            saga: Saga::new(
                store.clone(),
                inventory.addr.clone(),
                payment,
                events.clone(),
                book.clone(),
                settings,
            ),
            store,
            inventory,
            events,
            watchers: Watchers::default(),
            dispatcher: None,
            book,
        }
    }
}

impl Named for OrdersActor {
    const NAME: &'static str = "orders";
}
tracked_handlers!(
    OrdersActor: PlaceOrder,
    GetCart,
    GetShopper,
    OrderForKey,
    ChangeCart,
    GetOrder,
    WatchOrder,
    ListShopperOrders,
    ListOrders,
    GetOrderTimeline,
    ListStalled,
    RetryNow,
    ResumeUnfinished
);

impl Actor for OrdersActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        // Each event committed goes to its order's watchers, and to nobody else.
        let dispatch = self.watchers.clone().dispatch(self.events.subscribe());
        self.dispatcher = Some(actix_rt::spawn(dispatch));
        // Other instances' events reach this one's watchers too.
        self.store.forward_events(self.events.clone());
        // With other instances on the database, one of them may die with orders
        // in flight: claim what is left stalled, now and then.
        if let Some(every) = self.store.claim_interval() {
            ctx.run_interval(every, |_, ctx| ctx.notify(ResumeUnfinished));
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        // The bus outlives the actor (the sagas and the store hold it): the
        // dispatcher ends with the actor, and so does every watcher's feed.
        if let Some(dispatcher) = self.dispatcher.take() {
            dispatcher.abort();
        }
        self.watchers.end_all();
    }
}

impl Handler<PlaceOrder> for OrdersActor {
    type Result = ResponseFuture<Result<Placed, OrderError>>;

    fn handle(&mut self, msg: PlaceOrder, _: &mut Context<Self>) -> Self::Result {
        let catalog = self.inventory.catalog.clone();
        let store = self.store.clone();
        let saga = self.saga.clone();
        let book = self.book.clone();
        Box::pin(async move {
            let admitted = msg.admitted;
            // Waited too long in the mailbox: refuse before anything is stored.
            if let Some(admitted) = &admitted {
                admitted.check_deadline()?;
            }
            // Names and prices as they are now: the order keeps them.
            let mut lines = Vec::new();
            for (line, item) in msg.items.iter().enumerate() {
                let product = catalog.product(&item.product_id).await?.ok_or_else(|| {
                    OrderError::UnknownProduct {
                        product_id: item.product_id.clone(),
                        line,
                    }
                })?;
                lines.push(OrderLine {
                    product_id: product.product_id,
                    product_name: product.product_name,
                    quantity: item.quantity,
                    unit_price: product.price,
                });
            }
            let total_amount = (lines.iter())
                .try_fold(Money::ZERO, |total, line| {
                    total.checked_add(line.line_total())
                })
                .ok_or(OrderError::TotalTooLarge)?;
            // The card goes to the provider; the order keeps its answer only.
            let payment_method = msg.card.as_ref().map(payment::tokenize);
            let new_order = NewOrder {
                order_id: OrderId::generate(),
                lines,
                payment_method: payment_method.clone(),
                total_amount,
                idempotency_key: msg.idempotency_key.map(|key| key.owned_by(msg.shopper)),
                shopper_id: msg.shopper,
                from_cart: msg.from_cart,
                at: Utc::now(),
            };
            let outcome = match &admitted {
                // Still queued for the store at its deadline: refused unstored.
                Some(admitted) => store
                    .create_order_by(new_order, admitted.not_after())
                    .await
                    .map_err(|error| match error {
                        StoreError::Overdue => OrderError::Overloaded(admitted.late()),
                        other => OrderError::Store(other),
                    })?,
                None => store.create_order(new_order).await?,
            };
            match outcome {
                CreateOrderOutcome::Created(order) => {
                    if let Some(admitted) = &admitted {
                        admitted.stored();
                    }
                    tracing::info!(order_id = %order.order_id, lines = order.lines.len(), total = order.total_amount.cents(), "order placed");
                    metrics::counter!(meters::ORDERS_PLACED).increment(1);
                    book.track(order.clone());
                    let run = saga.run(order.clone(), msg.request_id);
                    // The order leaves the orders in flight once it is decided.
                    actix_rt::spawn(async move {
                        run.await;
                        drop(admitted);
                    });
                    Ok(Placed {
                        order,
                        replayed: false,
                    })
                }
                // The same key for the same order: its first answer again.
                CreateOrderOutcome::Existing(order)
                    if msg.items.iter().eq(order.items().iter())
                        && order.payment_method == payment_method =>
                {
                    Ok(Placed {
                        order,
                        replayed: true,
                    })
                }
                CreateOrderOutcome::Existing(_) => Err(OrderError::IdempotencyKeyReused),
                CreateOrderOutcome::CartChanged => Err(OrderError::CartChanged),
            }
        })
    }
}

impl Handler<GetCart> for OrdersActor {
    type Result = ResponseFuture<Result<Vec<Item>, OrderError>>;

    fn handle(&mut self, GetCart(shopper): GetCart, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move { Ok(store.cart(shopper).await?) })
    }
}

impl Handler<OrderForKey> for OrdersActor {
    type Result = ResponseFuture<Result<Option<Order>, OrderError>>;

    fn handle(&mut self, msg: OrderForKey, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let key = msg.key.owned_by(msg.shopper);
        Box::pin(async move { Ok(store.order_by_key(&key).await?) })
    }
}

impl Handler<GetShopper> for OrdersActor {
    type Result = ResponseFuture<Result<ShopperSummary, OrderError>>;

    fn handle(&mut self, GetShopper(shopper): GetShopper, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move {
            let (units, awaiting) = store.shopper_summary(shopper).await?;
            Ok(ShopperSummary {
                cart_units: u32::try_from(units).unwrap_or(u32::MAX),
                awaiting,
            })
        })
    }
}

impl Handler<ChangeCart> for OrdersActor {
    type Result = ResponseFuture<Result<(), OrderError>>;

    fn handle(&mut self, msg: ChangeCart, _: &mut Context<Self>) -> Self::Result {
        let (store, catalog) = (self.store.clone(), self.inventory.catalog.clone());
        Box::pin(async move {
            if let CartEdit::Add(_) = msg.edit {
                if catalog.product(&msg.product_id).await?.is_none() {
                    return Err(OrderError::NotSold(msg.product_id));
                }
                let cart = store.cart(msg.shopper).await?;
                let new_line = !cart.iter().any(|item| item.product_id == msg.product_id);
                if new_line && cart.len() >= Items::MAX {
                    return Err(OrderError::CartFull);
                }
            }
            let change = CartChange {
                shopper_id: msg.shopper,
                product_id: msg.product_id,
                edit: msg.edit,
                at: Utc::now(),
            };
            Ok(store.change_cart(change).await?)
        })
    }
}

impl Handler<GetOrder> for OrdersActor {
    type Result = ResponseFuture<Result<Option<Order>, OrderError>>;

    fn handle(&mut self, GetOrder(order_id): GetOrder, _: &mut Context<Self>) -> Self::Result {
        if let Some(order) = self.book.get(order_id) {
            return Box::pin(async move { Ok(Some(order)) });
        }
        let store = self.store.clone();
        Box::pin(async move { Ok(store.order(order_id).await?) })
    }
}

impl Handler<WatchOrder> for OrdersActor {
    type Result = ResponseFuture<Result<Option<OrderWatch>, OrderError>>;

    fn handle(&mut self, msg: WatchOrder, _: &mut Context<Self>) -> Self::Result {
        // Watch before reading, so that no event falls between the two.
        let live = self.watchers.watch(msg.order_id);
        let store = self.store.clone();
        Box::pin(async move {
            let Some(order) = store.order(msg.order_id).await? else {
                return Ok(None);
            };
            let missed = store.order_events(msg.order_id, msg.after_seq).await?;
            Ok(Some(OrderWatch {
                order,
                missed,
                live,
            }))
        })
    }
}

impl Handler<ListShopperOrders> for OrdersActor {
    type Result = ResponseFuture<Result<Vec<Order>, OrderError>>;

    fn handle(&mut self, msg: ListShopperOrders, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move { Ok(store.shopper_orders(msg.shopper, msg.limit).await?) })
    }
}

impl Handler<ListOrders> for OrdersActor {
    type Result = ResponseFuture<Result<Vec<Order>, OrderError>>;

    fn handle(&mut self, msg: ListOrders, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move { Ok(store.recent_orders(msg.status, msg.limit).await?) })
    }
}

impl Handler<GetOrderTimeline> for OrdersActor {
    type Result = ResponseFuture<Result<Option<(Order, Vec<OrderEvent>)>, OrderError>>;

    fn handle(
        &mut self,
        GetOrderTimeline(order_id): GetOrderTimeline,
        _: &mut Context<Self>,
    ) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move {
            let Some(order) = store.order(order_id).await? else {
                return Ok(None);
            };
            Ok(Some((order, store.order_events(order_id, 0).await?)))
        })
    }
}

impl Handler<ListStalled> for OrdersActor {
    type Result = ResponseFuture<Result<Vec<StalledOrder>, OrderError>>;

    fn handle(&mut self, msg: ListStalled, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move { Ok(store.stalled_orders(msg.limit).await?) })
    }
}

impl Handler<RetryNow> for OrdersActor {
    type Result = bool;

    fn handle(&mut self, RetryNow(order_id): RetryNow, _: &mut Context<Self>) -> bool {
        self.saga.retry_now(order_id)
    }
}

impl Handler<ResumeUnfinished> for OrdersActor {
    type Result = ResponseFuture<Result<usize, OrderError>>;

    fn handle(&mut self, _: ResumeUnfinished, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let saga = self.saga.clone();
        let book = self.book.clone();
        Box::pin(async move {
            let unfinished = store
                .claim_unfinished_orders(&saga.running())
                .await
                // A periodic claim has nobody to answer to: say it here.
                .inspect_err(|error| tracing::warn!(error = %error_chain(error), "could not claim unfinished orders"))?;
            let count = unfinished.len();
            for order in unfinished {
                tracing::info!(order_id = %order.order_id, step = order.step.as_str(), "resuming saga");
                book.track(order.clone());
                actix_rt::spawn(saga.clone().run(order, None));
            }
            Ok(count)
        })
    }
}

#[cfg(test)]
mod tests;
