//! `export postal`: everyone the e-mail did not reach, for the postal service.
//!
//! The law wants every affected person told; a letter refused at send time (`failed`), one that
//! bounced later (`bounced`) and a person without an address (`no_email`) are the same fact for
//! the operator: not reached, for a reason this export states. Rows are streamed from the
//! database to the CSV, so a campaign of any size never sits in memory.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use futures_util::TryStreamExt;
use sqlx::SqlitePool;

use crate::config::Config;
use crate::domain::DeliveryState;
use crate::exit::Exit;
use crate::export::neutralise_formula;
use crate::person::Person;
use crate::store::deliveries;

/// The columns of the postal CSV, in order.
pub const POSTAL_HEADER: [&str; 12] = [
    "ref",
    "notice_id",
    "civility",
    "first_name",
    "last_name",
    "address_line1",
    "address_line2",
    "postcode",
    "city",
    "country",
    "state",
    "reason",
];

/// Renders one person's text letter, ready to print. The letters engine provides it; this module
/// only decides who gets one and where it goes.
pub type LetterText<'a> = &'a dyn Fn(&Person) -> anyhow::Result<String>;

/// What a delivery's row says about why the e-mail did not reach the person.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryOutcome<'a> {
    pub smtp_reply: Option<&'a str>,
    pub last_error: Option<&'a str>,
    pub bounce_status: Option<&'a str>,
    pub bounce_diagnostic: Option<&'a str>,
}

/// Why a person was not reached by e-mail, in one line; None for a person who was (or may still
/// be). An immediate refusal and a later hard bounce read alike: the relay's own words.
pub fn unreached_reason(state: DeliveryState, outcome: &DeliveryOutcome<'_>) -> Option<String> {
    let first = |candidates: &[Option<&str>]| {
        candidates
            .iter()
            .flatten()
            .map(|s| s.trim())
            .find(|s| !s.is_empty())
            .map(str::to_owned)
    };
    match state {
        DeliveryState::NoEmail => Some("no e-mail address".to_owned()),
        DeliveryState::Bounced => Some(
            first(&[
                outcome.bounce_diagnostic,
                outcome.bounce_status,
                outcome.smtp_reply,
            ])
            .unwrap_or_else(|| "bounced".to_owned()),
        ),
        DeliveryState::Failed => Some(
            first(&[
                outcome.smtp_reply,
                outcome.last_error,
                outcome.bounce_diagnostic,
            ])
            .unwrap_or_else(|| "refused by the relay".to_owned()),
        ),
        _ => None,
    }
}

/// The reason given for a person who was reached (or may still be) but asked for paper.
pub const PAPER_LETTER_ASKED: &str = "asked the helpline for a paper letter";

/// What one postal export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostalSummary {
    pub people: u64,
    pub no_email: u64,
    pub bounced: u64,
    pub failed: u64,
    /// Reached (or still to be) by e-mail, but asked the helpline for a paper letter.
    pub paper_requested: u64,
    pub letters_written: u64,
    pub letters_failed: u64,
    /// Everyone written to the export, recorded afterwards so the helpline can say when a
    /// person's paper letter was exported.
    pub person_ids: Vec<i64>,
}

/// `export postal [--out FILE] [--letters DIR]`. `letter_text` is the letters engine; without
/// one, `--letters` is refused.
pub async fn run(
    config: &Config,
    out: Option<&Path>,
    letters: Option<&Path>,
    letter_text: Option<LetterText<'_>>,
) -> anyhow::Result<Exit> {
    let letters = match (letters, letter_text) {
        (None, _) => None,
        (Some(dir), Some(render)) => Some((dir, render)),
        (Some(_), None) => {
            return Err(crate::exit::UsageError::new(
                "export postal --letters needs the letters engine, which this build does not have yet",
            )
            .into());
        }
    };
    let pool = crate::db::open_read_only(&config.campaign.database).await?;
    let sink: Box<dyn Write> = match out {
        Some(path) => Box::new(
            crate::files::private_writer(path)
                .with_context(|| format!("while creating {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let summary = export(&pool, sink, letters).await?;
    pool.close().await;
    // Recorded once the whole file is written: the helpline then tells a caller quoting the
    // number of a person without an e-mail that their paper letter was exported on this date.
    // A database that cannot be written to (a read-only copy) still gives its export.
    let recorded = async {
        let ledger = crate::db::open(&config.campaign.database, false).await?;
        crate::store::helpline::record_postal_exports(
            &ledger,
            &summary.person_ids,
            crate::db::now_ms(),
        )
        .await?;
        ledger.close().await;
        anyhow::Ok(())
    };
    if let Err(error) = recorded.await {
        tracing::warn!(
            "export postal: the export is written, but the helpline will not know it was: {error:#}"
        );
    }
    tracing::info!(
        "export postal: {} people not reached by e-mail ({} without an address, {} bounced, {} failed) or who asked for a paper letter ({}){}",
        summary.people,
        summary.no_email,
        summary.bounced,
        summary.failed,
        summary.paper_requested,
        match letters {
            Some((dir, _)) => format!(
                "; {} letters written to {}, {} failed",
                summary.letters_written,
                dir.display(),
                summary.letters_failed
            ),
            None => String::new(),
        }
    );
    if summary.letters_failed > 0 {
        return Ok(Exit::Failed);
    }
    Ok(Exit::Ok)
}

/// Streams everyone not reached into `sink` as CSV, and their letters into the folder if asked.
/// A letter that does not render is reported and counted; the export goes on.
pub async fn export(
    pool: &SqlitePool,
    sink: Box<dyn Write + '_>,
    letters: Option<(&Path, LetterText<'_>)>,
) -> anyhow::Result<PostalSummary> {
    if let Some((dir, _)) = letters {
        crate::files::create_private_dir(dir)
            .with_context(|| format!("while creating {}", dir.display()))?;
    }
    let mut csv = csv::Writer::from_writer(sink);
    csv.write_record(POSTAL_HEADER)?;
    let mut rows = deliveries::not_reached(pool);
    let mut summary = PostalSummary::default();
    while let Some(unreached) = rows.try_next().await.context("while reading the people")? {
        let (person, state) = (&unreached.person, unreached.state);
        let outcome = DeliveryOutcome {
            smtp_reply: unreached.smtp_reply.as_deref(),
            last_error: unreached.last_error.as_deref(),
            bounce_status: unreached.bounce_status.as_deref(),
            bounce_diagnostic: unreached.bounce_diagnostic.as_deref(),
        };
        let reason =
            unreached_reason(state, &outcome).unwrap_or_else(|| PAPER_LETTER_ASKED.to_owned());
        csv.write_record(
            postal_record(person, state, &reason)
                .iter()
                .map(|cell| neutralise_formula(cell).into_owned()),
        )?;
        summary.people += 1;
        summary.person_ids.push(person.id);
        match state {
            DeliveryState::NoEmail => summary.no_email += 1,
            DeliveryState::Bounced => summary.bounced += 1,
            DeliveryState::Failed => summary.failed += 1,
            _ => summary.paper_requested += 1,
        }
        if let Some((dir, render)) = letters {
            match write_letter(dir, person, render) {
                Ok(()) => summary.letters_written += 1,
                Err(error) => {
                    summary.letters_failed += 1;
                    tracing::warn!("{}: no printable letter: {error:#}", person.person_ref);
                }
            }
        }
    }
    csv.flush().context("while writing the postal export")?;
    Ok(summary)
}

fn postal_record(person: &Person, state: DeliveryState, reason: &str) -> [String; 12] {
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    [
        person.person_ref.to_string(),
        person.notice_id.to_string(),
        text(&person.civility),
        text(&person.first_name),
        text(&person.last_name),
        text(&person.address_line1),
        text(&person.address_line2),
        text(&person.postcode),
        text(&person.city),
        text(&person.country),
        state.as_str().to_owned(),
        reason.to_owned(),
    ]
}

/// `<ref>.txt` in the folder, owner-only. Refs never hold path separators (see `PersonRef`).
fn write_letter(dir: &Path, person: &Person, render: LetterText<'_>) -> anyhow::Result<()> {
    let text = render(person)?;
    let path = dir.join(format!("{}.txt", person.person_ref));
    crate::files::write_private(&path, text.as_bytes())
        .with_context(|| format!("while writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_and_bounce_read_alike() {
        let refused = DeliveryOutcome {
            smtp_reply: Some("550 5.1.1 no such user"),
            ..Default::default()
        };
        let bounced = DeliveryOutcome {
            bounce_status: Some("5.1.1"),
            bounce_diagnostic: Some("550 5.1.1 no such user"),
            ..Default::default()
        };
        assert_eq!(
            unreached_reason(DeliveryState::Failed, &refused),
            unreached_reason(DeliveryState::Bounced, &bounced)
        );
        assert_eq!(
            unreached_reason(DeliveryState::NoEmail, &DeliveryOutcome::default()).as_deref(),
            Some("no e-mail address")
        );
        assert_eq!(
            unreached_reason(DeliveryState::Sent, &bounced),
            None,
            "a letter that went out is not a postal case"
        );
    }

    #[test]
    fn a_reason_is_never_empty() {
        let blank = DeliveryOutcome {
            smtp_reply: Some("  "),
            ..Default::default()
        };
        assert_eq!(
            unreached_reason(DeliveryState::Failed, &blank).as_deref(),
            Some("refused by the relay")
        );
        assert_eq!(
            unreached_reason(DeliveryState::Bounced, &DeliveryOutcome::default()).as_deref(),
            Some("bounced")
        );
    }
}
