//! `lookup QUERY`: what the helpline tells a caller. A notice number (as read out: any case, with or
//! without dashes), a ref or an e-mail address finds the person; the answer says exactly what the
//! organisation sent them (an e-mail on this date to this masked address; no e-mail, and a paper
//! letter exported on this date or not yet; nothing at all: not ours), with a short script for the
//! adviser, who it was written to (masked), where their letter stands, every attempt with its
//! time, the relay's reply and the Message-ID, and every bounce.
//!
//! A phishing mail quotes a notice id too, so "no notice with this number was sent" is the answer
//! that matters most. That answer, and the one for a notice that exists, cost the same queries:
//! the person's timeline is read for a person that does not exist when nobody is found, so the
//! time an answer takes says nothing about whether the number is real. The web console
//! (`console`) shows the same report.

use anyhow::Context;
use sqlx::SqlitePool;

use crate::config::Config;
use crate::db::format_time;
use crate::domain::{Email, NoticeId};
use crate::exit::Exit;
use crate::export::{mask_addresses, mask_email};
use crate::helpline_text::Voice;
use crate::store::helpline::{self as store, Access, PersonRow};

/// What the adviser typed, once read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    NoticeId(NoticeId),
    Email(Email),
    /// Anything else is taken as the source system's ref.
    Ref(String),
}

impl Query {
    pub fn parse(raw: &str) -> Query {
        let raw = raw.trim();
        if raw.contains('@') {
            // An address that cannot be parsed is kept as typed: it finds nobody.
            return match Email::parse(raw) {
                Ok(email) => Query::Email(email),
                Err(_) => Query::Ref(raw.to_owned()),
            };
        }
        match NoticeId::parse(raw) {
            Ok(id) => Query::NoticeId(id),
            Err(_) => Query::Ref(raw.to_owned()),
        }
    }

    /// The kind of query, as the access log records it (never the query itself).
    pub fn kind(&self) -> &'static str {
        match self {
            Query::NoticeId(_) => "notice_id",
            Query::Email(_) => "email",
            Query::Ref(_) => "ref",
        }
    }
}

/// Something shaped like a notice id (three groups, or 10 to 14 letters and digits with a dash)
/// that is not one: a typo, or a forger's invention.
pub fn looks_like_notice_id(raw: &str) -> bool {
    let raw = raw.trim();
    let compact: String = raw.chars().filter(|c| *c != '-' && *c != ' ').collect();
    let dashes = raw.matches('-').count();
    compact.chars().all(|c| c.is_ascii_alphanumeric())
        && (10..=14).contains(&compact.len())
        && dashes >= 1
}

/// Finds the people a query names (at most [`store::SEARCH_LIMIT`]).
pub async fn find(pool: &SqlitePool, query: &Query) -> anyhow::Result<Vec<PersonRow>> {
    match query {
        Query::NoticeId(id) => store::people_by_notice_or_ref(pool, id.as_str(), id.as_str()).await,
        // A ref is looked up by the same statement as a notice id, so both take the same path.
        Query::Ref(person_ref) => store::people_by_notice_or_ref(pool, "", person_ref).await,
        Query::Email(email) => store::people_by_email(pool, email.as_str()).await,
    }
}

/// What the helpline may say about one person: masked identity, the letter, its history.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PersonReport {
    #[serde(skip)]
    pub person_id: i64,
    pub person_ref: String,
    pub notice_id: String,
    pub name: String,
    pub email: Option<String>,
    pub alt_email: Option<String>,
    pub postal: Option<String>,
    /// The delivery state (`sent`, `no_email`, …), and in the adviser's words.
    pub state: String,
    pub state_words: String,
    pub generation: i64,
    pub purged: bool,
    /// Where the letter stands past the relay, in one sentence (handed to the relay, accepted
    /// by the person's provider, or bounced); None before it was handed over.
    pub past_the_relay: Option<String>,
    /// What the organisation sent this person, and what to tell the caller.
    pub verdict: PersonVerdict,
    /// The same, machine-readable: by which channel, when, to which (masked) address.
    pub sent: WhatWasSent,
    /// The last e-mail that went out; None when none did.
    pub letter_as_sent: Option<LetterAsSent>,
    /// A generation waiting to go out (after a corrected address, a resend), not received yet.
    pub next_letter: Option<NextLetter>,
    /// When the person was first written to a postal export (`export postal`).
    pub paper_exported_at: Option<String>,
    pub paper_exported_local: Option<String>,
    pub delivery: Option<store::DeliveryRow>,
    pub attempts: Vec<Attempt>,
    pub bounces: Vec<store::BounceRow>,
    pub timeline: Vec<Step>,
    pub paper_requested: Option<store::PaperRequest>,
}

/// What the organisation sent one person, in words and a script for the adviser.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PersonVerdict {
    pub kind: VerdictKind,
    pub text: String,
    pub script: String,
}

/// The kinds of answer the helpline gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    /// An e-mail with this number was sent (date and masked address said).
    Genuine,
    /// The e-mail is at the relay right now.
    BeingSent,
    /// The number is ours but no e-mail was sent: an e-mail quoting it is a fake.
    OursNoEmail,
    /// Nobody was sent this number.
    NotOurs,
    /// A ref or an address found nobody.
    NotFound,
    /// A ref or an address found people: see each one's verdict.
    Found,
}

impl VerdictKind {
    /// Whether an e-mail quoting this number can be ours.
    pub fn email_is_ours(self) -> bool {
        matches!(self, VerdictKind::Genuine | VerdictKind::BeingSent)
    }
}

/// What was sent, for scripts: `channel` is `email`, `paper` (exported for printing) or `none`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WhatWasSent {
    pub channel: &'static str,
    /// RFC 3339, UTC.
    pub at: Option<String>,
    /// The same instant in the campaign's time zone, the zone named.
    pub at_local: Option<String>,
    /// The masked address the e-mail went to.
    pub to: Option<String>,
    pub generation: Option<i64>,
}

/// The last e-mail that went out to the person.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LetterAsSent {
    pub generation: i64,
    pub at: String,
    pub at_local: String,
    pub to: Option<String>,
    #[serde(skip)]
    pub at_ms: i64,
}

/// A generation not sent yet.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NextLetter {
    pub generation: i64,
    pub to: Option<String>,
    pub state: String,
    pub state_words: String,
}

/// One attempt to hand the letter to the relay.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Attempt {
    pub at: String,
    #[serde(skip)]
    pub at_ms: i64,
    pub generation: i64,
    pub outcome: String,
    pub reply: Option<String>,
    pub message_id: String,
}

/// One recorded event, addresses in it masked.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Step {
    pub at: String,
    #[serde(skip)]
    pub at_ms: i64,
    pub kind: String,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub generation: Option<i64>,
    pub detail: Option<String>,
}

/// "M… Dupont" is too much for a page anyone behind the adviser may read: initials only.
pub fn mask_name(first: Option<&str>, last: Option<&str>) -> String {
    let initial = |part: Option<&str>| {
        part.and_then(|p| p.trim().chars().next())
            .map(|c| format!("{c}."))
    };
    let parts: Vec<String> = [initial(first), initial(last)]
        .into_iter()
        .flatten()
        .collect();
    if parts.is_empty() {
        "(no name)".to_owned()
    } else {
        parts.join(" ")
    }
}

/// The postcode's first two characters and the city: enough to confirm with the caller.
fn mask_postal(postcode: Option<&str>, city: Option<&str>) -> Option<String> {
    let postcode = postcode
        .filter(|p| !p.is_empty())
        .map(|p| format!("{}…", p.chars().take(2).collect::<String>()));
    let parts: Vec<String> = [postcode, city.map(str::to_owned)]
        .into_iter()
        .flatten()
        .filter(|p| !p.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// The whole report on one person. `person` is None when nobody was found: the same queries
/// run for a person id that does not exist, and the result is thrown away (see the module).
pub async fn report(
    pool: &SqlitePool,
    person: Option<&PersonRow>,
    message_id_domain: &str,
    voice: &Voice,
) -> anyhow::Result<Option<PersonReport>> {
    let person_id = person.map_or(-1, |p| p.person_id);
    let delivery = store::delivery(pool, person_id).await?;
    let events = store::events(pool, person_id).await?;
    let bounces = store::bounces(pool, person_id).await?;
    let paper_requested = store::paper_request(pool, person_id).await?;
    let sent_letters = store::letters_sent(pool, person_id).await?;
    let paper_exported = store::postal_exported_at(pool, person_id).await?;
    let key = crate::store::campaign::signing_key(pool).await?;
    let Some(person) = person else {
        return Ok(None);
    };
    let attempts = events
        .iter()
        .filter(|e| matches!(e.kind.as_str(), "sent" | "deferred" | "failed"))
        .map(|e| {
            let generation = e.generation.unwrap_or(1);
            let delivery_ref = crate::verp::DeliveryRef {
                person_id,
                generation,
            };
            Attempt {
                at: format_time(Some(e.at)),
                at_ms: e.at,
                generation,
                outcome: e.kind.clone(),
                reply: e.detail.as_deref().map(mask_addresses),
                message_id: format!(
                    "<{}>",
                    crate::verp::message_id(&key, delivery_ref, message_id_domain)
                ),
            }
        })
        .collect();
    let timeline = events
        .iter()
        .map(|e| Step {
            at: format_time(Some(e.at)),
            at_ms: e.at,
            kind: e.kind.clone(),
            from_state: e.from_state.clone(),
            to_state: e.to_state.clone(),
            generation: e.generation,
            detail: e.detail.as_deref().map(mask_addresses),
        })
        .collect();
    let bounces = bounces
        .into_iter()
        .map(|b| store::BounceRow {
            diagnostic: b.diagnostic.as_deref().map(mask_addresses),
            ..b
        })
        .collect();
    let mut delivery = delivery.map(|d| store::DeliveryRow {
        email: d.email.as_deref().map(mask_email),
        smtp_reply: d.smtp_reply.as_deref().map(mask_addresses),
        last_error: d.last_error.as_deref().map(mask_addresses),
        bounce_diagnostic: d.bounce_diagnostic.as_deref().map(mask_addresses),
        ..d
    });
    if let Some(d) = delivery.as_mut() {
        d.confirmation.delivered_reply = d
            .confirmation
            .delivered_reply
            .as_deref()
            .map(mask_addresses);
    }
    let past_the_relay = delivery.as_ref().and_then(past_the_relay);
    let letter_as_sent = sent_letters.last().map(|letter| LetterAsSent {
        generation: letter.generation,
        at: format_time(Some(letter.sent_at)),
        at_local: voice.time(letter.sent_at),
        to: letter.email_masked.clone(),
        at_ms: letter.sent_at,
    });
    let state = person.state.as_str();
    let next_letter = (letter_as_sent
        .as_ref()
        .is_none_or(|sent| sent.generation < person.generation)
        && crate::domain::DeliveryState::STILL_TO_SEND.contains(&person.state))
    .then(|| NextLetter {
        generation: person.generation,
        to: person.delivery_email.as_deref().map(mask_email),
        state: state.to_owned(),
        state_words: voice.state(state),
    });
    let current_to = person.delivery_email.as_deref().map(mask_email);
    let verdict = person_verdict(
        voice,
        state,
        person.generation,
        letter_as_sent.as_ref(),
        current_to.as_deref(),
        paper_exported,
    );
    let sent = match (&letter_as_sent, paper_exported) {
        (Some(letter), _) => WhatWasSent {
            channel: "email",
            at: Some(letter.at.clone()),
            at_local: Some(letter.at_local.clone()),
            to: letter.to.clone(),
            generation: Some(letter.generation),
        },
        (None, Some(at)) => WhatWasSent {
            channel: "paper",
            at: Some(format_time(Some(at))),
            at_local: Some(voice.time(at)),
            to: None,
            generation: None,
        },
        (None, None) => WhatWasSent {
            channel: "none",
            at: None,
            at_local: None,
            to: None,
            generation: None,
        },
    };
    Ok(Some(PersonReport {
        person_id,
        person_ref: person.person_ref.clone(),
        notice_id: person.notice_id.clone(),
        name: mask_name(person.first_name.as_deref(), person.last_name.as_deref()),
        email: person.email.as_deref().map(mask_email),
        alt_email: person.alt_email.as_deref().map(mask_email),
        postal: mask_postal(person.postcode.as_deref(), person.city.as_deref()),
        state: state.to_owned(),
        state_words: voice.state(state),
        generation: person.generation,
        purged: person.purged,
        past_the_relay,
        verdict,
        sent,
        letter_as_sent,
        next_letter,
        paper_exported_at: paper_exported.map(|at| format_time(Some(at))),
        paper_exported_local: paper_exported.map(|at| voice.time(at)),
        delivery,
        attempts,
        bounces,
        timeline,
        paper_requested,
    }))
}

/// The three levels in one sentence: handed to the relay, accepted by the person's provider,
/// bounced.
fn past_the_relay(delivery: &store::DeliveryRow) -> Option<String> {
    use crate::domain::DeliveryState;
    let state: DeliveryState = delivery.state.parse().ok()?;
    let confirmation = &delivery.confirmation;
    let sent = format_time(delivery.sent_at);
    match state {
        DeliveryState::Delivered => Some(format!(
            "accepted by the person's provider{} at {}{} (not a proof that it was read)",
            confirmation
                .delivered_by
                .as_deref()
                .map(|by| format!(" ({by})"))
                .unwrap_or_default(),
            format_time(confirmation.delivered_at),
            confirmation
                .delivered_reply
                .as_deref()
                .map(|reply| format!(": {reply}"))
                .unwrap_or_default()
        )),
        DeliveryState::Sent if confirmation.notify_requested => Some(format!(
            "handed to the relay at {sent}; no word yet from the person's provider: still at the relay"
        )),
        DeliveryState::Sent => Some(format!(
            "handed to the relay at {sent}; this relay does not confirm delivery"
        )),
        DeliveryState::Bounced => Some(format!(
            "bounced at {}{}",
            format_time(delivery.bounced_at),
            confirmation
                .delivered_at
                .map(|at| format!(
                    ", after the provider had accepted it at {}",
                    format_time(Some(at))
                ))
                .unwrap_or_default()
        )),
        _ => None,
    }
}

/// What the organisation sent one person: the last e-mail that went out (and whether it came
/// back), the one going out right now, or none (and then the paper letter, exported or not).
fn person_verdict(
    voice: &Voice,
    state: &str,
    generation: i64,
    letter_as_sent: Option<&LetterAsSent>,
    current_to: Option<&str>,
    paper_exported: Option<i64>,
) -> PersonVerdict {
    if let Some(letter) = letter_as_sent {
        let to = letter.to.as_deref().unwrap_or("?");
        let mut text = voice.genuine_email(&letter.at_local, to);
        if letter.generation == generation {
            match state {
                "bounced" => text.push_str(voice.came_back()),
                "delivered" => text.push_str(voice.delivered()),
                _ => {}
            }
        }
        return PersonVerdict {
            kind: VerdictKind::Genuine,
            script: voice.genuine_script(&letter.at_local, to),
            text,
        };
    }
    if state == "sending" {
        return PersonVerdict {
            kind: VerdictKind::BeingSent,
            text: voice.being_sent(current_to.unwrap_or("?")),
            script: voice.being_sent_script().to_owned(),
        };
    }
    let paper_at = paper_exported.map(|at| voice.time(at));
    PersonVerdict {
        kind: VerdictKind::OursNoEmail,
        text: voice.ours_no_email(voice.why_no_email(state), paper_at.as_deref()),
        script: voice.ours_no_email_script().to_owned(),
    }
}

/// The answer to one query.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Answer {
    pub query_kind: &'static str,
    /// For a notice id: whether an e-mail quoting it can be ours (one was sent, or is being
    /// sent). False for a number nobody was sent, and for a person no e-mail went to.
    pub genuine: Option<bool>,
    /// For a notice id: whether the number is one of ours (whatever was sent).
    pub number_is_ours: Option<bool>,
    pub verdict_kind: VerdictKind,
    /// One sentence for the adviser to read out.
    pub verdict: String,
    /// What to tell the caller.
    pub script: String,
    pub people: Vec<PersonReport>,
}

/// Looks the query up, logs who looked (as `adviser`), and says what to tell the caller.
pub async fn answer(
    pool: &SqlitePool,
    raw: &str,
    adviser: &str,
    action: &str,
    message_id_domain: &str,
    voice: &Voice,
) -> anyhow::Result<Answer> {
    let query = Query::parse(raw);
    let found = find(pool, &query).await?;
    let mut people = Vec::with_capacity(found.len());
    if found.is_empty() {
        report(pool, None, message_id_domain, voice).await?;
    }
    for person in &found {
        if let Some(report) = report(pool, Some(person), message_id_domain, voice).await? {
            people.push(report);
        }
    }
    let answer = judge(&query, raw, people, voice);
    let ids: Vec<i64> = answer.people.iter().map(|p| p.person_id).collect();
    store::log_access(
        pool,
        Access {
            adviser,
            action,
            query_kind: Some(query.kind()),
            verdict: (answer.verdict_kind == VerdictKind::NotOurs).then_some("not_ours"),
        },
        &ids,
        crate::db::now_ms(),
    )
    .await
    .context("while logging the lookup")?;
    Ok(answer)
}

/// The answer for what was found: for a notice id, the one person's verdict (or not ours).
pub fn judge(query: &Query, raw: &str, people: Vec<PersonReport>, voice: &Voice) -> Answer {
    let (kind, verdict, script) = match (query, people.as_slice()) {
        (Query::NoticeId(_), []) => (
            VerdictKind::NotOurs,
            voice.not_ours().to_owned(),
            voice.not_ours_script().to_owned(),
        ),
        (Query::NoticeId(_), [person, ..]) => (
            person.verdict.kind,
            person.verdict.text.clone(),
            person.verdict.script.clone(),
        ),
        (Query::Ref(_), []) if looks_like_notice_id(raw) => (
            VerdictKind::NotOurs,
            voice.malformed_notice(),
            voice.not_ours_script().to_owned(),
        ),
        (Query::Ref(_), []) => (
            VerdictKind::NotFound,
            voice.no_ref().to_owned(),
            voice.check_spelling_script().to_owned(),
        ),
        (Query::Email(_), []) => (
            VerdictKind::NotFound,
            voice.no_email_match().to_owned(),
            voice.check_spelling_script().to_owned(),
        ),
        (_, [person]) => (
            person.verdict.kind,
            format!("{}: {}", voice.found(1), person.verdict.text),
            person.verdict.script.clone(),
        ),
        (_, many) => (VerdictKind::Found, voice.found(many.len()), String::new()),
    };
    let is_notice = matches!(query, Query::NoticeId(_));
    Answer {
        query_kind: query.kind(),
        genuine: is_notice.then_some(kind.email_is_ours()),
        number_is_ours: is_notice.then_some(!people.is_empty()),
        verdict_kind: kind,
        verdict,
        script,
        people,
    }
}

/// The adviser a command-line lookup is logged under: the operator's login on the machine.
fn operator_name() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_owned());
    format!("cli:{user}")
}

/// `breachmail lookup QUERY [--json]`: exit 0 when someone was found, 1 when nobody was.
pub async fn run(config: &Config, raw: &str, json: bool) -> anyhow::Result<Exit> {
    let pool = crate::db::open(&config.campaign.database, false).await?;
    let domain = config.sender.from.email.domain().to_owned();
    let voice = Voice::for_config(config);
    let answer = answer(&pool, raw, &operator_name(), "lookup", &domain, &voice).await?;
    pool.close().await;
    if json {
        crate::exit::print_out(&serde_json::to_string_pretty(&answer)?);
    } else {
        crate::exit::print_block(&as_text(&answer, &voice));
    }
    Ok(if answer.people.is_empty() {
        Exit::Failed
    } else {
        Exit::Ok
    })
}

/// The answer as the terminal shows it.
pub fn as_text(answer: &Answer, voice: &Voice) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "{}", answer.verdict);
    if !answer.script.is_empty() {
        let _ = writeln!(out, "> {}", answer.script);
    }
    for person in &answer.people {
        let _ = writeln!(out);
        if answer.people.len() > 1 {
            let _ = writeln!(out, "{}", person.verdict.text);
        }
        let _ = writeln!(out, "notice number {}", person.notice_id);
        let _ = writeln!(out, "ref           {}", person.person_ref);
        let _ = writeln!(out, "name          {}", person.name);
        let address = person.email.as_deref().unwrap_or("(no e-mail address)");
        let _ = writeln!(out, "e-mail        {address}");
        if let Some(alt) = &person.alt_email {
            let _ = writeln!(out, "alt           {alt}");
        }
        if let Some(postal) = &person.postal {
            let _ = writeln!(out, "postal        {postal}");
        }
        let _ = writeln!(
            out,
            "letter        {} (generation {})",
            person.state_words, person.generation
        );
        match &person.letter_as_sent {
            Some(sent) => {
                let _ = writeln!(
                    out,
                    "sent          e-mail, generation {}, {} to {}",
                    sent.generation,
                    sent.at_local,
                    sent.to.as_deref().unwrap_or("?")
                );
            }
            None => {
                let _ = writeln!(out, "sent          no e-mail");
            }
        }
        if let Some(next) = &person.next_letter {
            let _ = writeln!(
                out,
                "next          generation {} to {}: {} (not received yet)",
                next.generation,
                next.to.as_deref().unwrap_or("?"),
                next.state_words
            );
        }
        if let Some(paper) = &person.paper_requested {
            let _ = writeln!(
                out,
                "paper         asked for a paper letter on {} (adviser {})",
                voice.time(paper.at),
                paper.adviser
            );
        }
        if let Some(at) = &person.paper_exported_local {
            let _ = writeln!(out, "paper         exported for printing on {at}");
        }
        let _ = writeln!(out, "attempts      {}", person.attempts.len());
        for attempt in &person.attempts {
            let _ = writeln!(
                out,
                "  {}  gen {}  {:<8}  {}  {}",
                voice.time(attempt.at_ms),
                attempt.generation,
                attempt.outcome,
                attempt.message_id,
                attempt.reply.as_deref().unwrap_or("")
            );
        }
        let _ = writeln!(out, "bounces       {}", person.bounces.len());
        for bounce in &person.bounces {
            let _ = writeln!(
                out,
                "  {}  gen {}  {}  {} {}",
                voice.time(bounce.read_at),
                bounce.generation.map_or("?".to_owned(), |g| g.to_string()),
                bounce.kind,
                bounce.status.as_deref().unwrap_or(""),
                bounce.diagnostic.as_deref().unwrap_or("")
            );
        }
        let _ = writeln!(out, "timeline");
        for step in &person.timeline {
            let _ = writeln!(
                out,
                "  {}  {:<18} {} -> {}  {}",
                voice.time(step.at_ms),
                voice.event(&step.kind),
                step.from_state.as_deref().unwrap_or("-"),
                step.to_state.as_deref().unwrap_or("-"),
                step.detail.as_deref().unwrap_or("")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_id_is_read_in_any_case_with_or_without_dashes() {
        let id = NoticeId::random();
        let compact = id.as_str().replace('-', "").to_lowercase();
        assert_eq!(Query::parse(&compact), Query::NoticeId(id.clone()));
        assert_eq!(
            Query::parse(&format!(" {} ", id.as_str())),
            Query::NoticeId(id)
        );
    }

    #[test]
    fn addresses_and_refs_are_told_apart_from_notice_ids() {
        assert!(matches!(Query::parse("Jean@Exemple.fr"), Query::Email(_)));
        assert_eq!(Query::parse("DE00004821"), Query::Ref("DE00004821".into()));
        assert!(looks_like_notice_id("K7QF-3MZ9-P2X"));
        assert!(looks_like_notice_id("K7QF-3MZ9-P2XI"));
        assert!(!looks_like_notice_id("DE00004821"));
    }

    #[test]
    fn names_are_masked_to_initials() {
        assert_eq!(mask_name(Some("Émilie"), Some("Dupont")), "É. D.");
        assert_eq!(mask_name(None, None), "(no name)");
        assert_eq!(
            mask_postal(Some("75011"), Some("Paris")).as_deref(),
            Some("75… Paris")
        );
    }
}
