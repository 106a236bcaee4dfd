//! Static assets, compiled into the binary and served under content-hashed URLs
//! (`/static/app.3f9a0c1d2e4b.css`), so that browsers may cache them for a year
//! and a new build is fetched at once. Nothing is loaded from another origin.

use std::sync::LazyLock;

use sha2::{Digest, Sha256};

pub struct Asset {
    /// The name views refer to it by.
    pub name: &'static str,
    /// The URL path it is served at, with its content hash.
    pub path: String,
    /// A strong ETag: the content hash.
    pub etag: String,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

pub const STYLESHEET: &str = "app.css";
pub const HTMX: &str = "htmx.js";
pub const HTMX_SSE: &str = "htmx-sse.js";
/// Swagger UI, which renders the OpenAPI document at `/api/docs`; the script
/// of ours that starts it (the CSP allows no inline script), and our colours
/// over its own.
pub const SWAGGER_UI: &str = "swagger-ui.js";
pub const SWAGGER_UI_CSS: &str = "swagger-ui.css";
pub const API_DOCS: &str = "api-docs.js";
pub const API_DOCS_CSS: &str = "api-docs.css";

static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    [
        (
            STYLESHEET,
            "text/css; charset=utf-8",
            &include_bytes!("../static/app.css")[..],
        ),
        (
            HTMX,
            "text/javascript; charset=utf-8",
            &include_bytes!("../static/vendor/htmx-2.0.11.min.js")[..],
        ),
        (
            HTMX_SSE,
            "text/javascript; charset=utf-8",
            &include_bytes!("../static/vendor/htmx-ext-sse-2.2.4.js")[..],
        ),
        (
            SWAGGER_UI,
            "text/javascript; charset=utf-8",
            &include_bytes!("../static/vendor/swagger-ui-bundle-5.35.0.js")[..],
        ),
        (
            SWAGGER_UI_CSS,
            "text/css; charset=utf-8",
            &include_bytes!("../static/vendor/swagger-ui-5.35.0.css")[..],
        ),
        (
            API_DOCS,
            "text/javascript; charset=utf-8",
            &include_bytes!("../static/api-docs.js")[..],
        ),
        (
            API_DOCS_CSS,
            "text/css; charset=utf-8",
            &include_bytes!("../static/api-docs.css")[..],
        ),
    ]
    .into_iter()
    .map(|(name, content_type, bytes)| {
        let digest = Sha256::digest(bytes);
        let hash: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        let (stem, extension) = name.rsplit_once('.').unwrap_or((name, ""));
        Asset {
            name,
            path: format!("/static/{stem}.{hash}.{extension}"),
            etag: format!("\"{hash}\""),
            content_type,
            bytes,
        }
    })
    .collect()
});

/// The URL of an asset, by name. An unknown name is a programming error, caught by
/// the tests that render every page; it yields a URL that answers 404.
pub fn url(name: &str) -> &'static str {
    ASSETS
        .iter()
        .find(|asset| asset.name == name)
        .map_or("/static/missing", |asset| asset.path.as_str())
}

/// The asset served at `path`, if any.
pub fn at_path(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_hashed_url_that_finds_it() {
        for name in [
            STYLESHEET,
            HTMX,
            HTMX_SSE,
            SWAGGER_UI,
            SWAGGER_UI_CSS,
            API_DOCS,
            API_DOCS_CSS,
        ] {
            let path = url(name);
            assert_ne!(path, "/static/missing");
            assert!(at_path(path).is_some_and(|asset| asset.name == name));
        }
        assert!(url(HTMX).ends_with(".js"));
    }
}
