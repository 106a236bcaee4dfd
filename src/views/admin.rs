//! The admin pages: sign in with the admin token, list products, add and edit
//! them with errors shown beside the field, sign out. Every form carries the
//! session's CSRF token.

use maud::{Markup, Render, html};

use super::order::status_label;
use super::{Section, page};
use crate::domain::{Order, OrderEvent, OrderStatus, Product};
use crate::store::StalledOrder;

/// What was typed into a product form, and what is wrong with it, field by field.
#[derive(Debug, Default, Clone)]
pub struct ProductForm {
    pub product_id: String,
    pub product_name: String,
    /// Dollars and cents as typed, e.g. `12.50`.
    pub price: String,
    pub stock: String,
    pub errors: Vec<(&'static str, String)>,
}

impl ProductForm {
    pub fn from_product(product: &Product) -> ProductForm {
        let cents = product.price.money().cents();
        ProductForm {
            product_id: product.product_id.to_string(),
            product_name: product.product_name.as_str().to_owned(),
            price: format!("{}.{:02}", cents / 100, cents % 100),
            stock: product.stock.units().to_string(),
            errors: Vec::new(),
        }
    }

    fn error(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|(name, _)| *name == field)
            .map(|(_, message)| message.as_str())
    }
}

pub fn sign_in_page(error: Option<&str>) -> Markup {
    page(
        "Admin sign-in",
        Section::Admin,
        html! {
            h1 { "Admin sign-in" }
            form.admin-form method="post" action="/admin/sign-in" {
                label for="token" { "Admin token" }
                input #token type="password" name="token" autocomplete="current-password" required
                    aria-invalid=[error.map(|_| "true")]
                    aria-describedby=[error.map(|_| "token-error")];
                @if let Some(error) = error {
                    p.field-error #token-error role="alert" { (error) }
                }
                button type="submit" { "Sign in" }
            }
            p.hint { "The token is MINIMART_ADMIN_TOKEN, or the one the server logged at start." }
        },
    )
}

/// The product list and the form to add one.
pub fn dashboard(
    products: &[Product],
    new_product: &ProductForm,
    csrf: &str,
    notice: Option<&str>,
) -> Markup {
    let rows: Vec<Markup> = (products.iter())
        .map(|product| html! {
            tr {
                td { code { (product.product_id) } }
                td { (product.product_name.as_str()) }
                td { (product.price.money()) }
                td { (product.stock.units()) }
                td { a href=(format!("/admin/products/{}", product.product_id)) aria-label=(format!("Edit {}", product.product_name.as_str())) { "Edit" } }
            }
        })
        .collect();
    page(
        "Admin",
        Section::Admin,
        html! {
            (admin_head("Products", csrf, false))
            (notice_line(notice))
            (listing("products", "Every product in the catalog", &["Id", "Name", "Price", "Stock", "Actions"], &rows, "No products yet."))
            h2 { "Add a product" }
            (product_form("/admin/products", new_product, csrf, true))
        },
    )
}

pub fn edit_page(form: &ProductForm, csrf: &str) -> Markup {
    page(
        "Edit product",
        Section::Admin,
        html! {
            p.breadcrumb { a href="/admin" { "← Products" } }
            h1 { "Edit " code { (form.product_id) } }
            (product_form(&format!("/admin/products/{}", form.product_id), form, csrf, false))
        },
    )
}

fn product_form(action: &str, form: &ProductForm, csrf: &str, with_id: bool) -> Markup {
    html! {
        form.admin-form method="post" action=(action) novalidate {
            input type="hidden" name="csrf" value=(csrf);
            @if with_id {
                (field("product_id", "Product id", "text", &form.product_id, form.error("product_id"), Some("Letters, digits, - and _; at most 64.")))
            } @else {
                input type="hidden" name="product_id" value=(form.product_id);
            }
            (field("product_name", "Name", "text", &form.product_name, form.error("product_name"), None))
            (field("price", "Price ($)", "text", &form.price, form.error("price"), Some("For example 12.50")))
            (field("stock", "Stock", "number", &form.stock, form.error("stock"), None))
            button type="submit" { @if with_id { "Add product" } @else { "Save" } }
        }
    }
}

fn field(
    name: &str,
    label: &str,
    kind: &str,
    value: &str,
    error: Option<&str>,
    hint: Option<&str>,
) -> Markup {
    let id = format!("field-{name}");
    let error_id = format!("{id}-error");
    let hint_id = format!("{id}-hint");
    let described: Vec<&str> = [
        hint.map(|_| hint_id.as_str()),
        error.map(|_| error_id.as_str()),
    ]
    .into_iter()
    .flatten()
    .collect();
    html! {
        div.field {
            label for=(id) { (label) }
            input id=(id) type=(kind) name=(name) value=(value)
                inputmode=[(name == "price").then_some("decimal")]
                aria-invalid=[error.map(|_| "true")]
                aria-describedby=[(!described.is_empty()).then(|| described.join(" "))];
            @if let Some(hint) = hint {
                p.hint id=(hint_id) { (hint) }
            }
            @if let Some(error) = error {
                p.field-error id=(error_id) { (error) }
            }
        }
    }
}

/// A signed-in page's heading with the sign-out button beside it, then the way
/// between the admin's two lists (`orders`: on the orders' side).
fn admin_head(title: impl Render, csrf: &str, orders: bool) -> Markup {
    html! {
        div.admin-head {
            h1 { (title) }
            form method="post" action="/admin/sign-out" {
                input type="hidden" name="csrf" value=(csrf);
                button.secondary type="submit" { "Sign out" }
            }
        }
        nav.admin-nav aria-label="Admin" {
            a href="/admin" aria-current=[(!orders).then_some("page")] { "Products" }
            " · "
            a href="/admin/orders" aria-current=[orders.then_some("page")] { "Orders" }
        }
    }
}

fn notice_line(notice: Option<&str>) -> Markup {
    html! {
        @if let Some(notice) = notice {
            p.notice role="status" { (notice) }
        }
    }
}

/// A list as a table with a caption and a heading per column (the `Actions`
/// column's for screen readers only), or `empty` when it has no rows.
fn listing(class: &str, caption: &str, columns: &[&str], rows: &[Markup], empty: &str) -> Markup {
    html! {
        @if rows.is_empty() {
            p.empty { (empty) }
        } @else {
            table class=(class) {
                caption { (caption) }
                thead { tr { @for column in columns { th scope="col" { @if *column == "Actions" { span.visually-hidden { (column) } } @else { (column) } } } } }
                tbody { @for row in rows { (row) } }
            }
        }
    }
}

/// The orders page's filters: all, by status, stalled.
fn order_filters(status: Option<OrderStatus>, stalled: bool) -> Markup {
    let filter = |label: &str, href: String, current: bool| {
        html! { li { a href=(href) aria-current=[current.then_some("true")] { (label) } } }
    };
    html! {
        ul.filters aria-label="Show orders by status" {
            (filter("All", "/admin/orders".to_owned(), status.is_none() && !stalled))
            @for each in OrderStatus::ALL {
                (filter(status_label(each), format!("/admin/orders?status={}", each.as_str()), status == Some(each)))
            }
            (filter("Stalled", "/admin/orders?stalled=1".to_owned(), stalled))
        }
    }
}

/// The most recent orders, of one status or of all.
pub fn orders_page(orders: &[Order], status: Option<OrderStatus>, csrf: &str) -> Markup {
    let rows: Vec<Markup> = (orders.iter())
        .map(|order| html! {
            tr {
                td { a href=(format!("/admin/orders/{}", order.order_id)) { code { (order.order_id) } } }
                td { (order.created_at.format("%Y-%m-%d %H:%M:%S UTC")) }
                td { (super::order::summary(order)) }
                td { (order.total_amount) }
                td { (status_label(order.status())) }
            }
        })
        .collect();
    page(
        "Orders",
        Section::Admin,
        html! {
            (admin_head("Orders", csrf, true))
            (order_filters(status, false))
            (listing("orders", "The most recent orders, newest first", &["Order", "Placed", "Items", "Total", "Status"], &rows, "No orders."))
        },
    )
}

/// An order and its timeline: every step it took, when, and why.
pub fn order_page(order: &Order, events: &[OrderEvent], csrf: &str) -> Markup {
    page(
        "Order",
        Section::Admin,
        html! {
            (admin_head(html! { "Order " code { (order.order_id) } }, csrf, true))
            dl.order-facts {
                dt { "Status" } dd { (status_label(order.status())) }
                @if let Some(method) = &order.payment_method {
                    dt { "Paid with" } dd { (method.brand.label()) " ending in " (method.last4) }
                }
            }
            (super::order::lines(order))
            h2 { "Timeline" }
            ol.timeline {
                @for event in events {
                    li {
                        time datetime=(event.at.to_rfc3339()) { (event.at.format("%Y-%m-%d %H:%M:%S%.3f UTC")) }
                        " " strong { (event.step.as_str()) }
                        @if let Some(reason) = &event.reason { " — " (reason) }
                    }
                }
            }
        },
    )
}

/// The orders whose sagas keep failing: since when, the last error, and a
/// button that retries one now.
pub fn stalled_page(stalled: &[StalledOrder], csrf: &str, notice: Option<&str>) -> Markup {
    let rows: Vec<Markup> = (stalled.iter())
        .map(|stall| html! {
            tr {
                td { a href=(format!("/admin/orders/{}", stall.order.order_id)) { code { (stall.order.order_id) } } }
                td { (stall.order.step.as_str()) }
                td { (stall.since.format("%Y-%m-%d %H:%M:%S UTC")) }
                td { (stall.error) }
                td {
                    form method="post" action=(format!("/admin/orders/{}/retry", stall.order.order_id)) {
                        input type="hidden" name="csrf" value=(csrf);
                        button.secondary type="submit" { "Retry now" }
                    }
                }
            }
        })
        .collect();
    page(
        "Stalled orders",
        Section::Admin,
        html! {
            (admin_head("Stalled orders", csrf, true))
            (order_filters(None, true))
            (notice_line(notice))
            (listing("orders", "Orders whose sagas keep failing; they go on retrying", &["Order", "Step", "Stalled since", "Last error", "Actions"], &rows, "No stalled orders: every saga is making progress."))
        },
    )
}
