//! The SQLite extract an import may read instead of a CSV: another database, opened read-only,
//! whose one table holds the people. Its columns are whatever the source system exported, so
//! they are read in the table's own order, which [`table_columns`] gives as the header.

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool, ValueRef};

/// A value of the extract as text; Err when it is not text, a number or UTF-8 bytes (the
/// rejection then names its column).
pub type ExtractValue = Result<String, ()>;

/// The names of the table's columns, in its order; empty when there is no such table.
pub async fn table_columns(extract: &SqlitePool, table: &str) -> anyhow::Result<Vec<String>> {
    sqlx::query("SELECT name FROM pragma_table_info(?)")
        .bind(table)
        .fetch_all(extract)
        .await?
        .iter()
        .map(|row| Ok(row.try_get("name")?))
        .collect()
}

/// Reads a table of the extract page by page, each row's values in [`table_columns`] order.
#[derive(Debug, Clone)]
pub struct ExtractPages {
    sql: String,
}

impl ExtractPages {
    /// The table's name is quoted as an identifier, so any name reads that table and only it.
    pub fn new(table: &str) -> ExtractPages {
        ExtractPages {
            sql: format!(
                "SELECT * FROM \"{}\" LIMIT ? OFFSET ?",
                table.replace('"', "\"\"")
            ),
        }
    }

    /// Up to `limit` rows after the first `offset`.
    pub async fn page(
        &self,
        extract: &SqlitePool,
        limit: i64,
        offset: i64,
    ) -> anyhow::Result<Vec<Vec<ExtractValue>>> {
        let rows = sqlx::query(&self.sql)
            .bind(limit)
            .bind(offset)
            .fetch_all(extract)
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                // By position: `SELECT *` of a table whose columns only its header names.
                (0..row.columns().len())
                    .map(|i| value_as_text(row, i))
                    .collect()
            })
            .collect())
    }
}

fn value_as_text(row: &SqliteRow, index: usize) -> ExtractValue {
    let Ok(raw) = row.try_get_raw(index) else {
        return Err(());
    };
    if raw.is_null() {
        return Ok(String::new());
    }
    if let Ok(text) = row.try_get::<String, _>(index) {
        return Ok(text);
    }
    if let Ok(number) = row.try_get::<i64, _>(index) {
        return Ok(number.to_string());
    }
    if let Ok(number) = row.try_get::<f64, _>(index) {
        return Ok(number.to_string());
    }
    match row.try_get::<Vec<u8>, _>(index) {
        Ok(bytes) => String::from_utf8(bytes).map_err(|_| ()),
        Err(_) => Err(()),
    }
}
