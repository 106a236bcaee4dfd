//! The three long-lived actors and their wiring. Each owns its domain and its
//! tables; they talk only through typed messages. Work that waits (the database, a
//! simulated payment) runs in its own task, never inside a handler, so no mailbox
//! stalls on I/O.

pub mod admission;
pub mod book;
pub mod inventory;
pub mod mailbox;
pub mod orders;
pub mod payment;
mod saga;

pub use saga::SagaSettings;
pub mod sessions;
#[cfg(test)]
pub(crate) mod testing;

use std::sync::Arc;

use actix::prelude::*;
use actix_rt::ArbiterHandle;

use admission::{Admission, AdmissionSettings};
use book::OrderBook;
use inventory::{Inventory, InventoryActor, InventoryError};
use mailbox::Mailbox;
use orders::{GetOrder, OrderError, OrdersActor, PlaceOrder, Placed};

use crate::domain::{Order, OrderId};
use payment::{PaymentActor, PaymentSettings};

use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("could not start the actors' thread")]
    Thread(#[source] std::io::Error),
    #[error("could not start the inventory")]
    Inventory(#[from] InventoryError),
}

/// The addresses of the running actors, handed to the HTTP layer as app data.
#[derive(Clone)]
pub struct Actors {
    pub orders: Mailbox<OrdersActor>,
    /// The orders whose saga runs here: [`Actors::order`] reads them without a message.
    order_book: OrderBook,
    pub inventory: Inventory,
    pub payment: Mailbox<PaymentActor>,
    /// The bound on orders in flight, which [`Actors::place`] asks first.
    pub admission: Admission,
    store: Store,
    _thread: Arc<ActorThread>,
}

/// The arbiter the actors and their sagas run on; stopped once the last handle
/// to the actors is gone (a test's app, say), so that it does not outlive them.
struct ActorThread(ArbiterHandle);

impl Drop for ActorThread {
    fn drop(&mut self) {
        self.0.stop();
    }
}

impl Actors {
    /// Whether the actors can do their work: their database answers. (The
    /// actors start only once its migrations are done.)
    pub async fn ready(&self) -> Result<(), crate::store::StoreError> {
        self.store.ping().await
    }

    /// The store's read pool: `(active, idle)` connections.
    pub fn read_pool_connections(&self) -> (u32, u32) {
        self.store.read_pool_connections()
    }

    /// An order as Orders knows it: one whose saga runs here straight from the
    /// book its saga keeps (no message: a shopper's page and its polling ask
    /// often), any other by `GetOrder`.
    pub async fn order(&self, order_id: OrderId) -> Result<Option<Order>, OrderError> {
        match self.order_book.get(order_id) {
            Some(order) => Ok(Some(order)),
            None => self.orders.send(GetOrder(order_id)).await?,
        }
    }

    /// Places an order if the shop admits it: at its bound the order is
    /// refused at once (`OrderError::Overloaded`) and nothing is stored.
    pub async fn place(&self, order: PlaceOrder) -> Result<Placed, OrderError> {
        let admitted = self.admission.admit()?;
        let order = PlaceOrder {
            admitted: Some(admitted),
            ..order
        };
        self.orders.send(order).await?
    }

    /// Starts the actors on an arbiter (a thread) of their own. The caller's
    /// thread keeps what was started there before, such as the store's writer
    /// task: each write is many round trips between that task and the database
    /// connection's thread, and each would otherwise wait its turn behind every
    /// saga ready to run on the same single-threaded runtime.
    ///
    /// Payment knows nobody (a charge brings the order it is for), so it
    /// starts first and Orders, which charges, gets its address.
    pub async fn start(
        store: Store,
        payment: PaymentSettings,
        saga: SagaSettings,
    ) -> Result<Actors, StartError> {
        let arbiter = Arbiter::try_new().map_err(StartError::Thread)?.handle();
        let inventory = InventoryActor::start_in(store.clone(), &arbiter).await?;
        let order_book = OrderBook::default();
        let payment = {
            let store = store.clone();
            Mailbox::new(PaymentActor::start_in_arbiter(&arbiter, move |_| {
                PaymentActor::new(store, payment)
            }))
        };
        let orders = {
            let (store, inventory, order_book, payment) = (
                store.clone(),
                inventory.clone(),
                order_book.clone(),
                payment.clone(),
            );
            Mailbox::new(OrdersActor::start_in_arbiter(&arbiter, move |_| {
                OrdersActor::new(store, inventory, payment, order_book, saga)
            }))
        };
        Ok(Actors {
            orders,
            order_book,
            inventory,
            payment,
            admission: Admission::new(AdmissionSettings::default()),
            store,
            _thread: Arc::new(ActorThread(arbiter)),
        })
    }

    /// The same actors, admitting orders as `settings` say.
    pub fn with_admission(self, settings: AdmissionSettings) -> Actors {
        Actors {
            admission: Admission::new(settings),
            ..self
        }
    }
}
