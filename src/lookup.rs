//! `lookup QUERY`: what the helpline tells a caller. A notice number (as read out: any case, with or
//! without dashes), a ref or an e-mail address finds the person; the answer says whether the
//! notice is genuine, who it was written to (masked), where their letter stands, every attempt
//! with its time, the relay's reply and the Message-ID, and every bounce.
//!
//! A phishing mail quotes a notice id too, so "no notice with this number was sent" is the answer
//! that matters most. That answer, and the one for a notice that exists, cost the same queries:
//! the person's timeline is read for a person that does not exist when nobody is found, so the
//! time an answer takes says nothing about whether the number is real. The web console
//! (`console`) shows the same report.

use anyhow::Context;
use sqlx::SqlitePool;

use crate::Exit;
use crate::config::Config;
use crate::db::format_time;
use crate::domain::{Email, NoticeId};
use crate::export::{mask_addresses, mask_email};
use crate::store::helpline::{self as store, Access, PersonRow};

/// The answer for a notice id nobody was sent, word for word wherever it is given.
pub const NOT_OURS: &str = "no notice with this number was sent: the message is not ours";

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
    pub state: String,
    pub generation: i64,
    pub purged: bool,
    pub delivery: Option<store::DeliveryRow>,
    pub attempts: Vec<Attempt>,
    pub bounces: Vec<store::BounceRow>,
    pub timeline: Vec<Step>,
    pub paper_requested: Option<store::PaperRequest>,
}

/// One attempt to hand the letter to the relay.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Attempt {
    pub at: String,
    pub generation: i64,
    pub outcome: String,
    pub reply: Option<String>,
    pub message_id: String,
}

/// One recorded event, addresses in it masked.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Step {
    pub at: String,
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
) -> anyhow::Result<Option<PersonReport>> {
    let person_id = person.map_or(-1, |p| p.person_id);
    let delivery = store::delivery(pool, person_id).await?;
    let events = store::events(pool, person_id).await?;
    let bounces = store::bounces(pool, person_id).await?;
    let paper_requested = store::paper_request(pool, person_id).await?;
    let key = crate::db::signing_key(pool).await?;
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
    let delivery = delivery.map(|d| store::DeliveryRow {
        email: d.email.as_deref().map(mask_email),
        smtp_reply: d.smtp_reply.as_deref().map(mask_addresses),
        last_error: d.last_error.as_deref().map(mask_addresses),
        bounce_diagnostic: d.bounce_diagnostic.as_deref().map(mask_addresses),
        ..d
    });
    Ok(Some(PersonReport {
        person_id,
        person_ref: person.person_ref.clone(),
        notice_id: person.notice_id.clone(),
        name: mask_name(person.first_name.as_deref(), person.last_name.as_deref()),
        email: person.email.as_deref().map(mask_email),
        alt_email: person.alt_email.as_deref().map(mask_email),
        postal: mask_postal(person.postcode.as_deref(), person.city.as_deref()),
        state: person.state.as_str().to_owned(),
        generation: person.generation,
        purged: person.purged,
        delivery,
        attempts,
        bounces,
        timeline,
        paper_requested,
    }))
}

/// The answer to one query.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Answer {
    pub query_kind: &'static str,
    /// For a notice id: whether a notice with this number was sent.
    pub genuine: Option<bool>,
    /// One sentence for the adviser to read out.
    pub verdict: String,
    pub people: Vec<PersonReport>,
}

/// Looks the query up, logs who looked (as `adviser`), and says what to tell the caller.
pub async fn answer(
    pool: &SqlitePool,
    raw: &str,
    adviser: &str,
    action: &str,
    message_id_domain: &str,
) -> anyhow::Result<Answer> {
    let query = Query::parse(raw);
    let found = find(pool, &query).await?;
    let mut people = Vec::with_capacity(found.len());
    if found.is_empty() {
        report(pool, None, message_id_domain).await?;
    }
    for person in &found {
        if let Some(report) = report(pool, Some(person), message_id_domain).await? {
            people.push(report);
        }
    }
    let ids: Vec<i64> = people.iter().map(|p| p.person_id).collect();
    store::log_access(
        pool,
        Access {
            adviser,
            action,
            query_kind: Some(query.kind()),
        },
        &ids,
        crate::db::now_ms(),
    )
    .await
    .context("while logging the lookup")?;
    let genuine = matches!(query, Query::NoticeId(_)).then_some(!people.is_empty());
    let verdict = verdict(&query, raw, people.len());
    Ok(Answer {
        query_kind: query.kind(),
        genuine,
        verdict,
        people,
    })
}

/// The sentence for the adviser: genuine, not ours, not found, or how many were found.
pub fn verdict(query: &Query, raw: &str, found: usize) -> String {
    match (query, found) {
        (Query::NoticeId(_), 0) => NOT_OURS.to_owned(),
        (Query::NoticeId(_), _) => {
            "genuine: a notice with this number was sent to the person below".to_owned()
        }
        (Query::Ref(_), 0) if looks_like_notice_id(raw) => format!(
            "this is not one of our notice numbers (ours are 12 letters and digits, XXXX-XXXX-XXXX, without I, L, O or U): {NOT_OURS}"
        ),
        (Query::Ref(_), 0) => "no person with this ref".to_owned(),
        (Query::Email(_), 0) => "no person with this e-mail address".to_owned(),
        (_, 1) => "one person found".to_owned(),
        (_, n) => format!("{n} people found"),
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
    let answer = answer(&pool, raw, &operator_name(), "lookup", &domain).await?;
    pool.close().await;
    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{}", as_text(&answer));
    }
    Ok(if answer.people.is_empty() {
        Exit::Failed
    } else {
        Exit::Ok
    })
}

/// The answer as the terminal shows it.
pub fn as_text(answer: &Answer) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "{}", answer.verdict);
    for person in &answer.people {
        let _ = writeln!(out);
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
            person.state, person.generation
        );
        if let Some(paper) = &person.paper_requested {
            let _ = writeln!(
                out,
                "paper         asked for a paper letter on {} (adviser {})",
                format_time(Some(paper.at)),
                paper.adviser
            );
        }
        let _ = writeln!(out, "attempts      {}", person.attempts.len());
        for attempt in &person.attempts {
            let _ = writeln!(
                out,
                "  {}  gen {}  {:<8}  {}  {}",
                attempt.at,
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
                format_time(Some(bounce.read_at)),
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
                step.at,
                step.kind,
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
