//! The queries of `[schedule]`: the day counters that hold the daily caps, the order in which
//! letters are claimed, and what the plan reads.
//!
//! Counters are raised by the claim, in its transaction (see `ledger::claim`), and lowered when
//! a claimed letter is released without an attempt, so a day's count is what was handed to the
//! relay or is on its way there.

use std::collections::BTreeMap;

use sqlx::{Row, SqliteConnection, SqlitePool};

use crate::domain::DeliveryState;
use crate::schedule::OrderKey;

/// The domain of a day's total row.
pub const ALL_DOMAINS: &str = "";

/// One day's count for one domain ('' for all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayCount {
    pub day: String,
    pub domain: String,
    pub claimed: i64,
}

/// A delivery the claim may take, in the order it should go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub person_id: i64,
    pub email_domain: String,
}

/// Makes sure the day's total row exists, so every day with a claim has its row.
pub async fn open_day(conn: &mut SqliteConnection, day: &str) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO schedule_days (day, domain, claimed) VALUES (?, ?, 0) ON CONFLICT DO NOTHING",
    )
    .bind(day)
    .bind(ALL_DOMAINS)
    .execute(conn)
    .await?;
    Ok(())
}

/// Days before `day` on which letters left: where `day` sits on the warm-up ramp.
pub async fn sending_days_before(conn: &mut SqliteConnection, day: &str) -> anyhow::Result<i64> {
    let row = sqlx::query(
        "SELECT count(*) AS days FROM schedule_days WHERE domain = ? AND day < ? AND claimed > 0",
    )
    .bind(ALL_DOMAINS)
    .bind(day)
    .fetch_one(conn)
    .await?;
    Ok(row.try_get("days")?)
}

/// What `day` has counted so far, by domain ('' for the total).
pub async fn claimed_on(
    conn: &mut SqliteConnection,
    day: &str,
) -> anyhow::Result<BTreeMap<String, i64>> {
    let rows = sqlx::query("SELECT domain, claimed FROM schedule_days WHERE day = ?")
        .bind(day)
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("domain")?, row.try_get("claimed")?)))
        .collect()
}

/// Counts `count` more letters on `day` for `domain` ('' for the total).
pub async fn add_claims(
    conn: &mut SqliteConnection,
    day: &str,
    domain: &str,
    count: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO schedule_days (day, domain, claimed) VALUES (?1, ?2, ?3)
         ON CONFLICT (day, domain) DO UPDATE SET claimed = claimed + ?3",
    )
    .bind(day)
    .bind(domain)
    .bind(count)
    .execute(conn)
    .await?;
    Ok(())
}

/// A letter claimed by `run_id` goes back unattempted: its day's count (and its domain's, when
/// that domain is capped) gives the place back. Nothing happens without a schedule.
pub async fn give_back(
    conn: &mut SqliteConnection,
    person_id: i64,
    run_id: i64,
) -> anyhow::Result<()> {
    let sql = format!(
        "UPDATE schedule_days SET claimed = max(claimed - 1, 0)
         WHERE (day, domain) IN (
             SELECT claim_day, ?1 FROM deliveries
             WHERE person_id = ?2 AND state = '{sending}' AND claimed_by = ?3 AND claim_day IS NOT NULL
             UNION ALL
             SELECT claim_day, email_domain FROM deliveries
             WHERE person_id = ?2 AND state = '{sending}' AND claimed_by = ?3 AND claim_day IS NOT NULL
               AND email_domain <> ?1)",
        sending = DeliveryState::Sending.as_str()
    );
    sqlx::query(&sql)
        .bind(ALL_DOMAINS)
        .bind(person_id)
        .bind(run_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Every day's total, oldest first: what happened, for the plan and the report.
pub async fn day_totals(conn: &mut SqliteConnection) -> anyhow::Result<Vec<DayCount>> {
    let rows =
        sqlx::query("SELECT day, domain, claimed FROM schedule_days WHERE domain = ? ORDER BY day")
            .bind(ALL_DOMAINS)
            .fetch_all(conn)
            .await?;
    rows.iter()
        .map(|row| {
            Ok(DayCount {
                day: row.try_get("day")?,
                domain: row.try_get("domain")?,
                claimed: row.try_get("claimed")?,
            })
        })
        .collect()
}

/// Letters still to send to each of these domains.
pub async fn still_due_to(
    conn: &mut SqliteConnection,
    domains: &[&str],
) -> anyhow::Result<BTreeMap<String, i64>> {
    let mut due = BTreeMap::new();
    let sql = format!(
        "SELECT count(*) AS due FROM deliveries WHERE state IN ('{}', '{}', '{}') AND email_domain = ?",
        DeliveryState::Pending.as_str(),
        DeliveryState::Deferred.as_str(),
        DeliveryState::Sending.as_str()
    );
    for domain in domains {
        let row = sqlx::query(&sql).bind(domain).fetch_one(&mut *conn).await?;
        due.insert((*domain).to_owned(), row.try_get("due")?);
    }
    Ok(due)
}

/// Up to `limit` deliveries due now, in the order they should go: retries whose time has come
/// (oldest first), then resends (a new generation: a fixed address, the alternative address),
/// then new letters by `claim_rank` and import order. Nobody waits behind the queue twice.
/// Domains in `exclude` are left out.
pub async fn claim_candidates(
    conn: &mut SqliteConnection,
    limit: i64,
    now: i64,
    exclude: &[String],
) -> anyhow::Result<Vec<Candidate>> {
    let exclusion = if exclude.is_empty() {
        String::new()
    } else {
        format!(
            " AND email_domain NOT IN ({})",
            vec!["?"; exclude.len()].join(",")
        )
    };
    let (pending, deferred) = (
        DeliveryState::Pending.as_str(),
        DeliveryState::Deferred.as_str(),
    );
    // Each part is limited and ordered on its own (by an index), and SQLite reads the parts
    // of a UNION ALL in turn: a claim reads a batch, never the whole queue.
    let sql = format!(
        "SELECT person_id, email_domain FROM (
             SELECT person_id, email_domain FROM deliveries
             WHERE state = '{deferred}' AND next_attempt_at <= ?{exclusion}
             ORDER BY next_attempt_at LIMIT ?)
         UNION ALL
         SELECT person_id, email_domain FROM (
             SELECT person_id, email_domain FROM deliveries
             WHERE state = '{pending}' AND generation > 1{exclusion}
             ORDER BY claim_rank, person_id LIMIT ?)
         UNION ALL
         SELECT person_id, email_domain FROM (
             SELECT person_id, email_domain FROM deliveries
             WHERE state = '{pending}' AND generation = 1{exclusion}
             ORDER BY claim_rank, person_id LIMIT ?)
         LIMIT ?"
    );
    let mut query = sqlx::query(&sql).bind(now);
    for _part in 0..3 {
        for domain in exclude {
            query = query.bind(domain);
        }
        query = query.bind(limit);
    }
    let rows = query.bind(limit).fetch_all(conn).await?;
    rows.iter()
        .map(|row| {
            Ok(Candidate {
                person_id: row.try_get("person_id")?,
                email_domain: row
                    .try_get::<Option<String>, _>("email_domain")?
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// The rank `schedule.order` gives a person, as an SQL expression over `people`: each key a
/// digit of a number whose smallest value goes first.
fn rank_expression(order: &[OrderKey]) -> String {
    let mut rank = String::from("0");
    for key in order {
        let (base, part) = match key {
            // A whole number in the import file's `priority` column, 1 before 2; anything else
            // after every number.
            OrderKey::Priority => (
                10_000,
                "CASE WHEN trim(COALESCE(json_extract(extra, '$.priority'), '')) <> ''
                       AND trim(json_extract(extra, '$.priority')) NOT GLOB '*[^0-9]*'
                      THEN min(CAST(trim(json_extract(extra, '$.priority')) AS INTEGER), 9998)
                      ELSE 9999 END",
            ),
            // Identifier and postal address both leaked, or the categories not known yet (they
            // may have): 0; one of them: 1; neither: 2.
            OrderKey::Exposure => (
                3,
                "CASE WHEN exposed = '' THEN 0 ELSE
                 2 - (instr(';' || exposed || ';', ';identifier;') > 0)
                   - (instr(';' || exposed || ';', ';postal;') > 0) END",
            ),
        };
        rank = format!("({rank}) * {base} + ({part})");
    }
    rank
}

/// Writes every letter still to send its place in `order` (0 for all when the order is empty),
/// changing only the rows whose place moved. Returns how many moved.
pub async fn rank_deliveries(pool: &SqlitePool, order: &[OrderKey]) -> anyhow::Result<u64> {
    if order.is_empty() {
        // Import order alone: no need to read people (a whole-table join, 0.8 s at 340,000).
        let sql = format!(
            "UPDATE deliveries SET claim_rank = 0 WHERE claim_rank <> 0 AND state IN ('{}', '{}')",
            DeliveryState::Pending.as_str(),
            DeliveryState::Deferred.as_str()
        );
        return Ok(sqlx::query(&sql).execute(pool).await?.rows_affected());
    }
    let sql = format!(
        "UPDATE deliveries SET claim_rank = ranked.rank
         FROM (SELECT id, {} AS rank FROM people) AS ranked
         WHERE ranked.id = deliveries.person_id AND deliveries.state IN ('{}', '{}')
           AND deliveries.claim_rank <> ranked.rank",
        rank_expression(order),
        DeliveryState::Pending.as_str(),
        DeliveryState::Deferred.as_str()
    );
    let moved = sqlx::query(&sql).execute(pool).await?.rows_affected();
    Ok(moved)
}
