//! `export audit` and `export postal`: the evidence and the postal fallback, as files.
//!
//! The audit export is the regulator's answer to "who was told what, when, and with what
//! outcome": one row per person (or, with `--events`, one row per recorded step). Rows are
//! streamed from one read transaction, so hundreds of thousands of people never sit in memory and
//! the rows and the closing reconciliation describe the same snapshot. Files are owner-only;
//! CSV cells cannot run as spreadsheet formulas.

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use futures_util::TryStreamExt;
use serde::Serialize;

use crate::cli::AuditFormat;
use crate::config::Config;
use crate::db::format_time;
use crate::domain::DeliveryState;
use crate::exit::Exit;
use crate::store::deliveries::{self, AuditRecord, EventRecord};

mod words;

use words::AuditWords;

/// A cell that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, carriage return
/// first) gets a leading apostrophe, so opening an export can never execute anything.
pub fn neutralise_formula(value: &str) -> std::borrow::Cow<'_, str> {
    match value.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{value}").into(),
        _ => value.into(),
    }
}

/// What `export audit` was asked for.
#[derive(Debug, Clone)]
pub struct AuditRequest<'a> {
    pub format: AuditFormat,
    pub out: Option<&'a Path>,
    pub events: bool,
    pub mask_email: bool,
}

/// One person's evidence: the columns of the audit export, in order.
#[derive(Debug, Serialize)]
pub struct AuditRow {
    #[serde(rename = "ref")]
    pub person_ref: String,
    pub notice_id: String,
    pub email: Option<String>,
    pub language: String,
    pub state: String,
    pub generation: i64,
    pub attempts: i64,
    pub first_attempt_at: Option<String>,
    pub last_attempt_at: Option<String>,
    pub sent_at: Option<String>,
    pub smtp_reply: Option<String>,
    pub message_id: Option<String>,
    pub letters_fingerprint: Option<String>,
    pub content_sha256: Option<String>,
    pub bounced_at: Option<String>,
    pub bounce_status: Option<String>,
    pub bounce_diagnostic: Option<String>,
    pub possible_duplicate: bool,
    pub postal_fallback: bool,
    /// The relay that answered for the letter (`host:port`), when one did.
    pub relay: Option<String>,
    /// The relay was asked to report the letter's fate (RFC 3461 delivery notifications).
    pub delivery_notifications: bool,
    /// When the person's provider accepted the letter, as the relay reported.
    pub delivered_at: Option<String>,
    /// The provider's server that accepted it (Remote-MTA).
    pub delivered_by: Option<String>,
    /// The provider's reply (`250 2.0.0 Ok: queued as …`).
    pub delivered_reply: Option<String>,
}

pub const AUDIT_COLUMNS: [&str; 24] = [
    "ref",
    "notice_id",
    "email",
    "language",
    "state",
    "generation",
    "attempts",
    "first_attempt_at",
    "last_attempt_at",
    "sent_at",
    "smtp_reply",
    "message_id",
    "letters_fingerprint",
    "content_sha256",
    "bounced_at",
    "bounce_status",
    "bounce_diagnostic",
    "possible_duplicate",
    "postal_fallback",
    "relay",
    "delivery_notifications",
    "delivered_at",
    "delivered_by",
    "delivered_reply",
];

/// One recorded step of one person's timeline.
#[derive(Debug, Serialize)]
pub struct EventRow {
    #[serde(rename = "ref")]
    pub person_ref: String,
    pub notice_id: String,
    pub at: String,
    pub run_id: Option<i64>,
    pub kind: String,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub generation: Option<i64>,
    pub detail: Option<String>,
}

pub const EVENT_COLUMNS: [&str; 9] = [
    "ref",
    "notice_id",
    "at",
    "run_id",
    "kind",
    "from_state",
    "to_state",
    "generation",
    "detail",
];

impl AuditRow {
    fn new(record: AuditRecord, mask_email: bool) -> AuditRow {
        let time = |t: Option<i64>| t.map(|t| format_time(Some(t)));
        let mask = |text: Option<String>| match text {
            Some(text) if mask_email => Some(mask_addresses(&text)),
            other => other,
        };
        // A person without a delivery breaks the reconciliation; the row still shows them.
        let postal_fallback = record.state.is_none_or(DeliveryState::is_unreached);
        AuditRow {
            person_ref: record.person_ref,
            notice_id: record.notice_id,
            email: mask(record.email),
            language: record.language,
            state: record
                .state
                .map_or("missing", DeliveryState::as_str)
                .to_owned(),
            generation: record.generation.unwrap_or(0),
            attempts: record.attempts.unwrap_or(0),
            first_attempt_at: time(record.first_attempt_at),
            last_attempt_at: time(record.last_attempt_at),
            sent_at: time(record.sent_at),
            smtp_reply: mask(record.smtp_reply),
            message_id: record.message_id,
            letters_fingerprint: record.letters_fingerprint,
            content_sha256: record.content_sha256,
            bounced_at: time(record.bounced_at),
            bounce_status: record.bounce_status,
            bounce_diagnostic: mask(record.bounce_diagnostic),
            possible_duplicate: record.possible_duplicate,
            postal_fallback,
            relay: record.relay,
            delivery_notifications: record.confirmation.notify_requested,
            delivered_at: time(record.confirmation.delivered_at),
            delivered_by: record.confirmation.delivered_by,
            delivered_reply: mask(record.confirmation.delivered_reply),
        }
    }

    /// The CSV cells, in the audit's language (states, yes/no and times; the rest as is).
    fn cells(&self, words: &AuditWords) -> [Cow<'_, str>; 24] {
        let text = text_cell;
        let time = |t| time_cell(words, t);
        [
            Cow::from(self.person_ref.as_str()),
            Cow::from(self.notice_id.as_str()),
            text(&self.email),
            Cow::from(self.language.as_str()),
            Cow::from(words.state(&self.state)),
            self.generation.to_string().into(),
            self.attempts.to_string().into(),
            time(&self.first_attempt_at),
            time(&self.last_attempt_at),
            time(&self.sent_at),
            text(&self.smtp_reply),
            text(&self.message_id),
            text(&self.letters_fingerprint),
            text(&self.content_sha256),
            time(&self.bounced_at),
            text(&self.bounce_status),
            text(&self.bounce_diagnostic),
            Cow::from(words.yes_no(self.possible_duplicate)),
            Cow::from(words.yes_no(self.postal_fallback)),
            text(&self.relay),
            Cow::from(words.yes_no(self.delivery_notifications)),
            time(&self.delivered_at),
            text(&self.delivered_by),
            text(&self.delivered_reply),
        ]
    }
}

impl EventRow {
    fn new(record: EventRecord, mask_email: bool) -> EventRow {
        let state = |s: Option<DeliveryState>| s.map(|s| s.as_str().to_owned());
        EventRow {
            person_ref: record.person_ref,
            notice_id: record.notice_id,
            at: format_time(Some(record.at)),
            run_id: record.run_id,
            kind: record.kind.as_str().to_owned(),
            from_state: state(record.from_state),
            to_state: state(record.to_state),
            generation: record.generation,
            detail: if mask_email {
                record.detail.map(|d| mask_addresses(&d))
            } else {
                record.detail
            },
        }
    }

    /// The CSV cells, in the audit's language (event, states and time; the rest as is).
    fn cells(&self, words: &AuditWords) -> [Cow<'_, str>; 9] {
        let text = text_cell;
        let number = |v: Option<i64>| -> Cow<'_, str> {
            v.map(|n| Cow::from(n.to_string())).unwrap_or_default()
        };
        let state = |s: &Option<String>| -> Cow<'_, str> {
            s.as_deref()
                .map(|s| Cow::from(words.state(s)))
                .unwrap_or_default()
        };
        [
            Cow::from(self.person_ref.as_str()),
            Cow::from(self.notice_id.as_str()),
            time_cell(words, &Some(self.at.clone())).into_owned().into(),
            number(self.run_id),
            Cow::from(words.event(&self.kind)),
            state(&self.from_state),
            state(&self.to_state),
            number(self.generation),
            text(&self.detail),
        ]
    }
}

fn text_cell(value: &Option<String>) -> Cow<'_, str> {
    Cow::from(value.as_deref().unwrap_or(""))
}

/// A recorded time (RFC 3339, UTC) as the audit's language writes it.
fn time_cell<'a>(words: &AuditWords, value: &'a Option<String>) -> Cow<'a, str> {
    match value.as_deref() {
        None => Cow::from(""),
        Some(text) => chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| Cow::from(words.time(t.timestamp_millis())))
            .unwrap_or(Cow::from(text)),
    }
}

/// `j***@example.fr`: enough to recognise one's own address, not enough to harvest it.
pub fn mask_email(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_owned(),
    }
}

/// Masks every address quoted in a free text (a relay's reply often repeats the recipient).
pub fn mask_addresses(text: &str) -> String {
    if !text.contains('@') {
        return text.to_owned();
    }
    let is_address_char = |c: char| c.is_alphanumeric() || "._%+-@'".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.contains('@') {
            out.push_str(&mask_email(word));
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if is_address_char(c) {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Where rows go: one trait object so CSV and JSONL share the streaming loop.
trait RowSink {
    fn header(&mut self, columns: &[&str]) -> anyhow::Result<()>;
    fn audit(&mut self, row: &AuditRow) -> anyhow::Result<()>;
    fn event(&mut self, row: &EventRow) -> anyhow::Result<()>;
    fn finish(self: Box<Self>) -> anyhow::Result<()>;
}

struct CsvSink<W: Write>(csv::Writer<W>, AuditWords);

impl<W: Write> CsvSink<W> {
    fn write_cells(&mut self, cells: &[Cow<'_, str>]) -> anyhow::Result<()> {
        for cell in cells {
            self.0.write_field(neutralise_formula(cell).as_bytes())?;
        }
        self.0.write_record(None::<&[u8]>)?;
        Ok(())
    }
}

impl<W: Write> RowSink for CsvSink<W> {
    fn header(&mut self, columns: &[&str]) -> anyhow::Result<()> {
        let header = if columns == EVENT_COLUMNS {
            self.1.events_header()
        } else {
            self.1.people_header()
        };
        self.0.write_record(header)?;
        Ok(())
    }
    fn audit(&mut self, row: &AuditRow) -> anyhow::Result<()> {
        let cells = row.cells(&self.1);
        self.write_cells(&cells)
    }
    fn event(&mut self, row: &EventRow) -> anyhow::Result<()> {
        let cells = row.cells(&self.1);
        self.write_cells(&cells)
    }
    fn finish(self: Box<Self>) -> anyhow::Result<()> {
        let mut writer = self
            .0
            .into_inner()
            .map_err(|e| anyhow::anyhow!("{}", e.error()))?;
        writer.flush()?;
        Ok(())
    }
}

struct JsonlSink<W: Write>(W);

impl<W: Write> RowSink for JsonlSink<W> {
    fn header(&mut self, _columns: &[&str]) -> anyhow::Result<()> {
        Ok(())
    }
    fn audit(&mut self, row: &AuditRow) -> anyhow::Result<()> {
        serde_json::to_writer(&mut self.0, row)?;
        self.0.write_all(b"\n")?;
        Ok(())
    }
    fn event(&mut self, row: &EventRow) -> anyhow::Result<()> {
        serde_json::to_writer(&mut self.0, row)?;
        self.0.write_all(b"\n")?;
        Ok(())
    }
    fn finish(mut self: Box<Self>) -> anyhow::Result<()> {
        self.0.flush()?;
        Ok(())
    }
}

fn sink_for(
    format: AuditFormat,
    out: Option<&Path>,
    words: AuditWords,
) -> anyhow::Result<Box<dyn RowSink>> {
    let writer: Box<dyn Write> = match out {
        Some(path) => Box::new(
            crate::files::private_writer(path)
                .with_context(|| format!("while creating {}", path.display()))?,
        ),
        None => Box::new(std::io::BufWriter::with_capacity(
            1 << 16,
            std::io::stdout().lock(),
        )),
    };
    Ok(match format {
        AuditFormat::Csv => Box::new(CsvSink(csv::Writer::from_writer(writer), words)),
        AuditFormat::Jsonl => Box::new(JsonlSink(writer)),
    })
}

/// `export audit`: writes the rows, then states the reconciliation on stderr. Exit 1 when the
/// rows written are not one per person (or one per event), or the counts do not add up.
pub async fn audit(config: &Config, request: &AuditRequest<'_>) -> anyhow::Result<Exit> {
    let pool = crate::db::open_read_only(&config.campaign.database).await?;
    // One read transaction: the rows and the counts below are the same snapshot.
    let mut tx = pool.begin().await?;
    let mut sink = sink_for(request.format, request.out, AuditWords::new(config))?;
    let written = if request.events {
        sink.header(&EVENT_COLUMNS)?;
        let mut rows = deliveries::event_records(&mut tx);
        let mut written = 0_i64;
        while let Some(record) = rows.try_next().await.context("while reading the events")? {
            sink.event(&EventRow::new(record, request.mask_email))?;
            written += 1;
        }
        written
    } else {
        sink.header(&AUDIT_COLUMNS)?;
        let mut rows = deliveries::audit_records(&mut tx);
        let mut written = 0_i64;
        while let Some(record) = rows
            .try_next()
            .await
            .context("while reading the deliveries")?
        {
            sink.audit(&AuditRow::new(record, request.mask_email))?;
            written += 1;
        }
        written
    };
    sink.finish().context("while writing the export")?;
    let expected = if request.events {
        deliveries::count_events(&mut tx).await?
    } else {
        deliveries::count_people(&mut tx).await?
    };
    let reconciliation = crate::status::reconcile(&mut tx).await;
    tx.commit().await?;
    let what = if request.events { "events" } else { "people" };
    let reconciliation =
        reconciliation.context("the export was written but the counts do not reconcile")?;
    crate::exit::print_err(&reconciliation.line());
    // A CSV file gets its legend beside it, in the same language: every column and code.
    if let (AuditFormat::Csv, Some(out)) = (request.format, request.out) {
        let words = AuditWords::new(config);
        let legend = words.legend_name(out);
        let name = out
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let text = words.legend(
            &name,
            request.events,
            &words.reconciliation(&reconciliation),
        );
        crate::files::write_private(&legend, text.as_bytes())
            .with_context(|| format!("while writing {}", legend.display()))?;
        crate::exit::print_err(&format!(
            "export audit: the columns and codes are explained in {}",
            legend.display()
        ));
    }
    if written != expected {
        crate::exit::print_err(&format!(
            "error: the export holds {written} rows but the database holds {expected} {what}: do not use it as evidence"
        ));
        return Ok(Exit::Failed);
    }
    crate::exit::print_err(&format!(
        "export audit: {written} rows, one per {what}",
        what = if request.events { "event" } else { "person" }
    ));
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised() {
        assert_eq!(
            neutralise_formula("=HYPERLINK(\"x\")"),
            "'=HYPERLINK(\"x\")"
        );
        assert_eq!(neutralise_formula("+33 6"), "'+33 6");
        assert_eq!(neutralise_formula("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(neutralise_formula("\tx"), "'\tx");
        assert_eq!(neutralise_formula("Dupont"), "Dupont");
        assert_eq!(neutralise_formula(""), "");
    }

    #[test]
    fn addresses_are_masked_alone_and_inside_replies() {
        assert_eq!(mask_email("jean.dupont@example.fr"), "j***@example.fr");
        assert_eq!(mask_email("élodie@exemple.fr"), "é***@exemple.fr");
        assert_eq!(
            mask_addresses("550 5.1.1 <jean@orange.fr>: unknown user jean@orange.fr"),
            "550 5.1.1 <j***@orange.fr>: unknown user j***@orange.fr"
        );
        assert_eq!(mask_addresses("250 2.0.0 Ok"), "250 2.0.0 Ok");
    }

    #[test]
    fn every_audit_column_has_a_cell() {
        let row = AuditRow {
            person_ref: "R1".into(),
            notice_id: "N".into(),
            email: None,
            language: "fr".into(),
            state: "no_email".into(),
            generation: 1,
            attempts: 0,
            first_attempt_at: None,
            last_attempt_at: None,
            sent_at: None,
            smtp_reply: None,
            message_id: None,
            letters_fingerprint: None,
            content_sha256: None,
            bounced_at: None,
            bounce_status: None,
            bounce_diagnostic: None,
            possible_duplicate: false,
            postal_fallback: true,
            relay: None,
            delivery_notifications: false,
            delivered_at: None,
            delivered_by: None,
            delivered_reply: None,
        };
        let json = serde_json::to_value(&row).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = AUDIT_COLUMNS.to_vec();
        expected.sort_unstable();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, expected);
        let config = crate::config::Config::from_toml("", std::path::Path::new("."), &[])
            .expect("an empty configuration");
        assert_eq!(
            row.cells(&AuditWords::new(&config)).len(),
            AUDIT_COLUMNS.len()
        );
    }
}
