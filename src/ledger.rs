//! The ledger: the one place where people are written and deliveries change state.
//!
//! Every function here changes `deliveries` and appends the matching rows to `events` inside the
//! caller's transaction, so the state and its evidence can never disagree. Bulk changes (claiming a
//! batch, importing a batch) are single set-based statements, so they cost one round trip per
//! batch, not per person.

use sqlx::{Sqlite, SqliteConnection, Transaction};

use crate::domain::{DeliveryState, NoticeId};

/// A validated person, ready to be written. Only masked identifier and phone exist here.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPerson {
    pub person_ref: String,
    pub email: Option<String>,
    pub email_domain: Option<String>,
    pub alt_email: Option<String>,
    pub civility: Option<&'static str>,
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

const PERSON_COLUMNS: &str = "ref, notice_id, email, email_domain, alt_email, civility, first_name, last_name, language, address_line1, address_line2, postcode, city, country, phone_masked, identifier_masked, exposed, extra, row_hash, import_run, imported_at, updated_at";
const PERSON_COLUMN_COUNT: usize = 22;

/// Inserts new people, their deliveries (`pending`, or `no_email` without an address) and an
/// `imported` event each. Returns how many were inserted.
pub async fn insert_people(
    tx: &mut Transaction<'_, Sqlite>,
    people: &[&NewPerson],
    run_id: i64,
    now: i64,
) -> anyhow::Result<u64> {
    if people.is_empty() {
        return Ok(0);
    }
    // New rowids are above every existing one (no AUTOINCREMENT: max + 1), so the batch is
    // exactly the range after the current maximum. Counting rows instead of returning their ids
    // saves a round trip per person between SQLite's thread and ours.
    let before: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM people")
        .fetch_one(&mut **tx)
        .await?;
    let mut inserted = 0;
    let mut row = before;
    let mut notice_id = || {
        row += 1;
        NoticeId::in_bucket(row)
    };
    for chunk in people.chunks(INSERT_CHUNK) {
        inserted += insert_person_rows(tx, chunk, run_id, now, &mut notice_id).await?;
    }
    if inserted == 0 {
        return Ok(0);
    }
    let (first, last) = (before + 1, before + inserted as i64);
    sqlx::query(
        "INSERT INTO deliveries (person_id, state, generation, generation_started_at, email, email_domain, updated_at)
         SELECT id, CASE WHEN email IS NULL THEN 'no_email' ELSE 'pending' END, 1, ?, email, email_domain, ?
         FROM people WHERE id BETWEEN ? AND ?",
    )
    .bind(now)
    .bind(now)
    .bind(first)
    .bind(last)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO events (person_id, at, run_id, kind, to_state, generation)
         SELECT person_id, ?, ?, 'imported', state, 1 FROM deliveries WHERE person_id BETWEEN ? AND ?",
    )
    .bind(now)
    .bind(run_id)
    .bind(first)
    .bind(last)
    .execute(&mut **tx)
    .await?;
    Ok(inserted)
}

/// One multi-row INSERT: its parameters stay under SQLite's limit of 32,766.
const INSERT_CHUNK: usize = 1000;

/// Inserts one chunk of people, each with a fresh notice id from `notice_id`.
///
/// `OR IGNORE`: a statement that may abort half way makes SQLite copy every page it touches into
/// a statement journal first, and random notice ids touch a page of their index per row (a third
/// of the import's time at 340,000 people). With `OR IGNORE` nothing aborts; a row is skipped only
/// if its notice id collides with one already given (refs were checked by the caller), which is
/// astronomically rare but possible at tens of millions of people. Skipped rows are inserted
/// again, one by one, with new ids, and their rowids still follow the chunk's.
async fn insert_person_rows(
    tx: &mut Transaction<'_, Sqlite>,
    people: &[&NewPerson],
    run_id: i64,
    now: i64,
    mut notice_id: impl FnMut() -> NoticeId,
) -> anyhow::Result<u64> {
    let placeholders = format!("({})", vec!["?"; PERSON_COLUMN_COUNT].join(","));
    let sql = format!(
        "INSERT OR IGNORE INTO people ({PERSON_COLUMNS}) VALUES {}",
        vec![placeholders.as_str(); people.len()].join(",")
    );
    let mut query = sqlx::query(&sql);
    // Borrowed, not cloned: at 22 values a row, copies were a fifth of the import's time.
    for person in people {
        query = bind_person(query, person, notice_id(), run_id, now);
    }
    let inserted = query.execute(&mut **tx).await?.rows_affected();
    if inserted == people.len() as u64 {
        return Ok(inserted);
    }
    let placed: std::collections::HashSet<String> = {
        let sql = format!(
            "SELECT ref FROM people WHERE ref IN ({})",
            vec!["?"; people.len()].join(",")
        );
        let mut query = sqlx::query_scalar(&sql);
        for person in people {
            query = query.bind(person.person_ref.as_str());
        }
        query.fetch_all(&mut **tx).await?.into_iter().collect()
    };
    let one_row = format!("INSERT INTO people ({PERSON_COLUMNS}) VALUES {placeholders}");
    let mut repaired = 0;
    for person in people.iter().filter(|p| !placed.contains(&p.person_ref)) {
        let mut tries = 0;
        loop {
            let query = bind_person(sqlx::query(&one_row), person, notice_id(), run_id, now);
            match query.execute(&mut **tx).await {
                Ok(_) => break,
                Err(e) if tries < 5 && e.to_string().contains("people.notice_id") => tries += 1,
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("while importing ref {}", person.person_ref)));
                }
            }
        }
        repaired += 1;
    }
    Ok(inserted + repaired)
}

fn bind_person<'q>(
    query: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    person: &'q NewPerson,
    notice_id: NoticeId,
    run_id: i64,
    now: i64,
) -> sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    query
        .bind(person.person_ref.as_str())
        .bind(notice_id.as_str().to_owned())
        .bind(person.email.as_deref())
        .bind(person.email_domain.as_deref())
        .bind(person.alt_email.as_deref())
        .bind(person.civility)
        .bind(person.first_name.as_deref())
        .bind(person.last_name.as_deref())
        .bind(person.language.as_str())
        .bind(person.address_line1.as_deref())
        .bind(person.address_line2.as_deref())
        .bind(person.postcode.as_deref())
        .bind(person.city.as_deref())
        .bind(person.country.as_deref())
        .bind(person.phone_masked.as_deref())
        .bind(person.identifier_masked.as_deref())
        .bind(person.exposed.as_str())
        .bind(person.extra.as_str())
        .bind(person.row_hash.as_str())
        .bind(run_id)
        .bind(now)
        .bind(now)
}

/// Marks people as seen by this import without changing them (re-import of the same row).
pub async fn touch_people(
    tx: &mut Transaction<'_, Sqlite>,
    ids: &[i64],
    run_id: i64,
) -> anyhow::Result<()> {
    for chunk in ids.chunks(900) {
        let sql = format!(
            "UPDATE people SET import_run = ? WHERE id IN ({})",
            vec!["?"; chunk.len()].join(",")
        );
        let mut query = sqlx::query(&sql).bind(run_id);
        for id in chunk {
            query = query.bind(id);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// `import --update`: writes the changed fields of an existing person and records which fields
/// changed (names only, never values). A new address reaches a delivery that has not gone yet;
/// a person who had no address becomes `pending`.
pub async fn update_person(
    tx: &mut Transaction<'_, Sqlite>,
    person_id: i64,
    person: &NewPerson,
    changed_fields: &[&str],
    run_id: i64,
    now: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE people SET email = ?, email_domain = ?, alt_email = ?, civility = ?, first_name = ?,
           last_name = ?, language = ?, address_line1 = ?, address_line2 = ?, postcode = ?, city = ?,
           country = ?, phone_masked = ?, identifier_masked = ?, exposed = ?, extra = ?, row_hash = ?,
           import_run = ?, updated_at = ?
         WHERE id = ?",
    )
    .bind(&person.email)
    .bind(&person.email_domain)
    .bind(&person.alt_email)
    .bind(person.civility)
    .bind(&person.first_name)
    .bind(&person.last_name)
    .bind(&person.language)
    .bind(&person.address_line1)
    .bind(&person.address_line2)
    .bind(&person.postcode)
    .bind(&person.city)
    .bind(&person.country)
    .bind(&person.phone_masked)
    .bind(&person.identifier_masked)
    .bind(&person.exposed)
    .bind(&person.extra)
    .bind(&person.row_hash)
    .bind(run_id)
    .bind(now)
    .bind(person_id)
    .execute(&mut **tx)
    .await?;
    let state: String = sqlx::query_scalar("SELECT state FROM deliveries WHERE person_id = ?")
        .bind(person_id)
        .fetch_one(&mut **tx)
        .await?;
    let state: DeliveryState = state.parse()?;
    let to = match (state, &person.email) {
        (DeliveryState::NoEmail, Some(_)) => DeliveryState::Pending,
        (DeliveryState::Pending | DeliveryState::Deferred, None) => DeliveryState::NoEmail,
        (other, _) => other,
    };
    // Only a letter that has not gone yet follows the new address; a sent one is resent on
    // purpose (`resend --changed-only`), never by accident.
    if matches!(
        state,
        DeliveryState::NoEmail | DeliveryState::Pending | DeliveryState::Deferred
    ) {
        sqlx::query(
            "UPDATE deliveries SET state = ?, email = ?, email_domain = ?, updated_at = ? WHERE person_id = ?",
        )
        .bind(to.as_str())
        .bind(&person.email)
        .bind(&person.email_domain)
        .bind(now)
        .bind(person_id)
        .execute(&mut **tx)
        .await?;
    }
    append_event(
        &mut *tx,
        Event {
            person_id,
            run_id: Some(run_id),
            kind: "updated",
            from_state: Some(state),
            to_state: Some(to),
            generation: None,
            detail: Some(format!("changed: {}", changed_fields.join(", "))),
        },
        now,
    )
    .await
}

/// One line of evidence.
pub struct Event<'a> {
    pub person_id: i64,
    pub run_id: Option<i64>,
    pub kind: &'a str,
    pub from_state: Option<DeliveryState>,
    pub to_state: Option<DeliveryState>,
    pub generation: Option<i64>,
    pub detail: Option<String>,
}

pub async fn append_event(
    conn: &mut SqliteConnection,
    event: Event<'_>,
    now: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO events (person_id, at, run_id, kind, from_state, to_state, generation, detail)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(event.person_id)
    .bind(now)
    .bind(event.run_id)
    .bind(event.kind)
    .bind(event.from_state.map(DeliveryState::as_str))
    .bind(event.to_state.map(DeliveryState::as_str))
    .bind(event.generation)
    .bind(event.detail)
    .execute(conn)
    .await?;
    Ok(())
}

/// A delivery claimed by a send run: the person and what the retry rules need.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub person: crate::person::Person,
    pub attempts: i64,
    pub first_attempt_at: Option<i64>,
    pub generation_started_at: i64,
    pub email_domain: String,
}

/// Moves up to `limit` due deliveries (pending, or deferred whose time has come) to `sending`
/// for this run, in one statement, with a `claimed` event each, and returns them. A crash after
/// this leaves them in `sending`, which the next run takes back (`recover_abandoned`).
/// Domains in `exclude` (their queue is full) are left for later.
pub async fn claim(
    pool: &sqlx::SqlitePool,
    run_id: i64,
    limit: i64,
    now: i64,
    exclude: &[String],
) -> anyhow::Result<Vec<Claimed>> {
    let exclusion = if exclude.is_empty() {
        String::new()
    } else {
        format!(
            " AND email_domain NOT IN ({})",
            vec!["?"; exclude.len()].join(",")
        )
    };
    let sql = format!(
        "UPDATE deliveries SET state = 'sending', claimed_by = ?1, claimed_from = state, updated_at = ?2
         WHERE person_id IN (
             SELECT person_id FROM (
                 SELECT person_id FROM deliveries WHERE state = 'pending'{exclusion}
                 UNION ALL
                 SELECT person_id FROM deliveries
                 WHERE state = 'deferred' AND next_attempt_at <= ?2{exclusion}
             ) LIMIT ?3)
         RETURNING person_id"
    );
    let mut tx = pool.begin().await?;
    let mut query = sqlx::query_scalar::<_, i64>(&sql)
        .bind(run_id)
        .bind(now)
        .bind(limit);
    for _ in 0..2 {
        for domain in exclude {
            query = query.bind(domain);
        }
    }
    let ids = query.fetch_all(&mut *tx).await?;
    if ids.is_empty() {
        tx.commit().await?;
        return Ok(Vec::new());
    }
    let list = vec!["?"; ids.len()].join(",");
    let events_sql = format!(
        "INSERT INTO events (person_id, at, run_id, kind, from_state, to_state, generation)
         SELECT person_id, ?, ?, 'claimed', claimed_from, 'sending', generation
         FROM deliveries WHERE person_id IN ({list})"
    );
    let mut events = sqlx::query(&events_sql).bind(now).bind(run_id);
    for id in &ids {
        events = events.bind(id);
    }
    events.execute(&mut *tx).await?;
    let select_sql = format!(
        "SELECT {}, d.attempts, d.first_attempt_at, d.generation_started_at, d.email_domain
         FROM people p JOIN deliveries d ON d.person_id = p.id WHERE p.id IN ({list})",
        crate::person::PERSON_COLUMNS
    );
    let mut select = sqlx::query(&select_sql);
    for id in &ids {
        select = select.bind(id);
    }
    let rows = select.fetch_all(&mut *tx).await?;
    tx.commit().await?;
    rows.iter()
        .map(|row| {
            use sqlx::Row;
            Ok(Claimed {
                person: crate::person::Person::from_row(row)?,
                attempts: row.try_get(18)?,
                first_attempt_at: row.try_get(19)?,
                generation_started_at: row.try_get(20)?,
                email_domain: row.try_get::<Option<String>, _>(21)?.unwrap_or_default(),
            })
        })
        .collect()
}

/// What became of one claimed delivery, as the writer records it.
#[derive(Debug, Clone)]
pub enum Outcome {
    Sent {
        reply: String,
        message_id: String,
        fingerprint: String,
        sha256: String,
        email: String,
    },
    /// Try again at `next_attempt_at`; `possible_duplicate` after an unknown outcome.
    Deferred {
        reason: String,
        next_attempt_at: i64,
        possible_duplicate: bool,
        message_id: String,
    },
    Failed {
        reason: String,
        smtp_code: Option<i64>,
        message_id: Option<String>,
        possible_duplicate: bool,
    },
    /// Not attempted (relay unreachable, run stopping, letter did not render): back to where
    /// it was, no attempt counted.
    Released { reason: String },
}

/// Records a batch of outcomes of one run in one transaction: each state change with its event.
pub async fn record_outcomes(
    pool: &sqlx::SqlitePool,
    run_id: i64,
    outcomes: &[(i64, i64, Outcome)],
) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    for (person_id, generation, outcome) in outcomes {
        record_outcome(&mut tx, run_id, *person_id, *generation, outcome).await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn record_outcome(
    tx: &mut Transaction<'_, Sqlite>,
    run_id: i64,
    person_id: i64,
    generation: i64,
    outcome: &Outcome,
) -> anyhow::Result<()> {
    let now = crate::db::now_ms();
    let (to, detail) = match outcome {
        Outcome::Sent {
            reply,
            message_id,
            fingerprint,
            sha256,
            email,
        } => {
            sqlx::query(
                "UPDATE deliveries SET state = 'sent', attempts = attempts + 1,
                   first_attempt_at = COALESCE(first_attempt_at, ?1), last_attempt_at = ?1, sent_at = ?1,
                   smtp_code = CAST(substr(?2, 1, 3) AS INTEGER), smtp_reply = ?2, last_error = NULL,
                   message_id = ?3, letters_fingerprint = ?4, content_sha256 = ?5, email = ?6,
                   next_attempt_at = NULL, claimed_by = NULL, claimed_from = NULL, updated_at = ?1
                 WHERE person_id = ?7 AND state = 'sending' AND claimed_by = ?8",
            )
            .bind(now)
            .bind(reply)
            .bind(message_id)
            .bind(fingerprint)
            .bind(sha256)
            .bind(email)
            .bind(person_id)
            .bind(run_id)
            .execute(&mut **tx)
            .await?;
            (DeliveryState::Sent, reply.clone())
        }
        Outcome::Deferred {
            reason,
            next_attempt_at,
            possible_duplicate,
            message_id,
        } => {
            sqlx::query(
                "UPDATE deliveries SET state = 'deferred', attempts = attempts + 1,
                   first_attempt_at = COALESCE(first_attempt_at, ?1), last_attempt_at = ?1,
                   last_error = ?2, smtp_code = CASE WHEN ?2 GLOB '[2-5][0-9][0-9]*' THEN CAST(substr(?2, 1, 3) AS INTEGER) END,
                   next_attempt_at = ?3, possible_duplicate = MAX(possible_duplicate, ?4),
                   message_id = ?5, claimed_by = NULL, claimed_from = NULL, updated_at = ?1
                 WHERE person_id = ?6 AND state = 'sending' AND claimed_by = ?7",
            )
            .bind(now)
            .bind(reason)
            .bind(next_attempt_at)
            .bind(*possible_duplicate as i64)
            .bind(message_id)
            .bind(person_id)
            .bind(run_id)
            .execute(&mut **tx)
            .await?;
            (DeliveryState::Deferred, reason.clone())
        }
        Outcome::Failed {
            reason,
            smtp_code,
            message_id,
            possible_duplicate,
        } => {
            sqlx::query(
                "UPDATE deliveries SET state = 'failed', attempts = attempts + 1,
                   first_attempt_at = COALESCE(first_attempt_at, ?1), last_attempt_at = ?1,
                   last_error = ?2, smtp_code = ?3, smtp_reply = ?2, failed_email = email,
                   message_id = COALESCE(?4, message_id), possible_duplicate = MAX(possible_duplicate, ?5),
                   next_attempt_at = NULL, claimed_by = NULL, claimed_from = NULL, updated_at = ?1
                 WHERE person_id = ?6 AND state = 'sending' AND claimed_by = ?7",
            )
            .bind(now)
            .bind(reason)
            .bind(smtp_code)
            .bind(message_id)
            .bind(*possible_duplicate as i64)
            .bind(person_id)
            .bind(run_id)
            .execute(&mut **tx)
            .await?;
            (DeliveryState::Failed, reason.clone())
        }
        Outcome::Released { reason } => {
            let from: Option<String> = sqlx::query_scalar(
                "UPDATE deliveries SET state = COALESCE(claimed_from, 'pending'), claimed_by = NULL,
                   claimed_from = NULL, updated_at = ?1
                 WHERE person_id = ?2 AND state = 'sending' AND claimed_by = ?3
                 RETURNING state",
            )
            .bind(now)
            .bind(person_id)
            .bind(run_id)
            .fetch_optional(&mut **tx)
            .await?;
            let to = from
                .as_deref()
                .unwrap_or("pending")
                .parse()
                .unwrap_or(DeliveryState::Pending);
            (to, reason.clone())
        }
    };
    let kind = match outcome {
        Outcome::Sent { .. } => "sent",
        Outcome::Deferred { .. } => "deferred",
        Outcome::Failed { .. } => "failed",
        Outcome::Released { .. } => "released",
    };
    append_event(
        &mut *tx,
        Event {
            person_id,
            run_id: Some(run_id),
            kind,
            from_state: Some(DeliveryState::Sending),
            to_state: Some(to),
            generation: Some(generation),
            detail: Some(detail),
        },
        now,
    )
    .await
}

/// Deliveries a dead run left in `sending`: their outcome is unknown, so they are sent again,
/// flagged as possible duplicates. Only called by the holder of the sender lease.
pub async fn recover_abandoned(pool: &sqlx::SqlitePool, run_id: i64) -> anyhow::Result<u64> {
    let now = crate::db::now_ms();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO events (person_id, at, run_id, kind, from_state, to_state, generation, detail)
         SELECT person_id, ?, ?, 'recovered', 'sending', 'pending', generation,
                'left in sending by run ' || COALESCE(claimed_by, '?') || ' that did not finish: sent again, a duplicate is possible'
         FROM deliveries WHERE state = 'sending'",
    )
    .bind(now)
    .bind(run_id)
    .execute(&mut *tx)
    .await?;
    let recovered = sqlx::query(
        "UPDATE deliveries SET state = 'pending', possible_duplicate = 1, claimed_by = NULL,
           claimed_from = NULL, updated_at = ? WHERE state = 'sending'",
    )
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(recovered)
}

/// One recipient report of a bounce message, as the `bounces` table keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct BounceRecord<'a> {
    /// SHA-256 of the message's bytes: the same message read twice is the same bounce.
    pub fingerprint: &'a str,
    /// The reported recipient, or "" when the report names none.
    pub recipient: &'a str,
    pub person_id: Option<i64>,
    pub generation: Option<i64>,
    /// hard | soft | delayed | complaint | forged | unmatched | ignored
    pub kind: &'a str,
    pub status: Option<&'a str>,
    pub diagnostic: Option<&'a str>,
    /// token | message_id | notice_id | recipient
    pub matched_by: Option<&'a str>,
    pub source: &'a str,
}

/// Records one bounce report once. Returns false when the same message already gave this
/// recipient's report (a second reading of a mailbox), so the caller changes nothing twice.
pub async fn record_bounce(
    conn: &mut SqliteConnection,
    bounce: &BounceRecord<'_>,
    now: i64,
) -> anyhow::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO bounces (fingerprint, recipient, person_id, generation, kind, status,
           diagnostic, matched_by, source, read_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (fingerprint, recipient) DO NOTHING",
    )
    .bind(bounce.fingerprint)
    .bind(bounce.recipient)
    .bind(bounce.person_id)
    .bind(bounce.generation)
    .bind(bounce.kind)
    .bind(bounce.status)
    .bind(bounce.diagnostic)
    .bind(bounce.matched_by)
    .bind(bounce.source)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// A hard bounce for a letter that was sent: `sent` → `bounced`, keeping the status, the
/// diagnostic and the address that bounced. Changes nothing (and returns false) when the
/// delivery is in another state or has moved on to a newer generation.
pub async fn mark_bounced(
    conn: &mut SqliteConnection,
    person_id: i64,
    generation: i64,
    status: Option<&str>,
    diagnostic: Option<&str>,
    run_id: i64,
    now: i64,
) -> anyhow::Result<bool> {
    let changed = sqlx::query(
        "UPDATE deliveries SET state = 'bounced', bounced_at = ?, bounce_status = ?,
           bounce_diagnostic = ?, failed_email = email, updated_at = ?
         WHERE person_id = ? AND generation = ? AND state = 'sent'",
    )
    .bind(now)
    .bind(status)
    .bind(diagnostic)
    .bind(now)
    .bind(person_id)
    .bind(generation)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if changed == 0 {
        return Ok(false);
    }
    append_event(
        conn,
        Event {
            person_id,
            run_id: Some(run_id),
            kind: "bounced",
            from_state: Some(DeliveryState::Sent),
            to_state: Some(DeliveryState::Bounced),
            generation: Some(generation),
            detail: Some(bounce_detail(status, diagnostic)),
        },
        now,
    )
    .await?;
    Ok(true)
}

/// A temporary failure reported after the letter left: evidence only, the state stays.
pub async fn note_soft_bounce(
    conn: &mut SqliteConnection,
    person_id: i64,
    generation: i64,
    status: Option<&str>,
    diagnostic: Option<&str>,
    run_id: i64,
    now: i64,
) -> anyhow::Result<()> {
    append_event(
        conn,
        Event {
            person_id,
            run_id: Some(run_id),
            kind: "soft_bounce",
            from_state: None,
            to_state: None,
            generation: Some(generation),
            detail: Some(bounce_detail(status, diagnostic)),
        },
        now,
    )
    .await
}

/// A delay notice ("still trying") after the letter left: evidence only, the state stays and
/// the letter is not counted as bounced.
pub async fn note_delay(
    conn: &mut SqliteConnection,
    person_id: i64,
    generation: i64,
    status: Option<&str>,
    diagnostic: Option<&str>,
    run_id: i64,
    now: i64,
) -> anyhow::Result<()> {
    append_event(
        conn,
        Event {
            person_id,
            run_id: Some(run_id),
            kind: "delayed",
            from_state: None,
            to_state: None,
            generation: Some(generation),
            detail: Some(bounce_detail(status, diagnostic)),
        },
        now,
    )
    .await
}

/// A complaint from a provider's feedback loop (the person marked the letter as spam). The
/// notice is mandatory, so nothing is withdrawn and the state stays; the event is the evidence,
/// and the count per provider tells whether the next letters will still reach the inbox.
pub async fn record_complaint(
    conn: &mut SqliteConnection,
    person_id: i64,
    generation: i64,
    feedback_type: &str,
    provider: &str,
    run_id: i64,
    now: i64,
) -> anyhow::Result<()> {
    append_event(
        conn,
        Event {
            person_id,
            run_id: Some(run_id),
            kind: "complained",
            from_state: None,
            to_state: None,
            generation: Some(generation),
            detail: Some(format!(
                "{feedback_type} report from the feedback loop of {provider}"
            )),
        },
        now,
    )
    .await
}

fn bounce_detail(status: Option<&str>, diagnostic: Option<&str>) -> String {
    match (status, diagnostic) {
        (Some(status), Some(diagnostic)) => format!("{status} {diagnostic}"),
        (Some(only), None) | (None, Some(only)) => only.to_owned(),
        (None, None) => "no status given".to_owned(),
    }
}

/// What `resend` asks of one delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct NewGeneration<'a> {
    pub person_id: i64,
    /// The state the delivery was read in; if it changed since, nothing is done.
    pub from_state: DeliveryState,
    pub email: &'a str,
    pub email_domain: &'a str,
    /// Why, in the operator's words ("resend --bounced", "to the alternative address").
    pub reason: &'a str,
}

/// Puts a delivery back to `pending` as a new attempt generation to `email`: a fresh start
/// (attempts, Message-ID, content hash and relay reply cleared; the events keep the old ones).
/// Returns the new generation, or None when the delivery was no longer in `from_state`.
pub async fn start_new_generation(
    conn: &mut SqliteConnection,
    resend: &NewGeneration<'_>,
    run_id: i64,
    now: i64,
) -> anyhow::Result<Option<i64>> {
    let generation: Option<i64> = sqlx::query_scalar(
        "UPDATE deliveries SET state = 'pending', generation = generation + 1, attempts = 0,
           generation_started_at = ?, email = ?, email_domain = ?, next_attempt_at = NULL,
           first_attempt_at = NULL, last_attempt_at = NULL, sent_at = NULL, claimed_by = NULL,
           claimed_from = NULL, last_error = NULL, smtp_code = NULL, smtp_reply = NULL,
           message_id = NULL, content_sha256 = NULL, possible_duplicate = 0, updated_at = ?
         WHERE person_id = ? AND state = ?
         RETURNING generation",
    )
    .bind(now)
    .bind(resend.email)
    .bind(resend.email_domain)
    .bind(now)
    .bind(resend.person_id)
    .bind(resend.from_state.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(generation) = generation else {
        return Ok(None);
    };
    append_event(
        conn,
        Event {
            person_id: resend.person_id,
            run_id: Some(run_id),
            kind: "resend",
            from_state: Some(resend.from_state),
            to_state: Some(DeliveryState::Pending),
            generation: Some(generation),
            detail: Some(resend.reason.to_owned()),
        },
        now,
    )
    .await?;
    Ok(Some(generation))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(person_ref: &str) -> NewPerson {
        NewPerson {
            person_ref: person_ref.into(),
            email: Some(format!("{}@exemple.fr", person_ref.to_lowercase())),
            email_domain: Some("exemple.fr".into()),
            alt_email: None,
            civility: None,
            first_name: Some("Anne".into()),
            last_name: None,
            language: "fr".into(),
            address_line1: None,
            address_line2: None,
            postcode: None,
            city: None,
            country: None,
            phone_masked: None,
            identifier_masked: None,
            exposed: "name;email".into(),
            extra: "{}".into(),
            row_hash: format!("hash-{person_ref}"),
        }
    }

    #[tokio::test]
    async fn a_colliding_notice_id_is_drawn_again_and_every_person_is_inserted() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::db::open(&dir.path().join("c.db"), true)
            .await
            .unwrap();
        let taken = NoticeId::parse("AAAA-BBBB-CCCC").unwrap();
        let mut tx = pool.begin().await.unwrap();
        let first = person("A1");
        let once = taken.clone();
        let inserted = insert_person_rows(&mut tx, &[&first], 1, 0, move || once.clone())
            .await
            .unwrap();
        assert_eq!(inserted, 1);

        // B1 draws the id A1 already has; the id source then gives fresh ones.
        let mut ids = vec![
            NoticeId::parse("DDDD-EEEE-FFFF").unwrap(),
            NoticeId::parse("GGGG-HHHH-JJJJ").unwrap(),
            taken.clone(),
        ];
        let (b1, b2) = (person("B1"), person("B2"));
        let inserted = insert_person_rows(&mut tx, &[&b1, &b2], 1, 0, move || ids.pop().unwrap())
            .await
            .unwrap();
        assert_eq!(inserted, 2, "the skipped row is inserted again");
        tx.commit().await.unwrap();

        let rows: Vec<(i64, String, String)> =
            sqlx::query_as("SELECT id, ref, notice_id FROM people ORDER BY id")
                .fetch_all(&pool)
                .await
                .unwrap();
        let expected = [
            (1, "A1", "AAAA-BBBB-CCCC"),
            (2, "B2", "GGGG-HHHH-JJJJ"),
            (3, "B1", "DDDD-EEEE-FFFF"),
        ];
        assert_eq!(
            rows,
            expected.map(|(id, r, n)| (id, r.to_owned(), n.to_owned())),
            "ids stay contiguous after the batch, so its deliveries and events find every row"
        );
    }
}
