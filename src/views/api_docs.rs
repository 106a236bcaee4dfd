//! The API's documentation page: Swagger UI (vendored, see static/vendor/)
//! renders the OpenAPI document in the page's container, started by
//! static/api-docs.js. Without JavaScript the page still links the document.

use maud::{Markup, html};

use super::{Section, page_with_head};
use crate::assets;

/// `document` is the URL of the OpenAPI document to render.
pub fn api_docs(document: &str) -> Markup {
    page_with_head(
        "API documentation",
        Section::None,
        html! {
            link rel="stylesheet" href=(assets::url(assets::SWAGGER_UI_CSS));
            link rel="stylesheet" href=(assets::url(assets::API_DOCS_CSS));
            script src=(assets::url(assets::SWAGGER_UI)) defer {}
            script src=(assets::url(assets::API_DOCS)) defer {}
        },
        html! {
            h1 { "API documentation" }
            p {
                "The JSON API's OpenAPI 3.1 document, "
                a href=(document) { code { (document) } }
                ", rendered by Swagger UI."
            }
            div #swagger-ui data-openapi=(document) {}
        },
    )
}
