//! The one mechanism that lets a write's SQL be written once for both backends.
//!
//! Every set-based statement takes its rows as one JSON array bound to `$1`, and
//! names them with `#ROWS(column type, …)`: a table `x` with those columns, one
//! row per array element. Each backend renders that its own way, once per
//! statement and row type: Postgres with `json_to_recordset` over rows as
//! objects; SQLite with `json_each` and `json_extract` over rows as arrays (half
//! the cost of objects there: each row's text is shorter and no key is
//! compared; its UUIDs are 16-byte blobs, decoded with `unhex`). Which element
//! of the array a column is, SQLite learns from the row type's own field names,
//! so a column is still bound by name. `#LOCK` becomes `FOR UPDATE` on Postgres,
//! where other instances write too, and nothing on SQLite, whose one writer
//! holds the database. Everything else is SQL both accept as it stands. The
//! statement's text is the same for any number of rows, so it is prepared once
//! per connection; SQLite's own `VALUES` lists, a parameter per value, made a
//! new text for every batch size, and preparing those cost more than the JSON.
//!
//! The rows are the write's own values, serialized as serde has them: a UUID as
//! hyphenated text (which SQLite `unhex`es, skipping the hyphens), a time as RFC
//! 3339 text (which sqlx-sqlite's reads decode), integers and text as themselves.

use std::collections::HashMap;
use std::io;
use std::sync::{Mutex, OnceLock, PoisonError};

use serde::Serialize;
use serde_json::ser::{CompactFormatter, Formatter, Serializer};

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

    /// The statement as this backend runs it for rows of type `R`, and the rows
    /// as it takes them. The text is rendered once per statement and row type,
    /// then kept, so that the driver's cache of prepared statements finds it by
    /// the same text.
    pub(super) fn bind<R: Serialize>(
        self,
        template: &'static str,
        rows: &[R],
    ) -> Result<(&'static str, String), StoreError> {
        let mut out = Vec::with_capacity(64 * rows.len() + 2);
        let fields = match self {
            Dialect::Postgres => {
                rows.serialize(&mut Serializer::new(&mut out))
                    .map_err(|e| super::corrupt("rows for a statement", e))?;
                Vec::new()
            }
            Dialect::Sqlite => {
                let mut fields = Vec::new();
                let arrays = Arrays {
                    depth: 0,
                    rows: 0,
                    in_key: false,
                    fields: &mut fields,
                };
                rows.serialize(&mut Serializer::with_formatter(&mut out, arrays))
                    .map_err(|e| super::corrupt("rows for a statement", e))?;
                fields
            }
        };
        let rows = String::from_utf8(out).map_err(|e| super::corrupt("rows for a statement", e))?;
        Ok((
            self.sql(template, std::any::type_name::<R>(), &fields)?,
            rows,
        ))
    }

    fn sql(
        self,
        template: &'static str,
        row_type: &'static str,
        fields: &[String],
    ) -> Result<&'static str, StoreError> {
        type Rendered = HashMap<(Dialect, &'static str, &'static str), &'static str>;
        static RENDERED: OnceLock<Mutex<Rendered>> = OnceLock::new();
        let mut rendered = RENDERED
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(sql) = rendered.get(&(self, template, row_type)) {
            return Ok(sql);
        }
        let sql: &'static str = Box::leak(self.render(template, fields)?.into_boxed_str());
        rendered.insert((self, template, row_type), sql);
        Ok(sql)
    }

    fn render(self, template: &str, fields: &[String]) -> Result<String, StoreError> {
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
            out.push_str(&self.rows(&after[..end], fields)?);
            rest = after.get(end + 1..).unwrap_or("");
        }
        out.push_str(rest);
        Ok(out.replace("#LOCK", lock))
    }

    /// `name type, …` as a row source named `x`, over rows with these fields.
    fn rows(self, columns: &str, fields: &[String]) -> Result<String, StoreError> {
        let columns = columns
            .split(',')
            .filter_map(|column| column.trim().split_once(' '))
            .map(|(name, kind)| (name.trim(), kind.trim()));
        let read: Vec<String> = match self {
            Dialect::Postgres => columns
                .map(|(name, kind)| {
                    let kind = match kind {
                        "int" => "bigint",
                        "time" => "timestamptz",
                        other => other,
                    };
                    format!("{name} {kind}")
                })
                .collect(),
            Dialect::Sqlite => columns
                .map(|(name, kind)| {
                    let at = fields
                        .iter()
                        .position(|field| field == name)
                        .ok_or_else(|| {
                            super::corrupt("a statement's rows", format!("no field {name:?}"))
                        })?;
                    let value = format!("json_extract(value, '$[{at}]')");
                    Ok(match kind {
                        "uuid" => format!("unhex({value}, '-') AS {name}"),
                        _ => format!("{value} AS {name}"),
                    })
                })
                .collect::<Result<_, StoreError>>()?,
        };
        Ok(match self {
            Dialect::Postgres => format!("json_to_recordset($1::json) AS x({})", read.join(", ")),
            Dialect::Sqlite => format!("(SELECT {} FROM json_each($1)) AS x", read.join(", ")),
        })
    }
}

/// Writes a list of rows as a list of arrays: each row's values in the order of
/// its fields, whose names (the first row's) it notes.
struct Arrays<'a> {
    depth: usize,
    rows: usize,
    in_key: bool,
    fields: &'a mut Vec<String>,
}

impl Arrays<'_> {
    fn row_level(&self) -> bool {
        self.depth == 2
    }
}

impl Formatter for Arrays<'_> {
    fn begin_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.depth += 1;
        CompactFormatter.begin_array(writer)
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.depth -= 1;
        CompactFormatter.end_array(writer)
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.depth += 1;
        if self.row_level() {
            self.rows += 1;
            return writer.write_all(b"[");
        }
        CompactFormatter.begin_object(writer)
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        let row = self.row_level();
        self.depth -= 1;
        if row {
            return writer.write_all(b"]");
        }
        CompactFormatter.end_object(writer)
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if self.row_level() {
            self.in_key = true;
            if self.rows == 1 {
                self.fields.push(String::new());
            }
        }
        CompactFormatter.begin_object_key(writer, first)
    }

    fn end_object_key<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.in_key = false;
        CompactFormatter.end_object_key(writer)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        if self.row_level() {
            return Ok(());
        }
        CompactFormatter.begin_object_value(writer)
    }

    fn begin_string<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        if self.in_key {
            return Ok(());
        }
        CompactFormatter.begin_string(writer)
    }

    fn end_string<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        if self.in_key {
            return Ok(());
        }
        CompactFormatter.end_string(writer)
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        if self.in_key {
            if self.rows == 1
                && let Some(field) = self.fields.last_mut()
            {
                field.push_str(fragment);
            }
            return Ok(());
        }
        CompactFormatter.write_string_fragment(writer, fragment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = "SELECT product_id FROM product \
        WHERE product_id IN (SELECT product_id FROM #ROWS(product_id text, order_id uuid, n int, at time)) #LOCK";

    /// The columns in another order than the statement names them.
    #[derive(Serialize)]
    struct Row {
        at: &'static str,
        n: i64,
        #[serde(flatten)]
        ids: Ids,
    }

    #[derive(Serialize)]
    struct Ids {
        order_id: &'static str,
        product_id: &'static str,
    }

    fn rows() -> Vec<Row> {
        let row = |n, product_id| Row {
            at: "2026-12-02T00:00:00Z",
            n,
            ids: Ids {
                order_id: "0193a0b2-0000-7000-8000-000000000001",
                product_id,
            },
        };
        vec![row(1, "tea"), row(2, "say \"when\"")]
    }

    #[test]
    fn postgres_reads_rows_as_objects_with_json_to_recordset_and_locks() {
        let (sql, rows) = Dialect::Postgres.bind(TEMPLATE, &rows()).unwrap();
        assert_eq!(
            sql,
            "SELECT product_id FROM product WHERE product_id IN (SELECT product_id FROM \
             json_to_recordset($1::json) AS x(product_id text, order_id uuid, n bigint, at timestamptz)) FOR UPDATE"
        );
        assert!(rows.starts_with(r#"[{"at":"2026-12-02T00:00:00Z","n":1,"order_id":"#));
    }

    #[test]
    fn sqlite_reads_rows_as_arrays_by_their_field_names_and_does_not_lock() {
        let (sql, rows) = Dialect::Sqlite.bind(TEMPLATE, &rows()).unwrap();
        assert_eq!(
            sql,
            "SELECT product_id FROM product WHERE product_id IN (SELECT product_id FROM \
             (SELECT json_extract(value, '$[3]') AS product_id, \
             unhex(json_extract(value, '$[2]'), '-') AS order_id, \
             json_extract(value, '$[1]') AS n, json_extract(value, '$[0]') AS at \
             FROM json_each($1)) AS x) "
        );
        assert_eq!(
            rows,
            r#"[["2026-12-02T00:00:00Z",1,"0193a0b2-0000-7000-8000-000000000001","tea"],["2026-12-02T00:00:00Z",2,"0193a0b2-0000-7000-8000-000000000001","say \"when\""]]"#
        );
    }

    #[test]
    fn a_column_the_rows_lack_is_an_error_not_a_null() {
        #[derive(Serialize)]
        struct Short {
            product_id: &'static str,
        }
        let rows = [Short { product_id: "tea" }];
        assert!(Dialect::Sqlite.bind(TEMPLATE, &rows).is_err());
    }

    #[test]
    fn a_rendering_is_kept() {
        let (first, _) = Dialect::Sqlite.bind(TEMPLATE, &rows()).unwrap();
        let (again, _) = Dialect::Sqlite.bind(TEMPLATE, &rows()).unwrap();
        assert!(std::ptr::eq(first, again));
    }
}
