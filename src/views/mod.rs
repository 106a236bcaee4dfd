//! The storefront's HTML: plain functions from view data to `Markup`. maud escapes
//! every value it renders; nothing here marks user data as pre-escaped.
//!
//! Pages work without JavaScript (plain links and form posts); htmx, when it is
//! there, swaps fragments in place and follows an order's progress over
//! server-sent events.

pub mod admin;
pub mod api_docs;
pub mod cart;
pub mod catalog;
pub mod errors;
pub mod order;

use maud::{DOCTYPE, Markup, html};

use crate::assets;
use crate::domain::{OrderId, Product, Stock};

/// Which part of the site a page belongs to, to mark it in the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Catalog,
    Cart,
    Orders,
    Admin,
    None,
}

/// What a shop page's frame shows of its shopper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shopping {
    /// Units in the shopper's cart, for the header.
    pub cart_units: u32,
    /// Whether the shopper has an order not yet decided: the page then
    /// listens for its outcome, to show it as a toast.
    pub awaiting: bool,
    /// When the page was made (Unix milliseconds): an order decided since
    /// then, before the page listened, is told too.
    pub since_ms: i64,
    /// An order the page shows itself, live: not told again as a toast.
    pub except: Option<OrderId>,
}

impl Shopping {
    /// Where the page listens for the outcomes of the shopper's orders.
    fn events_url(&self) -> String {
        match self.except {
            Some(order_id) => format!("/orders/events?since={}&except={order_id}", self.since_ms),
            None => format!("/orders/events?since={}", self.since_ms),
        }
    }
}

/// The frame around every page.
pub fn page(title: &str, section: Section, body: Markup) -> Markup {
    frame(title, section, None, html! {}, body)
}

/// The frame around a page of the shop: the header counts the shopper's
/// cart, and outcomes of their orders appear as toasts.
pub fn shop_page(title: &str, section: Section, shopping: Shopping, body: Markup) -> Markup {
    frame(title, section, Some(shopping), html! {}, body)
}

/// The frame, with what one page alone needs in its `<head>` (its own
/// stylesheets and scripts) after the site's own.
pub fn page_with_head(title: &str, section: Section, head: Markup, body: Markup) -> Markup {
    frame(title, section, None, head, body)
}

/// The header's count of the units in the cart; `oob` marks it for an
/// out-of-band swap after the cart changed.
pub fn cart_count(units: u32, oob: bool) -> Markup {
    html! {
        span #cart-count .cart-count hx-swap-oob=[oob.then_some("true")] {
            @if units > 0 { span aria-hidden="true" { "(" (units) ")" } }
            span.visually-hidden { (units) " " (if units == 1 { "item" } else { "items" }) }
        }
    }
}

/// Where the outcomes of the shopper's orders appear. While an order is
/// undecided it listens to the shopper's event stream (one per shopper, for
/// all their orders); `oob` replaces the region after an order was placed.
pub fn toasts(shopping: &Shopping, oob: bool) -> Markup {
    let listen = shopping.awaiting.then(|| shopping.events_url());
    html! {
        div #toasts .toasts role="status" aria-live="polite" hx-swap-oob=[oob.then_some("true")]
            hx-ext=[listen.as_ref().map(|_| "sse")] sse-connect=[listen]
            sse-swap=[shopping.awaiting.then_some("outcome")]
            hx-swap=[shopping.awaiting.then_some("beforeend")]
            sse-close=[shopping.awaiting.then_some("done")] {}
    }
}

/// What a change to the cart did, for a screen reader (a live region that is
/// on every shop page); `oob` replaces its text.
pub fn cart_status(said: &str, oob: bool) -> Markup {
    html! {
        p #cart-status .visually-hidden role="status" hx-swap-oob=[oob.then_some("true")] { (said) }
    }
}

fn frame(
    title: &str,
    section: Section,
    shopping: Option<Shopping>,
    head: Markup,
    body: Markup,
) -> Markup {
    let nav_link = |href: &str, label: &str, this: Section| {
        html! {
            @if section == this {
                a href=(href) aria-current="page" { (label) }
            } @else {
                a href=(href) { (label) }
            }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // htmx would otherwise add an inline <style>, which the CSP forbids.
                // Besides htmx's defaults, the buy form's refusals are swapped in
                // where the order would have appeared: a refused quantity (422)
                // and "the shop is very busy" (503), which keep the form as it was.
                meta name="htmx-config" content=(HTMX_CONFIG);
                title { (title) " · minimart" }
                link rel="stylesheet" href=(assets::url(assets::STYLESHEET));
                script src=(assets::url(assets::HTMX)) defer {}
                script src=(assets::url(assets::HTMX_SSE)) defer {}
                (head)
            }
            body {
                a.skip-link href="#main" { "Skip to content" }
                header.site-header {
                    a.brand href="/" { "minimart" }
                    nav aria-label="Main" {
                        (nav_link("/", "Catalog", Section::Catalog))
                        a href="/cart" aria-current=[(section == Section::Cart).then_some("page")] {
                            "Cart " @if let Some(s) = shopping { (cart_count(s.cart_units, false)) }
                        }
                        (nav_link("/orders", "My orders", Section::Orders))
                        (nav_link("/admin", "Admin", Section::Admin))
                    }
                }
                main #main tabindex="-1" { (body) }
                @if let Some(shopping) = shopping {
                    (toasts(&shopping, false))
                    (cart_status("", false))
                }
                footer.site-footer {
                    p { "minimart: a small, real shop. Payments are simulated; nothing is charged." }
                    p { a href="/api/docs" { "API documentation" } }
                }
            }
        }
    }
}

/// "In stock", "Only 3 left" or "Sold out", for shoppers.
pub fn availability_text(stock: Stock) -> String {
    match stock.units() {
        0 => "Sold out".to_owned(),
        n @ 1..=5 => format!("Only {n} left"),
        _ => "In stock".to_owned(),
    }
}

/// The availability badge of a product. `oob` marks it for an out-of-band swap,
/// so that one poll refreshes every badge on a page.
pub fn availability(product: &Product, oob: bool) -> Markup {
    let class = match product.stock.units() {
        0 => "badge sold-out",
        1..=5 => "badge low",
        _ => "badge in-stock",
    };
    html! {
        span id=(format!("availability-{}", product.product_id))
            class=(class)
            hx-swap-oob=[oob.then_some("true")] {
            (availability_text(product.stock))
        }
    }
}

/// htmx's settings, as JSON in `<meta name="htmx-config">`.
const HTMX_CONFIG: &str = r#"{"includeIndicatorStyles":false,"allowEval":false,"responseHandling":[{"code":"204","swap":false},{"code":"[23]..","swap":true},{"code":"422","swap":true,"error":false},{"code":"503","swap":true,"error":false},{"code":"[45]..","swap":false,"error":true},{"code":"...","swap":false}]}"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn availability_reads_like_a_shop() {
        let stock = |n| Stock::parse(n).expect("stock");
        assert_eq!(availability_text(stock(0)), "Sold out");
        assert_eq!(availability_text(stock(1)), "Only 1 left");
        assert_eq!(availability_text(stock(5)), "Only 5 left");
        assert_eq!(availability_text(stock(6)), "In stock");
    }
}
