//! `#[on_each_backend]` and `#[on_postgres]`: a test written once, run once per
//! database. `async fn a_story() { .. }` stays as written and gains a module of
//! the same name with a test per backend (`a_story::sqlite`, `a_story::postgres`)
//! that runs it through `support::run_on`, which sets the backend that
//! `support::test_database` and `spawn_app` use.

use proc_macro::{TokenStream, TokenTree};

/// Runs the test on SQLite and on Postgres.
#[proc_macro_attribute]
pub fn on_each_backend(_: TokenStream, test: TokenStream) -> TokenStream {
    on(&["Sqlite", "Postgres"], test)
}

/// Runs the test on Postgres only.
#[proc_macro_attribute]
pub fn on_postgres(_: TokenStream, test: TokenStream) -> TokenStream {
    on(&["Postgres"], test)
}

fn on(backends: &[&str], test: TokenStream) -> TokenStream {
    let mut tokens = test.clone().into_iter();
    let is_fn = |token: &TokenTree| matches!(token, TokenTree::Ident(i) if i.to_string() == "fn");
    let name = match (tokens.find(is_fn), tokens.next()) {
        (Some(_), Some(TokenTree::Ident(name))) => name,
        _ => {
            return r#"compile_error!("a backend attribute goes on an `async fn`");"#
                .parse()
                .unwrap_or_default();
        }
    };
    let cases: String = backends
        .iter()
        .map(|backend| {
            format!(
                "#[::actix_web::test] async fn {}() {{ \
                 ::support::run_on(::support::Backend::{backend}, super::{name}()).await }}",
                backend.to_lowercase()
            )
        })
        .collect();
    let cases: TokenStream = format!("mod {name} {{ {cases} }}")
        .parse()
        .unwrap_or_default();
    test.into_iter().chain(cases).collect()
}
