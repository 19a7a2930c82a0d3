//! What the HTML report reads besides the status: the letters sent over time, how many send
//! runs there were, and which versions of the letters went to how many people.
//!
//! Rows are read by column name; the `sent` event's kind comes from [`EventKind`].

use sqlx::{Row, SqliteConnection};

use crate::domain::EventKind;

/// When the first and the last letter were sent (milliseconds), None before the first.
pub async fn send_span(conn: &mut SqliteConnection) -> anyhow::Result<(Option<i64>, Option<i64>)> {
    let row = sqlx::query(
        "SELECT min(at) AS first_send, max(at) AS last_send FROM events WHERE kind = ?",
    )
    .bind(EventKind::Sent.as_str())
    .fetch_one(&mut *conn)
    .await?;
    Ok((row.try_get("first_send")?, row.try_get("last_send")?))
}

/// Letters sent in one bucket of time.
#[derive(Debug, Clone)]
pub struct SentBucket {
    pub start_ms: i64,
    pub sent: i64,
}

/// Letters sent in each bucket of `bucket_ms` milliseconds that saw any, in time order.
pub async fn sent_over_time(
    conn: &mut SqliteConnection,
    bucket_ms: i64,
) -> anyhow::Result<Vec<SentBucket>> {
    let rows = sqlx::query(
        "SELECT (at / ?1) * ?1 AS start_ms, count(*) AS sent FROM events WHERE kind = ?2
         GROUP BY 1 ORDER BY 1",
    )
    .bind(bucket_ms)
    .bind(EventKind::Sent.as_str())
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(SentBucket {
                start_ms: row.try_get("start_ms")?,
                sent: row.try_get("sent")?,
            })
        })
        .collect()
}

/// How many send runs were started.
pub async fn send_runs_total(conn: &mut SqliteConnection) -> anyhow::Result<i64> {
    let row = sqlx::query("SELECT count(*) AS runs FROM runs WHERE command = 'send'")
        .fetch_one(&mut *conn)
        .await?;
    Ok(row.try_get("runs")?)
}

/// One version of the letters and how many people got it.
#[derive(Debug, Clone)]
pub struct LettersInUse {
    pub fingerprint: String,
    pub people: i64,
    pub first_sent: Option<i64>,
    pub last_sent: Option<i64>,
}

/// Every version of the letters that was sent, the earliest first.
pub async fn letters_in_use(conn: &mut SqliteConnection) -> anyhow::Result<Vec<LettersInUse>> {
    let rows = sqlx::query(
        "SELECT letters_fingerprint AS fingerprint, count(*) AS people,
                min(sent_at) AS first_sent, max(sent_at) AS last_sent
         FROM deliveries WHERE letters_fingerprint IS NOT NULL GROUP BY 1 ORDER BY 3",
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(LettersInUse {
                fingerprint: row.try_get("fingerprint")?,
                people: row.try_get("people")?,
                first_sent: row.try_get("first_sent")?,
                last_sent: row.try_get("last_sent")?,
            })
        })
        .collect()
}
