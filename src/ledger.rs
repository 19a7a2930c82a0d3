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
    people: &[NewPerson],
    run_id: i64,
    now: i64,
) -> anyhow::Result<u64> {
    if people.is_empty() {
        return Ok(0);
    }
    let placeholders = format!("({})", vec!["?"; PERSON_COLUMN_COUNT].join(","));
    let sql = format!(
        "INSERT INTO people ({PERSON_COLUMNS}) VALUES {} RETURNING id",
        vec![placeholders.as_str(); people.len()].join(",")
    );
    // A notice id collision is astronomically rare but possible at tens of millions of people:
    // the failed statement changes nothing, so draw new ids and try again.
    let mut tries = 0;
    let ids: Vec<i64> = loop {
        let mut query = sqlx::query_scalar::<_, i64>(&sql);
        for person in people {
            query = query
                .bind(&person.person_ref)
                .bind(NoticeId::random().as_str().to_owned())
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
                .bind(now);
        }
        match query.fetch_all(&mut **tx).await {
            Ok(ids) => break ids,
            Err(e) if tries < 5 && e.to_string().contains("people.notice_id") => tries += 1,
            Err(e) => return Err(e.into()),
        }
    };
    let (first, last) = (ids.iter().min().copied(), ids.iter().max().copied());
    let (Some(first), Some(last)) = (first, last) else {
        return Ok(0);
    };
    // New rowids are above every existing one, so [first, last] holds exactly this batch.
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
    Ok(ids.len() as u64)
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

/// One recipient report of a bounce message, as the `bounces` table keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct BounceRecord<'a> {
    /// SHA-256 of the message's bytes: the same message read twice is the same bounce.
    pub fingerprint: &'a str,
    /// The reported recipient, or "" when the report names none.
    pub recipient: &'a str,
    pub person_id: Option<i64>,
    pub generation: Option<i64>,
    /// hard | soft | forged | unmatched | ignored
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
