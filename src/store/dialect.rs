//! The one mechanism that lets a write's SQL be written once for both backends.
//!
//! Every set-based statement takes its rows as one JSON array bound to `$1`, and
//! names them with `#ROWS(column type, …)`: a table `x` with those columns, one
//! row per array element. Each backend renders that its own way, once per
//! statement: Postgres with `json_to_recordset`, SQLite with `json_each` and
//! `json_extract` (a third cheaper there than `->>`; its UUIDs are 16-byte blobs,
//! decoded with `unhex`). `#LOCK` becomes `FOR UPDATE` on Postgres, where other
//! instances write too, and nothing on SQLite, whose one writer holds the
//! database. Everything else is SQL both accept as it stands. The statement's
//! text is the same for any number of rows, so it is prepared once per
//! connection; SQLite's own `VALUES` lists, a parameter per value, made a new
//! text for every batch size, and preparing those cost more than the JSON.
//!
//! The rows are the write's own values, serialized as serde has them: a UUID as
//! hyphenated text (which SQLite `unhex`es, skipping the hyphens), a time as RFC
//! 3339 text (which sqlx-sqlite's reads decode), integers and text as themselves.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

use serde::Serialize;

use super::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    /// The backend's name, as metrics label it.
    pub(super) fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::Sqlite => "sqlite",
        }
    }

    /// The statement as this backend runs it; rendered once, then kept, so that
    /// the driver's cache of prepared statements finds it by the same text.
    pub(super) fn sql(self, template: &'static str) -> &'static str {
        static RENDERED: OnceLock<Mutex<HashMap<(Dialect, &'static str), &'static str>>> =
            OnceLock::new();
        let mut rendered = RENDERED
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        rendered
            .entry((self, template))
            .or_insert_with(|| Box::leak(self.render(template).into_boxed_str()))
    }

    fn render(self, template: &str) -> String {
        let lock = match self {
            Dialect::Postgres => "FOR UPDATE",
            Dialect::Sqlite => "",
        };
        let mut out = String::with_capacity(template.len() + 64);
        let mut rest = template;
        while let Some(at) = rest.find("#ROWS(") {
            out.push_str(&rest[..at]);
            let after = &rest[at + "#ROWS(".len()..];
            let end = after.find(')').unwrap_or(after.len());
            out.push_str(&self.rows(&after[..end]));
            rest = after.get(end + 1..).unwrap_or("");
        }
        out.push_str(rest);
        out.replace("#LOCK", lock)
    }

    /// `name type, …` as a row source named `x`.
    fn rows(self, columns: &str) -> String {
        let columns: Vec<(&str, &str)> = columns
            .split(',')
            .filter_map(|column| column.trim().split_once(' '))
            .map(|(name, kind)| (name.trim(), kind.trim()))
            .collect();
        match self {
            Dialect::Postgres => {
                let typed: Vec<String> = columns
                    .iter()
                    .map(|(name, kind)| {
                        let kind = match *kind {
                            "int" => "bigint",
                            "time" => "timestamptz",
                            other => other,
                        };
                        format!("{name} {kind}")
                    })
                    .collect();
                format!("json_to_recordset($1::json) AS x({})", typed.join(", "))
            }
            Dialect::Sqlite => {
                let read: Vec<String> = columns
                    .iter()
                    .map(|(name, kind)| match *kind {
                        "uuid" => format!("unhex(json_extract(value, '$.{name}'), '-') AS {name}"),
                        _ => format!("json_extract(value, '$.{name}') AS {name}"),
                    })
                    .collect();
                format!("(SELECT {} FROM json_each($1)) AS x", read.join(", "))
            }
        }
    }
}

/// The rows as the JSON array a statement takes.
pub(super) fn json<T: Serialize>(rows: &[T]) -> Result<String, StoreError> {
    serde_json::to_string(rows).map_err(|e| super::corrupt("rows for a statement", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = "SELECT product_id FROM product \
        WHERE product_id IN (SELECT product_id FROM #ROWS(product_id text, order_id uuid, n int, at time)) #LOCK";

    #[test]
    fn postgres_reads_the_rows_with_json_to_recordset_and_locks() {
        assert_eq!(
            Dialect::Postgres.render(TEMPLATE),
            "SELECT product_id FROM product WHERE product_id IN (SELECT product_id FROM \
             json_to_recordset($1::json) AS x(product_id text, order_id uuid, n bigint, at timestamptz)) FOR UPDATE"
        );
    }

    #[test]
    fn sqlite_reads_the_rows_with_json_each_and_does_not_lock() {
        assert_eq!(
            Dialect::Sqlite.render(TEMPLATE),
            "SELECT product_id FROM product WHERE product_id IN (SELECT product_id FROM \
             (SELECT json_extract(value, '$.product_id') AS product_id, \
             unhex(json_extract(value, '$.order_id'), '-') AS order_id, \
             json_extract(value, '$.n') AS n, json_extract(value, '$.at') AS at \
             FROM json_each($1)) AS x) "
        );
    }

    #[test]
    fn a_rendering_is_kept() {
        assert!(std::ptr::eq(
            Dialect::Sqlite.sql(TEMPLATE),
            Dialect::Sqlite.sql(TEMPLATE)
        ));
    }
}
