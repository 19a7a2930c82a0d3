//! The helpline's queries: finding a person the way a caller identifies themselves, reading their
//! letter's timeline, the advisers and their sessions, the access log, call notes, paper letter
//! requests and the supervisor's counters.
//!
//! Every row is read by column name into a struct of this module. Delivery states are changed
//! only by `ledger`; what is written here is the helpline's own record (who, what, when).

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::people::PERSON_COLUMNS;
use crate::domain::{DeliveryState, EventKind};
use crate::person::Person;

/// The event an adviser's corrected or alternative address leaves (beside the ledger's `resend`).
pub const EVENT_ADDRESS_CORRECTED: EventKind = EventKind::AddressCorrected;
/// The event of a paper letter request.
pub const EVENT_PAPER_REQUESTED: EventKind = EventKind::PaperRequested;
/// The event of a call note (the note itself is in `call_notes`, so that `purge` can erase it).
pub const EVENT_CALL_NOTE: EventKind = EventKind::CallNote;

/// The condition, on `people p`, that puts a person in the postal export whatever their state.
pub const PAPER_REQUESTED: &str =
    "EXISTS (SELECT 1 FROM paper_requests r WHERE r.person_id = p.id)";

/// Searches list at most this many people: a caller is one person, and a long list of others'
/// names is more than an adviser needs to see.
pub const SEARCH_LIMIT: i64 = 20;

/// A person as a search lists them and as their page is headed.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonRow {
    pub person_id: i64,
    pub person_ref: String,
    pub notice_id: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// The imported address (or the one an adviser corrected).
    pub email: Option<String>,
    pub alt_email: Option<String>,
    /// The address of the current generation.
    pub delivery_email: Option<String>,
    pub postcode: Option<String>,
    pub city: Option<String>,
    pub language: String,
    pub state: DeliveryState,
    pub generation: i64,
    pub purged: bool,
}

const PERSON_ROW_SELECT: &str = "SELECT p.id AS person_id, p.ref AS person_ref, p.notice_id,
        p.first_name, p.last_name, p.email, p.alt_email, d.email AS delivery_email, p.postcode,
        p.city, p.language, d.state, d.generation, p.purged_at
     FROM people p JOIN deliveries d ON d.person_id = p.id";

fn person_row(row: &SqliteRow) -> anyhow::Result<PersonRow> {
    Ok(PersonRow {
        person_id: row.try_get("person_id")?,
        person_ref: row.try_get("person_ref")?,
        notice_id: row.try_get("notice_id")?,
        first_name: row.try_get("first_name")?,
        last_name: row.try_get("last_name")?,
        email: row.try_get("email")?,
        alt_email: row.try_get("alt_email")?,
        delivery_email: row.try_get("delivery_email")?,
        postcode: row.try_get("postcode")?,
        city: row.try_get("city")?,
        language: row.try_get("language")?,
        state: row.try_get::<String, _>("state")?.parse()?,
        generation: row.try_get("generation")?,
        purged: row.try_get::<Option<i64>, _>("purged_at")?.is_some(),
    })
}

async fn people_where(
    pool: &SqlitePool,
    condition: &str,
    binds: &[&str],
) -> anyhow::Result<Vec<PersonRow>> {
    let sql = format!("{PERSON_ROW_SELECT} WHERE {condition} ORDER BY p.id LIMIT {SEARCH_LIMIT}");
    let mut query = sqlx::query(&sql);
    for value in binds {
        query = query.bind(*value);
    }
    query
        .fetch_all(pool)
        .await?
        .iter()
        .map(person_row)
        .collect()
}

/// The person with this notice id, or this ref (one query either way: a notice id that exists
/// and one that does not cost the same).
pub async fn people_by_notice_or_ref(
    pool: &SqlitePool,
    notice_id: &str,
    person_ref: &str,
) -> anyhow::Result<Vec<PersonRow>> {
    people_where(
        pool,
        "p.notice_id = ?1 OR p.ref = ?2",
        &[notice_id, person_ref],
    )
    .await
}

/// The people whose imported or alternative address is this one, in any case.
pub async fn people_by_email(pool: &SqlitePool, email: &str) -> anyhow::Result<Vec<PersonRow>> {
    people_where(
        pool,
        "p.id IN (SELECT id FROM people WHERE email = ?1 COLLATE NOCASE
                  UNION SELECT id FROM people WHERE alt_email = ?1 COLLATE NOCASE)",
        &[email],
    )
    .await
}

/// The accent table of the name search: each letter of the left string reads as the right one.
const FOLDED: [(&str, &str); 22] = [
    ("àáâãäåāăąÀÁÂÃÄÅĀĂĄ", "a"),
    ("çćĉċčÇĆĈĊČ", "c"),
    ("ďđĎĐ", "d"),
    ("èéêëēĕėęěÈÉÊËĒĔĖĘĚ", "e"),
    ("ĝğġģĜĞĠĢ", "g"),
    ("ĥħĤĦ", "h"),
    ("ìíîïĩīĭįıÌÍÎÏĨĪĬĮİ", "i"),
    ("ĵĴ", "j"),
    ("ķĶ", "k"),
    ("ĺļľŀłĹĻĽĿŁ", "l"),
    ("ñńņňÑŃŅŇ", "n"),
    ("òóôõöøōŏőÒÓÔÕÖØŌŎŐ", "o"),
    ("ŕŗřŔŖŘ", "r"),
    ("śŝşšŚŜŞŠ", "s"),
    ("ţťŧŢŤŦ", "t"),
    ("ùúûüũūŭůűųÙÚÛÜŨŪŬŮŰŲ", "u"),
    ("ŵŴ", "w"),
    ("ýÿŷÝŸŶ", "y"),
    ("źżžŹŻŽ", "z"),
    ("æÆ", "ae"),
    ("œŒ", "oe"),
    ("ß", "ss"),
];

/// A name as the search compares it (the `last_name_key` and `first_name_key` columns):
/// accents folded, lower case, spaces, hyphens, apostrophes and dots removed.
/// "Lefèvre", "LEFEVRE" and "le fèvre" all read `lefevre`.
pub fn name_key(name: &str) -> String {
    let mut key = String::with_capacity(name.len());
    for c in name.trim().chars() {
        if matches!(c, ' ' | '-' | '\'' | '’' | '.') {
            continue;
        }
        match FOLDED.iter().find(|(letters, _)| letters.contains(c)) {
            Some((_, base)) => key.push_str(base),
            None => key.extend(c.to_lowercase()),
        }
    }
    key
}

/// A postcode as the search compares it (`postcode_key`): "75 011" and "75011" alike.
pub fn postcode_key(postcode: &str) -> String {
    postcode
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_uppercase)
        .collect()
}

/// Rows of keys computed in one transaction: short enough not to hold up a `send` writing.
const KEYS_BATCH: i64 = 2_000;

/// Computes the search keys of every person who has a postcode and no keys yet (after an import,
/// or a name changed by one): the name search reads them only after this. Returns how many were
/// computed. Cheap when there are none (one probe of a partial index).
pub async fn fill_name_keys(pool: &SqlitePool) -> anyhow::Result<u64> {
    let mut filled = 0;
    loop {
        // Read first, outside a transaction: the usual answer is "none", and it takes no lock.
        let missing: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM people WHERE postcode_key IS NULL AND postcode IS NOT NULL)",
        )
        .fetch_one(pool)
        .await?;
        if !missing {
            return Ok(filled);
        }
        let mut tx = crate::db::begin_write(pool).await?;
        let rows = sqlx::query(
            "SELECT id, last_name, first_name, postcode FROM people
              WHERE postcode_key IS NULL AND postcode IS NOT NULL LIMIT ?",
        )
        .bind(KEYS_BATCH)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            tx.rollback().await?;
            return Ok(filled);
        }
        let mut keyed = Vec::with_capacity(rows.len());
        for row in &rows {
            let text = |column: &str| -> anyhow::Result<String> {
                Ok(row
                    .try_get::<Option<String>, _>(column)?
                    .unwrap_or_default())
            };
            keyed.push((
                row.try_get::<i64, _>("id")?,
                postcode_key(&text("postcode")?),
                name_key(&text("last_name")?),
                name_key(&text("first_name")?),
            ));
        }
        for chunk in keyed.chunks(200) {
            let values = vec!["(?, ?, ?, ?)"; chunk.len()].join(",");
            let sql = format!(
                "UPDATE people SET postcode_key = v.column2, last_name_key = v.column3,
                        first_name_key = v.column4
                   FROM (VALUES {values}) AS v WHERE people.id = v.column1"
            );
            let mut query = sqlx::query(&sql);
            for (id, postcode, last, first) in chunk {
                query = query.bind(id).bind(postcode).bind(last).bind(first);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        filled += keyed.len() as u64;
    }
}

/// The people of this postcode with this last name, however both were typed (see [`name_key`]),
/// the first name narrowing when given (its beginning is enough): how many in all, and the first
/// [`SEARCH_LIMIT`]. One probe of the `(postcode_key, last_name_key, first_name_key)` index, so a
/// name that matches nobody costs what one that matches costs.
pub async fn people_by_name_postcode(
    pool: &SqlitePool,
    last_name: &str,
    postcode: &str,
    first_name: &str,
) -> anyhow::Result<(i64, Vec<PersonRow>)> {
    fill_name_keys(pool).await?;
    let last = name_key(last_name);
    let code = postcode_key(postcode);
    let first = name_key(first_name);
    // `first_name_key >= ?3 AND first_name_key < ?3 || char(1114111)`: the names that begin
    // with it, as a range of the index.
    // Every column in the index: the count reads the index alone, not one row per match.
    let condition = "p.postcode_key = ?1 AND p.last_name_key = ?2
         AND (?3 = '' OR (p.first_name_key >= ?3 AND p.first_name_key < ?3 || char(1114111)))";
    let count: i64 =
        sqlx::query_scalar(&format!("SELECT count(*) FROM people p WHERE {condition}"))
            .bind(&code)
            .bind(&last)
            .bind(&first)
            .fetch_one(pool)
            .await?;
    // In the index's order (first name, then id): the first twenty are read and no more.
    let sql = format!(
        "{PERSON_ROW_SELECT} WHERE {condition}
          ORDER BY p.postcode_key, p.last_name_key, p.first_name_key, p.id LIMIT {SEARCH_LIMIT}"
    );
    let people = sqlx::query(&sql)
        .bind(&code)
        .bind(&last)
        .bind(&first)
        .fetch_all(pool)
        .await?
        .iter()
        .map(person_row)
        .collect::<anyhow::Result<_>>()?;
    Ok((count, people))
}

pub async fn person_by_id(pool: &SqlitePool, person_id: i64) -> anyhow::Result<Option<PersonRow>> {
    let sql = format!("{PERSON_ROW_SELECT} WHERE p.id = ?1");
    sqlx::query(&sql)
        .bind(person_id)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(person_row)
        .transpose()
}

/// The person as the letters see them, to render their letter again.
pub async fn person_for_letter(
    pool: &SqlitePool,
    person_id: i64,
) -> anyhow::Result<Option<Person>> {
    let sql = format!(
        "SELECT {PERSON_COLUMNS} FROM people p JOIN deliveries d ON d.person_id = p.id WHERE p.id = ?"
    );
    sqlx::query(&sql)
        .bind(person_id)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(Person::from_row)
        .transpose()
}

/// The current generation of a person's delivery.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeliveryRow {
    pub state: String,
    pub generation: i64,
    pub attempts: i64,
    pub email: Option<String>,
    pub generation_started_at: i64,
    pub last_attempt_at: Option<i64>,
    pub next_attempt_at: Option<i64>,
    pub sent_at: Option<i64>,
    pub smtp_reply: Option<String>,
    pub last_error: Option<String>,
    pub message_id: Option<String>,
    pub letters_fingerprint: Option<String>,
    pub bounced_at: Option<i64>,
    pub bounce_status: Option<String>,
    pub bounce_diagnostic: Option<String>,
    /// Past the relay: whether a notification was asked, and the provider's acceptance.
    #[serde(flatten)]
    pub confirmation: crate::store::confirmation::PersonConfirmation,
}

pub async fn delivery(pool: &SqlitePool, person_id: i64) -> anyhow::Result<Option<DeliveryRow>> {
    let row = sqlx::query(
        "SELECT state, generation, attempts, email, generation_started_at, last_attempt_at,
                next_attempt_at, sent_at, smtp_reply, last_error, message_id, letters_fingerprint,
                bounced_at, bounce_status, bounce_diagnostic,
                notify_requested, delivered_at, delivered_by, delivered_reply
           FROM deliveries WHERE person_id = ?",
    )
    .bind(person_id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(DeliveryRow {
        state: row.try_get("state")?,
        generation: row.try_get("generation")?,
        attempts: row.try_get("attempts")?,
        email: row.try_get("email")?,
        generation_started_at: row.try_get("generation_started_at")?,
        last_attempt_at: row.try_get("last_attempt_at")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        sent_at: row.try_get("sent_at")?,
        smtp_reply: row.try_get("smtp_reply")?,
        last_error: row.try_get("last_error")?,
        message_id: row.try_get("message_id")?,
        letters_fingerprint: row.try_get("letters_fingerprint")?,
        bounced_at: row.try_get("bounced_at")?,
        bounce_status: row.try_get("bounce_status")?,
        bounce_diagnostic: row.try_get("bounce_diagnostic")?,
        confirmation: crate::store::confirmation::PersonConfirmation::from_row(&row)?,
    }))
}

/// One recorded step of a person's letter.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub at: i64,
    pub kind: String,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub generation: Option<i64>,
    pub detail: Option<String>,
}

pub async fn events(pool: &SqlitePool, person_id: i64) -> anyhow::Result<Vec<EventRow>> {
    sqlx::query(
        "SELECT at, kind, from_state, to_state, generation, detail
           FROM events WHERE person_id = ? ORDER BY id",
    )
    .bind(person_id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|row| {
        Ok(EventRow {
            at: row.try_get("at")?,
            kind: row.try_get("kind")?,
            from_state: row.try_get("from_state")?,
            to_state: row.try_get("to_state")?,
            generation: row.try_get("generation")?,
            detail: row.try_get("detail")?,
        })
    })
    .collect()
}

/// One bounce message matched to the person.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BounceRow {
    pub read_at: i64,
    pub kind: String,
    pub generation: Option<i64>,
    pub status: Option<String>,
    pub diagnostic: Option<String>,
}

pub async fn bounces(pool: &SqlitePool, person_id: i64) -> anyhow::Result<Vec<BounceRow>> {
    sqlx::query(
        "SELECT read_at, kind, generation, status, diagnostic
           FROM bounces WHERE person_id = ? ORDER BY id",
    )
    .bind(person_id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|row| {
        Ok(BounceRow {
            read_at: row.try_get("read_at")?,
            kind: row.try_get("kind")?,
            generation: row.try_get("generation")?,
            status: row.try_get("status")?,
            diagnostic: row.try_get("diagnostic")?,
        })
    })
    .collect()
}

/// What a caller said, as an adviser wrote it down.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CallNote {
    pub at: i64,
    pub adviser: String,
    /// None once `purge` erased it.
    pub note: Option<String>,
}

pub async fn call_notes(pool: &SqlitePool, person_id: i64) -> anyhow::Result<Vec<CallNote>> {
    sqlx::query("SELECT at, adviser, note FROM call_notes WHERE person_id = ? ORDER BY id")
        .bind(person_id)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|row| {
            Ok(CallNote {
                at: row.try_get("at")?,
                adviser: row.try_get("adviser")?,
                note: row.try_get("note")?,
            })
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PaperRequest {
    pub at: i64,
    pub adviser: String,
}

pub async fn paper_request(
    pool: &SqlitePool,
    person_id: i64,
) -> anyhow::Result<Option<PaperRequest>> {
    sqlx::query("SELECT at, adviser FROM paper_requests WHERE person_id = ?")
        .bind(person_id)
        .fetch_optional(pool)
        .await?
        .map(|row| {
            Ok(PaperRequest {
                at: row.try_get("at")?,
                adviser: row.try_get("adviser")?,
            })
        })
        .transpose()
}

/// Records the corrected address (`alternative`: the alternative address) of a person; the
/// ledger then starts the new generation to it.
pub async fn set_person_email(
    conn: &mut SqliteConnection,
    person_id: i64,
    email: &crate::domain::Email,
    alternative: bool,
    now: i64,
) -> anyhow::Result<()> {
    let query = if alternative {
        sqlx::query("UPDATE people SET alt_email = ?, updated_at = ? WHERE id = ?")
            .bind(email.as_str())
    } else {
        sqlx::query("UPDATE people SET email = ?, email_domain = ?, updated_at = ? WHERE id = ?")
            .bind(email.as_str())
            .bind(email.domain())
    };
    query.bind(now).bind(person_id).execute(conn).await?;
    Ok(())
}

pub async fn insert_call_note(
    conn: &mut SqliteConnection,
    person_id: i64,
    adviser: &str,
    note: &str,
    now: i64,
) -> anyhow::Result<()> {
    sqlx::query("INSERT INTO call_notes (person_id, at, adviser, note) VALUES (?, ?, ?, ?)")
        .bind(person_id)
        .bind(now)
        .bind(adviser)
        .bind(note)
        .execute(conn)
        .await?;
    Ok(())
}

/// Returns false when the person had already asked.
pub async fn insert_paper_request(
    conn: &mut SqliteConnection,
    person_id: i64,
    adviser: &str,
    now: i64,
) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO paper_requests (person_id, at, adviser) VALUES (?, ?, ?)
         ON CONFLICT (person_id) DO NOTHING",
    )
    .bind(person_id)
    .bind(now)
    .bind(adviser)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Erases every call note's text (the rows stay, for the counts). Returns how many were erased.
pub async fn erase_call_notes(conn: &mut SqliteConnection, now: i64) -> anyhow::Result<u64> {
    let done =
        sqlx::query("UPDATE call_notes SET note = NULL, erased_at = ? WHERE note IS NOT NULL")
            .bind(now)
            .execute(conn)
            .await?;
    Ok(done.rows_affected())
}

/// One line of the access log: an adviser saw (or looked for and did not find) a person.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    pub adviser: &'a str,
    /// search | view | reveal | view_refused | lookup
    pub action: &'a str,
    pub query_kind: Option<&'a str>,
    /// `not_ours` when a notice number was looked up that nobody was sent.
    pub verdict: Option<&'a str>,
}

/// Logs one row per person shown, or one row naming nobody when nothing was found.
pub async fn log_access(
    pool: &SqlitePool,
    access: Access<'_>,
    person_ids: &[i64],
    now: i64,
) -> anyhow::Result<()> {
    let results = person_ids.len() as i64;
    let shown: Vec<Option<i64>> = if person_ids.is_empty() {
        vec![None]
    } else {
        person_ids.iter().copied().map(Some).collect()
    };
    // One statement for every person shown: the write lock is held for one insert, not twenty,
    // while twenty advisers search at once.
    let values = vec!["(?, ?, ?, ?, ?, ?, ?)"; shown.len()].join(", ");
    let sql = format!(
        "INSERT INTO access_log (at, adviser, action, query_kind, person_id, results, verdict)
         VALUES {values}"
    );
    let mut query = sqlx::query(&sql);
    for person_id in shown {
        query = query
            .bind(now)
            .bind(access.adviser)
            .bind(access.action)
            .bind(access.query_kind)
            .bind(person_id)
            .bind(results)
            .bind(access.verdict);
    }
    query.execute(pool).await?;
    Ok(())
}

/// Who looked at one person, newest first.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AccessRow {
    pub at: i64,
    pub adviser: String,
    pub action: String,
}

pub async fn accesses_to(pool: &SqlitePool, person_id: i64) -> anyhow::Result<Vec<AccessRow>> {
    sqlx::query(
        "SELECT at, adviser, action FROM access_log WHERE person_id = ? ORDER BY id DESC LIMIT 50",
    )
    .bind(person_id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|row| {
        Ok(AccessRow {
            at: row.try_get("at")?,
            adviser: row.try_get("adviser")?,
            action: row.try_get("action")?,
        })
    })
    .collect()
}

/// An adviser account.
#[derive(Debug, Clone, PartialEq)]
pub struct Adviser {
    pub id: i64,
    pub login: String,
    /// The Argon2 PHC string; None for an adviser who logs in through the proxy only.
    pub password_hash: Option<String>,
    pub supervisor: bool,
    pub disabled: bool,
}

const ADVISER_SELECT: &str = "SELECT a.id AS adviser_id, a.login, a.password_hash, a.supervisor, a.disabled_at FROM advisers a";

fn adviser_row(row: &SqliteRow) -> anyhow::Result<Adviser> {
    Ok(Adviser {
        id: row.try_get("adviser_id")?,
        login: row.try_get("login")?,
        password_hash: row.try_get("password_hash")?,
        supervisor: row.try_get::<i64, _>("supervisor")? != 0,
        disabled: row.try_get::<Option<i64>, _>("disabled_at")?.is_some(),
    })
}

pub async fn adviser_by_login(pool: &SqlitePool, login: &str) -> anyhow::Result<Option<Adviser>> {
    let sql = format!("{ADVISER_SELECT} WHERE a.login = ?");
    sqlx::query(&sql)
        .bind(login)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(adviser_row)
        .transpose()
}

pub async fn advisers(pool: &SqlitePool) -> anyhow::Result<Vec<Adviser>> {
    let sql = format!("{ADVISER_SELECT} ORDER BY a.login");
    sqlx::query(&sql)
        .fetch_all(pool)
        .await?
        .iter()
        .map(adviser_row)
        .collect()
}

/// Creates the adviser, or gives an existing one a new password (and enables them again).
pub async fn save_adviser(
    pool: &SqlitePool,
    login: &str,
    password_hash: Option<&str>,
    supervisor: bool,
    now: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO advisers (login, password_hash, supervisor, created_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (login) DO UPDATE SET password_hash = excluded.password_hash,
            supervisor = excluded.supervisor, disabled_at = NULL",
    )
    .bind(login)
    .bind(password_hash)
    .bind(supervisor as i64)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// Disables the adviser and ends their sessions. Returns false for an unknown login.
pub async fn disable_adviser(pool: &SqlitePool, login: &str, now: i64) -> anyhow::Result<bool> {
    let mut tx = crate::db::begin_write(pool).await?;
    let done = sqlx::query("UPDATE advisers SET disabled_at = ? WHERE login = ?")
        .bind(now)
        .bind(login)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "DELETE FROM console_sessions WHERE adviser_id IN (SELECT id FROM advisers WHERE login = ?)",
    )
    .bind(login)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

/// A live session with its adviser.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub adviser: Adviser,
    pub csrf_token: String,
    pub created_at: i64,
    pub expires_at: i64,
}

pub async fn insert_session(
    pool: &SqlitePool,
    token_sha256: &str,
    adviser_id: i64,
    csrf_token: &str,
    now: i64,
    expires_at: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO console_sessions (token_sha256, adviser_id, csrf_token, created_at,
                                       last_seen_at, expires_at)
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(token_sha256)
    .bind(adviser_id)
    .bind(csrf_token)
    .bind(now)
    .bind(now)
    .bind(expires_at)
    .execute(pool)
    .await?;
    Ok(())
}

/// The session of this token if it has not expired and its adviser is still enabled.
pub async fn live_session(
    pool: &SqlitePool,
    token_sha256: &str,
    now: i64,
) -> anyhow::Result<Option<Session>> {
    let sql = "SELECT s.csrf_token, s.created_at, s.expires_at, a.id AS adviser_id, a.login,
                      a.password_hash, a.supervisor, a.disabled_at
                 FROM console_sessions s JOIN advisers a ON a.id = s.adviser_id
                WHERE s.token_sha256 = ? AND s.expires_at > ? AND a.disabled_at IS NULL";
    let Some(row) = sqlx::query(sql)
        .bind(token_sha256)
        .bind(now)
        .fetch_optional(pool)
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(Session {
        adviser: adviser_row(&row)?,
        csrf_token: row.try_get("csrf_token")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    }))
}

pub async fn extend_session(
    pool: &SqlitePool,
    token_sha256: &str,
    now: i64,
    expires_at: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE console_sessions SET last_seen_at = ?, expires_at = ? WHERE token_sha256 = ?",
    )
    .bind(now)
    .bind(expires_at)
    .bind(token_sha256)
    .execute(pool)
    .await?;
    Ok(())
}

/// Ends one session (log out), and forgets every expired one.
pub async fn end_session(pool: &SqlitePool, token_sha256: &str, now: i64) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM console_sessions WHERE token_sha256 = ? OR expires_at <= ?")
        .bind(token_sha256)
        .bind(now)
        .execute(pool)
        .await?;
    Ok(())
}

/// The supervisor's figures, since a time (the start of the day) and in all.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Counters {
    pub calls_today: i64,
    pub corrections_today: i64,
    pub paper_requests_today: i64,
    pub lookups_today: i64,
    pub calls: i64,
    pub corrections: i64,
    pub paper_requests: i64,
}

pub async fn counters(pool: &SqlitePool, since: i64) -> anyhow::Result<Counters> {
    let row = sqlx::query(
        "SELECT
           (SELECT count(*) FROM call_notes WHERE at >= ?1) AS calls_today,
           (SELECT count(*) FROM events WHERE kind = ?2 AND at >= ?1) AS corrections_today,
           (SELECT count(*) FROM paper_requests WHERE at >= ?1) AS paper_requests_today,
           (SELECT count(*) FROM access_log WHERE at >= ?1 AND action IN ('search', 'lookup')) AS lookups_today,
           (SELECT count(*) FROM call_notes) AS calls,
           (SELECT count(*) FROM events WHERE kind = ?2) AS corrections,
           (SELECT count(*) FROM paper_requests) AS paper_requests",
    )
    .bind(since)
    .bind(EVENT_ADDRESS_CORRECTED.as_str())
    .fetch_one(pool)
    .await?;
    Ok(Counters {
        calls_today: row.try_get("calls_today")?,
        corrections_today: row.try_get("corrections_today")?,
        paper_requests_today: row.try_get("paper_requests_today")?,
        lookups_today: row.try_get("lookups_today")?,
        calls: row.try_get("calls")?,
        corrections: row.try_get("corrections")?,
        paper_requests: row.try_get("paper_requests")?,
    })
}

/// Letters still to send, by state.
pub async fn still_to_send(pool: &SqlitePool) -> anyhow::Result<Vec<(DeliveryState, i64)>> {
    let sql = format!(
        "SELECT d.state AS state, count(*) AS letters FROM deliveries d
          WHERE d.state IN ({}) GROUP BY d.state ORDER BY d.state",
        crate::domain::sql_states(DeliveryState::STILL_TO_SEND)
    );
    sqlx::query(&sql)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|row| {
            Ok((
                row.try_get::<String, _>("state")?.parse()?,
                row.try_get("letters")?,
            ))
        })
        .collect()
}

/// One generation of a person's letter that went out by e-mail (table `letters_sent`, kept by
/// a trigger on the delivery).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SentLetter {
    pub generation: i64,
    pub sent_at: i64,
    /// As the helpline shows it: `j***@exemple.fr`.
    pub email_masked: Option<String>,
}

/// Every e-mail sent to the person, oldest first.
pub async fn letters_sent(pool: &SqlitePool, person_id: i64) -> anyhow::Result<Vec<SentLetter>> {
    sqlx::query(
        "SELECT generation, sent_at, email_masked FROM letters_sent
          WHERE person_id = ? ORDER BY generation",
    )
    .bind(person_id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|row| {
        Ok(SentLetter {
            generation: row.try_get("generation")?,
            sent_at: row.try_get("sent_at")?,
            email_masked: row.try_get("email_masked")?,
        })
    })
    .collect()
}

/// When the person was first written to a postal export, if ever.
pub async fn postal_exported_at(pool: &SqlitePool, person_id: i64) -> anyhow::Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT first_at FROM postal_exports WHERE person_id = ?")
            .bind(person_id)
            .fetch_optional(pool)
            .await?,
    )
}

/// Records that these people were written to a postal export now.
pub async fn record_postal_exports(
    pool: &SqlitePool,
    person_ids: &[i64],
    now: i64,
) -> anyhow::Result<()> {
    let mut tx = crate::db::begin_write(pool).await?;
    for chunk in person_ids.chunks(500) {
        let values = vec!["(?, ?, ?)"; chunk.len()].join(",");
        let sql = format!(
            "INSERT INTO postal_exports (person_id, first_at, last_at) VALUES {values}
             ON CONFLICT (person_id) DO UPDATE SET last_at = excluded.last_at"
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id).bind(now).bind(now);
        }
        query.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Person pages this adviser opened since a time (the cap counts the last hour).
pub async fn views_since(pool: &SqlitePool, adviser: &str, since: i64) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM access_log WHERE adviser = ? AND action = 'view' AND at >= ?",
    )
    .bind(adviser)
    .bind(since)
    .fetch_one(pool)
    .await?)
}

/// One adviser's day, for the supervisor.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct AdviserDay {
    pub adviser: String,
    pub calls: i64,
    pub corrections: i64,
    pub paper_requests: i64,
    pub views: i64,
    /// The most person pages opened in one clock hour of the day.
    pub views_worst_hour: i64,
    /// Person pages refused over the cap.
    pub views_refused: i64,
}

/// Every adviser who did something since a time, by login.
pub async fn advisers_day(pool: &SqlitePool, since: i64) -> anyhow::Result<Vec<AdviserDay>> {
    let mut days: std::collections::BTreeMap<String, AdviserDay> = Default::default();
    fn day<'a>(
        days: &'a mut std::collections::BTreeMap<String, AdviserDay>,
        login: &str,
    ) -> &'a mut AdviserDay {
        days.entry(login.to_owned()).or_insert_with(|| AdviserDay {
            adviser: login.to_owned(),
            ..Default::default()
        })
    }
    for row in sqlx::query(
        "SELECT adviser, count(*) AS calls FROM call_notes WHERE at >= ? GROUP BY adviser",
    )
    .bind(since)
    .fetch_all(pool)
    .await?
    {
        let login: String = row.try_get("adviser")?;
        day(&mut days, &login).calls = row.try_get("calls")?;
    }
    for row in sqlx::query(
        "SELECT adviser, count(*) AS n FROM paper_requests WHERE at >= ? GROUP BY adviser",
    )
    .bind(since)
    .fetch_all(pool)
    .await?
    {
        let login: String = row.try_get("adviser")?;
        day(&mut days, &login).paper_requests = row.try_get("n")?;
    }
    for row in sqlx::query(
        "SELECT adviser, count(*) AS n FROM events
          WHERE kind = ? AND at >= ? AND adviser IS NOT NULL GROUP BY adviser",
    )
    .bind(EVENT_ADDRESS_CORRECTED.as_str())
    .bind(since)
    .fetch_all(pool)
    .await?
    {
        let login: String = row.try_get("adviser")?;
        day(&mut days, &login).corrections = row.try_get("n")?;
    }
    for row in sqlx::query(
        "SELECT adviser, action, at / 3600000 AS hour, count(*) AS n FROM access_log
          WHERE at >= ? AND action IN ('view', 'view_refused') GROUP BY adviser, action, hour",
    )
    .bind(since)
    .fetch_all(pool)
    .await?
    {
        let login: String = row.try_get("adviser")?;
        let action: String = row.try_get("action")?;
        let n: i64 = row.try_get("n")?;
        let entry = day(&mut days, &login);
        if action == "view" {
            entry.views += n;
            entry.views_worst_hour = entry.views_worst_hour.max(n);
        } else {
            entry.views_refused += n;
        }
    }
    Ok(days.into_values().collect())
}

/// One call of the day: what an adviser recorded, for whom (the notice number).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CallOfTheDay {
    pub at: i64,
    pub adviser: String,
    pub kind: String,
    pub notice_id: String,
    pub person_id: i64,
}

/// The day's call notes, corrections and paper requests, newest first (at most 500).
pub async fn calls_of_the_day(pool: &SqlitePool, since: i64) -> anyhow::Result<Vec<CallOfTheDay>> {
    sqlx::query(
        "SELECT e.at, e.adviser, e.kind, p.notice_id, p.id AS person_id
           FROM events e JOIN people p ON p.id = e.person_id
          WHERE e.kind IN (?, ?, ?) AND e.at >= ? AND e.adviser IS NOT NULL
          ORDER BY e.id DESC LIMIT 500",
    )
    .bind(EVENT_CALL_NOTE.as_str())
    .bind(EVENT_ADDRESS_CORRECTED.as_str())
    .bind(EVENT_PAPER_REQUESTED.as_str())
    .bind(since)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|row| {
        Ok(CallOfTheDay {
            at: row.try_get("at")?,
            adviser: row.try_get("adviser")?,
            kind: row.try_get("kind")?,
            notice_id: row.try_get("notice_id")?,
            person_id: row.try_get("person_id")?,
        })
    })
    .collect()
}

/// "Not ours" look-ups per clock hour since a time: (the hour's start, count), oldest first.
pub async fn not_ours_per_hour(pool: &SqlitePool, since: i64) -> anyhow::Result<Vec<(i64, i64)>> {
    sqlx::query(
        "SELECT (at / 3600000) * 3600000 AS hour, count(*) AS n FROM access_log
          WHERE verdict = 'not_ours' AND at >= ? GROUP BY 1 ORDER BY 1",
    )
    .bind(since)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|row| Ok((row.try_get("hour")?, row.try_get("n")?)))
    .collect()
}

/// Bounces read since a time, by kind (`hard`, `soft`, …).
pub async fn bounces_since(pool: &SqlitePool, since: i64) -> anyhow::Result<Vec<(String, i64)>> {
    sqlx::query(
        "SELECT kind, count(*) AS n FROM bounces WHERE read_at >= ? AND kind IN ('hard', 'soft')
          GROUP BY kind ORDER BY kind",
    )
    .bind(since)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|row| Ok((row.try_get("kind")?, row.try_get("n")?)))
    .collect()
}

/// Letters at the mail server right now: being sent, and delayed with a retry to come.
pub async fn at_the_relay(pool: &SqlitePool) -> anyhow::Result<(i64, i64)> {
    let row = sqlx::query(
        "SELECT count(*) FILTER (WHERE state = 'sending') AS sending,
                count(*) FILTER (WHERE state = 'deferred') AS deferred
           FROM deliveries WHERE state IN ('sending', 'deferred')",
    )
    .fetch_one(pool)
    .await?;
    Ok((row.try_get("sending")?, row.try_get("deferred")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_postcodes_are_compared_however_typed() {
        assert_eq!(name_key("Lefèvre"), "lefevre");
        assert_eq!(name_key("  LEFEVRE "), "lefevre");
        assert_eq!(name_key("Le Fèvre"), "lefevre");
        assert_eq!(name_key("D'Almeida-Œuvray"), "dalmeidaoeuvray");
        assert_eq!(postcode_key("75 011"), "75011");
        assert_eq!(postcode_key("sw1a 1aa"), "SW1A1AA");
    }

    /// Keys are computed for new rows, cleared when a name changes, computed again.
    #[tokio::test]
    async fn search_keys_follow_the_names() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::db::open(&dir.path().join("t.db"), true)
            .await
            .unwrap();
        for (i, (last, postcode)) in [("Lefèvre", Some("75 011")), ("Ørsted", None)]
            .iter()
            .enumerate()
        {
            sqlx::query(
                "INSERT INTO people (ref, notice_id, language, exposed, row_hash, import_run,
                                     imported_at, updated_at, last_name, first_name, postcode)
                 VALUES (?1, ?1, 'fr', '', '', 0, 0, 0, ?2, 'Éloïse', ?3)",
            )
            .bind(format!("R{i}"))
            .bind(last)
            .bind(postcode)
            .execute(&pool)
            .await
            .unwrap();
        }
        let keys = |pool: SqlitePool| async move {
            sqlx::query_as::<_, (Option<String>, Option<String>, Option<String>)>(
                "SELECT postcode_key, last_name_key, first_name_key FROM people ORDER BY id",
            )
            .fetch_all(&pool)
            .await
            .unwrap()
        };
        assert_eq!(
            fill_name_keys(&pool).await.unwrap(),
            1,
            "only who has a postcode"
        );
        let lefevre = (
            Some("75011".to_owned()),
            Some("lefevre".to_owned()),
            Some("eloise".to_owned()),
        );
        assert_eq!(
            keys(pool.clone()).await,
            vec![lefevre.clone(), (None, None, None)]
        );
        assert_eq!(fill_name_keys(&pool).await.unwrap(), 0);
        sqlx::query("UPDATE people SET last_name = 'Le Goff' WHERE ref = 'R0'")
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(
            keys(pool.clone()).await[0],
            (None, None, None),
            "cleared by the change"
        );
        assert_eq!(fill_name_keys(&pool).await.unwrap(), 1);
        assert_eq!(keys(pool.clone()).await[0].1.as_deref(), Some("legoff"));
    }
}
