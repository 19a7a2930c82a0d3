//! What the relay's verdict on one letter means: the one place in `send` that reads a
//! [`Attempt`]. The verdict, the retry policy and the letter's attempts so far give the
//! delivery's next state (the ledger's [`Outcome`]), what to do with the letter now (record it,
//! hand it back to the dispatcher, forget it), and what the verdict says about the relay or the
//! recipient's domain (the dispatcher's [`News`]).
//!
//! Pure: no counter, no I/O, no clock read. The caller passes the time and the jitter of the
//! retry delay, so the table in the tests pins every rule of docs/operator/sending.md.

use std::fmt::Display;
use std::time::Duration;

use crate::config::Retry;
use crate::domain::Email;
use crate::message::Outgoing;
use crate::smtp_reply::{Scope, SmtpReply};
use crate::store::ledger::Outcome;
use crate::tls::Refuser;
use crate::transport::Attempt;

/// How often one letter may be held back in a run by a relay or domain asking to slow down (or
/// by a relay that could not be used); after that it is recorded like any other verdict.
pub(super) const HOLD_BACK_AT_MOST: u32 = 5;

/// The letter a verdict is about, as the claim found it.
pub(super) struct Letter<'a> {
    pub(super) message: &'a Outgoing,
    /// The address it was built for.
    pub(super) email: &'a Email,
    /// The letters' fingerprint, recorded with a sent letter.
    pub(super) fingerprint: &'a str,
    /// Attempts recorded before this one.
    pub(super) attempts: i64,
    pub(super) first_attempt_at: Option<i64>,
    /// How often a relay or domain held it back in this run.
    pub(super) held_back: u32,
}

/// When a decision is taken: the time (ms since the epoch) and the share of the retry delay
/// added to it as jitter, in `[0, 1)`.
#[derive(Debug, Clone, Copy)]
pub(super) struct At {
    pub(super) now: i64,
    pub(super) jitter: f64,
}

/// What to do with one letter after its verdict.
#[derive(Debug)]
pub(super) struct Decision {
    /// What the verdict says about the relay or the recipient's domain; None when the letter
    /// was withheld (nothing was asked of the relay).
    pub(super) news: Option<News>,
    pub(super) then: Then,
}

/// What a verdict tells the dispatcher about the relay of the worker's lane, or about the
/// recipient's domain.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum News {
    /// The relay answered; `accepted` when it took the letter.
    Reached { accepted: bool },
    /// A session could not be opened.
    Unreachable { reason: String },
    /// The relay cannot be used as configured.
    Misconfigured { reason: String, by: Refuser },
    /// A reply asking the relay or a domain to slow down (see [`Scope`]).
    SlowDown { scope: Scope, reason: String },
}

#[derive(Debug)]
pub(super) enum Then {
    /// Record this outcome; `answered`: a relay answered for the letter (its name is kept).
    Record { outcome: Outcome, answered: bool },
    /// Nothing reached the person: back to the dispatcher (to another relay, or to wait for
    /// the lower pace), without an attempt counted. `otherwise` is recorded if the dispatcher
    /// can no longer take it.
    HandBack { otherwise: Outcome },
    /// Not handed over (the run may no longer hand letters over), and not this run's to record.
    Forget { why: String },
}

/// Why a claimed letter is given back without an attempt counted.
pub(super) enum GiveBack<'a> {
    /// The run stops, a relay cannot be used: it was never handed over.
    NotAttempted(&'a dyn Display),
    /// Its letter does not render.
    DidNotRender(&'a dyn Display),
}

/// A letter given back to the state it came from, no attempt counted: the one way it is built.
pub(super) fn give_back(why: GiveBack<'_>) -> Outcome {
    let reason = match why {
        GiveBack::NotAttempted(why) => format!("not attempted: {why}"),
        GiveBack::DidNotRender(error) => format!("the letter did not render: {error}"),
    };
    Outcome::Released { reason }
}

/// The verdict of one attempt, decided.
pub(super) fn decide(attempt: Attempt, letter: &Letter<'_>, retry: &Retry, at: At) -> Decision {
    // Letters a relay or domain asked to hold, or that a relay could not take, go back to the
    // dispatcher a few times at most instead of waiting for their retry delay.
    let may_hand_back = letter.held_back < HOLD_BACK_AT_MOST;
    let (news, then) = match attempt {
        Attempt::Accepted { reply, notify } => (
            News::Reached { accepted: true },
            Then::Record {
                outcome: Outcome::Sent {
                    reply,
                    message_id: letter.message.message_id.clone(),
                    fingerprint: letter.fingerprint.to_owned(),
                    sha256: letter.message.sha256(),
                    email: letter.email.clone(),
                    notify,
                },
                answered: true,
            },
        ),
        Attempt::Rejected { reply } => (
            News::Reached { accepted: false },
            Then::Record {
                outcome: Outcome::Failed {
                    reason: reply.to_string(),
                    reply: reply.smtp().cloned(),
                    message_id: Some(letter.message.message_id.clone()),
                    possible_duplicate: false,
                },
                answered: true,
            },
        ),
        Attempt::Deferred { reply, scope } => {
            let said = reply.smtp().cloned();
            let outcome = retry_or_fail(reply.to_string(), said, false, letter, retry, at);
            if scope == Scope::Recipient {
                let then = Then::Record {
                    outcome,
                    answered: true,
                };
                (News::Reached { accepted: false }, then)
            } else {
                let then = if may_hand_back {
                    Then::HandBack { otherwise: outcome }
                } else {
                    Then::Record {
                        outcome,
                        answered: true,
                    }
                };
                let news = News::SlowDown {
                    scope,
                    reason: reply.to_string(),
                };
                (news, then)
            }
        }
        Attempt::Unknown { reason } => (
            News::Reached { accepted: false },
            Then::Record {
                outcome: retry_or_fail(reason, None, true, letter, retry, at),
                answered: true,
            },
        ),
        Attempt::Unreachable { reason } => {
            let released = give_back(GiveBack::NotAttempted(&reason));
            (
                News::Unreachable { reason },
                unused(released, may_hand_back),
            )
        }
        Attempt::Misconfigured { reason, by } => {
            let released = give_back(GiveBack::NotAttempted(&reason));
            (
                News::Misconfigured { reason, by },
                unused(released, may_hand_back),
            )
        }
        Attempt::Withheld { reason } => {
            return Decision {
                news: None,
                then: Then::Forget { why: reason },
            };
        }
    };
    Decision {
        news: Some(news),
        then,
    }
}

/// A letter a relay could not take: to another relay while it may, then given back.
fn unused(released: Outcome, may_hand_back: bool) -> Then {
    if may_hand_back {
        Then::HandBack {
            otherwise: released,
        }
    } else {
        Then::Record {
            outcome: released,
            answered: false,
        }
    }
}

/// A temporary failure: deferred to its retry time, or failed once the retries are used up
/// (`retry.max_attempts` tries, or `retry.give_up_after` since the first).
/// `reason`: the relay's reply as recorded, with the reply itself, or why no reply came.
fn retry_or_fail(
    reason: String,
    reply: Option<SmtpReply>,
    possible_duplicate: bool,
    letter: &Letter<'_>,
    retry: &Retry,
    at: At,
) -> Outcome {
    let attempts = letter.attempts + 1;
    let first = letter.first_attempt_at.unwrap_or(at.now);
    let given_up = attempts >= i64::from(retry.max_attempts)
        || at.now - first >= retry.give_up_after.as_millis() as i64;
    if given_up {
        return Outcome::Failed {
            reason: format!("gave up after {attempts} attempts: {reason}"),
            reply,
            message_id: Some(letter.message.message_id.clone()),
            possible_duplicate,
        };
    }
    Outcome::Deferred {
        next_attempt_at: at.now + retry_delay(retry, attempts, at.jitter).as_millis() as i64,
        reason,
        reply,
        possible_duplicate,
        message_id: letter.message.message_id.clone(),
    }
}

/// The delay before try `attempts + 1`: `first_delay` doubling with each attempt, up to
/// `max_delay`, plus `jitter` (in `[0, 1)`) of itself, so letters deferred together do not come
/// back together; never over `max_delay`.
pub(super) fn retry_delay(retry: &Retry, attempts: i64, jitter: f64) -> Duration {
    let doublings = attempts.saturating_sub(1).clamp(0, 62) as u32;
    let base = retry
        .first_delay
        .checked_mul(1u32.checked_shl(doublings.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(retry.max_delay)
        .min(retry.max_delay);
    let jittered = base.saturating_add(base.mul_f64(jitter.clamp(0.0, 1.0)));
    jittered.min(retry.max_delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp_reply::Accepted;
    use crate::smtp_reply::Step::{self, *};
    use crate::transport::Reply;

    const NOW: i64 = 1_000_000_000_000;
    const MINUTE: i64 = 60_000;

    fn retry() -> Retry {
        Retry {
            max_attempts: 3,
            first_delay: Duration::from_secs(300),
            max_delay: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(86_400),
        }
    }

    fn message() -> Outgoing {
        Outgoing {
            message_id: "m1@example.org".into(),
            envelope_from: "dpo@example.org".into(),
            recipient: "p1@example.fr".into(),
            notice_id: "N1".into(),
            file_name: "P1.1.eml".into(),
            bytes: b"Subject: x\r\n\r\nhello\r\n".to_vec(),
        }
    }

    /// The relay's reply, classified as the transport classifies it.
    fn relay_says(step: Step, code: u16, text: &str) -> Attempt {
        crate::transport::classify(SmtpReply::new(step, code, text))
    }

    fn accepted() -> Attempt {
        Attempt::Accepted {
            reply: Accepted::ByRelay(SmtpReply::new(Message, 250, "2.0.0 Ok: queued as 4Zx")),
            notify: false,
        }
    }

    fn no_reply_after_the_dot() -> Attempt {
        Attempt::Unknown {
            reason: "no reply after the message: timed out".into(),
        }
    }

    fn broken_before_the_dot() -> Attempt {
        Attempt::Deferred {
            reply: Reply::Broken {
                step: RcptTo,
                reason: "connection reset by peer".into(),
            },
            scope: Scope::Relay,
        }
    }

    fn unreachable() -> Attempt {
        Attempt::Unreachable {
            reason: "connection refused".into(),
        }
    }

    fn misconfigured(by: Refuser) -> Attempt {
        Attempt::Misconfigured {
            reason: "535 5.7.8 authentication failed".into(),
            by,
        }
    }

    fn withheld() -> Attempt {
        Attempt::Withheld {
            reason: "the sender lease lapsed before the final dot".into(),
        }
    }

    /// The letter's history: attempts before this one, minutes since its first, times held back.
    #[derive(Clone, Copy)]
    struct Before(i64, Option<i64>, u32);
    const FIRST: Before = Before(0, None, 0);
    const SECOND: Before = Before(1, Some(10), 0);
    const LAST: Before = Before(2, Some(30), 0);
    const LONG_AGO: Before = Before(1, Some(24 * 60), 0);
    /// Held back four times, then five (`HOLD_BACK_AT_MOST`): the fifth hold is the last.
    const HELD_FOUR: Before = Before(0, None, 4);
    const HELD_OFTEN: Before = Before(0, None, 5);

    /// A decision in a few words: what is done with the letter, its next state (the retry
    /// delay in minutes, the recorded code, the duplicate flag), and what the dispatcher hears.
    fn show(decision: &Decision) -> String {
        let outcome = |outcome: &Outcome| match outcome {
            Outcome::Sent { .. } => "sent".to_owned(),
            Outcome::Deferred {
                next_attempt_at,
                possible_duplicate,
                ..
            } => format!(
                "deferred {}min{}",
                (next_attempt_at - NOW) / MINUTE,
                if *possible_duplicate { " dup" } else { "" }
            ),
            Outcome::Failed {
                reply,
                reason,
                possible_duplicate,
                ..
            } => format!(
                "failed {}{}{}",
                reply
                    .as_ref()
                    .map_or("-".to_owned(), |r| r.code().to_string()),
                if reason.starts_with("gave up after") {
                    " gave-up"
                } else {
                    ""
                },
                if *possible_duplicate { " dup" } else { "" }
            ),
            Outcome::Released { .. } => "released".to_owned(),
        };
        let then = match &decision.then {
            Then::Record {
                outcome: o,
                answered: true,
            } => format!("record {} @relay", outcome(o)),
            Then::Record { outcome: o, .. } => format!("record {}", outcome(o)),
            Then::HandBack { otherwise } => format!("hand back, else {}", outcome(otherwise)),
            Then::Forget { .. } => "forget".to_owned(),
        };
        let news = match &decision.news {
            None => "-".to_owned(),
            Some(News::Reached { accepted: true }) => "accepted".to_owned(),
            Some(News::Reached { accepted: false }) => "reached".to_owned(),
            Some(News::Unreachable { .. }) => "unreachable".to_owned(),
            Some(News::Misconfigured { by, .. }) => format!("misconfigured by {by:?}"),
            Some(News::SlowDown { scope, .. }) => format!("slow down {}", scope.as_str()),
        };
        format!("{then}; {news}")
    }

    fn decided(attempt: Attempt, before: Before) -> Decision {
        let message = message();
        let email = Email::parse(&message.recipient).expect("a valid address");
        let letter = Letter {
            message: &message,
            email: &email,
            fingerprint: "letters-1",
            attempts: before.0,
            first_attempt_at: before.1.map(|minutes| NOW - minutes * MINUTE),
            held_back: before.2,
        };
        // Jitter 0.5: a first delay of 5 minutes is 7 (7.5, in whole minutes).
        decide(
            attempt,
            &letter,
            &retry(),
            At {
                now: NOW,
                jitter: 0.5,
            },
        )
    }

    /// Every reply class of docs/operator/sending.md (and the providers' of relay.md) and what
    /// it leads to. Changing a rule (a scope, the retry count, the delay, the duplicate flag,
    /// who is handed back) changes a row.
    #[test]
    fn every_verdict_leads_to_its_outcome() {
        #[rustfmt::skip]
        let rows: Vec<(&str, Attempt, Before, &str)> = vec![
            ("2xx after the message", accepted(), FIRST, "record sent @relay; accepted"),
            ("2xx on a retry", accepted(), LAST, "record sent @relay; accepted"),
            // A recipient's 4xx: that letter waits for its retry delay, nothing slows down.
            ("greylisting 451 4.7.1", relay_says(RcptTo, 451, "4.7.1 Greylisted, please try again later"), FIRST, "record deferred 7min @relay; reached"),
            ("greylisting 450 4.7.1", relay_says(RcptTo, 450, "4.7.1 <p1@example.fr>: Recipient address rejected: Greylisted"), FIRST, "record deferred 7min @relay; reached"),
            ("greylisting 450 4.2.0 postgrey", relay_says(RcptTo, 450, "4.2.0 Greylisted, see http://postgrey.schweikert.ch/"), FIRST, "record deferred 7min @relay; reached"),
            ("greylisting on the second try", relay_says(RcptTo, 451, "4.7.1 Greylisted"), SECOND, "record deferred 15min @relay; reached"),
            ("try again later 4.3.0", relay_says(RcptTo, 451, "4.3.0 Temporary failure, try again later"), FIRST, "record deferred 7min @relay; reached"),
            ("mailbox busy 450 4.2.1", relay_says(RcptTo, 450, "4.2.1 mailbox busy"), FIRST, "record deferred 7min @relay; reached"),
            ("mailbox full 452 4.2.2", relay_says(RcptTo, 452, "4.2.2 Mailbox full"), FIRST, "record deferred 7min @relay; reached"),
            ("mailbox full after the message", relay_says(Message, 452, "4.2.2 Mailbox full"), FIRST, "record deferred 7min @relay; reached"),
            // The last attempt turns a deferral into a failure, with the code kept.
            ("mailbox full, last attempt", relay_says(RcptTo, 452, "4.2.2 Mailbox full"), LAST, "record failed 452 gave-up @relay; reached"),
            ("greylisting past give_up_after", relay_says(RcptTo, 451, "4.7.1 Greylisted"), LONG_AGO, "record failed 451 gave-up @relay; reached"),
            // A domain asking to slow down: the letter waits for the lower pace, in this run.
            ("Gmail rate 4.7.28", relay_says(Message, 450, "4.7.28 Our system has detected an unusual rate of unsolicited mail"), FIRST, "hand back, else deferred 7min; slow down domain"),
            ("Yahoo 4.7.0 TSS04", relay_says(Message, 451, "4.7.0 [TSS04] Messages from 203.0.113.1 temporarily deferred"), FIRST, "hand back, else deferred 7min; slow down domain"),
            ("Outlook 4.7.500", relay_says(RcptTo, 451, "4.7.500 Server busy. Please try again later from [203.0.113.1]"), FIRST, "hand back, else deferred 7min; slow down domain"),
            ("network 4.4.2", relay_says(RcptTo, 450, "4.4.2 Destination temporarily unreachable"), FIRST, "hand back, else deferred 7min; slow down domain"),
            ("rate wording, no enhanced code", relay_says(RcptTo, 451, "Too many messages, slow down"), FIRST, "hand back, else deferred 7min; slow down domain"),
            ("domain rate, held back too often", relay_says(Message, 450, "4.7.28 unusual rate"), HELD_OFTEN, "record deferred 7min @relay; slow down domain"),
            ("domain rate on the last attempt", relay_says(Message, 450, "4.7.28 unusual rate"), LAST, "hand back, else failed 450 gave-up; slow down domain"),
            // The relay asking to slow down: no attempt counted while it may be held back.
            ("421 4.7.0 at RCPT", relay_says(RcptTo, 421, "4.7.0 Try again later, closing connection."), FIRST, "hand back, else deferred 7min; slow down relay"),
            ("421 at the greeting", relay_says(Greeting, 421, "4.3.2 Service not available"), FIRST, "hand back, else deferred 7min; slow down relay"),
            ("451 4.7.0 rate at MAIL", relay_says(MailFrom, 451, "4.7.0 rate limit exceeded, slow down"), FIRST, "hand back, else deferred 7min; slow down relay"),
            ("too many connections", relay_says(RcptTo, 450, "Too many connections from your host"), FIRST, "hand back, else deferred 7min; slow down relay"),
            ("storage 4.3.1", relay_says(RcptTo, 451, "4.3.1 Insufficient system storage"), FIRST, "hand back, else deferred 7min; slow down relay"),
            ("broken before the final dot", broken_before_the_dot(), FIRST, "hand back, else deferred 7min; slow down relay"),
            ("relay 421, held back four times", relay_says(RcptTo, 421, "4.7.0 closing"), HELD_FOUR, "hand back, else deferred 7min; slow down relay"),
            ("relay 421, held back too often", relay_says(RcptTo, 421, "4.7.0 closing"), HELD_OFTEN, "record deferred 7min @relay; slow down relay"),
            // 5xx: failed at once, whatever the attempt.
            ("550 5.1.1 unknown user", relay_says(RcptTo, 550, "5.1.1 User unknown"), FIRST, "record failed 550 @relay; reached"),
            ("550 5.1.1 on a retry", relay_says(RcptTo, 550, "5.1.1 User unknown"), SECOND, "record failed 550 @relay; reached"),
            ("5.7.1 policy at RCPT", relay_says(RcptTo, 550, "5.7.1 Relaying denied"), FIRST, "record failed 550 @relay; reached"),
            ("554 5.7.1 after the dot", relay_says(Message, 554, "5.7.1 Message rejected as spam"), FIRST, "record failed 554 @relay; reached"),
            ("554 after the dot, no enhanced code", relay_says(Message, 554, "Transaction failed"), FIRST, "record failed 554 @relay; reached"),
            // No reply after the final dot: the relay may have it.
            ("timeout after the dot", no_reply_after_the_dot(), FIRST, "record deferred 7min dup @relay; reached"),
            ("timeout after the dot, last attempt", no_reply_after_the_dot(), LAST, "record failed - gave-up dup @relay; reached"),
            // Nothing was attempted: no attempt counted, another relay may take it.
            ("unreachable", unreachable(), FIRST, "hand back, else released; unreachable"),
            ("unreachable on the last attempt", unreachable(), LAST, "hand back, else released; unreachable"),
            ("unreachable, held back too often", unreachable(), HELD_OFTEN, "record released; unreachable"),
            ("refused by our TLS settings", misconfigured(Refuser::Us), FIRST, "hand back, else released; misconfigured by Us"),
            ("login refused by the relay", misconfigured(Refuser::Server), FIRST, "hand back, else released; misconfigured by Server"),
            ("misconfigured, held back too often", misconfigured(Refuser::Server), HELD_OFTEN, "record released; misconfigured by Server"),
            // The lease lapsed before the final dot: not this run's any more.
            ("withheld", withheld(), FIRST, "forget; -"),
            ("withheld on the last attempt", withheld(), LAST, "forget; -"),
        ];
        let mut wrong = Vec::new();
        for (what, attempt, before, expected) in rows {
            let got = show(&decided(attempt, before));
            if got != expected {
                wrong.push(format!("{what}:\n  expected {expected}\n  got      {got}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn outcomes_keep_the_reply_and_the_message() {
        let Then::Record {
            outcome:
                Outcome::Sent {
                    reply,
                    message_id,
                    fingerprint,
                    sha256,
                    email,
                    notify,
                },
            ..
        } = decided(accepted(), FIRST).then
        else {
            panic!("not sent");
        };
        assert_eq!(
            reply.smtp().map(SmtpReply::to_string).as_deref(),
            Some("250 2.0.0 Ok: queued as 4Zx")
        );
        assert_eq!(message_id, "m1@example.org");
        assert_eq!(fingerprint, "letters-1");
        assert_eq!(sha256, message().sha256());
        assert_eq!(email.as_str(), "p1@example.fr");
        assert!(!notify);

        let Then::Record {
            outcome: Outcome::Failed { reason, .. },
            ..
        } = decided(relay_says(RcptTo, 452, "4.2.2 Mailbox full"), LAST).then
        else {
            panic!("not failed");
        };
        assert_eq!(
            reason,
            "gave up after 3 attempts: 452 4.2.2 Mailbox full (at RCPT TO)"
        );

        let Then::HandBack {
            otherwise: Outcome::Released { reason },
        } = decided(unreachable(), FIRST).then
        else {
            panic!("not handed back");
        };
        assert_eq!(reason, "not attempted: connection refused");

        let Some(News::SlowDown { reason, .. }) =
            decided(relay_says(Message, 450, "4.7.28 unusual rate"), FIRST).news
        else {
            panic!("no slow-down");
        };
        assert_eq!(reason, "450 4.7.28 unusual rate (at after the message)");
    }

    #[test]
    fn a_letter_given_back_says_why() {
        let reason = |outcome: Outcome| match outcome {
            Outcome::Released { reason } => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            reason(give_back(GiveBack::NotAttempted(&"signal"))),
            "not attempted: signal"
        );
        assert_eq!(
            reason(give_back(GiveBack::DidNotRender(&"missing field"))),
            "the letter did not render: missing field"
        );
    }

    #[test]
    fn retry_delays_double_with_jitter_and_stay_within_the_cap() {
        let retry = Retry {
            max_attempts: 8,
            first_delay: Duration::from_secs(300),
            max_delay: Duration::from_secs(6 * 3600),
            give_up_after: Duration::from_secs(5 * 86400),
        };
        let secs = |attempts, jitter| retry_delay(&retry, attempts, jitter).as_secs();
        assert_eq!(secs(1, 0.0), 300);
        assert_eq!(secs(1, 0.99), 597);
        assert_eq!(secs(2, 0.0), 600);
        assert_eq!(secs(3, 0.0), 1200);
        assert_eq!(secs(3, 0.5), 1800);
        assert_eq!(secs(7, 0.0), 19_200);
        assert_eq!(secs(8, 0.0), 6 * 3600);
        for attempts in 1..200 {
            assert!(retry_delay(&retry, attempts, 0.99) <= retry.max_delay);
        }
    }
}
