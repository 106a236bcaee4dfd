//! The catalog, a product's page, and the buy form they share.

use maud::{Markup, html};

use super::{Section, Shopping, availability, shop_page};
use crate::domain::{IdempotencyKey, Product, ProductId, Quantity};

/// One page of the catalog.
pub struct CatalogView<'a> {
    pub products: &'a [Product],
    pub next_after: Option<&'a ProductId>,
    /// Whether this is not the first page.
    pub paged: bool,
    /// A fresh idempotency key per product form, so each purchase is one order.
    pub keys: &'a [IdempotencyKey],
    pub shopping: Shopping,
}

pub fn catalog_page(view: &CatalogView<'_>) -> Markup {
    let ids: Vec<&str> = view
        .products
        .iter()
        .map(|p| p.product_id.as_str())
        .collect();
    shop_page(
        "Catalog",
        Section::Catalog,
        view.shopping,
        html! {
            h1 { "Catalog" }
            @if view.products.is_empty() {
                p.empty { "Nothing is for sale yet." }
            } @else {
                (stock_poller(&ids))
                ul.product-grid role="list" {
                    @for (product, key) in view.products.iter().zip(view.keys) {
                        li { (product_card(product, key)) }
                    }
                }
            }
            nav.pager aria-label="Catalog pages" {
                @if view.paged { a href="/" { "First page" } }
                @if let Some(after) = view.next_after {
                    a href=(format!("/?after={after}")) rel="next" { "Next page" }
                }
            }
        },
    )
}

fn product_card(product: &Product, key: &IdempotencyKey) -> Markup {
    html! {
        article.product-card aria-labelledby=(format!("name-{}", product.product_id)) {
            h2 id=(format!("name-{}", product.product_id)) {
                a href=(format!("/products/{}", product.product_id)) { (product.product_name.as_str()) }
            }
            p.price { (product.price.money()) }
            p { (availability(product, false)) }
            (buy_form(product, key, None))
            div.order-slot id=(format!("slot-{}", product.product_id)) {}
        }
    }
}

/// Polls every few seconds for the availability of the products on the page, and
/// swaps each badge and Buy button in place.
fn stock_poller(ids: &[&str]) -> Markup {
    html! {
        div hidden hx-get=(format!("/fragments/availability?ids={}", ids.join(",")))
            hx-trigger="every 5s" hx-swap="none" {}
    }
}

/// What a buy form says besides its fields, after a post that placed nothing.
#[derive(Debug, Clone, Copy)]
pub enum FormNote<'a> {
    /// The quantity was refused, and why.
    Refused(&'a str),
    /// The shop refused the order for now ([`BUSY`]); the form keeps the
    /// quantity asked for (and its key, which placed nothing).
    Busy { quantity: Quantity },
}

/// What a shopper reads when the shop sheds a buy.
pub const BUSY: &str = "The shop is very busy; try again in a few seconds";

/// The busy notice, where the order would have appeared (htmx) or under the
/// form (a page).
pub fn busy_notice() -> Markup {
    html! { p.field-error.busy role="alert" { (BUSY) } }
}

pub fn product_page(
    product: &Product,
    key: &IdempotencyKey,
    note: Option<FormNote<'_>>,
    shopping: Shopping,
) -> Markup {
    shop_page(
        product.product_name.as_str(),
        Section::Catalog,
        shopping,
        html! {
            p.breadcrumb { a href="/" { "← Catalog" } }
            article.product-detail {
                h1 { (product.product_name.as_str()) }
                p.price { (product.price.money()) }
                p { (availability(product, false)) }
                (stock_poller(&[product.product_id.as_str()]))
                (buy_form(product, key, note))
                div.order-slot id=(format!("slot-{}", product.product_id)) {}
            }
        },
    )
}

/// The buy form. Without JavaScript it posts and the server redirects to the
/// order (Buy now) or the cart (Add to cart); with htmx the order panel, or a
/// note of what was added, appears in the product's slot. The hidden
/// idempotency key makes a double click or a resubmitted form one order.
pub fn buy_form(product: &Product, key: &IdempotencyKey, note: Option<FormNote<'_>>) -> Markup {
    let id = product.product_id.as_str();
    let max = product.stock.units().clamp(1, i64::from(Quantity::MAX));
    let (error, quantity) = match note {
        Some(FormNote::Refused(error)) => (Some(error), 1),
        Some(FormNote::Busy { quantity }) => (None, quantity.units()),
        None => (None, 1),
    };
    html! {
        form.buy-form method="post" action="/orders"
            hx-post="/orders" hx-target=(format!("#slot-{id}")) hx-swap="innerHTML"
            hx-disabled-elt="find button" {
            input type="hidden" name="product_id" value=(id);
            (key_input(product, key, false))
            label for=(format!("quantity-{id}")) { "Quantity" }
            input id=(format!("quantity-{id}")) type="number" name="quantity" value=(quantity)
                min="1" max=(max) required
                aria-invalid=[error.map(|_| "true")]
                aria-describedby=[error.map(|_| format!("quantity-error-{id}"))];
            (buy_button(product, false))
            (cart_button(product, false))
            @if let Some(error) = error {
                p.field-error id=(format!("quantity-error-{id}")) role="alert" { (error) }
            }
            @if matches!(note, Some(FormNote::Busy { .. })) {
                (busy_notice())
            }
        }
    }
}

/// The hidden idempotency key of a product's form; `oob` replaces it after a
/// purchase so that the next one is a new order.
pub fn key_input(product: &Product, key: &IdempotencyKey, oob: bool) -> Markup {
    html! {
        input type="hidden" name="idempotency_key" value=(key.as_str())
            id=(format!("key-{}", product.product_id))
            hx-swap-oob=[oob.then_some("true")];
    }
}

/// The Buy button, disabled when the product is sold out.
pub fn buy_button(product: &Product, oob: bool) -> Markup {
    let sold_out = product.stock.units() == 0;
    html! {
        button id=(format!("buy-{}", product.product_id)) type="submit"
            disabled[sold_out] hx-swap-oob=[oob.then_some("true")] {
            @if sold_out { "Sold out" } @else { "Buy" }
        }
    }
}

/// The Add to cart button: it posts the same form to the cart.
pub fn cart_button(product: &Product, oob: bool) -> Markup {
    let sold_out = product.stock.units() == 0;
    html! {
        button.secondary id=(format!("add-{}", product.product_id)) type="submit"
            formaction="/cart" hx-post="/cart" hx-disabled-elt="this"
            disabled[sold_out] hx-swap-oob=[oob.then_some("true")] {
            "Add to cart"
        }
    }
}

/// The answer to an availability poll: out-of-band swaps only.
pub fn availability_fragment(products: &[Product]) -> Markup {
    html! {
        @for product in products {
            (availability(product, true))
            (buy_button(product, true))
            (cart_button(product, true))
        }
    }
}
