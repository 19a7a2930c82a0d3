//! `report --html FILE`: one self-contained HTML page for management and the regulator: the
//! incident, the totals and their reconciliation, letters sent over time, the states, why people
//! were not reached, the busiest domains, the campaign's timeline and the letters in use.
//!
//! The page is in the campaign's default language (French or English; any other gets English):
//! every label, code and sentence comes from one `Words` table per language, while the numbers,
//! dates and the reconciliation's sum are the same in both. Each section is a function of one
//! `Page` (configuration, facts, words) listed in `SECTIONS`, so a new section is one function
//! and one line there.
//!
//! The page loads nothing: no script, no font, no image from anywhere; the charts are inline SVG
//! and the style is inline CSS that also lays the page out for A4 paper. Every value that comes
//! from the database or the configuration is escaped, since a relay's reply or an incident fact
//! is text nobody here wrote.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use sqlx::SqliteConnection;

use crate::Exit;
use crate::config::Config;
use crate::db::format_time;
use crate::domain::DeliveryState;
use crate::status::{ErrorReason, SendRun, Status};
use crate::store;

/// How many send runs the timeline lists before summarising the rest.
const RUNS_LISTED: i64 = 200;
/// More buckets than this and the chart counts days instead of hours.
const MAX_HOURLY_BARS: i64 = 72;

/// `&`, `<`, `>`, `"` and `'` as entities: safe in text and in quoted attributes.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Letters sent in one hour or one day, and one version of the letters with how many people
/// got it.
pub use crate::store::report::{LettersInUse, SentBucket};

/// Everything the page shows, read in one snapshot.
pub struct ReportFacts {
    pub status: Status,
    pub sent_over_time: Vec<SentBucket>,
    pub bucket_ms: i64,
    pub runs: Vec<SendRun>,
    pub send_runs_total: i64,
    pub first_send: Option<i64>,
    pub last_send: Option<i64>,
    pub letters: Vec<LettersInUse>,
    /// Complaints from the providers' feedback loops, per provider.
    pub complaints: Vec<crate::store::mailbox::ProviderComplaints>,
    pub generated_at: i64,
}

pub async fn run(config: &Config, html: &Path) -> anyhow::Result<Exit> {
    let pool = crate::db::open_read_only(&config.campaign.database).await?;
    let status = crate::status::collect_for(config, &pool).await?;
    let mut conn = pool.acquire().await?;
    let mut facts = gather(&mut conn, status).await?;
    facts.complaints = crate::store::mailbox::complaints_by_provider(&pool).await?;
    let page = render(config, &facts);
    crate::files::write_private(html, page.as_bytes())
        .with_context(|| format!("while writing {}", html.display()))?;
    tracing::info!(file = %html.display(), "report written");
    println!("report: wrote {}", html.display());
    Ok(Exit::Ok)
}

async fn gather(conn: &mut SqliteConnection, status: Status) -> anyhow::Result<ReportFacts> {
    let (first_send, last_send) = store::report::send_span(&mut *conn).await?;
    let hour = 3_600_000;
    let span = last_send.unwrap_or(0) - first_send.unwrap_or(0);
    let bucket_ms = if span / hour >= MAX_HOURLY_BARS {
        24 * hour
    } else {
        hour
    };
    let sent_over_time = store::report::sent_over_time(&mut *conn, bucket_ms).await?;
    let send_runs_total = store::report::send_runs_total(&mut *conn).await?;
    let mut runs = crate::status::send_runs(&mut *conn, RUNS_LISTED).await?;
    runs.reverse();
    let letters = store::report::letters_in_use(&mut *conn).await?;
    Ok(ReportFacts {
        status,
        sent_over_time,
        bucket_ms,
        runs,
        send_runs_total,
        first_send,
        last_send,
        letters,
        complaints: Vec::new(),
        generated_at: crate::db::now_ms(),
    })
}

/// The incident facts worth a line in the report, in the order shown; their labels are in
/// `Words::incident_labels`, in the same order.
const INCIDENT_FACTS: [&str; 12] = [
    "ref",
    "organisation",
    "service_name",
    "nature",
    "occurred_from",
    "occurred_to",
    "discovered_on",
    "contained_on",
    "regulator",
    "regulator_notified_on",
    "people_affected",
    "notify_by",
];

/// Every word of the page in one language.
pub struct Words {
    /// The `lang` of the page.
    pub lang: &'static str,
    pub title: &'static str,
    pub no_reference: &'static str,
    /// A colon as the language sets it, in HTML: "&nbsp;:" in French, ":" in English.
    pub colon: &'static str,
    /// "per hour" / "par heure".
    pub per: &'static str,
    pub subtitle: &'static str,
    pub generated: &'static str,
    pub incident: &'static str,
    pub incident_labels: [&'static str; 12],
    pub no_incident_facts: &'static str,
    pub yes: &'static str,
    pub no: &'static str,
    pub totals: &'static str,
    pub card_imported: &'static str,
    pub card_sent: &'static str,
    pub card_reached: &'static str,
    pub card_not_reached: &'static str,
    pub card_still_to_send: &'static str,
    /// The reconciliation: its name, then the words of the sum, in `DeliveryState::ALL` order
    /// after "people".
    pub reconciliation: &'static str,
    pub mismatch: &'static str,
    pub people: &'static str,
    pub finished_at: &'static str,
    pub estimated_finish: &'static str,
    pub still_due: &'static str,
    pub limited_by: &'static str,
    pub warning: &'static str,
    pub late_sent: &'static str,
    pub late_estimate: &'static str,
    pub over_time: &'static str,
    pub hour: &'static str,
    pub day: &'static str,
    pub nothing_sent: &'static str,
    pub sent_in_bucket: &'static str,
    pub over_time_summary: &'static str,
    pub states: &'static str,
    pub states_chart: &'static str,
    pub not_reached: &'static str,
    pub not_reached_summary: &'static str,
    pub bounce_reasons: &'static str,
    pub failed_reasons: &'static str,
    pub top_errors: &'static str,
    pub none: &'static str,
    pub domains: &'static str,
    pub domain: &'static str,
    pub no_domains: &'static str,
    pub timeline: &'static str,
    pub first_sent: &'static str,
    pub last_sent: &'static str,
    pub send_runs: &'static str,
    pub not_yet: &'static str,
    pub recent_runs: &'static str,
    pub run_columns: [&'static str; 7],
    pub running: &'static str,
    pub letters: &'static str,
    pub letters_explained: &'static str,
    pub letters_columns: [&'static str; 4],
    pub no_letters: &'static str,
    pub footer: &'static str,
}

impl Words {
    /// The words for `language` (a campaign's `default_language`): French for "fr", else English.
    pub fn for_language(language: &str) -> &'static Words {
        match language {
            "fr" => &FRENCH,
            _ => &ENGLISH,
        }
    }

    /// A delivery state as the reader says it.
    pub fn state(&self, state: DeliveryState) -> &'static str {
        let french = self.lang == "fr";
        match state {
            DeliveryState::Pending => {
                if french {
                    "en attente"
                } else {
                    "pending"
                }
            }
            DeliveryState::Sending => {
                if french {
                    "en cours d'envoi"
                } else {
                    "sending"
                }
            }
            DeliveryState::Sent => {
                if french {
                    "envoyées"
                } else {
                    "sent"
                }
            }
            DeliveryState::Deferred => {
                if french {
                    "différées"
                } else {
                    "deferred"
                }
            }
            DeliveryState::Failed => {
                if french {
                    "refusées"
                } else {
                    "failed"
                }
            }
            DeliveryState::Bounced => {
                if french {
                    "revenues en erreur"
                } else {
                    "bounced"
                }
            }
            DeliveryState::NoEmail => {
                if french {
                    "sans adresse"
                } else {
                    "no e-mail address"
                }
            }
        }
    }

    /// What happened (`incident.nature`), as the letters word it; an unknown code as is.
    pub fn nature(&self, code: &str) -> Option<&'static str> {
        let (fr, en) = match code {
            "stolen_credentials" => (
                "connexion avec les identifiants volés d'un compte professionnel",
                "login with the stolen credentials of a staff or partner account",
            ),
            "software_vulnerability" => (
                "exploitation d'une faille de sécurité",
                "exploitation of a security flaw",
            ),
            "misconfiguration" => (
                "données accessibles à la suite d'une erreur de réglage",
                "data left reachable by a setup error",
            ),
            "accidental_disclosure" => (
                "données envoyées ou montrées par erreur",
                "data sent or shown by mistake",
            ),
            "lost_device" => (
                "appareil ou support perdu ou volé",
                "device or storage medium lost or stolen",
            ),
            _ => return None,
        };
        Some(if self.lang == "fr" { fr } else { en })
    }

    /// How a send run ended, as `send` records it; an unknown outcome as is.
    pub fn outcome(&self, outcome: &str) -> Option<&'static str> {
        if self.lang != "fr" {
            return None;
        }
        Some(match outcome {
            "nothing more due" => "plus rien à envoyer",
            "--limit reached" => "limite --limit atteinte",
            "--max-duration reached" => "durée --max-duration atteinte",
            "signal" => "arrêt demandé (signal)",
            "relay unreachable" => "relais injoignable",
            "relay refuses this configuration" => "relais refusant cette configuration",
            "our TLS settings refuse this relay" => "nos réglages TLS refusent ce relais",
            "sender lease lost" => "verrou d'envoi perdu",
            "lock held" => "un autre envoi était en cours",
            _ => return None,
        })
    }
}

pub static ENGLISH: Words = Words {
    lang: "en",
    title: "Breach notification campaign",
    no_reference: "(no reference)",
    colon: ":",
    per: "per",
    subtitle: "GDPR Art. 34 notification of the people affected",
    generated: "report generated",
    incident: "The incident",
    incident_labels: [
        "Reference",
        "Organisation (controller)",
        "Service",
        "Nature",
        "Exposed from",
        "Exposed until",
        "Discovered on",
        "Unauthorised access blocked on",
        "Supervisory authority",
        "Authority notified on",
        "People affected (declared)",
        "Letters due by",
    ],
    no_incident_facts: "No incident facts in the configuration ([incident]).",
    yes: "yes",
    no: "no",
    totals: "Totals and reconciliation",
    card_imported: "people affected (imported)",
    card_sent: "letters delivered to the relay",
    card_reached: "reached, of those with an address",
    card_not_reached: "not reached by e-mail (postal fallback)",
    card_still_to_send: "still to send",
    reconciliation: "reconciliation",
    mismatch: "MISMATCH",
    people: "people",
    finished_at: "Finished: the last letter went at",
    estimated_finish: "Estimated finish at the configured rate",
    still_due: "still due",
    limited_by: "limited by",
    warning: "Warning",
    late_sent: "the last letter went at {at}, after the deadline ({by})",
    late_estimate: "at the configured rate the last letter goes at {at}, after the deadline ({by})",
    over_time: "Letters sent over time",
    hour: "hour",
    day: "day",
    nothing_sent: "No letter has been sent yet.",
    sent_in_bucket: "sent",
    over_time_summary: "{total} letters handed to the relay over {count} {unit}(s); the busiest {unit} saw {max}.",
    states: "Where every letter stands",
    states_chart: "People by delivery state",
    not_reached: "Not reached by e-mail: bounce and refusal reasons",
    not_reached_summary: "{total} people are handed to the postal fallback: {failed} refused by the relay at sending (5xx), {bounced} hard bounces after delivery, {no_email} without a usable e-mail address.",
    bounce_reasons: "Hard bounces (status and diagnostic)",
    failed_reasons: "Refused at sending (relay reply)",
    top_errors: "Commonest errors (failed and waiting for a retry)",
    none: "none",
    domains: "Top recipient domains",
    domain: "domain",
    no_domains: "No e-mail address imported.",
    timeline: "Campaign timeline",
    first_sent: "First letter sent",
    last_sent: "Last letter sent",
    send_runs: "Send runs",
    not_yet: "not yet",
    recent_runs: "The {shown} most recent runs of {total}:",
    run_columns: [
        "run", "started", "finished", "sent", "deferred", "failed", "outcome",
    ],
    running: "running or interrupted",
    letters: "Letters in use",
    letters_explained: "Each fingerprint identifies one exact version of the letter templates and incident facts; a change of wording during the campaign shows as a second line.",
    letters_columns: ["letters fingerprint", "people", "first sent", "last sent"],
    no_letters: "No letter sent yet.",
    footer: "Produced by breachmail {version} from the campaign database. The per-person evidence (what was sent to whom, when, and the outcome) is in <code>breachmail export audit</code>.",
};

pub static FRENCH: Words = Words {
    lang: "fr",
    title: "Campagne de notification de la violation",
    no_reference: "(sans référence)",
    colon: "&nbsp;:",
    per: "par",
    subtitle: "Communication aux personnes concernées (article 34 du RGPD)",
    generated: "rapport établi le",
    incident: "L'incident",
    incident_labels: [
        "Référence",
        "Organisme (responsable du traitement)",
        "Service",
        "Nature",
        "Données exposées du",
        "Données exposées jusqu'au",
        "Découvert le",
        "Accès frauduleux bloqué le",
        "Autorité de contrôle",
        "Autorité informée le",
        "Personnes concernées (déclarées)",
        "Lettres à envoyer avant le",
    ],
    no_incident_facts: "La configuration ne décrit pas l'incident ([incident]).",
    yes: "oui",
    no: "non",
    totals: "Totaux et rapprochement",
    card_imported: "personnes concernées (importées)",
    card_sent: "lettres remises au relais",
    card_reached: "atteintes, parmi celles qui ont une adresse",
    card_not_reached: "non atteintes par courriel (envoi postal)",
    card_still_to_send: "encore à envoyer",
    reconciliation: "rapprochement",
    mismatch: "ÉCART",
    people: "personnes",
    finished_at: "Terminé : la dernière lettre est partie le",
    estimated_finish: "Fin estimée au débit configuré",
    still_due: "encore à envoyer",
    limited_by: "limité par",
    warning: "Attention",
    late_sent: "la dernière lettre est partie le {at}, après la date limite ({by})",
    late_estimate: "au débit configuré, la dernière lettre partira le {at}, après la date limite ({by})",
    over_time: "Lettres envoyées au fil du temps",
    hour: "heure",
    day: "jour",
    nothing_sent: "Aucune lettre n'a encore été envoyée.",
    sent_in_bucket: "envoyées",
    over_time_summary: "{total} lettres remises au relais sur {count} {unit}(s) ; au plus {max} en une {unit}.",
    states: "Où en est chaque lettre",
    states_chart: "Personnes par état d'envoi",
    not_reached: "Non atteintes par courriel : motifs des retours et des refus",
    not_reached_summary: "{total} personnes passent à l'envoi postal : {failed} refusées par le relais à l'envoi (5xx), {bounced} retours définitifs après remise, {no_email} sans adresse électronique utilisable.",
    bounce_reasons: "Retours définitifs (statut et diagnostic)",
    failed_reasons: "Refus à l'envoi (réponse du relais)",
    top_errors: "Erreurs les plus fréquentes (refusées et en attente d'un nouvel essai)",
    none: "aucun",
    domains: "Principaux domaines destinataires",
    domain: "domaine",
    no_domains: "Aucune adresse électronique importée.",
    timeline: "Déroulement de la campagne",
    first_sent: "Première lettre envoyée",
    last_sent: "Dernière lettre envoyée",
    send_runs: "Envois lancés",
    not_yet: "pas encore",
    recent_runs: "Les {shown} envois les plus récents sur {total} :",
    run_columns: [
        "envoi",
        "début",
        "fin",
        "envoyées",
        "différées",
        "refusées",
        "issue",
    ],
    running: "en cours ou interrompu",
    letters: "Lettres utilisées",
    letters_explained: "Chaque empreinte désigne une version exacte des modèles de lettre et des faits de l'incident ; une modification du texte en cours de campagne apparaît comme une seconde ligne.",
    letters_columns: [
        "empreinte des lettres",
        "personnes",
        "premier envoi",
        "dernier envoi",
    ],
    no_letters: "Aucune lettre envoyée pour l'instant.",
    footer: "Établi par breachmail {version} à partir de la base de la campagne. La preuve personne par personne (ce qui a été envoyé, à qui, quand, et le résultat) est dans <code>breachmail export audit</code>.",
};

/// What every section reads: the configuration, the facts and the words of the page.
pub struct Page<'a> {
    pub config: &'a Config,
    pub facts: &'a ReportFacts,
    pub words: &'static Words,
}

/// The sections, in page order.
const SECTIONS: &[fn(&Page) -> String] = &[
    incident_section,
    totals_section,
    sent_over_time_section,
    plan_section,
    states_section,
    not_reached_section,
    domains_section,
    complaints_section,
    relays_section,
    timeline_section,
    letters_section,
];

/// `template` with each `{name}` replaced by its value.
fn fill(template: &str, values: &[(&str, &dyn std::fmt::Display)]) -> String {
    let mut out = template.to_owned();
    for (name, value) in values {
        out = out.replace(&format!("{{{name}}}"), &value.to_string());
    }
    out
}

const STYLE: &str = r#"
:root { --ink: #1b1f24; --muted: #5b6570; --line: #d5dae0; --sent: #2f7d4f; --deferred: #c48a12;
        --failed: #b3261e; --bounced: #8e3b8e; --pending: #4a6fa5; --no_email: #7a7a7a;
        --sending: #2a8bb5; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); margin: 0 auto; max-width: 1100px; padding: 24px 32px; line-height: 1.45;
       background: #fff; }
h1 { font-size: 1.6em; margin: 0 0 4px; }
h2 { font-size: 1.15em; border-bottom: 2px solid var(--line); padding-bottom: 4px; margin-top: 28px; }
.sub { color: var(--muted); margin: 0 0 16px; }
table { border-collapse: collapse; width: 100%; font-size: 0.92em; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: #f3f5f7; font-weight: 600; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.facts th { width: 32%; background: none; font-weight: 500; color: var(--muted); }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 12px 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px; min-width: 140px; }
.card .v { font-size: 1.5em; font-weight: 700; font-variant-numeric: tabular-nums; }
.card .k { color: var(--muted); font-size: 0.85em; }
.ok { color: var(--sent); font-weight: 600; }
.bad { color: var(--failed); font-weight: 600; }
.warning { border-left: 4px solid var(--failed); background: #fbeceb; padding: 8px 12px; margin: 12px 0; }
.recon { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.9em;
         background: #f3f5f7; padding: 8px 12px; border-radius: 4px; overflow-wrap: anywhere; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.88em;
              overflow-wrap: anywhere; }
svg { display: block; max-width: 100%; height: auto; }
svg text { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; fill: var(--ink); }
footer { margin-top: 32px; color: var(--muted); font-size: 0.85em; }
@page { size: A4; margin: 14mm 12mm; }
@media print {
  body { max-width: none; padding: 0; font-size: 10pt; }
  h2 { break-after: avoid; }
  section, table, svg, .cards { break-inside: avoid; }
  .card { border-color: #999; }
  a { color: inherit; text-decoration: none; }
}
"#;

/// The whole page, in the campaign's default language.
pub fn render(config: &Config, facts: &ReportFacts) -> String {
    let page = Page {
        config,
        facts,
        words: Words::for_language(&config.campaign.default_language),
    };
    let words = page.words;
    let incident_ref =
        incident_text(config, "ref").unwrap_or_else(|| words.no_reference.to_owned());
    let organisation = incident_text(config, "organisation");
    let mut out = String::with_capacity(64 * 1024);
    let title = format!("{} {incident_ref}", words.title);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"{}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        words.lang,
        escape_html(&title)
    );
    let _ = write!(
        out,
        "<header>\n<h1>{}</h1>\n<p class=\"sub\">{}{} · {} {}</p>\n</header>\n",
        escape_html(&title),
        organisation
            .map(|o| format!("{} · ", escape_html(&o)))
            .unwrap_or_default(),
        escape_html(words.subtitle),
        escape_html(words.generated),
        escape_html(&format_time(Some(facts.generated_at)))
    );
    for section in SECTIONS {
        out.push_str(&section(&page));
    }
    let _ = write!(
        out,
        "<footer>{}</footer>\n</body>\n</html>\n",
        fill(
            words.footer,
            &[("version", &escape_html(env!("CARGO_PKG_VERSION")))]
        )
    );
    out
}

/// An incident fact as text (strings as they are, numbers and booleans printed, lists joined),
/// or nothing when the key is missing.
fn incident_text(config: &Config, key: &str) -> Option<String> {
    let value = config.incident.get(key)?;
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(", "),
        serde_json::Value::Null => return None,
        other => other.to_string(),
    };
    (!text.trim().is_empty()).then_some(text)
}

/// An incident fact as the page shows it: a code by its label, with the code beside it so the
/// regulator can match it with the notification; everything else as `incident_text`.
fn incident_value(page: &Page, key: &str) -> Option<String> {
    let text = incident_text(page.config, key)?;
    Some(match key {
        "nature" => match page.words.nature(&text) {
            Some(label) => format!("{label} ({text})"),
            None => text,
        },
        _ => match page.config.incident.get(key) {
            Some(serde_json::Value::Bool(true)) => page.words.yes.to_owned(),
            Some(serde_json::Value::Bool(false)) => page.words.no.to_owned(),
            _ => text,
        },
    })
}

fn incident_section(page: &Page) -> String {
    let words = page.words;
    let mut rows = String::new();
    for (key, label) in INCIDENT_FACTS.iter().zip(words.incident_labels) {
        if let Some(value) = incident_value(page, key) {
            let _ = writeln!(
                rows,
                "<tr><th>{}</th><td>{}</td></tr>",
                escape_html(label),
                escape_html(&value)
            );
        }
    }
    if rows.is_empty() {
        let _ = writeln!(
            rows,
            "<tr><td>{}</td></tr>",
            escape_html(words.no_incident_facts)
        );
    }
    format!(
        "<section>\n<h2>{}</h2>\n<table class=\"facts\">\n{rows}</table>\n</section>\n",
        escape_html(words.incident)
    )
}

fn card(value: impl std::fmt::Display, label: &str) -> String {
    format!(
        "<div class=\"card\"><div class=\"v\">{}</div><div class=\"k\">{}</div></div>",
        escape_html(&value.to_string()),
        escape_html(label)
    )
}

/// The reconciliation's sum spelled out in the page's language; in English exactly the line
/// `status` and `export audit` print, so the three can be compared word for word.
fn reconciliation_line(words: &Words, status: &Status) -> String {
    let recon = &status.reconciliation;
    if words.lang == "en" {
        return recon.line();
    }
    let terms = [
        (recon.sent, DeliveryState::Sent),
        (recon.bounced, DeliveryState::Bounced),
        (recon.failed, DeliveryState::Failed),
        (recon.no_email, DeliveryState::NoEmail),
        (recon.pending, DeliveryState::Pending),
        (recon.deferred, DeliveryState::Deferred),
        (recon.sending, DeliveryState::Sending),
    ]
    .map(|(count, state)| format!("{count} {}", words.state(state)))
    .join(" + ");
    format!(
        "{} : {}, {} {} = {terms}",
        words.reconciliation,
        if recon.ok { "ok" } else { words.mismatch },
        recon.people,
        words.people
    )
}

/// The deadline warning in the page's language, from the same estimate `status` judged late.
fn deadline_warning(page: &Page) -> Option<String> {
    let status = &page.facts.status;
    let warning = status.notify_by_warning.as_ref()?;
    let (Some(estimate), Some(by)) = (
        &status.estimated_finish,
        incident_text(page.config, "notify_by"),
    ) else {
        // Not a lateness (a notify_by that is not a date): as `status` words it.
        return Some(warning.clone());
    };
    if page.words.lang == "en" {
        return Some(warning.clone());
    }
    let template = if estimate.still_due == 0 {
        page.words.late_sent
    } else {
        page.words.late_estimate
    };
    Some(fill(template, &[("at", &estimate.at), ("by", &by)]))
}

fn totals_section(page: &Page) -> String {
    let (words, status) = (page.words, &page.facts.status);
    let recon = &status.reconciliation;
    let mut out = format!(
        "<section>\n<h2>{}</h2>\n<div class=\"cards\">",
        escape_html(words.totals)
    );
    out.push_str(&card(status.total, words.card_imported));
    out.push_str(&card(status.count(DeliveryState::Sent), words.card_sent));
    out.push_str(&card(
        format!("{:.1} %", status.progress.reached_percent),
        words.card_reached,
    ));
    out.push_str(&card(status.not_reached.total, words.card_not_reached));
    out.push_str(&card(
        status.count(DeliveryState::Pending)
            + status.count(DeliveryState::Deferred)
            + status.count(DeliveryState::Sending),
        words.card_still_to_send,
    ));
    out.push_str("</div>\n");
    let _ = writeln!(
        out,
        "<p class=\"recon\"><span class=\"{}\">{}</span></p>",
        if recon.ok { "ok" } else { "bad" },
        escape_html(&reconciliation_line(words, status))
    );
    match &status.estimated_finish {
        Some(estimate) if estimate.still_due == 0 => {
            let _ = writeln!(
                out,
                "<p>{} {}.</p>",
                escape_html(words.finished_at),
                escape_html(&estimate.at)
            );
        }
        Some(estimate) => {
            let _ = writeln!(
                out,
                "<p>{}{} {} ({} {}; {} {}).</p>",
                escape_html(words.estimated_finish),
                words.colon,
                escape_html(&estimate.at),
                estimate.still_due,
                escape_html(words.still_due),
                escape_html(words.limited_by),
                escape_html(&estimate.limited_by)
            );
        }
        None => {}
    }
    if let Some(warning) = deadline_warning(page) {
        let _ = writeln!(
            out,
            "<p class=\"warning\"><strong>{}{}</strong> {}</p>",
            escape_html(words.warning),
            words.colon,
            escape_html(&warning)
        );
    }
    out.push_str("</section>\n");
    out
}

/// A bar chart of letters sent per hour (or per day over longer campaigns), as inline SVG.
fn sent_over_time_section(page: &Page) -> String {
    let (words, facts) = (page.words, page.facts);
    let daily = facts.bucket_ms >= 86_400_000;
    let unit = if daily { words.day } else { words.hour };
    let mut out = format!(
        "<section>\n<h2>{} ({} {unit}, UTC)</h2>\n",
        escape_html(words.over_time),
        words.per
    );
    if facts.sent_over_time.is_empty() {
        let _ = write!(
            out,
            "<p>{}</p>\n</section>\n",
            escape_html(words.nothing_sent)
        );
        return out;
    }
    // Every bucket from the first to the last, empty ones included, so the time axis is honest.
    let first = facts.sent_over_time[0].start_ms;
    let last = facts.sent_over_time[facts.sent_over_time.len() - 1].start_ms;
    let count = ((last - first) / facts.bucket_ms + 1).clamp(1, 2000) as usize;
    let mut bars = vec![0_i64; count];
    for bucket in &facts.sent_over_time {
        let index = ((bucket.start_ms - first) / facts.bucket_ms) as usize;
        if let Some(bar) = bars.get_mut(index) {
            *bar += bucket.sent;
        }
    }
    let max = bars.iter().copied().max().unwrap_or(1).max(1);
    let (width, height, left, bottom, top) = (1000.0, 260.0, 70.0, 40.0, 16.0);
    let plot_w = width - left - 10.0;
    let plot_h = height - bottom - top;
    let step = plot_w / count as f64;
    let bar_w = (step * 0.8).clamp(1.0, 48.0);
    let mut svg = format!(
        "<svg viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" role=\"img\" \
         aria-label=\"{}\">\n",
        escape_html(&format!("{} ({unit})", words.over_time))
    );
    for tick in 0..=4 {
        let value = max as f64 * f64::from(tick) / 4.0;
        let y = top + plot_h - plot_h * f64::from(tick) / 4.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#d5dae0\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"end\">{}</text>",
            width - 10.0,
            left - 6.0,
            y + 4.0,
            value.round() as i64
        );
    }
    for (i, &sent) in bars.iter().enumerate() {
        let h = plot_h * sent as f64 / max as f64;
        let x = left + step * i as f64 + (step - bar_w) / 2.0;
        let y = top + plot_h - h;
        let when = format_time(Some(first + facts.bucket_ms * i as i64));
        let _ = writeln!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar_w:.1}\" height=\"{h:.1}\" fill=\"#2f7d4f\">\
             <title>{}: {sent} {}</title></rect>",
            escape_html(&when),
            escape_html(words.sent_in_bucket)
        );
    }
    let label = |ms: i64| {
        let text = format_time(Some(ms));
        if daily {
            text.get(..10).unwrap_or(&text).to_owned()
        } else {
            text.get(..16).unwrap_or(&text).replace('T', " ")
        }
    };
    let _ = writeln!(
        svg,
        "<text x=\"{left}\" y=\"{:.1}\" font-size=\"12\">{}</text>",
        height - 14.0,
        escape_html(&label(first))
    );
    if count > 1 {
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"end\">{}</text>",
            width - 10.0,
            height - 14.0,
            escape_html(&label(last))
        );
    }
    svg.push_str("</svg>\n");
    out.push_str(&svg);
    let total: i64 = bars.iter().sum();
    let summary = fill(
        words.over_time_summary,
        &[
            ("total", &total),
            ("count", &count),
            ("unit", &unit),
            ("max", &max),
        ],
    );
    let _ = writeln!(
        out,
        "<p class=\"sub\">{}</p>\n</section>",
        escape_html(&summary)
    );
    out
}

fn state_colour(state: DeliveryState) -> &'static str {
    match state {
        DeliveryState::Pending => "#4a6fa5",
        DeliveryState::Sending => "#2a8bb5",
        DeliveryState::Sent => "#2f7d4f",
        DeliveryState::Deferred => "#c48a12",
        DeliveryState::Failed => "#b3261e",
        DeliveryState::Bounced => "#8e3b8e",
        DeliveryState::NoEmail => "#7a7a7a",
    }
}

/// The seven states as horizontal bars, each with its label, count and share.
/// With a `[schedule]`, the plan day by day against what happened.
fn plan_section(page: &Page) -> String {
    page.facts
        .status
        .plan
        .as_ref()
        .map(crate::plan::html_section)
        .unwrap_or_default()
}

fn states_section(page: &Page) -> String {
    let (words, status) = (page.words, &page.facts.status);
    let (width, row_h, label_w) = (1000.0, 30.0, 170.0);
    let height = row_h * DeliveryState::ALL.len() as f64 + 10.0;
    let max = DeliveryState::ALL
        .iter()
        .map(|&s| status.count(s))
        .max()
        .unwrap_or(0)
        .max(1);
    let mut svg = format!(
        "<svg viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" role=\"img\" \
         aria-label=\"{}\">\n",
        escape_html(words.states_chart)
    );
    for (i, state) in DeliveryState::ALL.into_iter().enumerate() {
        let count = status.count(state);
        let share = if status.total > 0 {
            100.0 * count as f64 / status.total as f64
        } else {
            0.0
        };
        let y = 5.0 + row_h * i as f64;
        let w = (width - label_w - 200.0) * count as f64 / max as f64;
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"14\" text-anchor=\"end\">{}</text>\
             <rect x=\"{label_w}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"14\">{count} ({share:.1} %)</text>",
            label_w - 8.0,
            y + 18.0,
            escape_html(words.state(state)),
            row_h - 8.0,
            state_colour(state),
            label_w + w + 8.0,
            y + 18.0
        );
    }
    svg.push_str("</svg>\n");
    format!(
        "<section>\n<h2>{}</h2>\n{svg}</section>\n",
        escape_html(words.states)
    )
}

fn reasons_table(words: &Words, title: &str, reasons: &[ErrorReason]) -> String {
    if reasons.is_empty() {
        return format!(
            "<p>{}{} {}.</p>\n",
            escape_html(title),
            words.colon,
            escape_html(words.none)
        );
    }
    let mut out = format!(
        "<table>\n<tr><th>{}</th><th class=\"n\">{}</th></tr>\n",
        escape_html(title),
        escape_html(words.people)
    );
    for reason in reasons {
        let _ = writeln!(
            out,
            "<tr><td class=\"mono\">{}</td><td class=\"n\">{}</td></tr>",
            escape_html(&reason.reason),
            reason.count
        );
    }
    out.push_str("</table>\n");
    out
}

fn not_reached_section(page: &Page) -> String {
    let (words, status) = (page.words, &page.facts.status);
    let not_reached = &status.not_reached;
    let summary = fill(
        words.not_reached_summary,
        &[
            ("total", &not_reached.total),
            ("failed", &not_reached.failed),
            ("bounced", &not_reached.bounced),
            ("no_email", &not_reached.no_email),
        ],
    );
    let mut out = format!(
        "<section>\n<h2>{}</h2>\n<p>{}</p>\n",
        escape_html(words.not_reached),
        escape_html(&summary)
    );
    out.push_str(&reasons_table(
        words,
        words.bounce_reasons,
        &not_reached.bounce_reasons,
    ));
    out.push_str(&reasons_table(
        words,
        words.failed_reasons,
        &not_reached.failed_reasons,
    ));
    if !status.top_errors.is_empty() {
        out.push_str(&reasons_table(words, words.top_errors, &status.top_errors));
    }
    out.push_str("</section>\n");
    out
}

fn domains_section(page: &Page) -> String {
    let (words, status) = (page.words, &page.facts.status);
    let mut out = format!(
        "<section>\n<h2>{}</h2>\n<table>\n<tr><th>{}</th><th class=\"n\">{}</th>",
        escape_html(words.domains),
        escape_html(words.domain),
        escape_html(words.people)
    );
    for state in [
        DeliveryState::Sent,
        DeliveryState::Deferred,
        DeliveryState::Failed,
        DeliveryState::Bounced,
    ] {
        let _ = write!(
            out,
            "<th class=\"n\">{}</th>",
            escape_html(words.state(state))
        );
    }
    out.push_str("</tr>\n");
    for domain in &status.domains {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape_html(&domain.domain),
            domain.people,
            domain.sent,
            domain.deferred,
            domain.failed,
            domain.bounced
        );
    }
    if status.domains.is_empty() {
        let _ = writeln!(
            out,
            "<tr><td colspan=\"6\">{}</td></tr>",
            escape_html(words.no_domains)
        );
    }
    out.push_str("</table>\n</section>\n");
    out
}

/// Complaints per provider: the notice is mandatory, so nothing is withdrawn, but they decide
/// whether that provider keeps delivering the next letters to the inbox.
fn complaints_section(page: &Page) -> String {
    let facts = page.facts;
    if facts.complaints.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<section>\n<h2>Complaints from the providers' feedback loops</h2>\n<p>People who marked \
         the notice as spam, as the providers reported it (ARF). The notice is mandatory and is not \
         withdrawn; many complaints at one provider make it file the next letters as spam.</p>\n\
         <table>\n<tr><th>provider</th><th class=\"n\">complaints</th><th class=\"n\">matched to a person</th></tr>\n",
    );
    for provider in &facts.complaints {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape_html(&provider.provider),
            provider.complaints,
            provider.matched
        );
    }
    out.push_str("</table>\n</section>\n");
    out
}

/// Which relay carried how many letters: the regulator may ask who handled the data.
fn relays_section(page: &Page) -> String {
    let status = &page.facts.status;
    if status.relays.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<section>\n<h2>Relays</h2>\n<table>\n<tr><th>relay</th><th class=\"n\">sent</th>\
         <th class=\"n\">deferred</th><th class=\"n\">failed</th><th class=\"n\">bounced</th></tr>\n",
    );
    for relay in &status.relays {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td></tr>",
            escape_html(&relay.relay),
            relay.sent,
            relay.deferred,
            relay.failed,
            relay.bounced
        );
    }
    out.push_str("</table>\n</section>\n");
    out
}

fn timeline_section(page: &Page) -> String {
    let (words, facts) = (page.words, page.facts);
    let time = |ms: Option<i64>| {
        ms.map(|t| format_time(Some(t)))
            .unwrap_or_else(|| words.not_yet.to_owned())
    };
    let mut out = format!(
        "<section>\n<h2>{}</h2>\n<table class=\"facts\">\n\
         <tr><th>{}</th><td>{}</td></tr>\n\
         <tr><th>{}</th><td>{}</td></tr>\n\
         <tr><th>{}</th><td>{}</td></tr>\n</table>\n",
        escape_html(words.timeline),
        escape_html(words.first_sent),
        escape_html(&time(facts.first_send)),
        escape_html(words.last_sent),
        escape_html(&time(facts.last_send)),
        escape_html(words.send_runs),
        facts.send_runs_total
    );
    if facts.runs.is_empty() {
        out.push_str("</section>\n");
        return out;
    }
    if facts.send_runs_total > facts.runs.len() as i64 {
        let recent = fill(
            words.recent_runs,
            &[
                ("shown", &facts.runs.len()),
                ("total", &facts.send_runs_total),
            ],
        );
        let _ = writeln!(out, "<p class=\"sub\">{}</p>", escape_html(&recent));
    }
    out.push_str("<table>\n<tr>");
    for (i, column) in words.run_columns.iter().enumerate() {
        let numeric = (3..=5).contains(&i);
        let _ = write!(
            out,
            "<th{}>{}</th>",
            if numeric { " class=\"n\"" } else { "" },
            escape_html(column)
        );
    }
    out.push_str("</tr>\n");
    for run in &facts.runs {
        let outcome = match run.outcome.as_deref() {
            Some(outcome) => words.outcome(outcome).unwrap_or(outcome),
            None => words.running,
        };
        let _ = writeln!(
            out,
            "<tr><td>#{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td>{}</td></tr>",
            run.id,
            escape_html(&run.started_at),
            escape_html(run.finished_at.as_deref().unwrap_or("-")),
            run.sent,
            run.deferred,
            run.failed,
            escape_html(outcome)
        );
    }
    out.push_str("</table>\n</section>\n");
    out
}

fn letters_section(page: &Page) -> String {
    let (words, facts) = (page.words, page.facts);
    let mut out = format!(
        "<section>\n<h2>{}</h2>\n<p>{}</p>\n",
        escape_html(words.letters),
        escape_html(words.letters_explained)
    );
    if facts.letters.is_empty() {
        let _ = write!(
            out,
            "<p>{}</p>\n</section>\n",
            escape_html(words.no_letters)
        );
        return out;
    }
    let [fingerprint, people, first, last] = words.letters_columns.map(escape_html);
    let _ = writeln!(
        out,
        "<table>\n<tr><th>{fingerprint}</th><th class=\"n\">{people}</th><th>{first}</th><th>{last}</th></tr>"
    );
    for letters in &facts.letters {
        let _ = writeln!(
            out,
            "<tr><td class=\"mono\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            escape_html(&letters.fingerprint),
            letters.people,
            escape_html(&format_time(letters.first_sent)),
            escape_html(&format_time(letters.last_sent))
        );
    }
    out.push_str("</table>\n</section>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_values_is_escaped() {
        assert_eq!(
            escape_html("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
        assert_eq!(escape_html("Lefèvre"), "Lefèvre");
    }
}
