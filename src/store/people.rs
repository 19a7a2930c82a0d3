//! People as the letters and the import read them: the columns of the letter view, read back by
//! name into a [`crate::person::Person`], and the imported values of a person as one table
//! ([`PERSON_FIELDS`]) that the insert, the update, the comparison with what is already stored and
//! the row hash all follow, so their orders cannot drift apart.

use std::collections::HashMap;

use sqlx::{Row, SqliteConnection};

use crate::domain::{Civility, Email, PersonRef};

/// The columns `Person::from_row` reads, for `SELECT {PERSON_COLUMNS} FROM people p JOIN
/// deliveries d ...`. Each is named, and `from_row` reads them by name, so a query may add
/// columns anywhere.
pub const PERSON_COLUMNS: &str = "p.id AS id, p.ref AS ref, p.notice_id AS notice_id, COALESCE(d.email, p.email) AS email, p.civility AS civility, p.first_name AS first_name, p.last_name AS last_name, p.language AS language, p.address_line1 AS address_line1, p.address_line2 AS address_line2, p.postcode AS postcode, p.city AS city, p.country AS country, p.phone_masked AS phone_masked, p.identifier_masked AS identifier_masked, p.exposed AS exposed, p.extra AS extra, d.generation AS generation";

/// A validated person, ready to be written. Only masked identifier and phone exist here.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPerson {
    pub person_ref: PersonRef,
    pub email: Option<Email>,
    pub alt_email: Option<Email>,
    pub civility: Option<Civility>,
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
    pub exposed: String,
    pub extra: String,
    pub row_hash: String,
}

/// One imported value of a person.
pub struct PersonField {
    /// What the import calls it when it changed (`updated` events name these, never values).
    pub name: &'static str,
    /// The column of `people` that keeps it.
    pub column: &'static str,
    /// A new person's value, as it is bound and compared (None is NULL).
    pub value: fn(&NewPerson) -> Option<&str>,
}

/// Every imported value besides the ref, in the order the row hash covers them: a new order
/// would change every hash, and the next import would see every person as changed.
pub const PERSON_FIELDS: [PersonField; 16] = [
    PersonField {
        name: "email",
        column: "email",
        value: |p| p.email.as_ref().map(Email::as_str),
    },
    PersonField {
        name: "alt_email",
        column: "alt_email",
        value: |p| p.alt_email.as_ref().map(Email::as_str),
    },
    PersonField {
        name: "civility",
        column: "civility",
        value: |p| p.civility.map(Civility::code),
    },
    PersonField {
        name: "first_name",
        column: "first_name",
        value: |p| p.first_name.as_deref(),
    },
    PersonField {
        name: "last_name",
        column: "last_name",
        value: |p| p.last_name.as_deref(),
    },
    PersonField {
        name: "language",
        column: "language",
        value: |p| Some(p.language.as_str()),
    },
    PersonField {
        name: "address_line1",
        column: "address_line1",
        value: |p| p.address_line1.as_deref(),
    },
    PersonField {
        name: "address_line2",
        column: "address_line2",
        value: |p| p.address_line2.as_deref(),
    },
    PersonField {
        name: "postcode",
        column: "postcode",
        value: |p| p.postcode.as_deref(),
    },
    PersonField {
        name: "city",
        column: "city",
        value: |p| p.city.as_deref(),
    },
    PersonField {
        name: "country",
        column: "country",
        value: |p| p.country.as_deref(),
    },
    PersonField {
        name: "phone",
        column: "phone_masked",
        value: |p| p.phone_masked.as_deref(),
    },
    PersonField {
        name: "identifier",
        column: "identifier_masked",
        value: |p| p.identifier_masked.as_deref(),
    },
    PersonField {
        name: "exposed",
        column: "exposed",
        value: |p| Some(p.exposed.as_str()),
    },
    PersonField {
        name: "extra",
        column: "extra",
        value: |p| Some(p.extra.as_str()),
    },
    PersonField {
        name: "email_domain",
        column: "email_domain",
        value: |p| p.email.as_ref().map(Email::domain),
    },
];

impl NewPerson {
    /// Its values in [`PERSON_FIELDS`] order.
    pub fn field_values(&self) -> impl Iterator<Item = Option<&str>> {
        PERSON_FIELDS.iter().map(move |field| (field.value)(self))
    }
}

/// What the database already holds for a ref, to tell new, unchanged and changed rows apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownPerson {
    pub id: i64,
    pub row_hash: String,
    /// The import that last wrote or saw the row.
    pub import_run: i64,
    /// The stored values, in [`PERSON_FIELDS`] order.
    values: Vec<Option<String>>,
}

impl KnownPerson {
    /// The names of the fields whose stored value differs from `person`'s.
    pub fn changed_fields(&self, person: &NewPerson) -> Vec<&'static str> {
        PERSON_FIELDS
            .iter()
            .zip(self.values.iter().zip(person.field_values()))
            .filter(|(_, (old, new))| old.as_deref() != *new)
            .map(|(field, _)| field.name)
            .collect()
    }
}

/// Refs bound by one statement, under SQLite's default limit of 999 parameters.
const REFS_PER_STATEMENT: usize = 900;

/// The people already stored under these refs, by ref.
pub async fn known_people(
    conn: &mut SqliteConnection,
    refs: &[&str],
) -> anyhow::Result<HashMap<String, KnownPerson>> {
    let columns: Vec<&str> = PERSON_FIELDS.iter().map(|field| field.column).collect();
    let mut known = HashMap::new();
    for chunk in refs.chunks(REFS_PER_STATEMENT) {
        let sql = format!(
            "SELECT id, ref, row_hash, import_run, {} FROM people WHERE ref IN ({})",
            columns.join(", "),
            vec!["?"; chunk.len()].join(",")
        );
        let mut query = sqlx::query(&sql);
        for person_ref in chunk {
            query = query.bind(*person_ref);
        }
        for row in query.fetch_all(&mut *conn).await? {
            let values = PERSON_FIELDS
                .iter()
                .map(|field| row.try_get::<Option<String>, _>(field.column))
                .collect::<Result<_, _>>()?;
            known.insert(
                row.try_get("ref")?,
                KnownPerson {
                    id: row.try_get("id")?,
                    row_hash: row.try_get("row_hash")?,
                    import_run: row.try_get("import_run")?,
                    values,
                },
            );
        }
    }
    Ok(known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_imported_column_is_in_the_table_once() {
        let mut columns: Vec<&str> = PERSON_FIELDS.iter().map(|f| f.column).collect();
        columns.sort_unstable();
        columns.dedup();
        assert_eq!(columns.len(), PERSON_FIELDS.len());
        for column in PERSON_COLUMNS.split(", ") {
            let Some((_, name)) = column.split_once(" AS ") else {
                continue;
            };
            assert!(
                ["id", "ref", "notice_id", "generation"].contains(&name) || columns.contains(&name),
                "{name} is read for the letters but not imported"
            );
        }
    }
}
