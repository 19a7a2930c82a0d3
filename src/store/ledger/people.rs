//! Writing people: an import's new people with their deliveries and `imported` events, the
//! people it saw again, and the changes `import --update` makes (an address that reaches a
//! letter not gone yet is an `update` transition).

use std::sync::LazyLock;

use sqlx::{Sqlite, Transaction};

use super::transition::{Binds, Change, Event, From, To, append_event, apply};
use crate::domain::{DeliveryState, Email, EventKind, NoticeId, Transition};
use crate::store::Stale;
use crate::store::people::{NewPerson, PERSON_FIELDS};

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
            adviser: None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ledger::testing::person;

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
