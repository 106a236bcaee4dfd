//! An order as the shopper follows it: the panel with the saga's steps (live over
//! server-sent events while the order is pending), the outcome notification, the
//! order page, and "my orders".

use maud::{Markup, html};

use super::{Section, page};
use crate::domain::{Order, OrderStatus, OrderStep};

/// An order and the name of what it bought (if the product still exists).
pub struct OrderView<'a> {
    pub order: &'a Order,
    pub product_name: Option<&'a str>,
}

impl OrderView<'_> {
    fn product(&self) -> &str {
        self.product_name.unwrap_or(self.order.product_id.as_str())
    }
}

pub fn order_page(view: &OrderView<'_>) -> Markup {
    page(
        "Your order",
        Section::Orders,
        html! {
            h1 { "Your order" }
            (order_panel(view))
            p { a href="/orders" { "All my orders" } " · " a href="/" { "Keep shopping" } }
        },
    )
}

/// The order with its steps. While it is pending, the panel listens to the order's
/// event stream and the steps and the notification change as the saga moves.
pub fn order_panel(view: &OrderView<'_>) -> Markup {
    let order = view.order;
    let pending = !order.status().is_terminal();
    html! {
        section.order-panel aria-label="Order" {
            dl.order-facts {
                dt { "Order" } dd { a href=(format!("/orders/{}", order.order_id)) { code { (order.order_id) } } }
                dt { "Product" } dd { a href=(format!("/products/{}", order.product_id)) { (view.product()) } }
                dt { "Quantity" } dd { (order.quantity.units()) }
                dt { "Total" } dd { (order.total_amount) }
            }
            @if pending {
                // The page closes the stream itself at the outcome: the stream's end
                // would otherwise be an error to the extension, which would connect
                // again (and hear 204, another error) for as long as the page is open.
                div hx-ext="sse" sse-connect=(format!("/orders/{}/events", order.order_id)) sse-close="outcome" {
                    div sse-swap="step" hx-swap="innerHTML" { (steps(order.step)) }
                    div.notifications role="status" aria-live="polite" sse-swap="outcome" hx-swap="innerHTML" {}
                }
            } @else {
                div { (steps(order.step)) }
                div.notifications role="status" aria-live="polite" { (outcome(view)) }
            }
        }
    }
}

#[derive(Clone, Copy)]
enum State {
    Done,
    Current,
    Failed,
    Todo,
}

/// The saga as a list of steps: placed → stock reserved → payment → outcome.
pub fn steps(step: OrderStep) -> Markup {
    use State::*;
    let (placed, reserved, payment, last, last_label) = match step {
        OrderStep::Placed => (Done, Current, Todo, Todo, "Confirmed"),
        OrderStep::Reserved => (Done, Done, Current, Todo, "Confirmed"),
        OrderStep::Confirmed => (Done, Done, Done, Done, "Confirmed"),
        OrderStep::Rejected => (Done, Failed, Todo, Failed, "Rejected"),
        OrderStep::PaymentFailed => (Done, Done, Failed, Failed, "Payment failed"),
    };
    let item = |label: &str, state: State| {
        let (class, note) = match state {
            Done => ("step done", "done"),
            Current => ("step current", "in progress"),
            Failed => ("step failed", "failed"),
            Todo => ("step todo", "not yet"),
        };
        html! {
            li class=(class) aria-current=[matches!(state, Current).then_some("step")] {
                span.step-label { (label) }
                span.step-state { " (" (note) ")" }
            }
        }
    };
    html! {
        ol.steps aria-label="Order progress" {
            (item("Placed", placed))
            (item("Stock reserved", reserved))
            (item("Payment", payment))
            (item(last_label, last))
        }
    }
}

/// The notification of a decided order: what happened and, if it failed, why.
pub fn outcome(view: &OrderView<'_>) -> Markup {
    let order = view.order;
    html! {
        @match order.status() {
            OrderStatus::Confirmed => div.toast.success {
                strong { "Order confirmed" }
                " — " (order.quantity.units()) " × " (view.product()) ", " (order.total_amount) " paid."
            },
            OrderStatus::Rejected => div.toast.failure {
                strong { "Order rejected" }
                " — " (order.reason.as_deref().unwrap_or("not enough stock")) ". Nothing was charged."
            },
            OrderStatus::PaymentFailed => div.toast.failure {
                strong { "Payment failed" }
                " — " (order.reason.as_deref().unwrap_or("the payment was declined")) ". Nothing was charged."
            },
            OrderStatus::Pending => {},
        }
    }
}

pub fn my_orders_page(orders: &[OrderView<'_>]) -> Markup {
    page(
        "My orders",
        Section::Orders,
        html! {
            h1 { "My orders" }
            @if orders.is_empty() {
                p.empty { "No orders from this browser yet. " a href="/" { "Browse the catalog" } "." }
            } @else {
                table.orders {
                    caption { "Orders placed from this browser, newest first" }
                    thead { tr { th scope="col" { "Placed" } th scope="col" { "Product" } th scope="col" { "Quantity" } th scope="col" { "Total" } th scope="col" { "Status" } } }
                    tbody {
                        @for view in orders {
                            tr {
                                td { (view.order.created_at.format("%Y-%m-%d %H:%M UTC")) }
                                td { (view.product()) }
                                td { (view.order.quantity.units()) }
                                td { (view.order.total_amount) }
                                td { a href=(format!("/orders/{}", view.order.order_id)) { (status_label(view.order.status())) } }
                            }
                        }
                    }
                }
            }
        },
    )
}

pub fn status_label(status: OrderStatus) -> &'static str {
    match status {
        OrderStatus::Pending => "Pending",
        OrderStatus::Confirmed => "Confirmed",
        OrderStatus::Rejected => "Rejected",
        OrderStatus::PaymentFailed => "Payment failed",
    }
}
