//! A person as the letters see them, read back from the campaign database.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::domain::Category;

/// Everything a letter may say about a person, plus the delivery it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    pub id: i64,
    pub person_ref: String,
    pub notice_id: String,
    /// The address of the current delivery generation (may differ from the imported one after
    /// a resend to the alternative address).
    pub email: Option<String>,
    pub civility: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub language: String,
    pub address_line1: Option<String>,
    pub address_line2: Option<String>,
    pub postcode: Option<String>,
    pub city: Option<String>,
    pub country: Option<String>,
    pub phone_masked: Option<String>,
    pub identifier_masked: Option<String>,
    pub exposed: Vec<Category>,
    pub extra: serde_json::Map<String, serde_json::Value>,
    pub generation: i64,
}

/// The columns `from_row` reads, for `SELECT {PERSON_COLUMNS} FROM people p JOIN deliveries d ...`.
pub const PERSON_COLUMNS: &str = "p.id, p.ref, p.notice_id, COALESCE(d.email, p.email), p.civility, p.first_name, p.last_name, p.language, p.address_line1, p.address_line2, p.postcode, p.city, p.country, p.phone_masked, p.identifier_masked, p.exposed, p.extra, d.generation";

impl Person {
    pub fn from_row(row: &SqliteRow) -> anyhow::Result<Person> {
        let exposed: String = row.try_get(15)?;
        let extra: String = row.try_get(16)?;
        let extra = match serde_json::from_str(&extra)? {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        Ok(Person {
            id: row.try_get(0)?,
            person_ref: row.try_get(1)?,
            notice_id: row.try_get(2)?,
            email: row.try_get(3)?,
            civility: row.try_get(4)?,
            first_name: row.try_get(5)?,
            last_name: row.try_get(6)?,
            language: row.try_get(7)?,
            address_line1: row.try_get(8)?,
            address_line2: row.try_get(9)?,
            postcode: row.try_get(10)?,
            city: row.try_get(11)?,
            country: row.try_get(12)?,
            phone_masked: row.try_get(13)?,
            identifier_masked: row.try_get(14)?,
            exposed: Category::parse_list(&exposed)?,
            extra,
            generation: row.try_get(17)?,
        })
    }

    /// "Marie Dupont", or None when no name is known.
    pub fn display_name(&self) -> Option<String> {
        let parts: Vec<&str> = [self.first_name.as_deref(), self.last_name.as_deref()]
            .into_iter()
            .flatten()
            .filter(|p| !p.is_empty())
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    }
}
