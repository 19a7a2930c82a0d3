//! A person as the letters see them, read back from the campaign database.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::domain::{Category, Email, NoticeId, PersonRef};

/// Everything a letter may say about a person, plus the delivery it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    pub id: i64,
    pub person_ref: PersonRef,
    pub notice_id: NoticeId,
    /// The address of the current delivery generation (may differ from the imported one after
    /// a resend to the alternative address).
    pub email: Option<Email>,
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

impl Person {
    /// Reads a row of [`crate::store::people::PERSON_COLUMNS`], by column name. The ref, the
    /// notice id and the address are checked again as they are read: a value edited in the
    /// database by hand that no letter could carry stops here, naming the person, instead of
    /// reaching a header.
    pub fn from_row(row: &SqliteRow) -> anyhow::Result<Person> {
        let exposed: String = row.try_get("exposed")?;
        let extra: String = row.try_get("extra")?;
        let extra = match serde_json::from_str(&extra)? {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        Ok(Person {
            id: row.try_get("id")?,
            person_ref: row.try_get("ref")?,
            notice_id: row.try_get("notice_id")?,
            email: row.try_get("email")?,
            civility: row.try_get("civility")?,
            first_name: row.try_get("first_name")?,
            last_name: row.try_get("last_name")?,
            language: row.try_get("language")?,
            address_line1: row.try_get("address_line1")?,
            address_line2: row.try_get("address_line2")?,
            postcode: row.try_get("postcode")?,
            city: row.try_get("city")?,
            country: row.try_get("country")?,
            phone_masked: row.try_get("phone_masked")?,
            identifier_masked: row.try_get("identifier_masked")?,
            exposed: Category::parse_list(&exposed)?,
            extra,
            generation: row.try_get("generation")?,
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
