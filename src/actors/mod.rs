//! The three long-lived actors and their wiring. Each owns its domain and its
//! tables; they talk only through typed messages. Work that waits (the database, a
//! simulated payment) runs in its own task, never inside a handler, so no mailbox
//! stalls on I/O.

pub mod book;
pub mod inventory;
pub mod orders;
pub mod payment;
mod saga;

use actix::prelude::*;

use book::OrderBook;
use inventory::{Inventory, InventoryActor, InventoryError};
use orders::OrdersActor;
use payment::{PaymentActor, PaymentSettings};

use crate::store::Store;

/// The addresses of the running actors, handed to the HTTP layer as app data.
#[derive(Clone)]
pub struct Actors {
    pub orders: Addr<OrdersActor>,
    /// The orders whose saga runs here: read them without a message.
    pub order_book: OrderBook,
    pub inventory: Inventory,
    pub payment: Addr<PaymentActor>,
}

impl Actors {
    /// Starts the actors on the current arbiter. Orders and Payment know each other
    /// (the saga charges; a charge checks its order), so Orders' address is made
    /// before either starts.
    pub async fn start(store: Store, payment: PaymentSettings) -> Result<Actors, InventoryError> {
        let inventory = InventoryActor::start(store.clone()).await?;
        let orders_context = Context::<OrdersActor>::new();
        let payment =
            PaymentActor::new(store.clone(), orders_context.address().recipient(), payment).start();
        let order_book = OrderBook::default();
        let orders = orders_context.run(OrdersActor::new(
            store,
            inventory.clone(),
            payment.clone(),
            order_book.clone(),
        ));
        Ok(Actors {
            orders,
            order_book,
            inventory,
            payment,
        })
    }
}
