//! `report --html FILE`: one self-contained HTML page for management and the regulator: the
//! incident, the totals and their reconciliation, letters sent over time, the states, why people
//! were not reached, the busiest domains, the campaign's timeline and the letters in use.
//!
//! The page loads nothing: no script, no font, no image from anywhere; the charts are inline SVG
//! and the style is inline CSS that also lays the page out for A4 paper. Every value that comes
//! from the database or the configuration is escaped, since a relay's reply or an incident fact
//! is text nobody here wrote.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use sqlx::{Row, SqliteConnection};

use crate::Exit;
use crate::config::Config;
use crate::db::format_time;
use crate::domain::DeliveryState;
use crate::status::{ErrorReason, SendRun, Status};

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

/// Letters sent in one hour or one day.
#[derive(Debug, Clone)]
pub struct SentBucket {
    pub start_ms: i64,
    pub sent: i64,
}

/// One version of the letters and how many people got it.
#[derive(Debug, Clone)]
pub struct LettersInUse {
    pub fingerprint: String,
    pub people: i64,
    pub first_sent: Option<i64>,
    pub last_sent: Option<i64>,
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
    pub generated_at: i64,
}

pub async fn run(config: &Config, html: &Path) -> anyhow::Result<Exit> {
    let pool = crate::db::open(&config.campaign.database, false).await?;
    let status = crate::status::collect_for(config, &pool).await?;
    let mut conn = pool.acquire().await?;
    let facts = gather(&mut conn, status).await?;
    let page = render(config, &facts);
    crate::files::write_private(html, page.as_bytes())
        .with_context(|| format!("while writing {}", html.display()))?;
    tracing::info!(file = %html.display(), "report written");
    println!("report: wrote {}", html.display());
    Ok(Exit::Ok)
}

async fn gather(conn: &mut SqliteConnection, status: Status) -> anyhow::Result<ReportFacts> {
    let (first_send, last_send): (Option<i64>, Option<i64>) =
        sqlx::query_as("SELECT min(at), max(at) FROM events WHERE kind = 'sent'")
            .fetch_one(&mut *conn)
            .await?;
    let hour = 3_600_000;
    let span = last_send.unwrap_or(0) - first_send.unwrap_or(0);
    let bucket_ms = if span / hour >= MAX_HOURLY_BARS {
        24 * hour
    } else {
        hour
    };
    let sent_over_time = sqlx::query(
        "SELECT (at / ?1) * ?1, count(*) FROM events WHERE kind = 'sent' GROUP BY 1 ORDER BY 1",
    )
    .bind(bucket_ms)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| {
        Ok(SentBucket {
            start_ms: row.try_get(0)?,
            sent: row.try_get(1)?,
        })
    })
    .collect::<anyhow::Result<Vec<_>>>()?;
    let send_runs_total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM runs WHERE command = 'send'")
            .fetch_one(&mut *conn)
            .await?;
    let mut runs = crate::status::send_runs(&mut *conn, RUNS_LISTED).await?;
    runs.reverse();
    let letters = sqlx::query(
        "SELECT letters_fingerprint, count(*), min(sent_at), max(sent_at) FROM deliveries
         WHERE letters_fingerprint IS NOT NULL GROUP BY 1 ORDER BY 3",
    )
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| {
        Ok(LettersInUse {
            fingerprint: row.try_get(0)?,
            people: row.try_get(1)?,
            first_sent: row.try_get(2)?,
            last_sent: row.try_get(3)?,
        })
    })
    .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(ReportFacts {
        status,
        sent_over_time,
        bucket_ms,
        runs,
        send_runs_total,
        first_send,
        last_send,
        letters,
        generated_at: crate::db::now_ms(),
    })
}

/// The incident facts worth a line in the report, with their labels, when the config has them.
const INCIDENT_FACTS: [(&str, &str); 12] = [
    ("ref", "Reference"),
    ("organisation", "Organisation (controller)"),
    ("service_name", "Service"),
    ("nature", "Nature"),
    ("occurred_from", "Exposed from"),
    ("occurred_to", "Exposed until"),
    ("discovered_on", "Discovered on"),
    ("contained_on", "Contained on"),
    ("regulator", "Supervisory authority"),
    ("regulator_notified_on", "Authority notified on"),
    ("people_affected", "People affected (declared)"),
    ("notify_by", "Letters due by"),
];

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

/// The whole page.
pub fn render(config: &Config, facts: &ReportFacts) -> String {
    let status = &facts.status;
    let incident_ref = incident_text(config, "ref").unwrap_or_else(|| "(no reference)".to_owned());
    let organisation = incident_text(config, "organisation");
    let mut page = String::with_capacity(64 * 1024);
    let title = format!("Breach notification campaign {incident_ref}");
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape_html(&title)
    );
    let _ = write!(
        page,
        "<header>\n<h1>{}</h1>\n<p class=\"sub\">{}GDPR Art. 34 notification of the people affected · report generated {}</p>\n</header>\n",
        escape_html(&title),
        organisation
            .map(|o| format!("{} · ", escape_html(&o)))
            .unwrap_or_default(),
        escape_html(&format_time(Some(facts.generated_at)))
    );
    page.push_str(&incident_section(config));
    page.push_str(&totals_section(status));
    page.push_str(&sent_over_time_section(facts));
    page.push_str(&states_section(status));
    page.push_str(&not_reached_section(status));
    page.push_str(&domains_section(status));
    page.push_str(&relays_section(status));
    page.push_str(&timeline_section(facts));
    page.push_str(&letters_section(facts));
    let _ = write!(
        page,
        "<footer>Produced by breachmail {} from the campaign database. The per-person evidence (what was \
         sent to whom, when, and the outcome) is in <code>breachmail export audit</code>.</footer>\n\
         </body>\n</html>\n",
        escape_html(env!("CARGO_PKG_VERSION"))
    );
    page
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

fn incident_section(config: &Config) -> String {
    let mut rows = String::new();
    for (key, label) in INCIDENT_FACTS {
        if let Some(value) = incident_text(config, key) {
            let _ = writeln!(
                rows,
                "<tr><th>{}</th><td>{}</td></tr>",
                escape_html(label),
                escape_html(&value)
            );
        }
    }
    if rows.is_empty() {
        rows.push_str("<tr><td>No incident facts in the configuration ([incident]).</td></tr>\n");
    }
    format!(
        "<section>\n<h2>The incident</h2>\n<table class=\"facts\">\n{rows}</table>\n</section>\n"
    )
}

fn card(value: impl std::fmt::Display, label: &str) -> String {
    format!(
        "<div class=\"card\"><div class=\"v\">{}</div><div class=\"k\">{}</div></div>",
        escape_html(&value.to_string()),
        escape_html(label)
    )
}

fn totals_section(status: &Status) -> String {
    let recon = &status.reconciliation;
    let mut out =
        String::from("<section>\n<h2>Totals and reconciliation</h2>\n<div class=\"cards\">");
    out.push_str(&card(status.total, "people affected (imported)"));
    out.push_str(&card(
        status.count(DeliveryState::Sent),
        "letters delivered to the relay",
    ));
    out.push_str(&card(
        format!("{:.1} %", status.progress.reached_percent),
        "reached, of those with an address",
    ));
    out.push_str(&card(
        status.not_reached.total,
        "not reached by e-mail (postal fallback)",
    ));
    out.push_str(&card(
        status.count(DeliveryState::Pending)
            + status.count(DeliveryState::Deferred)
            + status.count(DeliveryState::Sending),
        "still to send",
    ));
    out.push_str("</div>\n");
    let _ = writeln!(
        out,
        "<p class=\"recon\"><span class=\"{}\">{}</span></p>",
        if recon.ok { "ok" } else { "bad" },
        escape_html(&recon.line())
    );
    match &status.estimated_finish {
        Some(estimate) if estimate.still_due == 0 => {
            let _ = writeln!(
                out,
                "<p>Finished: the last letter went at {}.</p>",
                escape_html(&estimate.at)
            );
        }
        Some(estimate) => {
            let _ = writeln!(
                out,
                "<p>Estimated finish at the configured rate: {} ({} still due; limited by {}).</p>",
                escape_html(&estimate.at),
                estimate.still_due,
                escape_html(&estimate.limited_by)
            );
        }
        None => {}
    }
    if let Some(warning) = &status.notify_by_warning {
        let _ = writeln!(
            out,
            "<p class=\"warning\"><strong>Warning:</strong> {}</p>",
            escape_html(warning)
        );
    }
    out.push_str("</section>\n");
    out
}

/// A bar chart of letters sent per hour (or per day over longer campaigns), as inline SVG.
fn sent_over_time_section(facts: &ReportFacts) -> String {
    let unit = if facts.bucket_ms >= 86_400_000 {
        "day"
    } else {
        "hour"
    };
    let mut out = format!("<section>\n<h2>Letters sent over time (per {unit}, UTC)</h2>\n");
    if facts.sent_over_time.is_empty() {
        out.push_str("<p>No letter has been sent yet.</p>\n</section>\n");
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
         aria-label=\"Letters sent per {unit}\">\n"
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
             <title>{}: {sent} sent</title></rect>",
            escape_html(&when)
        );
    }
    let label = |ms: i64| {
        let text = format_time(Some(ms));
        if unit == "day" {
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
    let _ = writeln!(
        out,
        "<p class=\"sub\">{total} letters handed to the relay over {count} {unit}(s); the busiest {unit} saw {max}.</p>\n</section>"
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

/// The seven states as horizontal bars, each with its count and share.
fn states_section(status: &Status) -> String {
    let (width, row_h, label_w) = (1000.0, 30.0, 130.0);
    let height = row_h * DeliveryState::ALL.len() as f64 + 10.0;
    let max = DeliveryState::ALL
        .iter()
        .map(|&s| status.count(s))
        .max()
        .unwrap_or(0)
        .max(1);
    let mut svg = format!(
        "<svg viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" role=\"img\" \
         aria-label=\"People by delivery state\">\n"
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
            state.as_str(),
            row_h - 8.0,
            state_colour(state),
            label_w + w + 8.0,
            y + 18.0
        );
    }
    svg.push_str("</svg>\n");
    format!("<section>\n<h2>Where every letter stands</h2>\n{svg}</section>\n")
}

fn reasons_table(title: &str, reasons: &[ErrorReason]) -> String {
    if reasons.is_empty() {
        return format!("<p>{}: none.</p>\n", escape_html(title));
    }
    let mut out = format!(
        "<table>\n<tr><th>{}</th><th class=\"n\">people</th></tr>\n",
        escape_html(title)
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

fn not_reached_section(status: &Status) -> String {
    let not_reached = &status.not_reached;
    let mut out = format!(
        "<section>\n<h2>Not reached by e-mail: bounce and refusal reasons</h2>\n<p>{} people are \
         handed to the postal fallback: {} refused by the relay at sending (5xx), {} hard bounces \
         after delivery, {} without a usable e-mail address.</p>\n",
        not_reached.total, not_reached.failed, not_reached.bounced, not_reached.no_email
    );
    out.push_str(&reasons_table(
        "Hard bounces (status and diagnostic)",
        &not_reached.bounce_reasons,
    ));
    out.push_str(&reasons_table(
        "Refused at sending (relay reply)",
        &not_reached.failed_reasons,
    ));
    if !status.top_errors.is_empty() {
        out.push_str(&reasons_table(
            "Commonest errors (failed and waiting for a retry)",
            &status.top_errors,
        ));
    }
    out.push_str("</section>\n");
    out
}

fn domains_section(status: &Status) -> String {
    let mut out = String::from(
        "<section>\n<h2>Top recipient domains</h2>\n<table>\n<tr><th>domain</th><th class=\"n\">people</th>\
         <th class=\"n\">sent</th><th class=\"n\">deferred</th><th class=\"n\">failed</th><th class=\"n\">bounced</th></tr>\n",
    );
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
        out.push_str("<tr><td colspan=\"6\">No e-mail address imported.</td></tr>\n");
    }
    out.push_str("</table>\n</section>\n");
    out
}

/// Which relay carried how many letters: the regulator may ask who handled the data.
fn relays_section(status: &Status) -> String {
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

fn timeline_section(facts: &ReportFacts) -> String {
    let time = |ms: Option<i64>| {
        ms.map(|t| format_time(Some(t)))
            .unwrap_or_else(|| "not yet".to_owned())
    };
    let mut out = format!(
        "<section>\n<h2>Campaign timeline</h2>\n<table class=\"facts\">\n\
         <tr><th>First letter sent</th><td>{}</td></tr>\n\
         <tr><th>Last letter sent</th><td>{}</td></tr>\n\
         <tr><th>Send runs</th><td>{}</td></tr>\n</table>\n",
        escape_html(&time(facts.first_send)),
        escape_html(&time(facts.last_send)),
        facts.send_runs_total
    );
    if facts.runs.is_empty() {
        out.push_str("</section>\n");
        return out;
    }
    if facts.send_runs_total > facts.runs.len() as i64 {
        let _ = writeln!(
            out,
            "<p class=\"sub\">The {} most recent runs of {}:</p>",
            facts.runs.len(),
            facts.send_runs_total
        );
    }
    out.push_str(
        "<table>\n<tr><th>run</th><th>started</th><th>finished</th><th class=\"n\">sent</th>\
         <th class=\"n\">deferred</th><th class=\"n\">failed</th><th>outcome</th></tr>\n",
    );
    for run in &facts.runs {
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
            escape_html(run.outcome.as_deref().unwrap_or("running or interrupted"))
        );
    }
    out.push_str("</table>\n</section>\n");
    out
}

fn letters_section(facts: &ReportFacts) -> String {
    let mut out = String::from(
        "<section>\n<h2>Letters in use</h2>\n<p>Each fingerprint identifies one exact version of \
         the letter templates and incident facts; a change of wording during the campaign shows \
         as a second line.</p>\n",
    );
    if facts.letters.is_empty() {
        out.push_str("<p>No letter sent yet.</p>\n</section>\n");
        return out;
    }
    out.push_str(
        "<table>\n<tr><th>letters fingerprint</th><th class=\"n\">people</th><th>first sent</th><th>last sent</th></tr>\n",
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
