//! The reads of people and their deliveries that change nothing: the pages `check` and
//! `preview` render, the letter variants a preview samples, the rows of `export audit` and
//! `export postal`, and the people `resend` may send to again.
//!
//! Who is read is said with a typed [`Selection`], never with a piece of SQL, and the sets of
//! states come from [`DeliveryState`]'s constants, so "still to send" means one thing everywhere.

use std::sync::{Arc, LazyLock};

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::people::PERSON_COLUMNS;
use crate::domain::{DeliveryState, EventKind, sql_states};
use crate::person::Person;

/// Which people a walk over the deliveries reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Letters that have not gone yet: pending, deferred, or in flight (a `sending` one may be
    /// sent again by the next run).
    StillToSend,
    /// Everyone with an address, whatever the state of their letter.
    WithAddress,
    /// These people (by id), whatever their state.
    People(Vec<i64>),
}

impl Selection {
    /// The condition on `p` and `d`, None when it selects nobody. Ids are integers and state
    /// names are constants, so nothing here comes from input.
    fn condition(&self) -> Option<String> {
        match self {
            Selection::StillToSend => Some(format!(
                "d.state IN ({})",
                sql_states(DeliveryState::STILL_TO_SEND)
            )),
            Selection::WithAddress => Some("COALESCE(d.email, p.email) IS NOT NULL".to_owned()),
            Selection::People(ids) if ids.is_empty() => None,
            Selection::People(ids) => Some(format!(
                "p.id IN ({})",
                ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
            )),
        }
    }
}

/// The pages of a [`Selection`], in person id order. Cheap to clone, so a page can be read on a
/// task of its own while the previous one is rendered.
///
/// Each page continues a walk of `deliveries` in rowid order (`NOT INDEXED`, `CROSS JOIN`). Left
/// to choose, SQLite read every delivery in the state index, joined and sorted them all for each
/// page: a quadratic cost, two thirds of check's time at 340,000 people.
#[derive(Debug, Clone)]
pub struct PersonPages {
    /// None when the selection is nobody.
    sql: Option<Arc<str>>,
}

impl PersonPages {
    pub fn new(selection: &Selection) -> PersonPages {
        let sql = selection.condition().map(|condition| {
            format!(
                "SELECT {PERSON_COLUMNS} FROM deliveries d NOT INDEXED CROSS JOIN people p ON p.id = d.person_id
                 WHERE d.person_id > ? AND ({condition}) ORDER BY d.person_id LIMIT ?"
            )
            .into()
        });
        PersonPages { sql }
    }

    /// Up to `limit` people with an id above `after_id`.
    pub async fn after(
        &self,
        pool: &SqlitePool,
        after_id: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<Person>> {
        let Some(sql) = &self.sql else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query(sql)
            .bind(after_id)
            .bind(limit)
            .fetch_all(pool)
            .await?;
        rows.iter().map(Person::from_row).collect()
    }
}

/// How many addresses several people share. The count sorts every address: on a connection of its
/// own that may spill the sort to a temporary file (SQLite unlinks it as it opens it), since in
/// memory the sort grew with the campaign (3.4 million people: 400 MB).
pub async fn count_shared_addresses(pool: &SqlitePool) -> anyhow::Result<u64> {
    let mut connection = pool.acquire().await?;
    sqlx::query("PRAGMA temp_store = FILE")
        .execute(&mut *connection)
        .await?;
    let shared: Result<i64, sqlx::Error> = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM people WHERE email IS NOT NULL
         GROUP BY lower(email) HAVING count(*) > 1)",
    )
    .fetch_one(&mut *connection)
    .await;
    // Back to the pool as every other connection is, whatever the count did.
    sqlx::query("PRAGMA temp_store = MEMORY")
        .execute(&mut *connection)
        .await?;
    Ok(shared?.max(0) as u64)
}

/// The id of the person with this ref, None when there is none.
pub async fn person_id_by_ref(pool: &SqlitePool, person_ref: &str) -> anyhow::Result<Option<i64>> {
    let id = sqlx::query_scalar("SELECT id FROM people WHERE ref = ?")
        .bind(person_ref)
        .fetch_optional(pool)
        .await?;
    Ok(id)
}

/// One combination of language and exposed categories among the letters still to send, with
/// the first person who has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LetterVariant {
    pub first_person_id: i64,
    /// As imported: a language without letters falls back when rendered.
    pub language: String,
    pub exposed: String,
}

/// Every variant of the letters still to send to an address, in the order of their first person.
pub async fn letter_variants_still_to_send(
    pool: &SqlitePool,
) -> anyhow::Result<Vec<LetterVariant>> {
    let sql = format!(
        "SELECT MIN(p.id) AS first_person_id, p.language AS language, p.exposed AS exposed
         FROM people p JOIN deliveries d ON d.person_id = p.id
         WHERE d.state IN ({}) AND COALESCE(d.email, p.email) IS NOT NULL
         GROUP BY p.language, p.exposed ORDER BY MIN(p.id)",
        sql_states(DeliveryState::STILL_TO_SEND)
    );
    sqlx::query(&sql)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|row| {
            Ok(LetterVariant {
                first_person_id: row.try_get("first_person_id")?,
                language: row.try_get("language")?,
                exposed: row.try_get("exposed")?,
            })
        })
        .collect()
}

/// One person's evidence as the database holds it (times in milliseconds). The delivery's
/// columns are None for a person without a delivery, which the export still shows.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub person_ref: String,
    pub notice_id: String,
    pub email: Option<String>,
    pub language: String,
    pub state: Option<DeliveryState>,
    pub generation: Option<i64>,
    pub attempts: Option<i64>,
    pub first_attempt_at: Option<i64>,
    pub last_attempt_at: Option<i64>,
    pub sent_at: Option<i64>,
    pub smtp_reply: Option<String>,
    pub message_id: Option<String>,
    pub letters_fingerprint: Option<String>,
    pub content_sha256: Option<String>,
    pub bounced_at: Option<i64>,
    pub bounce_status: Option<String>,
    pub bounce_diagnostic: Option<String>,
    pub possible_duplicate: bool,
    /// The relay that took the letter (the name of its `[[relay]]` entry, or its host).
    pub relay: Option<String>,
    /// Past the relay: whether a notification was asked, and the provider's acceptance.
    pub confirmation: crate::store::confirmation::PersonConfirmation,
}

const AUDIT_SQL: &str = "SELECT p.ref AS ref, p.notice_id AS notice_id,
        COALESCE(d.email, p.email) AS email, p.language AS language, d.state AS state,
        d.generation AS generation, d.attempts AS attempts, d.first_attempt_at AS first_attempt_at,
        d.last_attempt_at AS last_attempt_at, d.sent_at AS sent_at, d.smtp_reply AS smtp_reply,
        d.message_id AS message_id, d.letters_fingerprint AS letters_fingerprint,
        d.content_sha256 AS content_sha256, d.bounced_at AS bounced_at,
        d.bounce_status AS bounce_status, d.bounce_diagnostic AS bounce_diagnostic,
        d.possible_duplicate AS possible_duplicate, d.relay AS relay,
        d.notify_requested AS notify_requested, d.delivered_at AS delivered_at,
        d.delivered_by AS delivered_by, d.delivered_reply AS delivered_reply
     FROM people p LEFT JOIN deliveries d ON d.person_id = p.id ORDER BY p.id";

impl AuditRecord {
    fn from_row(row: &SqliteRow) -> anyhow::Result<AuditRecord> {
        Ok(AuditRecord {
            person_ref: row.try_get("ref")?,
            notice_id: row.try_get("notice_id")?,
            email: row.try_get("email")?,
            language: row.try_get("language")?,
            state: state_column(row, "state")?,
            generation: row.try_get("generation")?,
            attempts: row.try_get("attempts")?,
            first_attempt_at: row.try_get("first_attempt_at")?,
            last_attempt_at: row.try_get("last_attempt_at")?,
            sent_at: row.try_get("sent_at")?,
            smtp_reply: row.try_get("smtp_reply")?,
            message_id: row.try_get("message_id")?,
            letters_fingerprint: row.try_get("letters_fingerprint")?,
            content_sha256: row.try_get("content_sha256")?,
            bounced_at: row.try_get("bounced_at")?,
            bounce_status: row.try_get("bounce_status")?,
            bounce_diagnostic: row.try_get("bounce_diagnostic")?,
            possible_duplicate: row
                .try_get::<Option<i64>, _>("possible_duplicate")?
                .unwrap_or(0)
                != 0,
            relay: row.try_get("relay")?,
            confirmation: crate::store::confirmation::PersonConfirmation::from_row(row)?,
        })
    }
}

/// A state column that may be NULL (no delivery, no state before an event).
fn state_column(row: &SqliteRow, column: &str) -> anyhow::Result<Option<DeliveryState>> {
    let state: Option<String> = row.try_get(column)?;
    Ok(state.map(|s| s.parse::<DeliveryState>()).transpose()?)
}

/// Every person's evidence, one at a time in id order, on the caller's connection (a read
/// transaction, so the rows and the counts taken after describe one snapshot).
pub fn audit_records(conn: &mut SqliteConnection) -> BoxStream<'_, anyhow::Result<AuditRecord>> {
    sqlx::query(AUDIT_SQL)
        .fetch(conn)
        .map(|row| AuditRecord::from_row(&row?))
        .boxed()
}

/// One recorded step of one person's timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub person_ref: String,
    pub notice_id: String,
    pub at: i64,
    pub run_id: Option<i64>,
    pub kind: EventKind,
    pub from_state: Option<DeliveryState>,
    pub to_state: Option<DeliveryState>,
    pub generation: Option<i64>,
    pub detail: Option<String>,
}

const EVENTS_SQL: &str = "SELECT p.ref AS ref, p.notice_id AS notice_id, e.at AS at,
        e.run_id AS run_id, e.kind AS kind, e.from_state AS from_state, e.to_state AS to_state,
        e.generation AS generation, e.detail AS detail
     FROM events e JOIN people p ON p.id = e.person_id ORDER BY e.id";

impl EventRecord {
    fn from_row(row: &SqliteRow) -> anyhow::Result<EventRecord> {
        Ok(EventRecord {
            person_ref: row.try_get("ref")?,
            notice_id: row.try_get("notice_id")?,
            at: row.try_get("at")?,
            run_id: row.try_get("run_id")?,
            kind: row.try_get::<String, _>("kind")?.parse()?,
            from_state: state_column(row, "from_state")?,
            to_state: state_column(row, "to_state")?,
            generation: row.try_get("generation")?,
            detail: row.try_get("detail")?,
        })
    }
}

/// Every event, in the order it was recorded, on the caller's connection.
pub fn event_records(conn: &mut SqliteConnection) -> BoxStream<'_, anyhow::Result<EventRecord>> {
    sqlx::query(EVENTS_SQL)
        .fetch(conn)
        .map(|row| EventRecord::from_row(&row?))
        .boxed()
}

/// How many people the campaign holds.
pub async fn count_people(conn: &mut SqliteConnection) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM people")
        .fetch_one(conn)
        .await?)
}

/// How many events the campaign has recorded.
pub async fn count_events(conn: &mut SqliteConnection) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(conn)
        .await?)
}

/// A person the e-mail did not reach, with what their delivery says about why.
#[derive(Debug, Clone, PartialEq)]
pub struct Unreached {
    pub person: Person,
    pub state: DeliveryState,
    pub smtp_reply: Option<String>,
    pub last_error: Option<String>,
    pub bounce_status: Option<String>,
    pub bounce_diagnostic: Option<String>,
}

static UNREACHED_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {PERSON_COLUMNS}, d.state AS state, d.smtp_reply AS smtp_reply,
                d.last_error AS last_error, d.bounce_status AS bounce_status,
                d.bounce_diagnostic AS bounce_diagnostic
         FROM people p JOIN deliveries d ON d.person_id = p.id
         WHERE d.state IN ({}) OR {}
         ORDER BY p.id",
        sql_states(DeliveryState::NOT_REACHED),
        crate::store::helpline::PAPER_REQUESTED,
    )
});

/// Everyone not reached by e-mail, for good (failed, bounced, no address), and whoever asked
/// the helpline for a paper letter, in id order.
pub fn not_reached(pool: &SqlitePool) -> BoxStream<'_, anyhow::Result<Unreached>> {
    sqlx::query(UNREACHED_SQL.as_str())
        .fetch(pool)
        .map(|row| {
            let row = row?;
            Ok(Unreached {
                person: Person::from_row(&row)?,
                state: row.try_get::<String, _>("state")?.parse()?,
                smtp_reply: row.try_get("smtp_reply")?,
                last_error: row.try_get("last_error")?,
                bounce_status: row.try_get("bounce_status")?,
                bounce_diagnostic: row.try_get("bounce_diagnostic")?,
            })
        })
        .boxed()
}

/// Whom `resend` considers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResendSelection<'a> {
    /// Everyone whose letter is in this state (`--bounced`, `--failed`).
    InState(DeliveryState),
    /// The people with these refs, whatever their state (`--ref`).
    Refs(&'a [&'a str]),
}

/// One person who may go again, as read before deciding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResendCandidate {
    pub person_id: i64,
    pub person_ref: String,
    /// The imported address (corrected by `import --update`).
    pub email: Option<String>,
    pub alt_email: Option<String>,
    pub state: DeliveryState,
    /// The address that failed or bounced last (or the delivery's, when not recorded).
    pub failed_email: Option<String>,
}

const RESEND_SELECT: &str = "SELECT p.id AS person_id, p.ref AS ref, p.email AS email,
       p.alt_email AS alt_email, d.state AS state,
       COALESCE(d.failed_email, d.email) AS failed_email
     FROM people p JOIN deliveries d ON d.person_id = p.id";

/// The people `selection` names, in id order (by refs: in id order within each 900 refs, the
/// most one statement binds).
pub async fn resend_candidates(
    pool: &SqlitePool,
    selection: ResendSelection<'_>,
) -> anyhow::Result<Vec<ResendCandidate>> {
    let rows = match selection {
        ResendSelection::InState(state) => {
            sqlx::query(&format!("{RESEND_SELECT} WHERE d.state = ? ORDER BY p.id"))
                .bind(state.as_str())
                .fetch_all(pool)
                .await?
        }
        ResendSelection::Refs(refs) => {
            let mut rows = Vec::new();
            for chunk in refs.chunks(900) {
                let sql = format!(
                    "{RESEND_SELECT} WHERE p.ref IN ({}) ORDER BY p.id",
                    vec!["?"; chunk.len()].join(",")
                );
                let mut query = sqlx::query(&sql);
                for person_ref in chunk {
                    query = query.bind(*person_ref);
                }
                rows.extend(query.fetch_all(pool).await?);
            }
            rows
        }
    };
    rows.iter()
        .map(|row| {
            Ok(ResendCandidate {
                person_id: row.try_get("person_id")?,
                person_ref: row.try_get("ref")?,
                email: row.try_get("email")?,
                alt_email: row.try_get("alt_email")?,
                state: row.try_get::<String, _>("state")?.parse()?,
                failed_email: row.try_get("failed_email")?,
            })
        })
        .collect()
}
