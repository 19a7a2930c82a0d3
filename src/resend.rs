//! `resend`: puts people whose letter did not arrive back to `pending`, as a new attempt
//! generation (new Message-ID, fresh attempts), to their current address.
//!
//! An address is fixed by `import --update`; this command only decides who goes again and where.
//! After a hard bounce or refusal of the main address, an imported `alt_email` is used instead.
//! Sending again to an address that already failed is allowed (mailboxes come back) but warned
//! about, and `--changed-only` skips it.

use anyhow::Context;
use sqlx::SqlitePool;

use crate::cli::ResendArgs;
use crate::config::Config;
use crate::domain::{DeliveryState, Email};
use crate::exit::{Exit, UsageError};
use crate::store::deliveries::{self, ResendCandidate as Candidate, ResendSelection};
use crate::store::ledger::{self, NewGeneration};

/// People per transaction.
const BATCH_PEOPLE: usize = 500;

/// Refs named on stderr in each warning, at most.
const REFS_SHOWN: usize = 10;

/// Where a candidate's new generation goes, or why it does not.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    Resend {
        email: String,
        to_alternative: bool,
        unchanged: bool,
    },
    NoAddress,
    NotEligible,
}

/// What one `resend` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ResendSummary {
    pub resent: u64,
    pub to_alternative: u64,
    pub unchanged_address: u64,
    pub skipped_unchanged: u64,
    pub no_address: u64,
    pub not_eligible: u64,
}

pub async fn run(config: &Config, args: &ResendArgs) -> anyhow::Result<Exit> {
    let pool = crate::db::open(&config.campaign.database, false).await?;
    let candidates = candidates(&pool, args).await?;
    let run_id = crate::store::campaign::start_run(&pool, "resend").await?;
    let reason = match (args.bounced, args.failed) {
        (true, _) => "resend --bounced",
        (_, true) => "resend --failed",
        _ => "resend --ref",
    };
    let summary = resend(&pool, &candidates, args.changed_only, reason, run_id).await;
    let detail = match &summary {
        Ok(summary) => serde_json::to_string(summary)?,
        Err(error) => format!("{error:#}"),
    };
    match &summary {
        Ok(_) => crate::store::campaign::finish_run(&pool, run_id, "ok", &detail).await?,
        Err(error) => crate::store::campaign::finish_failed_run(&pool, run_id, error).await,
    }
    let summary = summary?;
    crate::exit::print_out(&format!(
        "resend: {} people back to pending ({} to their alternative address), {} with the address that already failed ({}), {} without an address, {} not in a state to resend",
        summary.resent,
        summary.to_alternative,
        summary.unchanged_address,
        if args.changed_only {
            format!("{} skipped", summary.skipped_unchanged)
        } else {
            "resent anyway".to_owned()
        },
        summary.no_address,
        summary.not_eligible
    ));
    Ok(Exit::Ok)
}

/// The people the arguments name. An unknown ref is a usage error, before anything changes.
async fn candidates(pool: &SqlitePool, args: &ResendArgs) -> anyhow::Result<Vec<Candidate>> {
    let state = if args.bounced {
        DeliveryState::Bounced
    } else {
        DeliveryState::Failed
    };
    let refs: Vec<&str> = args.refs.iter().map(|r| r.trim()).collect();
    let selection = if refs.is_empty() {
        ResendSelection::InState(state)
    } else {
        ResendSelection::Refs(&refs)
    };
    let found = deliveries::resend_candidates(pool, selection).await?;
    let unknown: Vec<&str> = args
        .refs
        .iter()
        .map(|r| r.trim())
        .filter(|r| !found.iter().any(|c| c.person_ref == *r))
        .collect();
    if !unknown.is_empty() {
        return Err(UsageError::new(format!(
            "no such person: {} (nothing was resent)",
            unknown.join(", ")
        ))
        .into());
    }
    Ok(found)
}

/// Where this person's next letter goes.
fn decide(candidate: &Candidate) -> Decision {
    let after_failure = matches!(
        candidate.state,
        DeliveryState::Bounced | DeliveryState::Failed
    );
    if candidate.state == DeliveryState::NoEmail {
        return Decision::NoAddress;
    }
    // An explicit resend may follow a letter handed over, whether or not its provider
    // confirmed it (`delivered`): a corrected letter goes to everyone named.
    if !after_failure && !DeliveryState::HANDED_OVER.contains(&candidate.state) {
        return Decision::NotEligible;
    }
    let failed = if after_failure {
        candidate.failed_email.as_deref()
    } else {
        None
    };
    let same = |a: &str, b: Option<&str>| b.is_some_and(|b| a.eq_ignore_ascii_case(b));
    let main_failed = candidate
        .email
        .as_deref()
        .is_some_and(|main| same(main, failed));
    let (email, to_alternative) = match (&candidate.email, &candidate.alt_email) {
        (Some(_), Some(alt)) if main_failed => (alt, true),
        (Some(main), _) => (main, false),
        (None, Some(alt)) => (alt, true),
        (None, None) => return Decision::NoAddress,
    };
    Decision::Resend {
        unchanged: same(email, failed),
        email: email.clone(),
        to_alternative,
    }
}

async fn resend(
    pool: &SqlitePool,
    candidates: &[Candidate],
    changed_only: bool,
    reason: &str,
    run_id: i64,
) -> anyhow::Result<ResendSummary> {
    let mut summary = ResendSummary::default();
    let mut unchanged_refs = Vec::new();
    let mut no_address_refs = Vec::new();
    let mut not_eligible = Vec::new();
    for batch in candidates.chunks(BATCH_PEOPLE) {
        let mut tx = crate::db::begin_write(pool).await?;
        let now = crate::db::now_ms();
        for candidate in batch {
            let (email, to_alternative, unchanged) = match decide(candidate) {
                Decision::Resend {
                    email,
                    to_alternative,
                    unchanged,
                } => (email, to_alternative, unchanged),
                Decision::NoAddress => {
                    summary.no_address += 1;
                    no_address_refs.push(candidate.person_ref.as_str());
                    continue;
                }
                Decision::NotEligible => {
                    summary.not_eligible += 1;
                    not_eligible.push(format!("{} ({})", candidate.person_ref, candidate.state));
                    continue;
                }
            };
            if unchanged {
                summary.unchanged_address += 1;
                unchanged_refs.push(candidate.person_ref.as_str());
                if changed_only {
                    summary.skipped_unchanged += 1;
                    continue;
                }
            }
            // The address was valid at import; one that no longer parses is no address.
            let Ok(parsed) = Email::parse(&email) else {
                summary.no_address += 1;
                no_address_refs.push(candidate.person_ref.as_str());
                continue;
            };
            let why = match (to_alternative, unchanged) {
                (true, _) => format!("{reason}: to the alternative address"),
                (false, true) => format!("{reason}: to the same address as before"),
                (false, false) => format!("{reason}: to the current address"),
            };
            let change = NewGeneration {
                person_id: candidate.person_id,
                from_state: candidate.state,
                email: parsed.as_str(),
                email_domain: parsed.domain(),
                reason: &why,
            };
            if ledger::start_new_generation(&mut tx, &change, run_id, now)
                .await?
                .is_some()
            {
                summary.resent += 1;
                summary.to_alternative += u64::from(to_alternative);
            } else {
                // A concurrent send or bounce run moved it: leave it to that run.
                summary.not_eligible += 1;
                not_eligible.push(format!("{} (changed meanwhile)", candidate.person_ref));
            }
        }
        tx.commit().await.context("while committing the resend")?;
    }
    warn_about(
        &unchanged_refs,
        if changed_only {
            "still have the address that failed, skipped (--changed-only)"
        } else {
            "are resent to the address that already failed (fix it with `import --update`, or use --changed-only)"
        },
    );
    warn_about(
        &no_address_refs,
        "have no e-mail address, skipped (see `export postal`)",
    );
    let not_eligible: Vec<&str> = not_eligible.iter().map(String::as_str).collect();
    warn_about(&not_eligible, "are not failed, bounced or sent, not resent");
    Ok(summary)
}

fn warn_about(refs: &[&str], what: &str) {
    if refs.is_empty() {
        return;
    }
    let more = refs.len().saturating_sub(REFS_SHOWN);
    let shown = refs[..refs.len().min(REFS_SHOWN)].join(", ");
    let tail = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    tracing::warn!("{} people {what}: {shown}{tail}", refs.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(state: DeliveryState, email: Option<&str>, alt: Option<&str>) -> Candidate {
        Candidate {
            person_id: 1,
            person_ref: "A1".into(),
            email: email.map(str::to_owned),
            alt_email: alt.map(str::to_owned),
            state,
            failed_email: Some("old@example.fr".into()),
        }
    }

    #[test]
    fn a_bounced_main_address_gives_way_to_the_alternative() {
        let person = candidate(
            DeliveryState::Bounced,
            Some("OLD@example.fr"),
            Some("alt@example.fr"),
        );
        assert_eq!(
            decide(&person),
            Decision::Resend {
                email: "alt@example.fr".into(),
                to_alternative: true,
                unchanged: false
            }
        );
    }

    #[test]
    fn an_unchanged_address_is_flagged_and_a_new_one_is_not() {
        let same = candidate(DeliveryState::Failed, Some("old@example.fr"), None);
        assert!(matches!(
            decide(&same),
            Decision::Resend {
                unchanged: true,
                ..
            }
        ));
        let fixed = candidate(DeliveryState::Bounced, Some("new@example.fr"), None);
        assert!(matches!(
            decide(&fixed),
            Decision::Resend {
                unchanged: false,
                to_alternative: false,
                ..
            }
        ));
    }

    #[test]
    fn only_failed_bounced_or_sent_letters_go_again() {
        for state in [
            DeliveryState::Pending,
            DeliveryState::Sending,
            DeliveryState::Deferred,
        ] {
            assert_eq!(
                decide(&candidate(state, Some("a@example.fr"), None)),
                Decision::NotEligible
            );
        }
        assert_eq!(
            decide(&candidate(DeliveryState::Bounced, None, None)),
            Decision::NoAddress
        );
        // An explicit resend of a sent letter is never "unchanged": that address did not fail.
        assert!(matches!(
            decide(&candidate(
                DeliveryState::Sent,
                Some("old@example.fr"),
                None
            )),
            Decision::Resend {
                unchanged: false,
                ..
            }
        ));
    }
}
