//! The SQL of reading bounces from a mailbox: how far each IMAP folder was read, and the
//! complaints counted per provider's feedback loop.

use anyhow::Context;
use sqlx::{Row, SqliteConnection, SqlitePool};

/// How far one folder was read: every message with a UID up to `last_uid`, within
/// `uidvalidity`, is recorded in the `bounces` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The folder, as `imaps://user@host:port/folder`.
    pub mailbox: String,
    pub uidvalidity: u32,
    pub last_uid: u32,
}

/// The saved position of `mailbox`, if it was ever read.
pub async fn load_cursor(pool: &SqlitePool, mailbox: &str) -> anyhow::Result<Option<Cursor>> {
    let row =
        sqlx::query("SELECT mailbox, uidvalidity, last_uid FROM mailbox_cursors WHERE mailbox = ?")
            .bind(mailbox)
            .fetch_optional(pool)
            .await
            .context("while reading where the mailbox was read up to")?;
    let Some(row) = row else {
        return Ok(None);
    };
    let uidvalidity: i64 = row.try_get("uidvalidity")?;
    let last_uid: i64 = row.try_get("last_uid")?;
    Ok(Some(Cursor {
        mailbox: row.try_get("mailbox")?,
        uidvalidity: u32::try_from(uidvalidity).context("while reading a stored UIDVALIDITY")?,
        last_uid: u32::try_from(last_uid).context("while reading a stored UID")?,
    }))
}

/// Saves the position, in the caller's transaction (the one that recorded the messages). Within
/// one UIDVALIDITY the position only moves forward; a new UIDVALIDITY replaces it.
pub async fn save_cursor(conn: &mut SqliteConnection, cursor: &Cursor) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO mailbox_cursors (mailbox, uidvalidity, last_uid, updated_at)
         VALUES (?, ?, ?, ?)
         ON CONFLICT (mailbox) DO UPDATE SET
           last_uid = CASE WHEN uidvalidity = excluded.uidvalidity
                           THEN max(last_uid, excluded.last_uid) ELSE excluded.last_uid END,
           uidvalidity = excluded.uidvalidity,
           updated_at = excluded.updated_at",
    )
    .bind(&cursor.mailbox)
    .bind(i64::from(cursor.uidvalidity))
    .bind(i64::from(cursor.last_uid))
    .bind(crate::db::now_ms())
    .execute(conn)
    .await
    .context("while saving where the mailbox was read up to")?;
    Ok(())
}

/// Complaints received from one provider's feedback loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderComplaints {
    pub provider: String,
    pub complaints: i64,
    /// Of them, those matched to a person (a `complained` event each).
    pub matched: i64,
}

/// Every complaint recorded so far, per provider, most first.
pub async fn complaints_by_provider(pool: &SqlitePool) -> anyhow::Result<Vec<ProviderComplaints>> {
    let rows = sqlx::query(
        "SELECT coalesce(diagnostic, 'unknown') AS provider, count(*) AS complaints,
                count(person_id) AS matched
         FROM bounces WHERE kind = 'complaint'
         GROUP BY 1 ORDER BY 2 DESC, 1",
    )
    .fetch_all(pool)
    .await
    .context("while counting complaints per provider")?;
    rows.iter()
        .map(|row| {
            Ok(ProviderComplaints {
                provider: row.try_get("provider")?,
                complaints: row.try_get("complaints")?,
                matched: row.try_get("matched")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_position_moves_forward_and_restarts_with_a_new_uidvalidity() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = crate::db::open(&dir.path().join("c.db"), true)
            .await
            .expect("database");
        let mailbox = "imaps://bounces@mail.example.fr:993/INBOX";
        assert_eq!(load_cursor(&pool, mailbox).await.expect("reads"), None);
        let save = |uidvalidity, last_uid| {
            let pool = pool.clone();
            async move {
                let mut conn = pool.acquire().await.expect("connection");
                let cursor = Cursor {
                    mailbox: mailbox.to_owned(),
                    uidvalidity,
                    last_uid,
                };
                save_cursor(&mut conn, &cursor).await.expect("saves");
                load_cursor(&pool, mailbox)
                    .await
                    .expect("reads")
                    .map(|c| (c.uidvalidity, c.last_uid))
            }
        };
        assert_eq!(save(7, 40).await, Some((7, 40)));
        // An older position never wins within the same UIDVALIDITY...
        assert_eq!(save(7, 12).await, Some((7, 40)));
        // ...and a new UIDVALIDITY starts over.
        assert_eq!(save(9, 3).await, Some((9, 3)));
    }
}
