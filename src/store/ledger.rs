//! The ledger: the one place where people are written and deliveries change state.
//!
//! Every function here changes `deliveries` and appends the matching rows to `events` inside the
//! caller's transaction, so the state and its evidence can never disagree. Bulk changes (claiming a
//! batch, importing a batch) are single set-based statements, so they cost one round trip per
//! batch, not per person.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use sqlx::{Sqlite, SqliteConnection, Transaction};

use super::people::PERSON_FIELDS;
use crate::domain::{DeliveryState, Email, EventKind, NoticeId, Transition};
use crate::smtp_reply::SmtpReply;
use crate::store::Stale;
use crate::verp::DeliveryRef;

mod transition;

use transition::{Binds, Change, Event, From, Moved, To, append_event, apply};

use super::people::NewPerson;

/// The columns of a new person's row, in the order [`bind_person`] binds them: the ref, its
/// notice id, the imported values ([`PERSON_FIELDS`]), then the hash and the import's marks.
static INSERT_COLUMNS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let fields = PERSON_FIELDS.iter().map(|field| field.column);
    ["ref", "notice_id"]
        .into_iter()
        .chain(fields)
        .chain(["row_hash", "import_run", "imported_at", "updated_at"])
        .collect()
});

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
    sqlx::query(&format!(
        "INSERT INTO deliveries (person_id, state, generation, generation_started_at, email, email_domain, updated_at)
         SELECT id, CASE WHEN email IS NULL THEN '{no_email}' ELSE '{pending}' END, 1, ?, email, email_domain, ?
         FROM people WHERE id BETWEEN ? AND ?",
        no_email = DeliveryState::NoEmail.as_str(),
        pending = DeliveryState::Pending.as_str(),
    ))
    .bind(now)
    .bind(now)
    .bind(first)
    .bind(last)
    .execute(&mut **tx)
    .await?;
    sqlx::query(&format!(
        "INSERT INTO events (person_id, at, run_id, kind, to_state, generation)
         SELECT person_id, ?, ?, '{kind}', state, 1 FROM deliveries WHERE person_id BETWEEN ? AND ?",
        kind = Transition::Import.kind().as_str(),
    ))
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
    let columns = INSERT_COLUMNS.join(", ");
    let placeholders = format!("({})", vec!["?"; INSERT_COLUMNS.len()].join(","));
    let sql = format!(
        "INSERT OR IGNORE INTO people ({columns}) VALUES {}",
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
    let one_row = format!("INSERT INTO people ({columns}) VALUES {placeholders}");
    let mut repaired = 0;
    for person in people
        .iter()
        .filter(|p| !placed.contains(p.person_ref.as_str()))
    {
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
    let mut query = query
        .bind(person.person_ref.as_str())
        .bind(notice_id.as_str().to_owned());
    for value in person.field_values() {
        query = query.bind(value);
    }
    query
        .bind(person.row_hash.as_str())
        .bind(run_id)
        .bind(now)
        .bind(now)
}

/// `UPDATE people SET` every imported value ([`PERSON_FIELDS`], in its order), the hash and the
/// import's marks, for one id.
static UPDATE_PERSON_SQL: LazyLock<String> = LazyLock::new(|| {
    let fields: Vec<String> = PERSON_FIELDS
        .iter()
        .map(|field| format!("{} = ?", field.column))
        .collect();
    format!(
        "UPDATE people SET {}, row_hash = ?, import_run = ?, updated_at = ? WHERE id = ?",
        fields.join(", ")
    )
});

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
    let mut update = sqlx::query(UPDATE_PERSON_SQL.as_str());
    for value in person.field_values() {
        update = update.bind(value);
    }
    update
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
    let detail = format!("changed: {}", changed_fields.join(", "));
    if !Transition::Update.from_states().contains(&state) {
        let note = Event {
            person_id,
            run_id,
            kind: EventKind::Updated,
            in_state: Some(state),
            generation: None,
            detail: &detail,
        };
        return append_event(&mut *tx, note, now).await;
    }
    let change = Change {
        transition: Transition::Update,
        from: From::Read(state),
        to: To::Given(to),
        set: "email = ?, email_domain = ?, updated_at = ?",
        source: "",
        rows: "deliveries.person_id = ?",
        names_generation: false,
    };
    let binds = Binds::new()
        .add(&person.email)
        .add(person.email.as_ref().map(Email::domain))
        .add(now)
        .add(person_id);
    let moved = apply(&mut *tx, &change, binds, run_id, |_| Some(&detail), now).await?;
    if moved.is_empty() {
        anyhow::bail!(Stale {
            person_id,
            expected: state.as_str(),
        });
    }
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
    /// A dead run may already have handed this letter to a relay: sending it counts as a
    /// possible duplicate.
    pub possible_duplicate: bool,
}

/// Moves up to `limit` due deliveries to `sending` for this run, with a `claimed` event each,
/// and returns them: retries whose time has come first, then resends, then new letters in the
/// schedule's order (`store::schedule::claim_candidates`). A crash after this leaves them in
/// `sending`, which the next run takes back (`recover_abandoned`). Domains in `exclude` (their
/// queue is full) are left for later.
///
/// With a schedule, the claim also takes its place in the day's allowance and in each capped
/// domain's, in the same transaction: holding the write lock from its start, it reads the day's
/// counts, claims at most what is left, and raises the counts. A second run, or the next one
/// after a restart, reads what this one counted.
pub async fn claim(
    pool: &sqlx::SqlitePool,
    run_id: i64,
    limit: i64,
    now: i64,
    exclude: &[String],
    schedule: Option<&crate::schedule::Schedule>,
) -> anyhow::Result<Vec<Claimed>> {
    use crate::store::schedule as days;
    // The write lock first: the claim reads what is due (and the day's counts) before it writes,
    // and a deferred transaction whose snapshot went stale (the outcome writer committed in
    // between) would fail at its first write instead of waiting its turn.
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut limit = limit;
    let mut exclude = exclude.to_vec();
    let mut domain_room: std::collections::HashMap<String, i64> = Default::default();
    let day = schedule.map(|s| {
        let at = chrono::DateTime::from_timestamp_millis(now).unwrap_or_default();
        s.local_date(at).to_string()
    });
    if let (Some(schedule), Some(day)) = (schedule, &day) {
        days::open_day(&mut tx, day).await?;
        let claimed = days::claimed_on(&mut tx, day).await?;
        let sending_day = days::sending_days_before(&mut tx, day).await?;
        if let Some(allowance) = schedule.allowance(sending_day as usize) {
            let used = claimed.get(days::ALL_DOMAINS).copied().unwrap_or(0);
            limit = limit.min(allowance as i64 - used);
        }
        for (domain, cap) in &schedule.per_domain_daily_cap {
            let room = i64::from(*cap) - claimed.get(domain).copied().unwrap_or(0);
            if room <= 0 {
                exclude.push(domain.clone());
            } else {
                domain_room.insert(domain.clone(), room);
            }
        }
    }
    if limit <= 0 {
        tx.commit().await?;
        return Ok(Vec::new());
    }
    let mut taken: std::collections::BTreeMap<String, i64> = Default::default();
    let candidates: Vec<i64> = days::claim_candidates(&mut tx, limit, now, &exclude)
        .await?
        .into_iter()
        .filter(
            |candidate| match domain_room.get_mut(&candidate.email_domain) {
                Some(room) if *room <= 0 => false,
                Some(room) => {
                    *room -= 1;
                    *taken.entry(candidate.email_domain.clone()).or_default() += 1;
                    true
                }
                None => true,
            },
        )
        .map(|candidate| candidate.person_id)
        .collect();
    if candidates.is_empty() {
        tx.commit().await?;
        return Ok(Vec::new());
    }
    let rows = by_ids(candidates.len());
    let mut binds = Binds::new().add(run_id).add(day.as_deref()).add(now);
    for id in &candidates {
        binds = binds.add(*id);
    }
    let moved = apply(&mut tx, &claim_change(&rows), binds, run_id, |_| None, now).await?;
    if moved.is_empty() {
        tx.commit().await?;
        return Ok(Vec::new());
    }
    if let Some(day) = &day {
        // The write lock has been held since the start: every candidate was still due.
        days::add_claims(&mut tx, day, days::ALL_DOMAINS, moved.len() as i64).await?;
        for (domain, count) in &taken {
            days::add_claims(&mut tx, day, domain, *count).await?;
        }
    }
    let ids: Vec<i64> = moved.iter().map(|m| m.person_id).collect();
    let list = vec!["?"; ids.len()].join(",");
    let select_sql = format!(
        "SELECT {}, d.attempts AS attempts, d.first_attempt_at AS first_attempt_at,
                d.generation_started_at AS generation_started_at, d.email_domain AS email_domain,
                d.possible_duplicate AS possible_duplicate
         FROM people p JOIN deliveries d ON d.person_id = p.id WHERE p.id IN ({list})",
        super::people::PERSON_COLUMNS
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
                attempts: row.try_get("attempts")?,
                first_attempt_at: row.try_get("first_attempt_at")?,
                generation_started_at: row.try_get("generation_started_at")?,
                email_domain: row
                    .try_get::<Option<String>, _>("email_domain")?
                    .unwrap_or_default(),
                possible_duplicate: row.try_get::<i64, _>("possible_duplicate")? != 0,
            })
        })
        .collect()
}

/// The claim of the candidates named by `rows` ([`by_ids`], bound after the run id, the day and the time). The
/// state is matched without its index (`+state`, [`apply`]'s for rows named by id): with no
/// statistics SQLite took scanning every due letter in `deliveries_claim_order` for cheaper than
/// `count` look-ups by id, 42 ms a claim of 256 at 340,000 people instead of 6, and the gap grows
/// with the campaign.
fn claim_change(rows: &str) -> Change<'_> {
    Change {
        transition: Transition::Claim,
        from: From::Any,
        to: To::Only,
        set: "claimed_by = ?, claim_day = ?, handed_over_at = NULL, updated_at = ?",
        source: "",
        rows,
        names_generation: true,
    }
}

/// The rows of `count` deliveries named by id, for a [`Change`].
fn by_ids(count: usize) -> String {
    format!("deliveries.person_id IN ({})", vec!["?"; count].join(","))
}

/// How many letters the campaign still has to send (pending, deferred or in flight).
pub async fn count_still_to_send(pool: &sqlx::SqlitePool) -> anyhow::Result<u64> {
    let sql = format!(
        "SELECT count(*) FROM deliveries WHERE state IN ({})",
        crate::domain::sql_states(DeliveryState::STILL_TO_SEND)
    );
    let count: i64 = sqlx::query_scalar(&sql).fetch_one(pool).await?;
    Ok(count.max(0) as u64)
}

/// Marks deliveries as handed to a relay (`handed_over_at`), and returns those `run_id` no
/// longer holds in `sending`. Fenced by run id: the recovery folds a dead run's hand-over
/// journal in with it, and a journal read twice, or naming letters since taken over, changes
/// nothing.
pub async fn mark_handed_over(
    conn: &mut SqliteConnection,
    run_id: i64,
    person_ids: &[i64],
    now: i64,
) -> anyhow::Result<Vec<i64>> {
    let mut lost = Vec::new();
    for chunk in person_ids.chunks(900) {
        let sql = format!(
            "UPDATE deliveries SET handed_over_at = ?
             WHERE state = '{sending}' AND claimed_by = ? AND person_id IN ({list})
             RETURNING person_id",
            sending = DeliveryState::Sending.as_str(),
            list = vec!["?"; chunk.len()].join(","),
        );
        let mut query = sqlx::query_scalar::<_, i64>(&sql).bind(now).bind(run_id);
        for id in chunk {
            query = query.bind(id);
        }
        let marked: std::collections::HashSet<i64> =
            query.fetch_all(&mut *conn).await?.into_iter().collect();
        lost.extend(chunk.iter().filter(|id| !marked.contains(id)));
    }
    Ok(lost)
}

/// What became of one claimed delivery, as the writer records it.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The relay took the letter: its reply after the message.
    Sent {
        reply: SmtpReply,
        message_id: String,
        fingerprint: String,
        sha256: String,
        /// The address it went to.
        email: Email,
        /// The relay was asked for delivery status notifications for it (RFC 3461 NOTIFY).
        notify: bool,
    },
    /// Try again at `next_attempt_at`; `possible_duplicate` after an unknown outcome.
    Deferred {
        /// Why, for people (`last_error`): the reply as the relay gave it, or what happened
        /// when there was none (a session that broke, no reply after the message).
        reason: String,
        /// The relay's reply, when there was one.
        reply: Option<SmtpReply>,
        next_attempt_at: i64,
        possible_duplicate: bool,
        message_id: String,
    },
    /// Never again to this address: refused, or given up on after too many attempts.
    Failed {
        /// Why, for people: the refusal, or "gave up after …" and the last reply.
        reason: String,
        /// The relay's reply it stands on, when there was one.
        reply: Option<SmtpReply>,
        message_id: Option<String>,
        possible_duplicate: bool,
    },
    /// Not attempted (relay unreachable, run stopping, letter did not render): back to where
    /// it was, no attempt counted.
    Released { reason: String },
}

impl Outcome {
    pub fn transition(&self) -> Transition {
        match self {
            Outcome::Sent { .. } => Transition::Send,
            Outcome::Deferred { .. } => Transition::Defer,
            Outcome::Failed { .. } => Transition::Fail,
            Outcome::Released { .. } => Transition::Release,
        }
    }
}

/// Records a batch of outcomes of one run in one transaction: each state change with its event.
/// Returns the deliveries this run no longer held (another run took them over): for those
/// nothing is written, and the caller must stop sending.
pub async fn record_outcomes(
    pool: &sqlx::SqlitePool,
    run_id: i64,
    outcomes: &[(DeliveryRef, Outcome)],
) -> anyhow::Result<Vec<Stale>> {
    let mut tx = crate::db::begin_write(pool).await?;
    let stale = record_outcomes_in(&mut tx, run_id, outcomes, crate::db::now_ms()).await?;
    tx.commit().await?;
    Ok(stale)
}

/// [`record_outcomes`] inside the caller's transaction.
pub async fn record_outcomes_in(
    conn: &mut SqliteConnection,
    run_id: i64,
    outcomes: &[(DeliveryRef, Outcome)],
    now: i64,
) -> anyhow::Result<Vec<Stale>> {
    let mut stale = Vec::new();
    // Letters the relay accepted, the bulk of every batch, are written a chunk to a statement
    // (and their events a chunk to another), instead of two statements each: each statement is
    // a round trip to SQLite's thread, and the claims wait for the connection meanwhile. The
    // rest, and a person named twice (a chunk holds distinct people), go one by one, after.
    let mut seen = std::collections::HashSet::new();
    let (sent, others): (Vec<_>, Vec<_>) = outcomes.iter().partition(|(delivery, outcome)| {
        matches!(outcome, Outcome::Sent { .. }) && seen.insert(delivery.person_id)
    });
    for chunk in sent.chunks(SENT_CHUNK) {
        stale.extend(record_sent(conn, run_id, chunk, now).await?);
    }
    for (delivery, outcome) in others {
        if let Err(lost) = record_outcome(conn, run_id, *delivery, outcome, now).await? {
            stale.push(lost);
        }
    }
    Ok(stale)
}

/// Accepted letters written together: eight values a letter, well under SQLite's limit of bound
/// values in one statement.
const SENT_CHUNK: usize = 128;

/// A reply as the text column keeps it for people, as the relay said it:
/// "250 2.0.0 Ok: queued as 4Xz…".
fn said(reply: &SmtpReply) -> String {
    format!("{} {}", reply.code(), reply.text())
        .trim_end()
        .to_owned()
}

/// [`record_outcome`] for a chunk of `Sent` outcomes (distinct people): one `UPDATE … FROM
/// (VALUES …)` fenced like the single one, then the events of the rows it changed.
async fn record_sent(
    conn: &mut SqliteConnection,
    run_id: i64,
    chunk: &[&(DeliveryRef, Outcome)],
    now: i64,
) -> anyhow::Result<Vec<Stale>> {
    let rows: Vec<_> = chunk
        .iter()
        .filter_map(|(delivery, outcome)| match outcome {
            Outcome::Sent {
                reply,
                message_id,
                fingerprint,
                sha256,
                email,
                notify,
            } => Some((
                delivery.person_id,
                said(reply),
                reply,
                outcome_texts(message_id, fingerprint, sha256, email),
                *notify,
            )),
            _ => None,
        })
        .collect();
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    // Plain `?` only: sqlx asks SQLite the name of every parameter, and SQLite finds a numbered
    // one (`?NNN`) by walking the list of names, so 770 of them cost the square of that on
    // every statement. The parameters go in the order they appear.
    let source = format!(
        "(SELECT ? AS now, ? AS run_id) AS t, (VALUES {}) AS v",
        vec!["(?,?,?,?,?,?,?,?)"; rows.len()].join(",")
    );
    let change = Change {
        transition: Transition::Send,
        from: From::Any,
        to: To::Only,
        set: "attempts = attempts + 1,
           first_attempt_at = COALESCE(first_attempt_at, t.now), last_attempt_at = t.now,
           sent_at = t.now, smtp_reply = v.column2, smtp_code = v.column3, last_error = NULL,
           message_id = v.column4, letters_fingerprint = v.column5, content_sha256 = v.column6,
           email = v.column7, notify_requested = v.column8,
           next_attempt_at = NULL, claimed_by = NULL, claimed_from = NULL, updated_at = t.now",
        source: &source,
        rows: "deliveries.person_id = v.column1 AND deliveries.claimed_by = t.run_id",
        names_generation: true,
    };
    let mut binds = Binds::new().add(now).add(run_id);
    for (person_id, text, reply, texts, notify) in &rows {
        binds = binds
            .add(*person_id)
            .add(text.as_str())
            .add(i64::from(reply.code()));
        for text in texts {
            binds = binds.add(*text);
        }
        binds = binds.add(i64::from(*notify));
    }
    let replies: HashMap<i64, &str> = rows
        .iter()
        .map(|(person_id, text, ..)| (*person_id, text.as_str()))
        .collect();
    let detail = |moved: &Moved| replies.get(&moved.person_id).copied();
    let moved = apply(conn, &change, binds, run_id, detail, now).await?;
    let changed: HashSet<i64> = moved.iter().map(|m| m.person_id).collect();
    Ok(rows
        .iter()
        .filter(|(person_id, ..)| !changed.contains(person_id))
        .map(|(person_id, ..)| stale(Transition::Send, *person_id))
        .collect())
}

/// The texts of a sent letter, in the order its statement binds them.
fn outcome_texts<'a>(
    message_id: &'a str,
    fingerprint: &'a str,
    sha256: &'a str,
    email: &'a Email,
) -> [&'a str; 4] {
    [message_id, fingerprint, sha256, email.as_str()]
}

/// The answer to a write that found the delivery no longer in the transition's from-state.
fn stale(transition: Transition, person_id: i64) -> Stale {
    Stale {
        person_id,
        expected: transition.from_states().first().map_or("", |s| s.as_str()),
    }
}

/// Writes one outcome if, and only if, the delivery is still `sending` for this run; the event
/// only when the row changed.
async fn record_outcome(
    conn: &mut SqliteConnection,
    run_id: i64,
    delivery: DeliveryRef,
    outcome: &Outcome,
    now: i64,
) -> anyhow::Result<Result<(), Stale>> {
    let transition = outcome.transition();
    let person_id = delivery.person_id;
    // Fenced by the run that claimed it.
    let rows = "deliveries.person_id = ? AND deliveries.claimed_by = ?";
    let (change, binds, detail) = match outcome {
        // Accepted letters have their own statement, for one letter or many.
        Outcome::Sent { .. } => {
            let stale = record_sent(conn, run_id, &[&(delivery, outcome.clone())], now).await?;
            return Ok(stale.into_iter().next().map_or(Ok(()), Err));
        }
        Outcome::Deferred {
            reason,
            reply,
            next_attempt_at,
            possible_duplicate,
            message_id,
        } => {
            let change = Change {
                transition,
                from: From::Any,
                to: To::Only,
                set: "attempts = attempts + 1,
                   first_attempt_at = COALESCE(first_attempt_at, ?), last_attempt_at = ?,
                   last_error = ?, smtp_code = ?, next_attempt_at = ?,
                   possible_duplicate = MAX(possible_duplicate, ?), message_id = ?,
                   claimed_by = NULL, claimed_from = NULL, updated_at = ?",
                source: "",
                rows,
                names_generation: true,
            };
            let binds = Binds::new()
                .add(now)
                .add(now)
                .add(reason.as_str())
                .add(reply.as_ref().map(|reply| i64::from(reply.code())))
                .add(*next_attempt_at)
                .add(i64::from(*possible_duplicate))
                .add(message_id.as_str())
                .add(now);
            (change, binds, reason)
        }
        Outcome::Failed {
            reason,
            reply,
            message_id,
            possible_duplicate,
        } => {
            let change = Change {
                transition,
                from: From::Any,
                to: To::Only,
                set: "attempts = attempts + 1,
                   first_attempt_at = COALESCE(first_attempt_at, ?), last_attempt_at = ?,
                   last_error = ?, smtp_reply = ?, smtp_code = ?, failed_email = email,
                   message_id = COALESCE(?, message_id),
                   possible_duplicate = MAX(possible_duplicate, ?), next_attempt_at = NULL,
                   claimed_by = NULL, claimed_from = NULL, updated_at = ?",
                source: "",
                rows,
                names_generation: true,
            };
            let binds = Binds::new()
                .add(now)
                .add(now)
                .add(reason.as_str())
                .add(reason.as_str())
                .add(reply.as_ref().map(|reply| i64::from(reply.code())))
                .add(message_id.as_deref())
                .add(i64::from(*possible_duplicate))
                .add(now);
            (change, binds, reason)
        }
        Outcome::Released { reason } => {
            // The day's cap gets its place back (nothing when the claim is not this run's).
            crate::store::schedule::give_back(&mut *conn, person_id, run_id).await?;
            // Back to the state it was claimed from.
            let change = Change {
                transition,
                from: From::Any,
                to: To::Claimed,
                set: "claimed_by = NULL, claimed_from = NULL, handed_over_at = NULL, updated_at = ?",
                source: "",
                rows,
                names_generation: true,
            };
            (change, Binds::new().add(now), reason)
        }
    };
    let binds = binds.add(person_id).add(run_id);
    let moved = apply(conn, &change, binds, run_id, |_| Some(detail.as_str()), now).await?;
    if moved.is_empty() {
        return Ok(Err(stale(transition, person_id)));
    }
    Ok(Ok(()))
}

/// Deliveries a dead run left in `sending` are sent again. Those it had handed to a relay
/// (`handed_over_at`, or named in its hand-over journal: `handed_over` holds a run id and the
/// person ids its journal names) may have arrived: they are flagged as possible duplicates;
/// those it had only claimed are not. Only called by the holder of the sender lease.
pub async fn recover_abandoned(
    pool: &sqlx::SqlitePool,
    run_id: i64,
    handed_over: &[(i64, Vec<i64>)],
) -> anyhow::Result<u64> {
    let now = crate::db::now_ms();
    let mut tx = crate::db::begin_write(pool).await?;
    // Fenced like the live mark: only deliveries that run still holds in `sending`, so a
    // journal read twice changes nothing.
    for (dead_run, person_ids) in handed_over {
        mark_handed_over(&mut tx, *dead_run, person_ids, now).await?;
    }
    // What each event says is read first: the change clears it. The write lock is held, so
    // these are the rows the change finds.
    let sql = format!(
        "SELECT person_id, claimed_by, handed_over_at IS NOT NULL AS handed_over
         FROM deliveries WHERE state IN ({})",
        Transition::Recover.sql_from()
    );
    let left: Vec<(i64, Option<i64>, bool)> = sqlx::query_as(&sql).fetch_all(&mut *tx).await?;
    let details: HashMap<i64, String> = left
        .iter()
        .map(|(person_id, claimed_by, handed_over)| {
            let run = claimed_by.map_or("?".to_owned(), |run| run.to_string());
            let what = if *handed_over {
                "it had handed the letter to the relay; sent again, a duplicate is possible"
            } else {
                "it had not handed the letter over; sent again"
            };
            let detail = format!("left in sending by run {run} that did not finish: {what}");
            (*person_id, detail)
        })
        .collect();
    let mut recovered = 0;
    for chunk in left.chunks(500) {
        let rows = by_ids(chunk.len());
        let change = Change {
            transition: Transition::Recover,
            from: From::Any,
            to: To::Only,
            set: "possible_duplicate = MAX(possible_duplicate, handed_over_at IS NOT NULL),
               claimed_by = NULL, claimed_from = NULL, handed_over_at = NULL, updated_at = ?",
            source: "",
            rows: &rows,
            names_generation: true,
        };
        let mut binds = Binds::new().add(now);
        for (person_id, _, _) in chunk {
            binds = binds.add(*person_id);
        }
        let detail = |moved: &Moved| details.get(&moved.person_id).map(String::as_str);
        recovered += apply(&mut tx, &change, binds, run_id, detail, now)
            .await?
            .len() as u64;
    }
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
    /// hard | soft | delayed | delivered | complaint | forged | unmatched | ignored
    pub kind: &'a str,
    pub status: Option<&'a str>,
    pub diagnostic: Option<&'a str>,
    /// token | envelope_id | message_id | notice_id | recipient
    pub matched_by: Option<&'a str>,
    pub source: &'a str,
    /// How many of the message's recipient reports this row stands for (one row per person a
    /// message is about); 0 for a message that reports no recipient (ignored).
    pub recipients: i64,
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
           diagnostic, matched_by, source, read_at, recipients)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
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
    .bind(bounce.recipients)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// A hard bounce for a letter that was sent (or that the provider had accepted: a provider may
/// bounce later what it accepted): `sent`/`delivered` → `bounced`, keeping the status, the
/// diagnostic and the address that bounced. Changes nothing (and returns false) when the
/// delivery is in another state than `from` or has moved on to a newer generation.
#[allow(clippy::too_many_arguments)]
pub async fn mark_bounced(
    conn: &mut SqliteConnection,
    person_id: i64,
    generation: i64,
    from: DeliveryState,
    status: Option<&str>,
    diagnostic: Option<&str>,
    run_id: i64,
    now: i64,
) -> anyhow::Result<bool> {
    let change = Change {
        transition: Transition::Bounce,
        from: From::Read(from),
        to: To::Only,
        set: "bounced_at = ?, bounce_status = ?, bounce_diagnostic = ?, failed_email = email,
           updated_at = ?",
        source: "",
        rows: "deliveries.person_id = ? AND deliveries.generation = ?",
        names_generation: true,
    };
    let binds = Binds::new()
        .add(now)
        .add(status)
        .add(diagnostic)
        .add(now)
        .add(person_id)
        .add(generation);
    let detail = bounce_detail(status, diagnostic);
    let moved = apply(conn, &change, binds, run_id, |_| Some(&detail), now).await?;
    Ok(!moved.is_empty())
}

/// What a relay's success notification (RFC 3464 `Action: relayed` or `delivered`) says of one
/// letter: who took it past the relay, what they answered, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acceptance<'a> {
    /// The provider's server (`Remote-MTA`), when the relay names it.
    pub remote_mta: Option<&'a str>,
    /// The provider's reply (`Diagnostic-Code`), e.g. `250 2.0.0 Ok: queued as 4Xz…`.
    pub reply: Option<&'a str>,
    /// When the provider accepted it (the notification's date), Unix milliseconds.
    pub at: i64,
}

/// The person's provider accepted a letter the relay took: `sent` → `delivered`, with the
/// provider's server, reply and time. Changes nothing (and returns false) in any other state
/// or generation: a second reading of the same notification, or one about a letter since
/// bounced or resent.
pub async fn mark_delivered(
    conn: &mut SqliteConnection,
    person_id: i64,
    generation: i64,
    acceptance: &Acceptance<'_>,
    run_id: i64,
    now: i64,
) -> anyhow::Result<bool> {
    let change = Change {
        transition: Transition::Deliver,
        from: From::Any,
        to: To::Only,
        set: "delivered_at = ?, delivered_by = ?, delivered_reply = ?, updated_at = ?",
        source: "",
        rows: "deliveries.person_id = ? AND deliveries.generation = ?",
        names_generation: true,
    };
    let binds = Binds::new()
        .add(acceptance.at)
        .add(acceptance.remote_mta)
        .add(acceptance.reply)
        .add(now)
        .add(person_id)
        .add(generation);
    let by = acceptance.remote_mta.unwrap_or("the provider");
    let at = crate::db::format_time(Some(acceptance.at));
    let detail = match acceptance.reply {
        Some(reply) => format!("accepted by {by} at {at}: {reply}"),
        None => format!("accepted by {by} at {at}"),
    };
    let moved = apply(conn, &change, binds, run_id, |_| Some(&detail), now).await?;
    Ok(!moved.is_empty())
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
    note(
        conn,
        person_id,
        generation,
        EventKind::SoftBounce,
        bounce_detail(status, diagnostic),
        run_id,
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
    note(
        conn,
        person_id,
        generation,
        EventKind::Delayed,
        format!("still at the relay: {}", bounce_detail(status, diagnostic)),
        run_id,
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
    let detail = format!("{feedback_type} report from the feedback loop of {provider}");
    note(
        conn,
        person_id,
        generation,
        EventKind::Complained,
        detail,
        run_id,
        now,
    )
    .await
}

/// A note on a person's letter that changes no state (a soft bounce, a delay, a complaint).
async fn note(
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
    };
    append_event(conn, event, now).await
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
    let change = Change {
        transition: Transition::Resend,
        from: From::Read(resend.from_state),
        to: To::Only,
        set: "generation = generation + 1, attempts = 0,
           generation_started_at = ?, email = ?, email_domain = ?, next_attempt_at = NULL,
           first_attempt_at = NULL, last_attempt_at = NULL, sent_at = NULL, claimed_by = NULL,
           claimed_from = NULL, last_error = NULL, smtp_code = NULL, smtp_reply = NULL,
           message_id = NULL, content_sha256 = NULL, possible_duplicate = 0,
           notify_requested = 0, delivered_at = NULL, delivered_by = NULL, delivered_reply = NULL,
           updated_at = ?",
        source: "",
        rows: "deliveries.person_id = ?",
        names_generation: true,
    };
    let binds = Binds::new()
        .add(now)
        .add(resend.email)
        .add(resend.email_domain)
        .add(now)
        .add(resend.person_id);
    let moved = apply(conn, &change, binds, run_id, |_| Some(resend.reason), now).await?;
    Ok(moved.first().map(|moved| moved.generation))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(person_ref: &str) -> NewPerson {
        NewPerson {
            person_ref: crate::domain::PersonRef::parse(person_ref).expect("a ref"),
            email: Some(
                Email::parse(&format!("{}@exemple.fr", person_ref.to_lowercase()))
                    .expect("an address"),
            ),
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

    #[tokio::test]
    async fn a_claim_finds_its_letters_by_id_not_by_scanning_the_due_ones() {
        let (_dir, pool) = campaign_of(3).await;
        for count in [1, 256] {
            let rows = by_ids(count);
            let claim = transition::change_sql(&claim_change(&rows))
                .unwrap()
                .unwrap();
            let sql = format!("EXPLAIN QUERY PLAN {claim}");
            let mut query = sqlx::query_as::<_, (i64, i64, i64, String)>(&sql)
                .bind(1)
                .bind("2026-01-15")
                .bind(0);
            for id in 0..count as i64 {
                query = query.bind(id);
            }
            let plan: Vec<String> = query
                .fetch_all(&pool)
                .await
                .unwrap()
                .into_iter()
                .map(|row| row.3)
                .collect();
            assert_eq!(
                plan,
                ["SEARCH deliveries USING INTEGER PRIMARY KEY (rowid=?)"],
                "claim of {count}"
            );
        }
    }

    async fn campaign_of(n: usize) -> (tempfile::TempDir, sqlx::SqlitePool) {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::db::open(&dir.path().join("c.db"), true)
            .await
            .unwrap();
        let people: Vec<NewPerson> = (1..=n).map(|i| person(&format!("P{i}"))).collect();
        let refs: Vec<&NewPerson> = people.iter().collect();
        let mut tx = pool.begin().await.unwrap();
        insert_people(&mut tx, &refs, 1, 0).await.unwrap();
        tx.commit().await.unwrap();
        (dir, pool)
    }

    fn capped(daily_cap: u32) -> crate::schedule::Schedule {
        crate::schedule::Schedule {
            timezone: chrono_tz::Europe::Paris,
            windows: Vec::new(),
            skip_dates: Default::default(),
            daily_cap: Some(daily_cap),
            warm_up: Vec::new(),
            per_domain_daily_cap: Default::default(),
            order: Vec::new(),
        }
    }

    #[tokio::test]
    async fn retries_and_resends_are_claimed_before_new_letters() {
        let (_dir, pool) = campaign_of(6).await;
        sqlx::query(
            "UPDATE deliveries SET state = 'deferred', next_attempt_at = 5 WHERE person_id = 5",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("UPDATE deliveries SET generation = 2 WHERE person_id = 6")
            .execute(&pool)
            .await
            .unwrap();
        let claimed = claim(&pool, 1, 3, 10, &[], None).await.unwrap();
        let mut ids: Vec<i64> = claimed.iter().map(|c| c.person.id).collect();
        ids.sort();
        assert_eq!(
            ids,
            [1, 5, 6],
            "the retry, the resend, then the first new letter"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn claims_at_the_same_time_never_exceed_the_days_cap() {
        let (_dir, pool) = campaign_of(20).await;
        let schedule = capped(7);
        let now = 1_768_467_600_000; // Thursday 15 January 2026, 10:00 in Paris
        let (a, b, c) = tokio::join!(
            claim(&pool, 1, 5, now, &[], Some(&schedule)),
            claim(&pool, 2, 5, now, &[], Some(&schedule)),
            claim(&pool, 3, 5, now, &[], Some(&schedule)),
        );
        let total = a.unwrap().len() + b.unwrap().len() + c.unwrap().len();
        assert_eq!(total, 7);
        let counted: i64 = sqlx::query_scalar(
            "SELECT claimed FROM schedule_days WHERE day = '2026-01-15' AND domain = ''",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(counted, 7);
        // A letter given back unattempted frees its place for the next claim.
        let (run, person_id): (i64, i64) = sqlx::query_as(
            "SELECT claimed_by, person_id FROM deliveries WHERE state = 'sending' LIMIT 1",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        let released = Outcome::Released {
            reason: "not attempted".into(),
        };
        let delivery = DeliveryRef {
            person_id,
            generation: 1,
        };
        record_outcomes(&pool, run, &[(delivery, released)])
            .await
            .unwrap();
        assert_eq!(
            claim(&pool, 4, 5, now, &[], Some(&schedule))
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(
            claim(&pool, 4, 5, now, &[], Some(&schedule))
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_capped_domain_waits_for_the_next_day_while_the_others_go() {
        let (_dir, pool) = campaign_of(6).await;
        sqlx::query("UPDATE deliveries SET email_domain = 'orange.fr' WHERE person_id <= 4")
            .execute(&pool)
            .await
            .unwrap();
        let mut schedule = capped(100);
        schedule.per_domain_daily_cap.insert("orange.fr".into(), 1);
        let now = 1_768_467_600_000;
        let claimed = claim(&pool, 1, 10, now, &[], Some(&schedule))
            .await
            .unwrap();
        let domains: Vec<&str> = claimed.iter().map(|c| c.email_domain.as_str()).collect();
        assert_eq!(domains.iter().filter(|d| **d == "orange.fr").count(), 1);
        assert_eq!(claimed.len(), 3);
        assert!(
            claim(&pool, 1, 10, now, &[], Some(&schedule))
                .await
                .unwrap()
                .is_empty()
        );
        let tomorrow = now + 86_400_000;
        assert_eq!(
            claim(&pool, 1, 10, tomorrow, &[], Some(&schedule))
                .await
                .unwrap()
                .len(),
            1
        );
    }
}
