//! People as the letters read them: the columns of the letter view, read back by name into a
//! [`crate::person::Person`].

/// The columns `Person::from_row` reads, for `SELECT {PERSON_COLUMNS} FROM people p JOIN
/// deliveries d ...`. Each is named, and `from_row` reads them by name, so a query may add
/// columns anywhere.
pub const PERSON_COLUMNS: &str = "p.id AS id, p.ref AS ref, p.notice_id AS notice_id, COALESCE(d.email, p.email) AS email, p.civility AS civility, p.first_name AS first_name, p.last_name AS last_name, p.language AS language, p.address_line1 AS address_line1, p.address_line2 AS address_line2, p.postcode AS postcode, p.city AS city, p.country AS country, p.phone_masked AS phone_masked, p.identifier_masked AS identifier_masked, p.exposed AS exposed, p.extra AS extra, d.generation AS generation";
