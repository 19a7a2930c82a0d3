//! What `bounces` reads to match a bounce to a delivery: the people a returned Message-ID or
//! X-Notice-Id names, every recipient's address (for a bounce that names only its recipient),
//! and where the matched deliveries stand now. Recording a bounce is a transition, in
//! [`super::ledger`].
//!
//! Lists of keys are read in chunks under SQLite's limit on bound variables. Rows are read by
//! column name.

use std::collections::{HashMap, HashSet};

use sqlx::{Row, SqliteConnection};

use crate::domain::DeliveryState;

/// Keys bound in one statement, safely under SQLite's variable limit.
const CHUNK: usize = 900;

/// Every delivery with an address: (person id, address as stored).
pub async fn recipients(conn: &mut SqliteConnection) -> anyhow::Result<Vec<(i64, String)>> {
    let rows = sqlx::query("SELECT person_id, email FROM deliveries WHERE email IS NOT NULL")
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("person_id")?, row.try_get("email")?)))
        .collect()
}

/// The person whose delivery carries each of these Message-IDs (the current generation's).
pub async fn people_by_message_id(
    conn: &mut SqliteConnection,
    message_ids: &[String],
) -> anyhow::Result<HashMap<String, i64>> {
    lookup(
        conn,
        "SELECT message_id AS key, person_id FROM deliveries WHERE message_id IN",
        message_ids,
    )
    .await
}

/// The person each of these notice ids belongs to.
pub async fn people_by_notice_id(
    conn: &mut SqliteConnection,
    notice_ids: &[String],
) -> anyhow::Result<HashMap<String, i64>> {
    lookup(
        conn,
        "SELECT notice_id AS key, id AS person_id FROM people WHERE notice_id IN",
        notice_ids,
    )
    .await
}

/// `SELECT key, person_id FROM ... WHERE key IN (...)`, chunk by chunk.
async fn lookup(
    conn: &mut SqliteConnection,
    select_in: &str,
    keys: &[String],
) -> anyhow::Result<HashMap<String, i64>> {
    let mut found = HashMap::new();
    for chunk in keys.chunks(CHUNK) {
        let sql = format!("{select_in} ({})", vec!["?"; chunk.len()].join(","));
        let mut query = sqlx::query(&sql);
        for key in chunk {
            query = query.bind(key);
        }
        for row in query.fetch_all(&mut *conn).await? {
            found.insert(row.try_get("key")?, row.try_get("person_id")?);
        }
    }
    Ok(found)
}

/// Where a delivery stands as a bounce is matched to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryNow {
    pub generation: i64,
    pub state: DeliveryState,
}

/// The generation and state of these people's deliveries, by person id (repeats read once).
pub async fn deliveries_now(
    conn: &mut SqliteConnection,
    person_ids: &[i64],
) -> anyhow::Result<HashMap<i64, DeliveryNow>> {
    let unique: Vec<i64> = person_ids
        .iter()
        .copied()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut deliveries = HashMap::new();
    for chunk in unique.chunks(CHUNK) {
        let sql = format!(
            "SELECT person_id, generation, state FROM deliveries WHERE person_id IN ({})",
            vec!["?"; chunk.len()].join(",")
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id);
        }
        for row in query.fetch_all(&mut *conn).await? {
            let state: String = row.try_get("state")?;
            deliveries.insert(
                row.try_get::<i64, _>("person_id")?,
                DeliveryNow {
                    generation: row.try_get("generation")?,
                    state: state.parse()?,
                },
            );
        }
    }
    Ok(deliveries)
}
