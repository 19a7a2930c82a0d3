//! `report --html FILE`: one self-contained HTML page for management and the regulator: the
//! incident, the totals and their reconciliation (from the import file's rows to the letters'
//! states), letters sent over time, the states, why people were not reached, the busiest domains,
//! the relays, the campaign's timeline, what people were told (one letter and its fingerprint)
//! and the words a reader outside the trade needs.
//!
//! The page is in the campaign's default language (French or English; any other gets English):
//! every label, code and sentence comes from one `Words` table per language, and numbers, shares,
//! dates and times are written by one `Locale` (grouping and decimal marks of the language; times
//! in the schedule's time zone, named, or UTC without a schedule). Each section is a function of
//! one `Page` (configuration, facts, words, locale) listed in `SECTIONS`, so a new section is one
//! function, its words in both tables, and one line there.
//!
//! The page loads nothing: no script, no font, no image from anywhere; the charts are inline SVG
//! and the style is inline CSS that also lays the page out for A4 paper. Every value that comes
//! from the database or the configuration is escaped, since a relay's reply or an incident fact
//! is text nobody here wrote.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use chrono::TimeZone as _;
use sqlx::SqliteConnection;

use crate::config::Config;
use crate::domain::DeliveryState;
use crate::exit::Exit;
use crate::html;
use crate::status::{ErrorReason, FinishLimit, SendRun, Status};
use crate::store;
use crate::store::report::{LettersInUse, SentBucket};

/// How many send runs the timeline lists before summarising the rest.
const RUNS_LISTED: i64 = 200;
/// More buckets than this and the chart counts days instead of hours.
const MAX_HOURLY_BARS: i64 = 72;

/// What people were told: one letter as the current letters write it, for a specimen person
/// with every category of data (no real person's data in the report), and the fingerprint of
/// those letters.
#[derive(Debug, Clone)]
pub struct Specimen {
    pub fingerprint: String,
    pub subject: String,
    pub text: String,
}

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
    /// The letter of one variant, or why it could not be made (the letters do not load).
    pub specimen: Result<Specimen, String>,
}

pub async fn run(config: &Config, html: &Path) -> anyhow::Result<Exit> {
    let pool = crate::db::open_read_only(&config.campaign.database).await?;
    let status = crate::status::collect_for(config, &pool).await?;
    let mut conn = pool.acquire().await?;
    let mut facts = gather(&mut conn, status).await?;
    facts.complaints = crate::store::mailbox::complaints_by_provider(&pool).await?;
    facts.specimen = specimen(config);
    let page = render(config, &facts);
    crate::files::write_private(html, page.as_bytes())
        .with_context(|| format!("while writing {}", html.display()))?;
    tracing::info!(file = %html.display(), "report written");
    crate::exit::print_out(&format!("report: wrote {}", html.display()));
    Ok(Exit::Ok)
}

/// The specimen person of [`Specimen`]: no name, no civility, every category, placeholder values.
fn specimen(config: &Config) -> Result<Specimen, String> {
    use crate::domain::{Category, Email, NoticeId, PersonRef};
    let letters = crate::render::Letters::load(config).map_err(|e| e.to_string())?;
    let invalid = |e: crate::domain::Invalid| e.0;
    let person = crate::person::Person {
        id: 0,
        person_ref: PersonRef::parse("SPECIMEN").map_err(invalid)?,
        notice_id: NoticeId::parse("0000-0000-0000").map_err(invalid)?,
        email: Some(Email::parse("prenom.nom@exemple.fr").map_err(invalid)?),
        civility: None,
        first_name: None,
        last_name: None,
        language: config.campaign.default_language.clone(),
        address_line1: None,
        address_line2: None,
        postcode: None,
        city: None,
        country: None,
        phone_masked: Some("•• •• •• •• 00".to_owned()),
        identifier_masked: Some("…0000".to_owned()),
        exposed: Category::ALL.to_vec(),
        extra: serde_json::Map::new(),
        generation: 1,
    };
    let letter = letters.render(&person).map_err(|e| e.to_string())?;
    Ok(Specimen {
        fingerprint: letters.fingerprint().to_owned(),
        subject: letter.subject,
        text: letter.text,
    })
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
        specimen: Err(String::new()),
    })
}

/// How the page writes numbers, shares, dates and times: in its language, times in the
/// schedule's time zone (UTC without a schedule), with the zone named.
pub struct Locale {
    french: bool,
    zone: chrono_tz::Tz,
}

impl Locale {
    pub fn new(language: &str, config: &Config) -> Locale {
        Locale {
            french: language == "fr",
            zone: config
                .schedule
                .as_ref()
                .map_or(chrono_tz::UTC, |s| s.timezone),
        }
    }

    /// "340 000" / "340,000".
    pub fn int(&self, value: impl Into<i64>) -> String {
        crate::render::grouped_number(value.into(), self.french)
    }

    /// "99,5 %" / "99.5 %" (no-break space before the sign).
    pub fn percent(&self, value: f64) -> String {
        let text = format!("{value:.1}");
        let text = if self.french {
            text.replace('.', ",")
        } else {
            text
        };
        format!("{text}\u{a0}%")
    }

    /// The zone's name, as the schedule gives it ("Europe/Paris", "UTC").
    pub fn zone(&self) -> &'static str {
        self.zone.name()
    }

    /// "11 juillet 2025" / "11 July 2025" from "2025-07-11"; anything else as written.
    pub fn date(&self, iso: &str) -> String {
        crate::render::long_date(iso, self.french).unwrap_or_else(|| iso.to_owned())
    }

    /// "11 juillet 2025 à 09:12 CEST" / "11 July 2025, 09:12 CEST"; empty for no time.
    pub fn time(&self, ms: Option<i64>) -> String {
        let Some(at) = ms.and_then(|ms| self.zone.timestamp_millis_opt(ms).single()) else {
            return String::new();
        };
        let day = self.date(&at.format("%Y-%m-%d").to_string());
        let clock = at.format("%H:%M %Z");
        if self.french {
            format!("{day} à {clock}")
        } else {
            format!("{day}, {clock}")
        }
    }

    /// An RFC 3339 time as `time` writes it; anything else as written.
    pub fn rfc3339(&self, text: &str) -> String {
        chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| self.time(Some(t.timestamp_millis())))
            .unwrap_or_else(|_| text.to_owned())
    }

    /// The local day a time falls on, "2025-07-11".
    fn local_day(&self, ms: i64) -> String {
        self.zone
            .timestamp_millis_opt(ms)
            .single()
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_default()
    }

    /// The local hour a time falls in, "11 juil. 09:00".
    fn local_hour(&self, ms: i64) -> String {
        self.zone
            .timestamp_millis_opt(ms)
            .single()
            .map(|t| {
                format!(
                    "{} {}",
                    self.date(&t.format("%Y-%m-%d").to_string()),
                    t.format("%H:%M")
                )
            })
            .unwrap_or_default()
    }
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

/// The incident facts that are days, written as the language writes a date.
const INCIDENT_DATES: [&str; 6] = [
    "occurred_from",
    "occurred_to",
    "discovered_on",
    "contained_on",
    "regulator_notified_on",
    "notify_by",
];

/// A noun's singular and plural, e.g. `("personne", "personnes")`.
pub type Forms = (&'static str, &'static str);

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
    /// "Times are local to {zone}."
    pub times_in: &'static str,
    pub incident: &'static str,
    pub incident_labels: [&'static str; 12],
    pub no_incident_facts: &'static str,
    pub yes: &'static str,
    pub no: &'static str,
    pub totals: &'static str,
    pub card_imported: &'static str,
    pub card_sent: &'static str,
    pub card_handed_share: &'static str,
    pub card_not_reached: &'static str,
    pub card_still_to_send: &'static str,
    /// The reconciliations: their names and verdicts, then the words of their sums.
    pub reconciliation: &'static str,
    pub reconciled: &'static str,
    pub mismatch: &'static str,
    pub person: Forms,
    pub import_reconciliation: &'static str,
    pub row: Forms,
    pub import_run: Forms,
    pub known_rows: Forms,
    pub refused_rows: Forms,
    pub rolled_back_rows: Forms,
    pub imports_columns: [&'static str; 7],
    pub no_imports: &'static str,
    pub finished_at: &'static str,
    pub estimated_finish: &'static str,
    pub still_due: &'static str,
    pub limited_by: &'static str,
    /// What sets the estimated finish: done, unlimited, the global rate ({rate}), a domain
    /// ({domain}, {backlog}, {rate}), the last retry.
    pub limits: [&'static str; 5],
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
    pub not_reached_intro: &'static str,
    /// Refused at sending, bounced after, no usable address: the rows of the not-reached table.
    pub not_reached_rows: [&'static str; 3],
    pub bounce_reasons: &'static str,
    pub failed_reasons: &'static str,
    pub top_errors: &'static str,
    pub none: &'static str,
    pub domains: &'static str,
    pub domain: &'static str,
    pub no_domains: &'static str,
    pub plan: &'static str,
    pub plan_legend: &'static str,
    pub plan_nothing: &'static str,
    pub plan_met: &'static str,
    pub plan_late: &'static str,
    pub plan_cap_meets: &'static str,
    pub plan_end: &'static str,
    pub plan_unplaced: &'static str,
    pub plan_all_gone: &'static str,
    pub plan_columns: [&'static str; 4],
    pub plan_no_cap: &'static str,
    pub plan_planned: &'static str,
    pub complaints: &'static str,
    pub complaints_explained: &'static str,
    pub complaints_columns: [&'static str; 3],
    pub relays: &'static str,
    pub relays_explained: &'static str,
    pub relay: &'static str,
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
    pub told: &'static str,
    pub told_explained: &'static str,
    pub told_subject: &'static str,
    pub told_fingerprint: &'static str,
    pub told_in_use: &'static str,
    pub told_not_in_use: &'static str,
    pub told_unavailable: &'static str,
    pub glossary: &'static str,
    pub glossary_terms: [(&'static str, &'static str); 7],
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

    fn french(&self) -> bool {
        self.lang == "fr"
    }

    /// A delivery state as the reader names it (the plural: a column, a bar of the chart).
    pub fn state(&self, state: DeliveryState) -> &'static str {
        self.state_forms(state).1
    }

    /// A delivery state's singular and plural, as a count of letters says it.
    pub fn state_forms(&self, state: DeliveryState) -> Forms {
        let (fr, en) = match state {
            DeliveryState::Pending => (("en attente", "en attente"), ("pending", "pending")),
            DeliveryState::Sending => (
                ("en cours d'envoi", "en cours d'envoi"),
                ("sending", "sending"),
            ),
            DeliveryState::Sent => (("remise au relais", "remises au relais"), ("sent", "sent")),
            DeliveryState::Deferred => (("différée", "différées"), ("deferred", "deferred")),
            DeliveryState::Failed => (
                ("refusée à l'envoi", "refusées à l'envoi"),
                ("failed", "failed"),
            ),
            DeliveryState::Bounced => (
                ("revenue en erreur", "revenues en erreur"),
                ("bounced", "bounced"),
            ),
            DeliveryState::NoEmail => (
                ("sans adresse", "sans adresse"),
                ("no e-mail address", "no e-mail address"),
            ),
            DeliveryState::Delivered => (
                (
                    "acceptée par le fournisseur",
                    "acceptées par le fournisseur",
                ),
                ("delivered", "delivered"),
            ),
        };
        if self.french() { fr } else { en }
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
        Some(if self.french() { fr } else { en })
    }

    /// How a send run ended, as `send` records it; an unknown outcome as is.
    pub fn outcome(&self, outcome: &str) -> Option<&'static str> {
        if !self.french() {
            return None;
        }
        Some(match outcome {
            "nothing more due" => "plus rien à envoyer",
            "--limit reached" => "limite du nombre de lettres atteinte",
            "--max-duration reached" => "durée maximale atteinte",
            "signal" => "arrêt demandé",
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
    generated: "report generated on",
    times_in: "Times are local times of the {zone} time zone.",
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
    card_sent: "letters handed to the relay",
    card_handed_share: "handed to the relay, of those with an address",
    card_not_reached: "not reached by e-mail (postal fallback)",
    card_still_to_send: "still to send",
    reconciliation: "reconciliation",
    reconciled: "ok",
    mismatch: "MISMATCH",
    person: ("person", "people"),
    import_reconciliation: "import",
    row: ("row", "rows"),
    import_run: ("import", "imports"),
    known_rows: (
        "row of a person already imported",
        "rows of people already imported",
    ),
    refused_rows: ("row refused at import", "rows refused at import"),
    rolled_back_rows: ("row rolled back (--strict)", "rows rolled back (--strict)"),
    imports_columns: [
        "file",
        "imported on",
        "rows",
        "new people",
        "already imported",
        "refused",
        "rolled back",
    ],
    no_imports: "No import recorded.",
    finished_at: "Finished: the last letter went on",
    estimated_finish: "Estimated finish at the configured rate",
    still_due: "still due",
    limited_by: "limited by",
    limits: [
        "nothing left to send",
        "no rate limit",
        "the global rate of {rate} letters a second",
        "{domain}: {backlog} letters at {rate} a second",
        "the last scheduled retry",
    ],
    warning: "Warning",
    late_sent: "the last letter went on {at}, after the deadline ({by})",
    late_estimate: "at the configured rate the last letter goes on {at}, after the deadline ({by})",
    over_time: "Letters handed to the relay over time",
    hour: "hour",
    day: "day",
    nothing_sent: "No letter has been sent yet.",
    sent_in_bucket: "handed to the relay",
    over_time_summary: "Letters handed to the relay: {total} in all, at most {max} in one {unit}.",
    states: "Where every letter stands",
    states_chart: "People by delivery state",
    not_reached: "Not reached by e-mail",
    not_reached_intro: "To be sent the letter by post: {total}.",
    not_reached_rows: [
        "refused by the relay at sending (a permanent refusal, SMTP code 5xx)",
        "bounced after being handed to the relay",
        "without a usable e-mail address",
    ],
    bounce_reasons: "Bounces (status and diagnostic, as received)",
    failed_reasons: "Refused at sending (the relay's reply, as received)",
    top_errors: "Commonest errors (refused and waiting for a retry, as received)",
    none: "none",
    domains: "Top recipient domains",
    domain: "domain",
    no_domains: "No e-mail address imported.",
    plan: "The plan against what happened, per day",
    plan_legend: "Green: letters that went; outline: still planned; red mark: the day's allowance (warm-up or daily cap).",
    plan_nothing: "Nothing sent and nothing left to plan.",
    plan_met: "The last letters are planned for {end}, by the deadline ({by}).",
    plan_late: "The last letters are planned for {end}, after the deadline ({by}).",
    plan_cap_meets: "A daily cap of {cap} letters would meet it.",
    plan_end: "The last letters are planned for {end}.",
    plan_unplaced: "{count} letters find no sending window in the next two years.",
    plan_all_gone: "Every letter has gone.",
    plan_columns: ["day", "allowance", "handed to the relay", "planned"],
    plan_no_cap: "no cap",
    plan_planned: "planned",
    complaints: "Complaints from the providers' feedback loops",
    complaints_explained: "People who marked the notice as spam, as the providers reported it (ARF). The notice is mandatory and is not withdrawn; many complaints at one provider make it file the next letters as spam.",
    complaints_columns: ["provider", "complaints", "matched to a person"],
    relays: "Relays",
    relays_explained: "Which relay carried how many letters: the regulator may ask who handled the data.",
    relay: "relay",
    timeline: "Campaign timeline",
    first_sent: "First letter handed to the relay",
    last_sent: "Last letter handed to the relay",
    send_runs: "Send runs",
    not_yet: "not yet",
    recent_runs: "The {shown} most recent runs of {total}:",
    run_columns: [
        "run",
        "started",
        "finished",
        "handed to the relay",
        "deferred",
        "failed",
        "outcome",
    ],
    running: "running or interrupted",
    letters: "Letters in use",
    letters_explained: "Each fingerprint identifies one exact version of the letter templates and incident facts; a change of wording during the campaign shows as a second line.",
    letters_columns: ["letters fingerprint", "people", "first sent", "last sent"],
    no_letters: "No letter sent yet.",
    told: "What people were told",
    told_explained: "The letter below is what the letters in use write for a person with every category of data and no civility; the person's own data are replaced by placeholders (e-mail address, phone, identifier, notice number). Other people's letters differ only by the data listed and the greeting.",
    told_subject: "Subject",
    told_fingerprint: "Fingerprint of these letters",
    told_in_use: "This is the version {people} were sent (see \"Letters in use\").",
    told_not_in_use: "No letter sent so far carries this fingerprint.",
    told_unavailable: "The letters could not be read: {reason}",
    glossary: "Words used in this report",
    glossary_terms: [
        (
            "relay",
            "the mail server that takes our letters and carries them to each person's mail provider. A letter handed to the relay is not yet a letter the person received.",
        ),
        (
            "refused at sending (SMTP code 5xx)",
            "a mail server's permanent refusal (an address that does not exist, for instance); the person goes to the postal fallback.",
        ),
        (
            "deferred (SMTP code 4xx)",
            "a temporary refusal; the letter is sent again later.",
        ),
        (
            "bounced",
            "an error report received after the letter was handed to the relay (an address closed since, for instance); the person goes to the postal fallback.",
        ),
        (
            "notice number",
            "the number of each person's letter, which the helpline confirms to a caller to show that the letter is ours.",
        ),
        (
            "letters fingerprint",
            "the SHA-256 of the letter templates and the incident facts: letters with the same fingerprint were written by the same templates.",
        ),
        (
            "complaint",
            "a person's \"spam\" report, forwarded by their mail provider (ARF format).",
        ),
    ],
    footer: "Produced by breachmail {version} from the campaign database. The per-person evidence (what was sent to whom, when, and the outcome) is in the audit export, a CSV file with its legend beside it.",
};

pub static FRENCH: Words = Words {
    lang: "fr",
    title: "Campagne de notification de la violation",
    no_reference: "(sans référence)",
    colon: "&nbsp;:",
    per: "par",
    subtitle: "Communication aux personnes concernées (article 34 du RGPD)",
    generated: "rapport établi le",
    times_in: "Les heures sont données en heure locale du fuseau {zone}.",
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
    card_handed_share: "remises au relais, parmi celles qui ont une adresse",
    card_not_reached: "non atteintes par courriel (envoi postal)",
    card_still_to_send: "encore à envoyer",
    reconciliation: "rapprochement",
    reconciled: "concordant",
    mismatch: "ÉCART",
    person: ("personne", "personnes"),
    import_reconciliation: "import",
    row: ("ligne", "lignes"),
    import_run: ("import", "imports"),
    known_rows: (
        "ligne d'une personne déjà importée",
        "lignes de personnes déjà importées",
    ),
    refused_rows: ("ligne refusée à l'import", "lignes refusées à l'import"),
    rolled_back_rows: (
        "ligne annulée (import strict)",
        "lignes annulées (import strict)",
    ),
    imports_columns: [
        "fichier",
        "importé le",
        "lignes",
        "nouvelles personnes",
        "déjà importées",
        "refusées",
        "annulées",
    ],
    no_imports: "Aucun import enregistré.",
    finished_at: "Terminé\u{a0}: la dernière lettre est partie le",
    estimated_finish: "Fin estimée au débit configuré",
    still_due: "encore à envoyer",
    limited_by: "limité par",
    limits: [
        "plus rien à envoyer",
        "aucune limite de débit",
        "le débit global de {rate} lettres par seconde",
        "{domain}\u{a0}: {backlog} lettres à {rate} par seconde",
        "le dernier nouvel essai prévu",
    ],
    warning: "Attention",
    late_sent: "la dernière lettre est partie le {at}, après la date limite ({by})",
    late_estimate: "au débit configuré, la dernière lettre partira le {at}, après la date limite ({by})",
    over_time: "Lettres remises au relais au fil du temps",
    hour: "heure",
    day: "jour",
    nothing_sent: "Aucune lettre n'a encore été envoyée.",
    sent_in_bucket: "remises au relais",
    over_time_summary: "Lettres remises au relais\u{a0}: {total} au total, au plus {max} en une {unit}.",
    states: "Où en est chaque lettre",
    states_chart: "Personnes par état d'envoi",
    not_reached: "Non atteintes par courriel",
    not_reached_intro: "À qui envoyer la lettre par courrier postal\u{a0}: {total}.",
    not_reached_rows: [
        "refusées par le relais à l'envoi (refus définitif, code SMTP 5xx)",
        "revenues en erreur après la remise au relais",
        "sans adresse électronique utilisable",
    ],
    bounce_reasons: "Retours en erreur (statut et diagnostic, tels que reçus)",
    failed_reasons: "Refus à l'envoi (réponse du relais, telle que reçue)",
    top_errors: "Erreurs les plus fréquentes (refusées et en attente d'un nouvel essai, telles que reçues)",
    none: "aucun",
    domains: "Principaux domaines destinataires",
    domain: "domaine",
    no_domains: "Aucune adresse électronique importée.",
    plan: "Le plan d'envoi et ce qui s'est passé, jour par jour",
    plan_legend: "En vert\u{a0}: les lettres parties\u{a0}; en pointillé\u{a0}: celles encore prévues\u{a0}; trait rouge\u{a0}: le quota du jour (montée en charge ou limite quotidienne).",
    plan_nothing: "Rien d'envoyé et plus rien à prévoir.",
    plan_met: "Les dernières lettres sont prévues le {end}, avant la date limite ({by}).",
    plan_late: "Les dernières lettres sont prévues le {end}, après la date limite ({by}).",
    plan_cap_meets: "Une limite quotidienne de {cap} lettres la respecterait.",
    plan_end: "Les dernières lettres sont prévues le {end}.",
    plan_unplaced: "{count} lettres ne trouvent aucun créneau d'envoi dans les deux ans qui viennent.",
    plan_all_gone: "Toutes les lettres sont parties.",
    plan_columns: ["jour", "quota", "remises au relais", "prévues"],
    plan_no_cap: "sans limite",
    plan_planned: "prévues",
    complaints: "Plaintes transmises par les fournisseurs de messagerie",
    complaints_explained: "Personnes qui ont signalé la lettre comme indésirable, selon les fournisseurs (format ARF). La lettre est obligatoire et n'est pas retirée\u{a0}; beaucoup de plaintes chez un fournisseur lui font classer les lettres suivantes comme indésirables.",
    complaints_columns: ["fournisseur", "plaintes", "rattachées à une personne"],
    relays: "Relais",
    relays_explained: "Quel relais a acheminé combien de lettres\u{a0}: l'autorité peut demander qui a traité les données.",
    relay: "relais",
    timeline: "Déroulement de la campagne",
    first_sent: "Première lettre remise au relais",
    last_sent: "Dernière lettre remise au relais",
    send_runs: "Envois lancés",
    not_yet: "pas encore",
    recent_runs: "Les {shown} envois les plus récents sur {total}\u{a0}:",
    run_columns: [
        "envoi",
        "début",
        "fin",
        "remises au relais",
        "différées",
        "refusées",
        "issue",
    ],
    running: "en cours ou interrompu",
    letters: "Lettres utilisées",
    letters_explained: "Chaque empreinte désigne une version exacte des modèles de lettre et des faits de l'incident\u{a0}; une modification du texte en cours de campagne apparaît comme une seconde ligne.",
    letters_columns: [
        "empreinte des lettres",
        "personnes",
        "premier envoi",
        "dernier envoi",
    ],
    no_letters: "Aucune lettre envoyée pour l'instant.",
    told: "Ce qui a été dit aux personnes",
    told_explained: "La lettre ci-dessous est celle qu'écrivent les modèles en usage pour une personne dont toutes les catégories de données sont concernées, sans civilité connue\u{a0}; ses données sont remplacées par des valeurs fictives (adresse électronique, téléphone, identifiant, numéro d'avis). Les lettres des autres personnes ne diffèrent que par les données citées et la formule d'appel.",
    told_subject: "Objet",
    told_fingerprint: "Empreinte de ces lettres",
    told_in_use: "C'est la version reçue par {people} (voir «\u{a0}Lettres utilisées\u{a0}»).",
    told_not_in_use: "Aucune lettre envoyée jusqu'ici ne porte cette empreinte.",
    told_unavailable: "Les modèles de lettre n'ont pas pu être lus\u{a0}: {reason}",
    glossary: "Lexique",
    glossary_terms: [
        (
            "relais",
            "le serveur de messagerie qui prend nos lettres et les achemine jusqu'au fournisseur de messagerie de chaque personne. Une lettre remise au relais n'est pas encore une lettre reçue par la personne.",
        ),
        (
            "refusée à l'envoi (code SMTP 5xx)",
            "refus définitif d'un serveur de messagerie (adresse inexistante, par exemple)\u{a0}; la personne passe à l'envoi postal.",
        ),
        (
            "différée (code SMTP 4xx)",
            "refus temporaire\u{a0}; la lettre est envoyée de nouveau plus tard.",
        ),
        (
            "revenue en erreur",
            "avis d'erreur reçu après la remise au relais (adresse fermée depuis, par exemple)\u{a0}; la personne passe à l'envoi postal.",
        ),
        (
            "numéro d'avis",
            "le numéro de la lettre de chaque personne, que la ligne d'assistance confirme à qui appelle pour prouver que la lettre vient de nous.",
        ),
        (
            "empreinte des lettres",
            "condensé SHA-256 des modèles de lettre et des faits de l'incident\u{a0}: des lettres de même empreinte ont été écrites par les mêmes modèles.",
        ),
        (
            "plainte",
            "signalement d'une lettre comme indésirable par une personne, transmis par son fournisseur de messagerie (format ARF).",
        ),
    ],
    footer: "Établi par breachmail {version} à partir de la base de la campagne. La preuve personne par personne (ce qui a été envoyé, à qui, quand, et le résultat) est dans l'export d'audit\u{a0}: un fichier CSV accompagné de sa légende.",
};

/// What every section reads: the configuration, the facts, the words and the locale of the page.
pub struct Page<'a> {
    pub config: &'a Config,
    pub facts: &'a ReportFacts,
    pub words: &'static Words,
    pub locale: Locale,
}

impl Page<'_> {
    /// "1 personne", "8 personnes", "0 personne" (French singular up to 1) / "1 person", "0 people".
    fn count(&self, n: i64, (one, many): Forms) -> String {
        let singular = if self.words.french() { n <= 1 } else { n == 1 };
        format!(
            "{} {}",
            self.locale.int(n),
            if singular { one } else { many }
        )
    }

    fn time(&self, ms: Option<i64>) -> String {
        self.locale.time(ms)
    }
}

/// The sections, in page order.
const SECTIONS: &[fn(&Page) -> String] = &[
    incident_section,
    totals_section,
    sent_over_time_section,
    plan_section,
    states_section,
    past_the_relay_section,
    not_reached_section,
    domains_section,
    complaints_section,
    relays_section,
    timeline_section,
    letters_section,
    told_section,
    glossary_section,
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
pre.letter { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.85em;
             white-space: pre-wrap; border: 1px solid var(--line); padding: 12px 16px; border-radius: 4px; }
dt { font-weight: 600; margin-top: 6px; }
dd { margin: 0 0 0 16px; }
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
    let language = &config.campaign.default_language;
    let page = Page {
        config,
        facts,
        words: Words::for_language(language),
        locale: Locale::new(Words::for_language(language).lang, config),
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
        html::escape(&title)
    );
    let _ = write!(
        out,
        "<header>\n<h1>{}</h1>\n<p class=\"sub\">{}{} · {} {}. {}</p>\n</header>\n",
        html::escape(&title),
        organisation
            .map(|o| format!("{} · ", html::escape(&o)))
            .unwrap_or_default(),
        html::escape(words.subtitle),
        html::escape(words.generated),
        html::escape(&page.time(Some(facts.generated_at))),
        html::escape(&fill(words.times_in, &[("zone", &page.locale.zone())]))
    );
    for section in SECTIONS {
        out.push_str(&section(&page));
    }
    let _ = write!(
        out,
        "<footer>{}</footer>\n</body>\n</html>\n",
        html::escape(&fill(
            words.footer,
            &[("version", &env!("CARGO_PKG_VERSION"))]
        ))
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

/// An incident fact as the page shows it, in HTML: a code by its label with the code beside it
/// (so the regulator can match it with the notification), days and numbers as the language
/// writes them, everything else as `incident_text`.
fn incident_value(page: &Page, key: &str) -> Option<String> {
    let text = incident_text(page.config, key)?;
    let value = page.config.incident.get(key);
    Some(match (key, value) {
        ("nature", _) => match page.words.nature(&text) {
            Some(label) => format!(
                "{} (<code>{}</code>)",
                html::escape(label),
                html::escape(&text)
            ),
            None => format!("<code>{}</code>", html::escape(&text)),
        },
        (_, Some(serde_json::Value::Bool(true))) => html::escape(page.words.yes),
        (_, Some(serde_json::Value::Bool(false))) => html::escape(page.words.no),
        (_, Some(serde_json::Value::Number(n))) if n.is_i64() => {
            page.locale.int(n.as_i64().unwrap_or_default())
        }
        _ if INCIDENT_DATES.contains(&key) => html::escape(&page.locale.date(&text)),
        _ => html::escape(&text),
    })
}

fn incident_section(page: &Page) -> String {
    let words = page.words;
    let mut rows = String::new();
    for (key, label) in INCIDENT_FACTS.iter().zip(words.incident_labels) {
        if let Some(value) = incident_value(page, key) {
            let _ = writeln!(
                rows,
                "<tr><th>{}</th><td>{value}</td></tr>",
                html::escape(label)
            );
        }
    }
    if rows.is_empty() {
        let _ = writeln!(
            rows,
            "<tr><td>{}</td></tr>",
            html::escape(words.no_incident_facts)
        );
    }
    format!(
        "<section>\n<h2>{}</h2>\n<table class=\"facts\">\n{rows}</table>\n</section>\n",
        html::escape(words.incident)
    )
}

fn card(value: impl std::fmt::Display, label: &str) -> String {
    format!(
        "<div class=\"card\"><div class=\"v\">{}</div><div class=\"k\">{}</div></div>",
        html::escape(&value.to_string()),
        html::escape(label)
    )
}

/// The reconciliation's sum spelled out in the page's language; in English exactly the line
/// `status` and `export audit` print, so the three can be compared word for word.
fn reconciliation_line(page: &Page) -> String {
    let (words, status) = (page.words, &page.facts.status);
    let recon = &status.reconciliation;
    if !words.french() {
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
        (recon.delivered, DeliveryState::Delivered),
    ]
    .map(|(count, state)| page.count(count, words.state_forms(state)))
    .join(" + ");
    format!(
        "{}\u{a0}: {}, {} = {terms}",
        words.reconciliation,
        if recon.ok {
            words.reconciled
        } else {
            words.mismatch
        },
        page.count(recon.people, words.person)
    )
}

/// The import files' rows: the people, the rows of people already imported, the rows refused;
/// in English exactly the line `status` prints.
fn import_line(page: &Page) -> String {
    let (words, imports) = (page.words, &page.facts.status.imports);
    if !words.french() {
        return imports.line();
    }
    let rolled_back = if imports.rolled_back > 0 {
        format!(
            " + {}",
            page.count(imports.rolled_back, words.rolled_back_rows)
        )
    } else {
        String::new()
    };
    format!(
        "{}\u{a0}: {}, {} en {} = {} + {} + {}{rolled_back}",
        words.import_reconciliation,
        if imports.ok {
            words.reconciled
        } else {
            words.mismatch
        },
        page.count(imports.rows, words.row),
        page.count(imports.runs.len() as i64, words.import_run),
        page.count(imports.inserted, words.person),
        page.count(imports.known, words.known_rows),
        page.count(imports.refused, words.refused_rows),
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
    let template = if estimate.still_due == 0 {
        page.words.late_sent
    } else {
        page.words.late_estimate
    };
    Some(fill(
        template,
        &[
            ("at", &page.time(Some(estimate.at_ms))),
            ("by", &page.locale.date(&by)),
        ],
    ))
}

/// What sets the estimated finish, in the page's words.
fn limit_text(page: &Page, limit: &FinishLimit) -> String {
    let limits = page.words.limits;
    match limit {
        FinishLimit::Done => limits[0].to_owned(),
        FinishLimit::Unlimited => limits[1].to_owned(),
        FinishLimit::GlobalRate(rate) => fill(limits[2], &[("rate", &page.locale.int(*rate))]),
        FinishLimit::Domain {
            domain,
            backlog,
            per_second,
        } => fill(
            limits[3],
            &[
                ("domain", domain),
                ("backlog", &page.locale.int(*backlog)),
                ("rate", &page.locale.int(*per_second)),
            ],
        ),
        FinishLimit::LastRetry => limits[4].to_owned(),
    }
}

fn totals_section(page: &Page) -> String {
    let (words, status, locale) = (page.words, &page.facts.status, &page.locale);
    let recon = &status.reconciliation;
    let mut out = format!(
        "<section>\n<h2>{}</h2>\n<div class=\"cards\">",
        html::escape(words.totals)
    );
    out.push_str(&card(locale.int(status.total), words.card_imported));
    // Handed to the relay: `sent` and `delivered` alike.
    out.push_str(&card(locale.int(status.progress.sent), words.card_sent));
    out.push_str(&card(
        locale.percent(status.progress.reached_percent),
        words.card_handed_share,
    ));
    out.push_str(&card(
        locale.int(status.not_reached.total),
        words.card_not_reached,
    ));
    out.push_str(&card(
        locale.int(
            status.count(DeliveryState::Pending)
                + status.count(DeliveryState::Deferred)
                + status.count(DeliveryState::Sending),
        ),
        words.card_still_to_send,
    ));
    out.push_str("</div>\n");
    let class = |ok: bool| if ok { "ok" } else { "bad" };
    let _ = writeln!(
        out,
        "<p class=\"recon\"><span class=\"{}\">{}</span><br>\n<span class=\"{}\">{}</span></p>",
        class(status.imports.ok),
        html::escape(&import_line(page)),
        class(recon.ok),
        html::escape(&reconciliation_line(page))
    );
    out.push_str(&imports_table(page));
    match &status.estimated_finish {
        Some(estimate) if estimate.still_due == 0 => {
            let _ = writeln!(
                out,
                "<p>{} {}.</p>",
                html::escape(words.finished_at),
                html::escape(&page.time(Some(estimate.at_ms)))
            );
        }
        Some(estimate) => {
            let _ = writeln!(
                out,
                "<p>{}{} {} ({} {}, {} {}).</p>",
                html::escape(words.estimated_finish),
                words.colon,
                html::escape(&page.time(Some(estimate.at_ms))),
                locale.int(estimate.still_due),
                html::escape(words.still_due),
                html::escape(words.limited_by),
                html::escape(&limit_text(page, &estimate.limit))
            );
        }
        None => {}
    }
    if let Some(warning) = deadline_warning(page) {
        let _ = writeln!(
            out,
            "<p class=\"warning\"><strong>{}{}</strong> {}</p>",
            html::escape(words.warning),
            words.colon,
            html::escape(&warning)
        );
    }
    out.push_str("</section>\n");
    out
}

/// Each import run: its file, when, and where its rows went.
fn imports_table(page: &Page) -> String {
    let (words, imports, locale) = (page.words, &page.facts.status.imports, &page.locale);
    if imports.runs.is_empty() {
        return format!("<p>{}</p>\n", html::escape(words.no_imports));
    }
    let mut out = String::from("<table>\n<tr>");
    for (i, column) in words.imports_columns.iter().enumerate() {
        let numeric = i >= 2;
        let _ = write!(
            out,
            "<th{}>{}</th>",
            if numeric { " class=\"n\"" } else { "" },
            html::escape(column)
        );
    }
    out.push_str("</tr>\n");
    for run in &imports.runs {
        let file = Path::new(&run.source)
            .file_name()
            .map_or_else(|| run.source.clone(), |f| f.to_string_lossy().into_owned());
        let _ = writeln!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            html::escape(&file),
            html::escape(&page.time(run.at_ms)),
            locale.int(run.rows),
            locale.int(run.inserted),
            locale.int(run.known()),
            locale.int(run.refused),
            locale.int(run.rolled_back)
        );
    }
    out.push_str("</table>\n");
    out
}

/// A bar chart of letters sent per hour (or per day over longer campaigns), as inline SVG.
fn sent_over_time_section(page: &Page) -> String {
    let (words, facts, locale) = (page.words, page.facts, &page.locale);
    let daily = facts.bucket_ms >= 86_400_000;
    let unit = if daily { words.day } else { words.hour };
    let mut out = format!(
        "<section>\n<h2>{} ({} {unit}, {})</h2>\n",
        html::escape(words.over_time),
        words.per,
        html::escape(locale.zone())
    );
    if facts.sent_over_time.is_empty() {
        let _ = write!(
            out,
            "<p>{}</p>\n</section>\n",
            html::escape(words.nothing_sent)
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
        html::escape(&format!("{} ({unit})", words.over_time))
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
            locale.int(value.round() as i64)
        );
    }
    let label = |ms: i64| {
        if daily {
            locale.date(&locale.local_day(ms))
        } else {
            locale.local_hour(ms)
        }
    };
    for (i, &sent) in bars.iter().enumerate() {
        let h = plot_h * sent as f64 / max as f64;
        let x = left + step * i as f64 + (step - bar_w) / 2.0;
        let y = top + plot_h - h;
        let _ = writeln!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar_w:.1}\" height=\"{h:.1}\" fill=\"#2f7d4f\">\
             <title>{}{} {} {}</title></rect>",
            html::escape(&label(first + facts.bucket_ms * i as i64)),
            words.colon,
            locale.int(sent),
            html::escape(words.sent_in_bucket)
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{left}\" y=\"{:.1}\" font-size=\"12\">{}</text>",
        height - 14.0,
        html::escape(&label(first))
    );
    if count > 1 {
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"end\">{}</text>",
            width - 10.0,
            height - 14.0,
            html::escape(&label(last))
        );
    }
    svg.push_str("</svg>\n");
    out.push_str(&svg);
    let total: i64 = bars.iter().sum();
    let summary = fill(
        words.over_time_summary,
        &[
            ("total", &locale.int(total)),
            ("unit", &unit),
            ("max", &locale.int(max)),
        ],
    );
    let _ = writeln!(
        out,
        "<p class=\"sub\">{}</p>\n</section>",
        html::escape(&summary)
    );
    out
}

fn state_colour(state: DeliveryState) -> &'static str {
    match state {
        DeliveryState::Pending => "#4a6fa5",
        DeliveryState::Sending => "#2a8bb5",
        DeliveryState::Sent => "#2f7d4f",
        DeliveryState::Delivered => "#1f5f3a",
        DeliveryState::Deferred => "#c48a12",
        DeliveryState::Failed => "#b3261e",
        DeliveryState::Bounced => "#8e3b8e",
        DeliveryState::NoEmail => "#7a7a7a",
    }
}

/// With a `[schedule]`, the plan drawn against what happened, day by day (sent in green, still
/// planned in outline, the day's allowance as a mark), with the table beneath.
fn plan_section(page: &Page) -> String {
    let Some(plan) = page.facts.status.plan.as_ref() else {
        return String::new();
    };
    let (words, locale) = (page.words, &page.locale);
    let mut out = format!(
        "<section>\n<h2>{} ({})</h2>\n",
        html::escape(words.plan),
        html::escape(&plan.timezone)
    );
    if plan.days.is_empty() {
        let _ = write!(
            out,
            "<p>{}</p>\n</section>\n",
            html::escape(words.plan_nothing)
        );
        return out;
    }
    let max = plan
        .days
        .iter()
        .map(|d| (d.sent + d.planned).max(d.allowance.unwrap_or(0)))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let count = plan.days.len();
    let (width, height, left, bottom, top) = (1000.0, 240.0, 70.0, 40.0, 16.0);
    let plot_w = width - left - 10.0;
    let plot_h = height - bottom - top;
    let step = plot_w / count as f64;
    let bar_w = (step * 0.7).clamp(1.0, 48.0);
    let _ = writeln!(
        out,
        "<svg viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" role=\"img\" \
         aria-label=\"{}\">",
        html::escape(words.plan)
    );
    let int = |n: u64| locale.int(i64::try_from(n).unwrap_or(i64::MAX));
    for (i, day) in plan.days.iter().enumerate() {
        let x = left + step * i as f64 + (step - bar_w) / 2.0;
        let sent_h = plot_h * day.sent as f64 / max;
        let planned_h = plot_h * day.planned as f64 / max;
        let base = top + plot_h;
        let date = html::escape(&locale.date(&day.date));
        let _ = writeln!(
            out,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar_w:.1}\" height=\"{sent_h:.1}\" fill=\"#2f7d4f\">\
             <title>{date}{} {} {}</title></rect>",
            base - sent_h,
            words.colon,
            int(day.sent),
            html::escape(words.plan_columns[2])
        );
        if day.planned > 0 {
            let _ = writeln!(
                out,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar_w:.1}\" height=\"{planned_h:.1}\" \
                 fill=\"none\" stroke=\"#5b6b7a\" stroke-dasharray=\"3 2\">\
                 <title>{date}{} {} {}</title></rect>",
                base - sent_h - planned_h,
                words.colon,
                int(day.planned),
                html::escape(words.plan_planned)
            );
        }
        if let Some(allowance) = day.allowance {
            let y = base - plot_h * allowance as f64 / max;
            let _ = writeln!(
                out,
                "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#b3261e\" \
                 stroke-width=\"2\"><title>{date}{} {} {}</title></line>",
                x - 2.0,
                x + bar_w + 2.0,
                words.colon,
                html::escape(words.plan_columns[1]),
                int(allowance)
            );
        }
    }
    let _ = writeln!(
        out,
        "<text x=\"{left}\" y=\"{:.1}\" font-size=\"12\">{}</text>\
         <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"end\">{}</text>\n</svg>",
        height - 14.0,
        html::escape(&locale.date(&plan.days[0].date)),
        width - 10.0,
        height - 14.0,
        html::escape(&locale.date(&plan.days[count - 1].date))
    );
    let date = |d: &String| locale.date(d);
    let verdict = match (&plan.end_date, &plan.notify_by, plan.meets_notify_by) {
        (Some(end), Some(by), Some(true)) => {
            fill(words.plan_met, &[("end", &date(end)), ("by", &date(by))])
        }
        (Some(end), Some(by), Some(false)) => {
            let late = fill(words.plan_late, &[("end", &date(end)), ("by", &date(by))]);
            match plan.daily_cap_that_meets {
                Some(cap) => format!(
                    "{late} {}",
                    fill(words.plan_cap_meets, &[("cap", &int(cap))])
                ),
                None => late,
            }
        }
        (Some(end), _, _) => fill(words.plan_end, &[("end", &date(end))]),
        (None, _, _) if plan.unplaced > 0 => {
            fill(words.plan_unplaced, &[("count", &int(plan.unplaced))])
        }
        (None, _, _) => words.plan_all_gone.to_owned(),
    };
    let _ = writeln!(
        out,
        "<p class=\"sub\">{} {}</p>",
        html::escape(words.plan_legend),
        html::escape(&verdict)
    );
    let [day_column, allowance_column, sent_column, planned_column] =
        words.plan_columns.map(html::escape);
    let _ = writeln!(
        out,
        "<table>\n<tr><th>{day_column}</th><th class=\"n\">{allowance_column}</th>\
         <th class=\"n\">{sent_column}</th><th class=\"n\">{planned_column}</th></tr>"
    );
    for day in &plan.days {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            html::escape(&locale.date(&day.date)),
            day.allowance
                .map_or_else(|| html::escape(words.plan_no_cap), int),
            int(day.sent),
            int(day.planned)
        );
    }
    out.push_str("</table>\n</section>\n");
    out
}

/// The seven states as horizontal bars, each with its label, count and share.
fn states_section(page: &Page) -> String {
    let (words, status, locale) = (page.words, &page.facts.status, &page.locale);
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
        html::escape(words.states_chart)
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
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"14\">{} ({})</text>",
            label_w - 8.0,
            y + 18.0,
            html::escape(words.state(state)),
            row_h - 8.0,
            state_colour(state),
            label_w + w + 8.0,
            y + 18.0,
            locale.int(count),
            locale.percent(share)
        );
    }
    svg.push_str("</svg>\n");
    format!(
        "<section>\n<h2>{}</h2>\n{svg}</section>\n",
        html::escape(words.states)
    )
}

/// Replies and diagnostics as received (the relays' own words), in a `<code>` each.
fn reasons_table(page: &Page, title: &str, reasons: &[ErrorReason]) -> String {
    let words = page.words;
    if reasons.is_empty() {
        return format!(
            "<p>{}{} {}.</p>\n",
            html::escape(title),
            words.colon,
            html::escape(words.none)
        );
    }
    let mut out = format!(
        "<table>\n<tr><th>{}</th><th class=\"n\">{}</th></tr>\n",
        html::escape(title),
        html::escape(words.person.1)
    );
    for reason in reasons {
        let _ = writeln!(
            out,
            "<tr><td><code>{}</code></td><td class=\"n\">{}</td></tr>",
            html::escape(&reason.reason),
            page.locale.int(reason.count)
        );
    }
    out.push_str("</table>\n");
    out
}

fn not_reached_section(page: &Page) -> String {
    let (words, status, locale) = (page.words, &page.facts.status, &page.locale);
    let not_reached = &status.not_reached;
    let intro = fill(
        words.not_reached_intro,
        &[("total", &page.count(not_reached.total, words.person))],
    );
    let mut out = format!(
        "<section>\n<h2>{}</h2>\n<p>{}</p>\n<table>\n",
        html::escape(words.not_reached),
        html::escape(&intro)
    );
    for (label, count) in words.not_reached_rows.iter().zip([
        not_reached.failed,
        not_reached.bounced,
        not_reached.no_email,
    ]) {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td></tr>",
            html::escape(label),
            locale.int(count)
        );
    }
    out.push_str("</table>\n");
    out.push_str(&reasons_table(
        page,
        words.bounce_reasons,
        &not_reached.bounce_reasons,
    ));
    out.push_str(&reasons_table(
        page,
        words.failed_reasons,
        &not_reached.failed_reasons,
    ));
    if !status.top_errors.is_empty() {
        out.push_str(&reasons_table(page, words.top_errors, &status.top_errors));
    }
    out.push_str("</section>\n");
    out
}

fn domains_section(page: &Page) -> String {
    let (words, status, locale) = (page.words, &page.facts.status, &page.locale);
    let mut out = format!(
        "<section>\n<h2>{}</h2>\n<table>\n<tr><th>{}</th><th class=\"n\">{}</th>",
        html::escape(words.domains),
        html::escape(words.domain),
        html::escape(words.person.1)
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
            html::escape(words.state(state))
        );
    }
    out.push_str("</tr>\n");
    for domain in &status.domains {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            html::escape(&domain.domain),
            locale.int(domain.people),
            locale.int(domain.sent),
            locale.int(domain.deferred),
            locale.int(domain.failed),
            locale.int(domain.bounced)
        );
    }
    if status.domains.is_empty() {
        let _ = writeln!(
            out,
            "<tr><td colspan=\"6\">{}</td></tr>",
            html::escape(words.no_domains)
        );
    }
    out.push_str("</table>\n</section>\n");
    out
}

/// Complaints per provider: the notice is mandatory, so nothing is withdrawn, but they decide
/// whether that provider keeps delivering the next letters to the inbox.
fn complaints_section(page: &Page) -> String {
    let (words, facts, locale) = (page.words, page.facts, &page.locale);
    if facts.complaints.is_empty() {
        return String::new();
    }
    let [provider, complaints, matched] = words.complaints_columns.map(html::escape);
    let mut out = format!(
        "<section>\n<h2>{}</h2>\n<p>{}</p>\n<table>\n<tr><th>{provider}</th>\
         <th class=\"n\">{complaints}</th><th class=\"n\">{matched}</th></tr>\n",
        html::escape(words.complaints),
        html::escape(words.complaints_explained)
    );
    for provider in &facts.complaints {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            html::escape(&provider.provider),
            locale.int(provider.complaints),
            locale.int(provider.matched)
        );
    }
    out.push_str("</table>\n</section>\n");
    out
}

/// Which relay carried how many letters: the regulator may ask who handled the data.
fn relays_section(page: &Page) -> String {
    let (words, status, locale) = (page.words, &page.facts.status, &page.locale);
    if status.relays.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "<section>\n<h2>{}</h2>\n<p>{}</p>\n<table>\n<tr><th>{}</th>",
        html::escape(words.relays),
        html::escape(words.relays_explained),
        html::escape(words.relay)
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
            html::escape(words.state(state))
        );
    }
    out.push_str("</tr>\n");
    for relay in &status.relays {
        let _ = writeln!(
            out,
            "<tr><td class=\"mono\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            html::escape(&relay.relay),
            locale.int(relay.sent),
            locale.int(relay.deferred),
            locale.int(relay.failed),
            locale.int(relay.bounced)
        );
    }
    out.push_str("</table>\n</section>\n");
    out
}

/// The three levels past the relay (handed to the relay / accepted by the person's provider /
/// bounced), the relays that confirm nothing, and per provider how long acceptance took.
fn past_the_relay_section(page: &Page) -> String {
    let past = &page.facts.status.past_the_relay;
    let counts = &past.counts;
    let french = page.words.lang == "fr";
    let text = |fr: &'static str, en: &'static str| if french { fr } else { en };
    let mut out = format!(
        "<section>\n<h2>{}</h2>\n<div class=\"cards\">",
        text("Au-delà du relais", "Past the relay")
    );
    let int = |n: i64| page.locale.int(n);
    out.push_str(&card(
        int(counts.handed_to_relay),
        text("remises au relais", "handed to the relay"),
    ));
    out.push_str(&card(
        int(counts.accepted_by_provider),
        text(
            "acceptées par le fournisseur du destinataire",
            "accepted by the person's provider",
        ),
    ));
    out.push_str(&card(
        int(counts.bounced),
        text("revenues en erreur", "bounced"),
    ));
    out.push_str(&card(
        int(counts.still_at_relay),
        text("encore au relais", "still at the relay"),
    ));
    out.push_str("</div>\n");
    let _ = writeln!(
        out,
        "<p class=\"sub\">{}</p>",
        html::escape(text(
            "« acceptée » : le serveur du fournisseur (Orange, Gmail…) a pris la lettre, selon l'avis de remise du relais (RFC 3461). Cela ne dit pas que la personne l'a lue.",
            "\"accepted\": the provider's server (Orange, Gmail...) took the letter, as the relay's delivery status notification says (RFC 3461). It does not say that the person read it.",
        ))
    );
    for relay in past.relays.iter().filter(|r| !r.requested) {
        let _ = writeln!(
            out,
            "<p class=\"bad\"><code>{}</code> {}</p>",
            html::escape(&relay.relay),
            html::escape(text(
                "ne confirme pas la remise (pas d'avis de remise DSN) : ses lettres restent « envoyées ».",
                "does not confirm delivery (no DSN delivery notifications): its letters stay \"sent\".",
            ))
        );
    }
    if counts.not_confirmed > 0 {
        let _ = writeln!(
            out,
            "<p>{}: {}</p>",
            html::escape(text(
                "envoyées par un relais qui ne confirme pas la remise",
                "sent through a relay that does not confirm delivery"
            )),
            int(counts.not_confirmed)
        );
    }
    if !past.providers.is_empty() {
        let _ = writeln!(
            out,
            "<table>\n<tr><th>{}</th><th class=\"n\">{}</th><th class=\"n\">{}</th>\
             <th class=\"n\">{}</th><th class=\"n\">{}</th></tr>",
            text("fournisseur", "provider"),
            text("encore au relais", "still at the relay"),
            text("acceptées", "accepted"),
            text("attente médiane", "median wait"),
            text("95 % en moins de", "95% within"),
        );
        let wait = |seconds: Option<f64>| {
            seconds.map_or("-".to_owned(), |s| {
                format!("{}\u{a0}s", int(s.round() as i64))
            })
        };
        for provider in &past.providers {
            let _ = writeln!(
                out,
                "<tr><td><code>{}</code></td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                html::escape(&provider.domain),
                int(provider.still_at_relay),
                int(provider.accepted),
                wait(provider.median_seconds),
                wait(provider.p95_seconds)
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("</section>\n");
    out
}

fn timeline_section(page: &Page) -> String {
    let (words, facts, locale) = (page.words, page.facts, &page.locale);
    let time = |ms: Option<i64>| {
        ms.map(|t| page.time(Some(t)))
            .unwrap_or_else(|| words.not_yet.to_owned())
    };
    let mut out = format!(
        "<section>\n<h2>{}</h2>\n<table class=\"facts\">\n\
         <tr><th>{}</th><td>{}</td></tr>\n\
         <tr><th>{}</th><td>{}</td></tr>\n\
         <tr><th>{}</th><td>{}</td></tr>\n</table>\n",
        html::escape(words.timeline),
        html::escape(words.first_sent),
        html::escape(&time(facts.first_send)),
        html::escape(words.last_sent),
        html::escape(&time(facts.last_send)),
        html::escape(words.send_runs),
        locale.int(facts.send_runs_total)
    );
    if facts.runs.is_empty() {
        out.push_str("</section>\n");
        return out;
    }
    if facts.send_runs_total > facts.runs.len() as i64 {
        let recent = fill(
            words.recent_runs,
            &[
                ("shown", &locale.int(facts.runs.len() as i64)),
                ("total", &locale.int(facts.send_runs_total)),
            ],
        );
        let _ = writeln!(out, "<p class=\"sub\">{}</p>", html::escape(&recent));
    }
    out.push_str("<table>\n<tr>");
    for (i, column) in words.run_columns.iter().enumerate() {
        let numeric = (3..=5).contains(&i);
        let _ = write!(
            out,
            "<th{}>{}</th>",
            if numeric { " class=\"n\"" } else { "" },
            html::escape(column)
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
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td>{}</td></tr>",
            run.id,
            html::escape(&locale.rfc3339(&run.started_at)),
            html::escape(
                &run.finished_at
                    .as_deref()
                    .map_or_else(|| "-".to_owned(), |t| locale.rfc3339(t))
            ),
            locale.int(run.sent),
            locale.int(run.deferred),
            locale.int(run.failed),
            html::escape(outcome)
        );
    }
    out.push_str("</table>\n</section>\n");
    out
}

fn letters_section(page: &Page) -> String {
    let (words, facts) = (page.words, page.facts);
    let mut out = format!(
        "<section>\n<h2>{}</h2>\n<p>{}</p>\n",
        html::escape(words.letters),
        html::escape(words.letters_explained)
    );
    if facts.letters.is_empty() {
        let _ = write!(
            out,
            "<p>{}</p>\n</section>\n",
            html::escape(words.no_letters)
        );
        return out;
    }
    let [fingerprint, people, first, last] = words.letters_columns.map(html::escape);
    let _ = writeln!(
        out,
        "<table>\n<tr><th>{fingerprint}</th><th class=\"n\">{people}</th><th>{first}</th><th>{last}</th></tr>"
    );
    for letters in &facts.letters {
        let _ = writeln!(
            out,
            "<tr><td class=\"mono\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            html::escape(&letters.fingerprint),
            page.locale.int(letters.people),
            html::escape(&page.time(letters.first_sent)),
            html::escape(&page.time(letters.last_sent))
        );
    }
    out.push_str("</table>\n</section>\n");
    out
}

/// What people were told: the specimen letter and its fingerprint, with how many got it.
fn told_section(page: &Page) -> String {
    let (words, facts) = (page.words, page.facts);
    let mut out = format!("<section>\n<h2>{}</h2>\n", html::escape(words.told));
    let specimen = match &facts.specimen {
        Ok(specimen) => specimen,
        Err(reason) => {
            let _ = write!(
                out,
                "<p>{}</p>\n</section>\n",
                html::escape(&fill(words.told_unavailable, &[("reason", reason)]))
            );
            return out;
        }
    };
    let in_use = facts
        .letters
        .iter()
        .find(|l| l.fingerprint == specimen.fingerprint);
    let use_line = match in_use {
        Some(letters) => fill(
            words.told_in_use,
            &[("people", &page.count(letters.people, words.person))],
        ),
        None => words.told_not_in_use.to_owned(),
    };
    let _ = write!(
        out,
        "<p>{}</p>\n<p>{}{} <span class=\"mono\">{}</span>. {}</p>\n<p><strong>{}{}</strong> {}</p>\n\
         <pre class=\"letter\">{}</pre>\n</section>\n",
        html::escape(words.told_explained),
        html::escape(words.told_fingerprint),
        words.colon,
        html::escape(&specimen.fingerprint),
        html::escape(&use_line),
        html::escape(words.told_subject),
        words.colon,
        html::escape(&specimen.subject),
        html::escape(specimen.text.trim_end())
    );
    out
}

/// The trade's words this page uses, for a reader outside the trade.
fn glossary_section(page: &Page) -> String {
    let words = page.words;
    let mut out = format!(
        "<section>\n<h2>{}</h2>\n<dl>\n",
        html::escape(words.glossary)
    );
    for (term, meaning) in words.glossary_terms {
        let _ = writeln!(
            out,
            "<dt>{}</dt><dd>{}</dd>",
            html::escape(term),
            html::escape(meaning)
        );
    }
    out.push_str("</dl>\n</section>\n");
    out
}
