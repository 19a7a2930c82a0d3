//! The ledger cannot disagree with itself: over thousands of random histories of send runs
//! (claims, hand-overs, outcomes), runs that die and are taken over, stale runs that come back
//! and try to record what they no longer hold, bounces and resends, every delivery's state is
//! the `to_state` of its latest event, and a stale write changes nothing.

use breachmail::domain::{DeliveryState, Email, PersonRef};
use breachmail::smtp_reply::{self, SmtpReply};
use breachmail::store::ledger::{self, NewGeneration, Outcome};
use breachmail::store::people::NewPerson;
use breachmail::verp::DeliveryRef;
use proptest::prelude::*;

const PEOPLE: usize = 5;

#[derive(Debug, Clone)]
enum Step {
    /// Run `run` claims up to `limit` due deliveries.
    Claim { run: i64, limit: i64 },
    /// Run `run` marks a person as handed over.
    HandOver { run: i64, person: usize },
    /// Run `run` records an outcome for a person (it may no longer hold it).
    Record {
        run: i64,
        person: usize,
        outcome: u8,
    },
    /// Run `run` takes over from a dead run: what is left in `sending` goes back to pending,
    /// with the hand-over journal a dead run may have left naming one person.
    Recover {
        run: i64,
        journal: Option<(i64, usize)>,
    },
    /// A hard bounce arrives for a person's current generation.
    Bounce { person: usize },
    /// The relay's success notification arrives for a person's current generation.
    Deliver { person: usize },
    /// The operator resends to a person, from the state read just before.
    Resend { person: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1..4i64, 1..4i64).prop_map(|(run, limit)| Step::Claim { run, limit }),
        (1..4i64, 0..PEOPLE).prop_map(|(run, person)| Step::HandOver { run, person }),
        (1..4i64, 0..PEOPLE, 0..4u8).prop_map(|(run, person, outcome)| Step::Record {
            run,
            person,
            outcome
        }),
        (1..4i64, proptest::option::of((1..4i64, 0..PEOPLE)))
            .prop_map(|(run, journal)| Step::Recover { run, journal }),
        (0..PEOPLE).prop_map(|person| Step::Bounce { person }),
        (0..PEOPLE).prop_map(|person| Step::Deliver { person }),
        (0..PEOPLE).prop_map(|person| Step::Resend { person }),
    ]
}

fn new_person(i: usize) -> NewPerson {
    NewPerson {
        person_ref: PersonRef::parse(&format!("R{i}")).expect("a ref"),
        email: Some(Email::parse(&format!("r{i}@exemple.fr")).expect("an address")),
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
        row_hash: format!("h{i}"),
    }
}

fn outcome(code: u8) -> Outcome {
    match code {
        0 => Outcome::Sent {
            reply: smtp_reply::Accepted::ByRelay(SmtpReply::new(
                smtp_reply::Step::Message,
                250,
                "2.0.0 Ok",
            )),
            message_id: "<m@x>".into(),
            fingerprint: "f".into(),
            sha256: "s".into(),
            email: Email::parse("r@exemple.fr").unwrap(),
            notify: false,
        },
        1 => Outcome::Deferred {
            reason: "451 4.7.1 greylisted (at RCPT TO)".into(),
            reply: Some(SmtpReply::new(
                smtp_reply::Step::RcptTo,
                451,
                "4.7.1 greylisted",
            )),
            next_attempt_at: 0,
            possible_duplicate: false,
            message_id: "<m@x>".into(),
        },
        2 => Outcome::Failed {
            reason: "550 5.1.1 unknown (at RCPT TO)".into(),
            reply: Some(SmtpReply::new(
                smtp_reply::Step::RcptTo,
                550,
                "5.1.1 unknown",
            )),
            message_id: None,
            possible_duplicate: false,
        },
        _ => Outcome::Released {
            reason: "not attempted".into(),
        },
    }
}

async fn disagreements(pool: &sqlx::SqlitePool) -> Vec<String> {
    let rows: Vec<(i64, String, Option<String>, Option<i64>)> = sqlx::query_as(
        "SELECT d.person_id, d.state,
                (SELECT e.to_state FROM events e WHERE e.person_id = d.person_id
                   AND e.to_state IS NOT NULL ORDER BY e.id DESC LIMIT 1),
                d.claimed_by
         FROM deliveries d",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .filter(|(_, state, last, claimed_by)| {
            last.as_deref() != Some(state.as_str())
                || ((state == "sending") != claimed_by.is_some())
        })
        .map(|row| format!("{row:?}"))
        .collect()
}

async fn history(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let pool = breachmail::db::open(&dir.path().join("c.db"), true)
        .await
        .unwrap();
    let people: Vec<NewPerson> = (0..PEOPLE).map(new_person).collect();
    let mut tx = pool.begin().await.unwrap();
    ledger::insert_people(&mut tx, &people.iter().collect::<Vec<_>>(), 0, 0)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let id = |person: usize| person as i64 + 1;
    for (n, step) in steps.iter().enumerate() {
        let before: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT person_id, state, generation FROM deliveries ORDER BY person_id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        match step {
            Step::Claim { run, limit } => {
                ledger::claim(&pool, *run, *limit, 0, &[], None)
                    .await
                    .unwrap();
            }
            Step::HandOver { run, person } => {
                let mut conn = pool.acquire().await.unwrap();
                ledger::mark_handed_over(&mut conn, *run, &[id(*person)], 0)
                    .await
                    .unwrap();
            }
            Step::Record {
                run,
                person,
                outcome: code,
            } => {
                let generation = before[*person].2;
                let stale = ledger::record_outcomes(
                    &pool,
                    *run,
                    &[(
                        DeliveryRef {
                            person_id: id(*person),
                            generation,
                        },
                        outcome(*code),
                    )],
                )
                .await
                .unwrap();
                let held: Option<i64> =
                    sqlx::query_scalar("SELECT claimed_by FROM deliveries WHERE person_id = ?")
                        .bind(id(*person))
                        .fetch_one(&pool)
                        .await
                        .unwrap();
                // Refused exactly when the run did not hold it; a refused write changed nothing.
                let held_before = before[*person].1 == "sending"
                    && {
                        let events: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM events WHERE person_id = ? AND run_id = ? AND kind = 'claimed'",
                    )
                    .bind(id(*person))
                    .bind(run)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                        events > 0 && stale.is_empty()
                    };
                if !stale.is_empty() {
                    let after: (String, i64) = sqlx::query_as(
                        "SELECT state, generation FROM deliveries WHERE person_id = ?",
                    )
                    .bind(id(*person))
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                    prop_assert_eq!(
                        (after.0.as_str(), after.1),
                        (before[*person].1.as_str(), before[*person].2),
                        "step {}: a stale write changed the delivery",
                        n
                    );
                } else {
                    prop_assert!(
                        held_before,
                        "step {}: a write was accepted from a run that did not hold it",
                        n
                    );
                    prop_assert!(held.is_none());
                }
            }
            Step::Recover { run, journal } => {
                let journaled: Vec<(i64, Vec<i64>)> = journal
                    .iter()
                    .map(|(dead, person)| (*dead, vec![id(*person)]))
                    .collect();
                // The journal's person, if its run still held it: it must come out flagged.
                let held_by_dead = match journal {
                    Some((dead, person)) => {
                        sqlx::query_scalar::<_, i64>(
                            "SELECT count(*) FROM deliveries
                         WHERE person_id = ? AND state = 'sending' AND claimed_by = ?",
                        )
                        .bind(id(*person))
                        .bind(dead)
                        .fetch_one(&pool)
                        .await
                        .unwrap()
                            > 0
                    }
                    None => false,
                };
                ledger::recover_abandoned(&pool, *run, &journaled)
                    .await
                    .unwrap();
                if let (true, Some((_, person))) = (held_by_dead, journal) {
                    let flagged: i64 = sqlx::query_scalar(
                        "SELECT possible_duplicate FROM deliveries WHERE person_id = ?",
                    )
                    .bind(id(*person))
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                    prop_assert_eq!(
                        flagged,
                        1,
                        "step {}: a journaled hand-over was not flagged",
                        n
                    );
                }
            }
            Step::Bounce { person } => {
                let mut conn = pool.acquire().await.unwrap();
                let from: DeliveryState = before[*person].1.parse().unwrap();
                ledger::mark_bounced(
                    &mut conn,
                    id(*person),
                    before[*person].2,
                    from,
                    Some("5.1.1"),
                    Some("unknown user"),
                    9,
                    0,
                )
                .await
                .unwrap();
            }
            Step::Deliver { person } => {
                let mut conn = pool.acquire().await.unwrap();
                let acceptance = ledger::Acceptance {
                    remote_mta: Some("mx.exemple.fr"),
                    reply: Some("250 2.0.0 Ok: queued as 4F2"),
                    at: 5,
                };
                ledger::mark_delivered(
                    &mut conn,
                    id(*person),
                    before[*person].2,
                    &acceptance,
                    9,
                    0,
                )
                .await
                .unwrap();
            }
            Step::Resend { person } => {
                let from: DeliveryState = before[*person].1.parse().unwrap();
                let mut conn = pool.acquire().await.unwrap();
                let resend = NewGeneration {
                    person_id: id(*person),
                    from_state: from,
                    email: "new@exemple.fr",
                    email_domain: "exemple.fr",
                    reason: "resend",
                };
                let generation = ledger::start_new_generation(&mut conn, &resend, 9, 0)
                    .await
                    .unwrap();
                if from == DeliveryState::Sending {
                    prop_assert!(generation.is_none(), "a letter in flight is never resent");
                }
            }
        }
        let wrong = disagreements(&pool).await;
        prop_assert!(
            wrong.is_empty(),
            "after step {} ({:?}): {:?}",
            n,
            step,
            wrong
        );
    }
    pool.close().await;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_delivery_is_in_the_state_its_latest_event_says(steps in prop::collection::vec(step(), 1..30)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(history(steps))?;
    }
}
