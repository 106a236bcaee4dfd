//! Counted mailboxes. actix does not say how many messages wait in a mailbox, so
//! the actors' addresses are [`Mailbox`]es: a message sent through one travels
//! wrapped in [`Tracked`], which counts one more in
//! `minimart_actor_mailbox_depth{actor}` when it is sent and one fewer when the
//! handler takes it, or when it is dropped unhandled (its sender went away, the
//! actor stopped). The handler of `Tracked<M>` (`tracked_handlers!`) also times
//! the handler of `M` (`minimart_actor_message_duration_seconds`): the
//! synchronous part only, since handlers hand their waiting to futures.
//!
//! Call sites keep writing `addr.send(message)`. A message sent on the plain
//! [`Addr`] (through `Deref`, as some tests do) is handled as before and simply
//! not counted.

use std::ops::Deref;
use std::sync::OnceLock;

use actix::dev::{Request, ToEnvelope};
use actix::prelude::*;

use crate::meters::{self, GaugeGuard};

/// An actor whose mailbox is counted, under this name.
pub trait Named: Actor {
    const NAME: &'static str;
}

/// An actor's address whose `send` and `do_send` count the message.
pub struct Mailbox<A: Actor> {
    addr: Addr<A>,
    /// The actor's `minimart_actor_mailbox_depth`, looked up once.
    depth: metrics::Gauge,
}

impl<A: Actor> Clone for Mailbox<A> {
    fn clone(&self) -> Self {
        Mailbox {
            addr: self.addr.clone(),
            depth: self.depth.clone(),
        }
    }
}

impl<A: Actor> Deref for Mailbox<A> {
    type Target = Addr<A>;

    fn deref(&self) -> &Addr<A> {
        &self.addr
    }
}

impl<A: Named> Mailbox<A> {
    pub fn new(addr: Addr<A>) -> Mailbox<A> {
        Mailbox {
            addr,
            depth: metrics::gauge!(meters::MAILBOX_DEPTH, "actor" => A::NAME),
        }
    }

    /// Sends the message and waits for its answer, as [`Addr::send`].
    pub fn send<M>(&self, message: M) -> Request<A, Tracked<M>>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<Tracked<M>>,
        A::Context: ToEnvelope<A, Tracked<M>>,
    {
        self.addr.send(self.tracked(message))
    }

    /// Sends the message without waiting, as [`Addr::do_send`].
    pub fn do_send<M>(&self, message: M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<Tracked<M>>,
        A::Context: ToEnvelope<A, Tracked<M>>,
    {
        self.addr.do_send(self.tracked(message))
    }
}

/// A message on its way through a counted mailbox.
pub struct Tracked<M> {
    pub(crate) message: M,
    pub(crate) queued: GaugeGuard,
}

impl<A: Actor> Mailbox<A> {
    fn tracked<M>(&self, message: M) -> Tracked<M> {
        Tracked {
            message,
            queued: GaugeGuard::new(self.depth.clone()),
        }
    }
}

impl<M: Message> Message for Tracked<M> {
    type Result = M::Result;
}

/// The message's type name without its path: `PlaceOrder`.
pub(crate) fn message_name<M>() -> &'static str {
    let name = std::any::type_name::<M>();
    name.rsplit("::").next().unwrap_or(name)
}

/// Records how long a handler took, in the histogram `cell` keeps for its actor
/// and message (looked up once the recorder is installed: nothing to record before).
pub(crate) fn handled<M>(
    cell: &'static OnceLock<metrics::Histogram>,
    actor: &'static str,
    started: std::time::Instant,
) {
    if !meters::installed() {
        return;
    }
    cell.get_or_init(|| {
        metrics::histogram!(
            meters::MESSAGE_DURATION,
            "actor" => actor,
            "message" => message_name::<M>()
        )
    })
    .record(started.elapsed());
}

/// `Handler<Tracked<M>>` for an actor and each message `M` it handles: counts
/// the message out of the mailbox, then runs and times the handler of `M`.
macro_rules! tracked_handlers {
    ($actor:ty: $($message:ty),+ $(,)?) => {$(
        impl ::actix::Handler<$crate::actors::mailbox::Tracked<$message>> for $actor {
            type Result = <Self as ::actix::Handler<$message>>::Result;

            fn handle(
                &mut self,
                tracked: $crate::actors::mailbox::Tracked<$message>,
                ctx: &mut <Self as ::actix::Actor>::Context,
            ) -> Self::Result {
                let $crate::actors::mailbox::Tracked { message, queued } = tracked;
                drop(queued);
                static DURATION: ::std::sync::OnceLock<::metrics::Histogram> =
                    ::std::sync::OnceLock::new();
                let started = ::std::time::Instant::now();
                let result = <Self as ::actix::Handler<$message>>::handle(self, message, ctx);
                $crate::actors::mailbox::handled::<$message>(
                    &DURATION,
                    <Self as $crate::actors::mailbox::Named>::NAME,
                    started,
                );
                result
            }
        }
    )+};
}
pub(crate) use tracked_handlers;
