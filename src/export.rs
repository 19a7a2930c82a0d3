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
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::Exit;
use crate::cli::AuditFormat;
use crate::config::Config;
use crate::db::format_time;
use crate::domain::DeliveryState;

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
}

pub const AUDIT_COLUMNS: [&str; 20] = [
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

const AUDIT_SQL: &str =
    "SELECT p.ref, p.notice_id, COALESCE(d.email, p.email), p.language, d.state,
        d.generation, d.attempts, d.first_attempt_at, d.last_attempt_at, d.sent_at, d.smtp_reply,
        d.message_id, d.letters_fingerprint, d.content_sha256, d.bounced_at, d.bounce_status,
        d.bounce_diagnostic, d.possible_duplicate, d.relay
     FROM people p LEFT JOIN deliveries d ON d.person_id = p.id ORDER BY p.id";

const EVENTS_SQL: &str =
    "SELECT p.ref, p.notice_id, e.at, e.run_id, e.kind, e.from_state, e.to_state, e.generation,
        e.detail
     FROM events e JOIN people p ON p.id = e.person_id ORDER BY e.id";

impl AuditRow {
    fn from_row(row: &SqliteRow, mask_email: bool) -> anyhow::Result<AuditRow> {
        let time = |i: usize| -> anyhow::Result<Option<String>> {
            Ok(row
                .try_get::<Option<i64>, _>(i)?
                .map(|t| format_time(Some(t))))
        };
        let mask = |text: Option<String>| match text {
            Some(text) if mask_email => Some(mask_addresses(&text)),
            other => other,
        };
        // A person without a delivery breaks the reconciliation; the row still shows them.
        let state: Option<String> = row.try_get(4)?;
        let unreached = state
            .as_deref()
            .and_then(|s| s.parse::<DeliveryState>().ok())
            .is_none_or(DeliveryState::is_unreached);
        Ok(AuditRow {
            person_ref: row.try_get(0)?,
            notice_id: row.try_get(1)?,
            email: mask(row.try_get(2)?),
            language: row.try_get(3)?,
            state: state.unwrap_or_else(|| "missing".to_owned()),
            generation: row.try_get::<Option<i64>, _>(5)?.unwrap_or(0),
            attempts: row.try_get::<Option<i64>, _>(6)?.unwrap_or(0),
            first_attempt_at: time(7)?,
            last_attempt_at: time(8)?,
            sent_at: time(9)?,
            smtp_reply: mask(row.try_get(10)?),
            message_id: row.try_get(11)?,
            letters_fingerprint: row.try_get(12)?,
            content_sha256: row.try_get(13)?,
            bounced_at: time(14)?,
            bounce_status: row.try_get(15)?,
            bounce_diagnostic: mask(row.try_get(16)?),
            possible_duplicate: row.try_get::<Option<i64>, _>(17)?.unwrap_or(0) != 0,
            postal_fallback: unreached,
            relay: row.try_get(18)?,
        })
    }

    fn cells(&self) -> [Cow<'_, str>; 20] {
        let text = text_cell;
        [
            Cow::from(self.person_ref.as_str()),
            Cow::from(self.notice_id.as_str()),
            text(&self.email),
            Cow::from(self.language.as_str()),
            Cow::from(self.state.as_str()),
            self.generation.to_string().into(),
            self.attempts.to_string().into(),
            text(&self.first_attempt_at),
            text(&self.last_attempt_at),
            text(&self.sent_at),
            text(&self.smtp_reply),
            text(&self.message_id),
            text(&self.letters_fingerprint),
            text(&self.content_sha256),
            text(&self.bounced_at),
            text(&self.bounce_status),
            text(&self.bounce_diagnostic),
            bool_cell(self.possible_duplicate),
            bool_cell(self.postal_fallback),
            text(&self.relay),
        ]
    }
}

impl EventRow {
    fn from_row(row: &SqliteRow, mask_email: bool) -> anyhow::Result<EventRow> {
        let detail: Option<String> = row.try_get(8)?;
        Ok(EventRow {
            person_ref: row.try_get(0)?,
            notice_id: row.try_get(1)?,
            at: format_time(row.try_get(2)?),
            run_id: row.try_get(3)?,
            kind: row.try_get(4)?,
            from_state: row.try_get(5)?,
            to_state: row.try_get(6)?,
            generation: row.try_get(7)?,
            detail: if mask_email {
                detail.map(|d| mask_addresses(&d))
            } else {
                detail
            },
        })
    }

    fn cells(&self) -> [Cow<'_, str>; 9] {
        let text = text_cell;
        let number = |v: Option<i64>| -> Cow<'_, str> {
            v.map(|n| Cow::from(n.to_string())).unwrap_or_default()
        };
        [
            Cow::from(self.person_ref.as_str()),
            Cow::from(self.notice_id.as_str()),
            Cow::from(self.at.as_str()),
            number(self.run_id),
            Cow::from(self.kind.as_str()),
            text(&self.from_state),
            text(&self.to_state),
            number(self.generation),
            text(&self.detail),
        ]
    }
}

fn text_cell(value: &Option<String>) -> Cow<'_, str> {
    Cow::from(value.as_deref().unwrap_or(""))
}

fn bool_cell(value: bool) -> Cow<'static, str> {
    Cow::from(if value { "true" } else { "false" })
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

struct CsvSink<W: Write>(csv::Writer<W>);

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
        self.0.write_record(columns)?;
        Ok(())
    }
    fn audit(&mut self, row: &AuditRow) -> anyhow::Result<()> {
        self.write_cells(&row.cells())
    }
    fn event(&mut self, row: &EventRow) -> anyhow::Result<()> {
        self.write_cells(&row.cells())
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

fn sink_for(format: AuditFormat, out: Option<&Path>) -> anyhow::Result<Box<dyn RowSink>> {
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
        AuditFormat::Csv => Box::new(CsvSink(csv::Writer::from_writer(writer))),
        AuditFormat::Jsonl => Box::new(JsonlSink(writer)),
    })
}

/// `export audit`: writes the rows, then states the reconciliation on stderr. Exit 1 when the
/// rows written are not one per person (or one per event), or the counts do not add up.
pub async fn audit(config: &Config, request: &AuditRequest<'_>) -> anyhow::Result<Exit> {
    let pool = crate::db::open_read_only(&config.campaign.database).await?;
    // One read transaction: the rows and the counts below are the same snapshot.
    let mut tx = pool.begin().await?;
    let mut sink = sink_for(request.format, request.out)?;
    let written = if request.events {
        sink.header(&EVENT_COLUMNS)?;
        let mut rows = sqlx::query(EVENTS_SQL).fetch(&mut *tx);
        let mut written = 0_i64;
        while let Some(row) = rows.try_next().await.context("while reading the events")? {
            sink.event(&EventRow::from_row(&row, request.mask_email)?)?;
            written += 1;
        }
        written
    } else {
        sink.header(&AUDIT_COLUMNS)?;
        let mut rows = sqlx::query(AUDIT_SQL).fetch(&mut *tx);
        let mut written = 0_i64;
        while let Some(row) = rows
            .try_next()
            .await
            .context("while reading the deliveries")?
        {
            sink.audit(&AuditRow::from_row(&row, request.mask_email)?)?;
            written += 1;
        }
        written
    };
    sink.finish().context("while writing the export")?;
    let expected: i64 = if request.events {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&mut *tx)
            .await?
    } else {
        sqlx::query_scalar("SELECT count(*) FROM people")
            .fetch_one(&mut *tx)
            .await?
    };
    let reconciliation = crate::status::reconcile(&mut tx).await;
    tx.commit().await?;
    let what = if request.events { "events" } else { "people" };
    let reconciliation =
        reconciliation.context("the export was written but the counts do not reconcile")?;
    eprintln!("{}", reconciliation.line());
    if written != expected {
        eprintln!(
            "error: the export holds {written} rows but the database holds {expected} {what}: do not use it as evidence"
        );
        return Ok(Exit::Failed);
    }
    eprintln!(
        "export audit: {written} rows, one per {what}",
        what = if request.events { "event" } else { "person" }
    );
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
        assert_eq!(row.cells().len(), AUDIT_COLUMNS.len());
    }
}
