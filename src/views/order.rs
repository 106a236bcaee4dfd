//! An order as the shopper follows it: the panel with the saga's steps (live over
//! server-sent events while the order is pending), the outcome notification, the
//! order page, and "my orders".

use maud::{Markup, html};

use super::{Section, Shopping, shop_page};
use crate::domain::{Order, OrderStatus, OrderStep};

pub fn order_page(order: &Order, shopping: Shopping) -> Markup {
    shop_page(
        "Your order",
        Section::Orders,
        shopping,
        html! {
            h1 { "Your order" }
            (order_panel(order))
            p { a href="/orders" { "All my orders" } " · " a href="/" { "Keep shopping" } }
        },
    )
}

/// The order with its steps. While it is pending, the panel listens to the order's
/// event stream and the steps and the notification change as the saga moves.
pub fn order_panel(order: &Order) -> Markup {
    let pending = !order.status().is_terminal();
    html! {
        section.order-panel aria-label="Order" {
            dl.order-facts {
                dt { "Order" } dd { a href=(format!("/orders/{}", order.order_id)) { code { (order.order_id) } } }
                @if let Some(method) = &order.payment_method {
                    dt { "Paid with" } dd { (method.brand.label()) " ending in " (method.last4) }
                }
            }
            (lines(order))
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
                div.notifications role="status" aria-live="polite" { (outcome(order)) }
            }
        }
    }
}

/// The order's lines as they were placed, and its total.
pub fn lines(order: &Order) -> Markup {
    html! {
        table.lines {
            caption.visually-hidden { "What the order buys" }
            thead { tr { th scope="col" { "Product" } th scope="col" { "Quantity" } th scope="col" { "Price" } th scope="col" { "Line total" } } }
            tbody {
                @for line in &order.lines {
                    tr {
                        td { a href=(format!("/products/{}", line.product_id)) { (line.product_name.as_str()) } }
                        td { (line.quantity.units()) }
                        td { (line.unit_price.money()) }
                        td { (line.line_total()) }
                    }
                }
            }
            tfoot { tr { th scope="row" colspan="3" { "Total" } td { (order.total_amount) } } }
        }
    }
}

/// What an order buys, in a few words: "2 × Ceramic mug", or "5 items of 2
/// products".
pub fn summary(order: &Order) -> String {
    match order.single_line() {
        Some(line) => format!("{} × {}", line.quantity.units(), line.product_name.as_str()),
        None => {
            let units: u32 = order.lines.iter().map(|line| line.quantity.units()).sum();
            format!("{units} items of {} products", order.lines.len())
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
pub fn outcome(order: &Order) -> Markup {
    html! {
        @match order.status() {
            OrderStatus::Confirmed => div.toast.success {
                strong { "Order confirmed" }
                " — " (summary(order)) ", " (order.total_amount) " paid."
            },
            OrderStatus::Rejected => div.toast.failure {
                strong { "Order rejected" }
                " — " (order.reason.as_deref().unwrap_or("not enough stock")) ". Nothing was charged."
                (again(order))
            },
            OrderStatus::PaymentFailed => div.toast.failure {
                strong { "Payment failed" }
                " — " (order.reason.as_deref().unwrap_or("the payment was declined")) ". Nothing was charged."
                (again(order))
            },
            OrderStatus::Pending => {},
        }
    }
}

/// The outcome of one of the shopper's orders as a toast, wherever they are:
/// what happened, and a link to the order.
pub fn toast(order: &Order) -> Markup {
    html! {
        div.toast-item {
            (outcome(order))
            a href=(format!("/orders/{}", order.order_id)) { "View order " (summary(order)) }
        }
    }
}

/// A failed order's way back: its lines into the cart again, to change them
/// or pay with another card.
fn again(order: &Order) -> Markup {
    html! {
        form.again method="post" action=(format!("/orders/{}/cart", order.order_id)) {
            button.secondary type="submit" { "Put these back in my cart" }
        }
    }
}

pub fn my_orders_page(orders: &[Order], shopping: Shopping) -> Markup {
    shop_page(
        "My orders",
        Section::Orders,
        shopping,
        html! {
            h1 { "My orders" }
            @if orders.is_empty() {
                p.empty { "No orders from this browser yet. " a href="/" { "Browse the catalog" } "." }
            } @else {
                table.orders {
                    caption { "Orders placed from this browser, newest first" }
                    thead { tr { th scope="col" { "Placed" } th scope="col" { "Items" } th scope="col" { "Total" } th scope="col" { "Status" } } }
                    tbody {
                        @for order in orders {
                            tr {
                                td { (order.created_at.format("%Y-%m-%d %H:%M UTC")) }
                                td {
                                    ul.order-lines {
                                        @for line in &order.lines {
                                            li { (line.quantity.units()) " × " (line.product_name.as_str()) " — " (line.line_total()) }
                                        }
                                    }
                                }
                                td { (order.total_amount) }
                                td { a href=(format!("/orders/{}", order.order_id)) { (status_label(order.status())) } }
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
