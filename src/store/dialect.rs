//! The one mechanism that lets a write's SQL be written once for both backends.
//!
//! Every set-based statement names its rows with `#ROWS(column type, …)`: a
//! table `x` with those columns, one row per row of the write. Each backend
//! renders that its own way, once per statement and row type:
//!
//! - Postgres takes the rows as one JSON array of objects bound to `$1`, read by
//!   `json_to_recordset`: one parameter, however many rows, so the statement is
//!   prepared once per connection and a batch's statement is one round trip.
//! - SQLite takes them as a `VALUES` list of bound parameters, padded with
//!   empty rows to a power of two so that each statement has a handful of
//!   texts to prepare; a leading column marks the real rows. SQLite has no
//!   round trips to save, and reading JSON (`json_each`, `json_extract`) had
//!   cost its one writer thread as much as the statements' own work. Which
//!   value of a row a column is comes from the row type's field names, so a
//!   column is bound by name on both backends.
//!
//! `#LOCK` becomes `FOR UPDATE` on Postgres, where other instances write too,
//! and nothing on SQLite, whose one writer holds the database. Everything else
//! is SQL both accept as it stands.
//!
//! The rows are the write's own values, serialized as serde has them: a time as
//! RFC 3339 text (which sqlx-sqlite's reads decode), integers and text as
//! themselves, a UUID as hyphenated text for Postgres and as its 16 bytes for
//! SQLite, which stores it so.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

use rusqlite::types::Value;
use serde::Serialize;
use serde::ser::{self, Impossible, SerializeMap, SerializeStruct};

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
}

/// Postgres: the statement, and its rows as one JSON array of objects.
pub(super) fn postgres<R: Serialize>(
    template: &'static str,
    rows: &[R],
) -> Result<(&'static str, String), StoreError> {
    let json = serde_json::to_string(rows).map_err(|e| rows_error(&e))?;
    let sql = rendered((Dialect::Postgres, template, "", 0), || {
        render(template, "FOR UPDATE", |columns| {
            let typed: Vec<String> = columns
                .map(|(name, kind)| {
                    let kind = match kind {
                        "int" => "bigint",
                        "time" => "timestamptz",
                        other => other,
                    };
                    Ok(format!("{name} {kind}"))
                })
                .collect::<Result<_, StoreError>>()?;
            Ok(format!(
                "json_to_recordset($1::json) AS x({})",
                typed.join(", ")
            ))
        })
    })?;
    Ok((sql, json))
}

/// SQLite takes at most 32,766 parameters in a statement.
const SQLITE_PARAMETERS: usize = 32_766;

/// SQLite: the statement and its rows' values, as many statements as it takes
/// to stay under SQLite's limit on parameters (one, unless a batch carries
/// thousands of rows).
pub(super) fn sqlite<R: Serialize>(
    template: &'static str,
    rows: &[R],
) -> Result<Vec<(&'static str, Vec<Value>)>, StoreError> {
    // Only the fields the statement reads: a write's other fields may be of
    // types no column holds (its lines, say).
    let wanted: Vec<&str> = row_columns(template).map(|(name, _)| name).collect();
    let mut fields = Fields {
        wanted: &wanted,
        names: Vec::with_capacity(wanted.len()),
        first: true,
        key: None,
        values: Vec::with_capacity(rows.len() * (wanted.len() + 1)),
    };
    for (done, row) in rows.iter().enumerate() {
        fields.values.push(Value::Integer(1));
        row.serialize(&mut fields).map_err(|e| rows_error(&e))?;
        fields.first = false;
        // Every row must bring the same fields, or its values would land in
        // another row's columns.
        if fields.values.len() != (done + 1) * (fields.names.len() + 1) {
            return Err(rows_error(
                &"a row whose fields differ from the first row's",
            ));
        }
    }
    let Fields { names, values, .. } = fields;
    let width = names.len() + 1;
    let most = 1 << (SQLITE_PARAMETERS / width).max(1).ilog2();
    let row_type = std::any::type_name::<R>();
    let mut statements = Vec::with_capacity(1);
    let mut values = values.into_iter();
    for start in (0..rows.len()).step_by(most) {
        let count = most.min(rows.len() - start);
        let padded = count.next_power_of_two();
        let sql =
            rendered((Dialect::Sqlite, template, row_type, padded), || {
                render(template, "", |columns| {
                    let read: Vec<String> =
                        columns
                            .map(|(name, _)| {
                                let at = names.iter().position(|field| field == name).ok_or_else(
                                    || rows_error(&format!("the rows have no field {name:?}")),
                                )?;
                                Ok(format!("column{} AS {name}", at + 2))
                            })
                            .collect::<Result<_, StoreError>>()?;
                    let row = format!("({})", vec!["?"; width].join(", "));
                    Ok(format!(
                        "(SELECT {} FROM (VALUES {}) WHERE column1 IS NOT NULL) AS x",
                        read.join(", "),
                        vec![row; padded].join(", ")
                    ))
                })
            })?;
        let mut params: Vec<Value> = values.by_ref().take(count * width).collect();
        params.resize(padded * width, Value::Null);
        statements.push((sql, params));
    }
    Ok(statements)
}

fn rows_error(error: &dyn std::fmt::Display) -> StoreError {
    super::corrupt("rows for a statement", error)
}

/// A statement as rendered for a backend, row type and number of rows: kept, so
/// that the driver's cache of prepared statements finds it by the same text.
fn rendered(
    key: (Dialect, &'static str, &'static str, usize),
    render: impl FnOnce() -> Result<String, StoreError>,
) -> Result<&'static str, StoreError> {
    type Rendered = HashMap<(Dialect, &'static str, &'static str, usize), &'static str>;
    static RENDERED: OnceLock<Mutex<Rendered>> = OnceLock::new();
    let mut kept = RENDERED
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(sql) = kept.get(&key) {
        return Ok(sql);
    }
    let sql: &'static str = Box::leak(render()?.into_boxed_str());
    kept.insert(key, sql);
    Ok(sql)
}

/// The template with each `#ROWS(…)` replaced by the row source that `rows`
/// makes of its `(name, type)` columns, and `#LOCK` by `lock`.
fn render<'t>(
    template: &'t str,
    lock: &str,
    rows: impl Fn(&mut dyn Iterator<Item = (&'t str, &'t str)>) -> Result<String, StoreError>,
) -> Result<String, StoreError> {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(at) = rest.find("#ROWS(") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#ROWS(".len()..];
        let end = after.find(')').unwrap_or(after.len());
        out.push_str(&rows(&mut columns(&after[..end]))?);
        rest = after.get(end + 1..).unwrap_or("");
    }
    out.push_str(rest);
    Ok(out.replace("#LOCK", lock))
}

/// The `(name, type)` columns that the template's `#ROWS(…)` name, in order.
fn row_columns(template: &str) -> impl Iterator<Item = (&str, &str)> {
    (template.split("#ROWS(").skip(1))
        .flat_map(|after| columns(&after[..after.find(')').unwrap_or(after.len())]))
}

/// `name type, …` as `(name, type)` pairs.
fn columns(list: &str) -> impl Iterator<Item = (&str, &str)> {
    list.split(',')
        .filter_map(|column| column.trim().split_once(' '))
        .map(|(name, kind)| (name.trim(), kind.trim()))
}

/// Serializes rows (structs, or maps where a struct flattens another) into
/// SQLite values: the wanted fields' values in field order, and the first row's
/// field names. Not human-readable, so that a UUID is its 16 bytes, as SQLite
/// stores it.
struct Fields<'w> {
    wanted: &'w [&'w str],
    names: Vec<String>,
    first: bool,
    key: Option<String>,
    values: Vec<Value>,
}

impl Fields<'_> {
    fn field<T: ?Sized + Serialize>(&mut self, key: &str, value: &T) -> Result<(), RowError> {
        if self.wanted.contains(&key) {
            self.values.push(value.serialize(Cell)?);
            if self.first {
                self.names.push(key.to_owned());
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct RowError(String);

impl ser::Error for RowError {
    fn custom<T: std::fmt::Display>(message: T) -> Self {
        RowError(message.to_string())
    }
}

fn unsupported<T>(what: &str) -> Result<T, RowError> {
    Err(RowError(format!("a row cannot hold {what}")))
}

/// Refuses everything but what `only` names.
macro_rules! refuse {
    ($($method:ident($($arg:ty),*) -> $ok:ty;)*) => {
        $(fn $method(self, $(_: $arg),*) -> Result<$ok, RowError> {
            unsupported(stringify!($method))
        })*
    };
}

impl ser::Serializer for &mut Fields<'_> {
    type Ok = ();
    type Error = RowError;
    type SerializeSeq = Impossible<(), RowError>;
    type SerializeTuple = Impossible<(), RowError>;
    type SerializeTupleStruct = Impossible<(), RowError>;
    type SerializeTupleVariant = Impossible<(), RowError>;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), RowError>;

    fn is_human_readable(&self) -> bool {
        false
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, RowError> {
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, RowError> {
        Ok(self)
    }
    fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<(), RowError> {
        unsupported("an option")
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<(), RowError> {
        unsupported("a newtype")
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), RowError> {
        unsupported("a variant")
    }
    refuse! {
        serialize_bool(bool) -> ();
        serialize_i8(i8) -> ();
        serialize_i16(i16) -> ();
        serialize_i32(i32) -> ();
        serialize_i64(i64) -> ();
        serialize_u8(u8) -> ();
        serialize_u16(u16) -> ();
        serialize_u32(u32) -> ();
        serialize_u64(u64) -> ();
        serialize_f32(f32) -> ();
        serialize_f64(f64) -> ();
        serialize_char(char) -> ();
        serialize_str(&str) -> ();
        serialize_bytes(&[u8]) -> ();
        serialize_none() -> ();
        serialize_unit() -> ();
        serialize_unit_struct(&'static str) -> ();
        serialize_unit_variant(&'static str, u32, &'static str) -> ();
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant;
    }
}

impl SerializeStruct for &mut Fields<'_> {
    type Ok = ();
    type Error = RowError;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), RowError> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), RowError> {
        Ok(())
    }
}

impl SerializeMap for &mut Fields<'_> {
    type Ok = ();
    type Error = RowError;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), RowError> {
        match key.serialize(Cell)? {
            Value::Text(key) => self.key = Some(key),
            _ => return unsupported("a key that is not text"),
        }
        Ok(())
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), RowError> {
        match self.key.take() {
            Some(key) => self.field(&key, value),
            None => unsupported("a value without a key"),
        }
    }
    fn end(self) -> Result<(), RowError> {
        Ok(())
    }
}

/// Integers as they are.
macro_rules! integers {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method(self, v: $ty) -> Result<Value, RowError> {
            Ok(Value::Integer(v.into()))
        })*
    };
}

/// One column's value.
struct Cell;

impl ser::Serializer for Cell {
    type Ok = Value;
    type Error = RowError;
    type SerializeSeq = Impossible<Value, RowError>;
    type SerializeTuple = Impossible<Value, RowError>;
    type SerializeTupleStruct = Impossible<Value, RowError>;
    type SerializeTupleVariant = Impossible<Value, RowError>;
    type SerializeMap = Impossible<Value, RowError>;
    type SerializeStruct = Impossible<Value, RowError>;
    type SerializeStructVariant = Impossible<Value, RowError>;

    fn is_human_readable(&self) -> bool {
        false
    }
    integers! {
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
    }
    fn serialize_u64(self, v: u64) -> Result<Value, RowError> {
        i64::try_from(v)
            .map(Value::Integer)
            .or_else(|_| unsupported("an integer past i64"))
    }
    fn serialize_f32(self, v: f32) -> Result<Value, RowError> {
        Ok(Value::Real(v.into()))
    }
    fn serialize_f64(self, v: f64) -> Result<Value, RowError> {
        Ok(Value::Real(v))
    }
    fn serialize_char(self, v: char) -> Result<Value, RowError> {
        Ok(Value::Text(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Value, RowError> {
        Ok(Value::Text(v.to_owned()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Value, RowError> {
        Ok(Value::Blob(v.to_vec()))
    }
    fn serialize_none(self) -> Result<Value, RowError> {
        Ok(Value::Null)
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<Value, RowError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value, RowError> {
        Ok(Value::Null)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Value, RowError> {
        Ok(Value::Null)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Value, RowError> {
        Ok(Value::Text(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Value, RowError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Value, RowError> {
        unsupported("a variant with a value")
    }
    refuse! {
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant;
        serialize_map(Option<usize>) -> Self::SerializeMap;
        serialize_struct(&'static str, usize) -> Self::SerializeStruct;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = "SELECT product_id FROM product \
        WHERE product_id IN (SELECT product_id FROM #ROWS(product_id text, order_id uuid, n int, at time)) #LOCK";

    /// The order every row is for.
    const ORDER: u128 = 0x0193a0b2_0000_7000_8000_000000000001;

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
        order_id: uuid::Uuid,
        product_id: Option<&'static str>,
    }

    fn rows(count: usize) -> Vec<Row> {
        (0..count)
            .map(|n| Row {
                at: "2026-12-02T00:00:00Z",
                n: n as i64,
                ids: Ids {
                    order_id: uuid::Uuid::from_u128(ORDER),
                    product_id: Some("tea").filter(|_| n % 2 == 0),
                },
            })
            .collect()
    }

    #[test]
    fn postgres_reads_rows_as_objects_with_json_to_recordset_and_locks() {
        let (sql, rows) = postgres(TEMPLATE, &rows(1)).unwrap();
        assert_eq!(
            sql,
            "SELECT product_id FROM product WHERE product_id IN (SELECT product_id FROM \
             json_to_recordset($1::json) AS x(product_id text, order_id uuid, n bigint, at timestamptz)) FOR UPDATE"
        );
        assert_eq!(
            rows,
            r#"[{"at":"2026-12-02T00:00:00Z","n":0,"order_id":"0193a0b2-0000-7000-8000-000000000001","product_id":"tea"}]"#
        );
    }

    #[test]
    fn sqlite_binds_rows_as_values_by_their_field_names_padded_and_does_not_lock() {
        let statements = sqlite(TEMPLATE, &rows(3)).unwrap();
        let [(sql, values)] = statements.as_slice() else {
            panic!("one statement, not {}", statements.len());
        };
        let row = "(?, ?, ?, ?, ?)";
        assert_eq!(
            *sql,
            format!(
                "SELECT product_id FROM product WHERE product_id IN (SELECT product_id FROM \
                 (SELECT column5 AS product_id, column4 AS order_id, column3 AS n, \
                 column2 AS at FROM (VALUES {row}, {row}, {row}, {row}) WHERE column1 IS NOT NULL) AS x) "
            )
        );
        let id = || Value::Blob(ORDER.to_be_bytes().to_vec());
        let at = || Value::Text("2026-12-02T00:00:00Z".into());
        let tea = || Value::Text("tea".into());
        #[rustfmt::skip]
        assert_eq!(*values, [
            Value::Integer(1), at(), Value::Integer(0), id(), tea(),
            Value::Integer(1), at(), Value::Integer(1), id(), Value::Null,
            Value::Integer(1), at(), Value::Integer(2), id(), tea(),
            Value::Null, Value::Null, Value::Null, Value::Null, Value::Null,
        ]);
    }

    #[test]
    fn sqlite_rows_past_its_parameter_limit_take_more_statements() {
        // Five values a row: 6,553 rows fit, of which a power of two: 4,096.
        let statements = sqlite(TEMPLATE, &rows(5_000)).unwrap();
        let sizes: Vec<usize> = statements
            .iter()
            .map(|(_, values)| values.len() / 5)
            .collect();
        assert_eq!(sizes, [4_096, 1_024]);
        let real: usize = (statements.iter().flat_map(|(_, values)| values.iter()))
            .filter(|value| **value == Value::Integer(1))
            .count();
        assert!(real >= 5_000, "every row is bound");
    }

    #[test]
    fn rows_that_bring_different_fields_are_an_error_not_shifted_values() {
        #[derive(Serialize)]
        struct Sparse {
            product_id: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            n: Option<i64>,
        }
        let template = "SELECT * FROM #ROWS(product_id text, n int)";
        let rows =
            [("tea", Some(1)), ("cocoa", None)].map(|(product_id, n)| Sparse { product_id, n });
        assert!(sqlite(template, &rows).is_err());
    }

    #[test]
    fn a_column_the_rows_lack_is_an_error_not_a_null() {
        #[derive(Serialize)]
        struct Short {
            product_id: &'static str,
        }
        let rows = [Short { product_id: "tea" }];
        assert!(sqlite(TEMPLATE, &rows).is_err());
    }

    #[test]
    fn a_rendering_is_kept() {
        let (first, _) = postgres(TEMPLATE, &rows(1)).unwrap();
        let (again, _) = postgres(TEMPLATE, &rows(2)).unwrap();
        assert!(std::ptr::eq(first, again));
        let first = sqlite(TEMPLATE, &rows(3)).unwrap()[0].0;
        let again = sqlite(TEMPLATE, &rows(4)).unwrap()[0].0;
        assert!(std::ptr::eq(first, again));
    }
}
