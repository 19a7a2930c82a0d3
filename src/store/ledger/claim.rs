//! Claims: a send run takes due deliveries for itself (with the schedule's day and domain
//! caps), marks those it hands to a relay, and the next holder of the lease gives back what a
//! dead run left in `sending`.

use std::collections::HashMap;

use sqlx::SqliteConnection;

use super::transition::{Binds, Change, From, Moved, To, apply, by_ids};
use crate::domain::{DeliveryState, Transition};

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
        crate::store::people::PERSON_COLUMNS
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

#[cfg(test)]
mod tests {
    use super::super::{Outcome, record_outcomes};
    use super::*;
    use crate::store::ledger::testing::campaign_of;
    use crate::verp::DeliveryRef;

    #[tokio::test]
    async fn a_claim_finds_its_letters_by_id_not_by_scanning_the_due_ones() {
        let (_dir, pool) = campaign_of(3).await;
        for count in [1, 256] {
            let rows = by_ids(count);
            let claim = super::super::transition::change_sql(&claim_change(&rows))
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
