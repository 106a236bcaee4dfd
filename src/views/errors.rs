//! Error pages: a shopper never sees a stack trace or raw JSON.

use maud::{Markup, html};

use super::{Section, page};

pub fn error_page(status: u16, title: &str, detail: &str) -> Markup {
    page(
        title,
        Section::None,
        html! {
            h1 { (title) }
            p { (detail) }
            p.error-code { "Error " (status) }
            p { a href="/" { "Back to the catalog" } }
        },
    )
}
