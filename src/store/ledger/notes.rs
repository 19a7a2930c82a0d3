//! Notes on a person that change no state: what the relay reported after the letter left, and
//! what an adviser did at the helpline. Each is an event, written only through here.

use sqlx::SqliteConnection;

use super::transition::{Event, append_event};
use crate::domain::EventKind;

/// A note on a person's letter that changes no state (a soft bounce, a delay, a complaint).
pub(super) async fn note(
    conn: &mut SqliteConnection,
    person_id: i64,
    generation: i64,
    kind: EventKind,
    detail: String,
    run_id: i64,
    now: i64,
) -> anyhow::Result<()> {
    let event = Event {
        person_id,
        run_id,
        kind,
        in_state: None,
        generation: Some(generation),
        detail: &detail,
        adviser: None,
    };
    append_event(conn, event, now).await
}

/// What an adviser did for a person at the helpline, as the person's evidence records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdviserNote<'a> {
    /// A corrected (or alternative) address was recorded and the letter's generation started
    /// to it; `masked` is the address as the evidence may show it.
    Address {
        generation: i64,
        alternative: bool,
        masked: &'a str,
    },
    /// The person asked for a paper letter.
    PaperRequested,
    /// A call was noted (the event says that, not what was said: purge erases the note).
    CallNoted,
}

/// Records what adviser `login` did, in the caller's transaction (the one that did it).
pub async fn note_adviser(
    conn: &mut SqliteConnection,
    person_id: i64,
    login: &str,
    note: AdviserNote<'_>,
    run_id: i64,
    now: i64,
) -> anyhow::Result<()> {
    let (kind, generation, detail) = match note {
        AdviserNote::Address {
            generation,
            alternative,
            masked,
        } => {
            let which = if alternative {
                "alternative"
            } else {
                "corrected"
            };
            let detail = format!("adviser {login}: {which} address {masked}");
            (EventKind::AddressCorrected, Some(generation), detail)
        }
        AdviserNote::PaperRequested => (
            EventKind::PaperRequested,
            None,
            format!("adviser {login}: asked for a paper letter"),
        ),
        AdviserNote::CallNoted => (
            EventKind::CallNote,
            None,
            format!("adviser {login}: call noted"),
        ),
    };
    let event = Event {
        person_id,
        run_id,
        kind,
        in_state: None,
        generation,
        detail: &detail,
        adviser: Some(login),
    };
    append_event(conn, event, now).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ledger::testing::campaign_of;

    #[tokio::test]
    async fn the_adviser_is_a_column_of_the_event_never_rewritten() {
        let (_dir, pool) = campaign_of(2).await;
        let mut conn = pool.acquire().await.unwrap();
        note_adviser(&mut conn, 1, "marie", AdviserNote::CallNoted, 1, 10)
            .await
            .unwrap();
        note_adviser(&mut conn, 2, "paul", AdviserNote::PaperRequested, 1, 11)
            .await
            .unwrap();
        // An event written before the column, its adviser only in its text.
        sqlx::query(
            "INSERT INTO events (person_id, at, run_id, kind, detail)
             VALUES (1, 12, 1, 'address_corrected', 'adviser lea: corrected address a***@e***.fr')",
        )
        .execute(&mut *conn)
        .await
        .unwrap();
        let migration = include_str!("../../../migrations/0014_event_adviser.sql");
        let start = migration.find("UPDATE events SET adviser").unwrap();
        let end = start + migration[start..].find(';').unwrap();
        sqlx::query(&migration[start..end])
            .execute(&mut *conn)
            .await
            .unwrap();
        let advisers: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT kind, adviser FROM events WHERE at >= 10 ORDER BY at")
                .fetch_all(&mut *conn)
                .await
                .unwrap();
        assert_eq!(
            advisers,
            [
                ("call_note".into(), Some("marie".into())),
                ("paper_requested".into(), Some("paul".into())),
                ("address_corrected".into(), Some("lea".into())),
            ]
        );
        let rewrite = sqlx::query("UPDATE events SET adviser = 'someone' WHERE at = 10")
            .execute(&mut *conn)
            .await;
        assert!(
            rewrite
                .unwrap_err()
                .to_string()
                .contains("events are append-only")
        );
    }
}
