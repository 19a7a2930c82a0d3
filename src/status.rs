//! `status`: where the campaign stands: counts by state (always adding up to the number of
//! people), progress, the last send runs, the commonest error reasons, the busiest recipient
//! domains, who was not reached and why, and when the rest will have gone at the configured rate.
//!
//! Everything is read in one read transaction, so the figures are one consistent snapshot even
//! while `send` is writing. `collect` needs only the database (other commands reuse it);
//! `collect_for` adds what depends on the configuration (the estimated finish and the deadline).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use sqlx::{SqliteConnection, SqlitePool};

use crate::config::Config;
use crate::db::format_time;
use crate::domain::DeliveryState;
use crate::exit::Exit;
use crate::store;
use crate::store::status::{DomainCounts, Reasons};

/// How many send runs, error reasons and domains the status shows.
const RUNS_SHOWN: i64 = 5;
const ERRORS_SHOWN: usize = 5;
const DOMAINS_SHOWN: i64 = 10;

#[derive(Debug, Serialize)]
pub struct Status {
    pub total: i64,
    pub states: BTreeMap<&'static str, i64>,
    pub last_run: Option<LastRun>,
    pub progress: Progress,
    /// The last send runs, newest first.
    pub runs: Vec<SendRun>,
    /// Why letters failed or wait for a retry, grouped after taking out addresses and queue ids.
    pub top_errors: Vec<ErrorReason>,
    pub domains: Vec<DomainCounts>,
    /// What each relay answered for (`deliveries.relay`).
    pub relays: Vec<crate::store::relay::RelayCounts>,
    /// What the last send run slowed down, and why.
    pub slowed: Vec<crate::store::relay::Slowed>,
    pub not_reached: NotReached,
    pub estimated_finish: Option<EstimatedFinish>,
    pub notify_by_warning: Option<String>,
    pub reconciliation: Reconciliation,
    /// The import files' rows: imported, already known, or refused.
    pub imports: Imports,
    /// `[schedule]`: the days ahead and behind; absent without a schedule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<crate::plan::PlanReport>,
    /// The last `check --dns`: None when it never ran.
    pub dns_check: Option<crate::store::dns::LastDnsCheck>,
    /// Past the relay: accepted by the providers, still at the relay, never to be confirmed.
    pub past_the_relay: PastTheRelay,
}

/// The three levels (handed to the relay / accepted by the provider / bounced), per provider
/// how long acceptance took, and the relays that confirm nothing.
#[derive(Debug, Serialize)]
pub struct PastTheRelay {
    #[serde(flatten)]
    pub counts: crate::store::confirmation::Confirmation,
    /// The providers with the most letters still at the relay, then the most accepted.
    pub providers: Vec<crate::store::confirmation::ProviderWait>,
    /// Each relay as its latest send run found it: whether it offered delivery status
    /// notifications and whether they were asked for.
    pub relays: Vec<crate::store::relay::RelayConfirms>,
}

#[derive(Debug, Serialize)]
pub struct LastRun {
    pub started_at: String,
    pub finished_at: Option<String>,
    pub sent: i64,
    pub deferred: i64,
    pub failed: i64,
}

#[derive(Debug, Serialize)]
pub struct Progress {
    /// People with an address: the ones e-mail can reach at all.
    pub reachable: i64,
    /// Handed to a relay: `sent` and `delivered`.
    pub sent: i64,
    /// sent / reachable, in percent (100 when nobody has an address).
    pub reached_percent: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SendRun {
    pub id: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub sent: i64,
    pub deferred: i64,
    pub failed: i64,
    /// How the run ended (`done`, `deadline`, `unreachable`, ...); null while it runs or after a
    /// crash.
    pub outcome: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorReason {
    pub reason: String,
    pub count: i64,
}

/// Everyone e-mail did not reach, for good: refused at sending (5xx), hard bounce, no address.
/// They go to the postal fallback.
#[derive(Debug, Serialize)]
pub struct NotReached {
    pub total: i64,
    pub failed: i64,
    pub bounced: i64,
    pub no_email: i64,
    /// The relay's refusals at sending time.
    pub failed_reasons: Vec<ErrorReason>,
    /// The bounce status and diagnostic of hard bounces.
    pub bounce_reasons: Vec<ErrorReason>,
}

#[derive(Debug, Serialize)]
pub struct EstimatedFinish {
    /// Letters still to send: pending, deferred, and any left in sending.
    pub still_due: i64,
    pub seconds: u64,
    /// RFC 3339: when the last letter should have gone (or went, when nothing is due).
    pub at: String,
    /// What sets the pace: the global rate, a domain's ceiling, or a scheduled retry.
    pub limited_by: String,
    /// `at` in milliseconds, and `limited_by` as data, for the report's own words.
    #[serde(skip)]
    pub at_ms: i64,
    #[serde(skip)]
    pub limit: FinishLimit,
}

/// What sets the estimated finish (`EstimatedFinish::limited_by` says it in English).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishLimit {
    /// Nothing left to send: the finish is when the last letter went.
    Done,
    Unlimited,
    GlobalRate(u32),
    Domain {
        domain: String,
        backlog: i64,
        per_second: u32,
    },
    LastRetry,
}

impl FinishLimit {
    fn english(&self) -> String {
        match self {
            FinishLimit::Done => "nothing left to send: the last letter went then".to_owned(),
            FinishLimit::Unlimited => "unlimited rate".to_owned(),
            FinishLimit::GlobalRate(rate) => format!("the global rate ({rate}/s)"),
            FinishLimit::Domain {
                domain,
                backlog,
                per_second,
            } => format!("{domain}: {backlog} due at {per_second}/s"),
            FinishLimit::LastRetry => "the last scheduled retry".to_owned(),
        }
    }
}

/// people = sent + bounced + failed + no_email + pending + deferred + sending + delivered,
/// checked.
#[derive(Debug, Serialize)]
pub struct Reconciliation {
    pub ok: bool,
    pub people: i64,
    pub sent: i64,
    pub bounced: i64,
    pub failed: i64,
    pub no_email: i64,
    pub pending: i64,
    pub deferred: i64,
    pub sending: i64,
    pub delivered: i64,
}

impl Reconciliation {
    /// The sum spelled out, as `status` and `export audit` state it.
    pub fn line(&self) -> String {
        format!(
            "reconciliation: {}, {} people = {} sent + {} bounced + {} failed + {} no_email + {} pending + {} deferred + {} sending + {} delivered",
            if self.ok { "ok" } else { "MISMATCH" },
            self.people,
            self.sent,
            self.bounced,
            self.failed,
            self.no_email,
            self.pending,
            self.deferred,
            self.sending,
            self.delivered
        )
    }
}

/// One finished import run: its file and where each of its rows went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportRun {
    pub id: i64,
    /// RFC 3339; `at_ms` the same in milliseconds.
    pub at: String,
    #[serde(skip)]
    pub at_ms: Option<i64>,
    pub source: String,
    pub rows: i64,
    /// New people.
    pub inserted: i64,
    pub updated: i64,
    pub unchanged: i64,
    /// Known refs whose values differ, left alone without `--update`.
    pub not_updated: i64,
    /// Rows refused (the rejects file lists them with the reason).
    pub refused: i64,
    /// Rows left out because `--strict` rolled the import back.
    pub rolled_back: i64,
}

impl ImportRun {
    /// Rows of this file that matched a person already imported.
    pub fn known(&self) -> i64 {
        self.updated + self.unchanged + self.not_updated
    }
}

/// rows of every import file = new people + rows of people already known + refused rows (+
/// rows rolled back by `--strict`), and new people = the people of the campaign, checked.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Imports {
    pub ok: bool,
    pub runs: Vec<ImportRun>,
    pub rows: i64,
    pub inserted: i64,
    pub known: i64,
    pub refused: i64,
    pub rolled_back: i64,
}

impl Imports {
    fn from_runs(runs: Vec<ImportRun>, people: i64) -> Imports {
        let sum = |f: fn(&ImportRun) -> i64| runs.iter().map(f).sum::<i64>();
        let (rows, inserted, known, refused, rolled_back) = (
            sum(|r| r.rows),
            sum(|r| r.inserted),
            sum(ImportRun::known),
            sum(|r| r.refused),
            sum(|r| r.rolled_back),
        );
        Imports {
            ok: rows == inserted + known + refused + rolled_back && inserted == people,
            runs,
            rows,
            inserted,
            known,
            refused,
            rolled_back,
        }
    }

    /// The sum spelled out, as `status` prints it.
    pub fn line(&self) -> String {
        let files = self.runs.len();
        let rolled_back = if self.rolled_back > 0 {
            format!(" + {} rolled back (--strict)", self.rolled_back)
        } else {
            String::new()
        };
        format!(
            "import: {}, {} rows in {files} import{} = {} people + {} already known + {} refused{rolled_back}",
            if self.ok { "ok" } else { "MISMATCH" },
            self.rows,
            if files == 1 { "" } else { "s" },
            self.inserted,
            self.known,
            self.refused,
        )
    }
}

/// The import runs' counts as `import` recorded them (a missing count reads as 0).
async fn imports(conn: &mut SqliteConnection, people: i64) -> anyhow::Result<Imports> {
    let runs = store::status::import_runs(&mut *conn)
        .await?
        .into_iter()
        .map(|row| {
            let detail: serde_json::Value = row
                .detail
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or_default();
            let count = |key: &str| {
                detail
                    .get(key)
                    .and_then(serde_json::Value::as_i64)
                    .unwrap_or(0)
            };
            ImportRun {
                id: row.id,
                at: format_time(row.started_at),
                at_ms: row.started_at,
                source: detail
                    .get("source")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                rows: count("rows"),
                inserted: count("inserted"),
                updated: count("updated"),
                unchanged: count("unchanged"),
                not_updated: count("not_updated"),
                refused: count("refused"),
                rolled_back: count("rolled_back"),
            }
        })
        .collect();
    Ok(Imports::from_runs(runs, people))
}

impl Status {
    pub fn count(&self, state: DeliveryState) -> i64 {
        self.states.get(state.as_str()).copied().unwrap_or(0)
    }
}

/// Everything the database alone can tell, in one snapshot. A person without a delivery, or
/// counts that do not add up, is an error, never silence.
pub async fn collect(pool: &SqlitePool) -> anyhow::Result<Status> {
    let mut tx = pool.begin().await?;
    let status = collect_on(&mut tx).await?;
    tx.commit().await?;
    Ok(status)
}

/// `collect`, plus the estimated finish at the configured rates and the deadline check.
pub async fn collect_for(config: &Config, pool: &SqlitePool) -> anyhow::Result<Status> {
    let mut tx = pool.begin().await?;
    let mut status = collect_on(&mut tx).await?;
    let estimate = estimate_finish(&mut tx, config, &status, crate::db::now_ms()).await?;
    let still_due = status.count(DeliveryState::Pending)
        + status.count(DeliveryState::Deferred)
        + status.count(DeliveryState::Sending);
    status.plan = crate::plan::collect(
        &mut tx,
        config,
        still_due.max(0) as u64,
        crate::clock::now(),
    )
    .await?;
    tx.commit().await?;
    status.notify_by_warning = match &status.plan {
        // With a schedule, the plan (windows, caps, warm-up) says when the last letter goes.
        Some(plan) => plan_warning(plan),
        None => deadline_warning(config, estimate.as_ref()),
    };
    status.estimated_finish = estimate;
    Ok(status)
}

/// The same on a connection the caller holds (inside its own read transaction, as the audit
/// export does, so the rows and the counts come from the same snapshot).
pub async fn collect_on(conn: &mut SqliteConnection) -> anyhow::Result<Status> {
    let reconciliation = reconcile(&mut *conn).await?;
    let states: BTreeMap<&'static str, i64> = [
        (DeliveryState::Pending, reconciliation.pending),
        (DeliveryState::Sending, reconciliation.sending),
        (DeliveryState::Sent, reconciliation.sent),
        (DeliveryState::Deferred, reconciliation.deferred),
        (DeliveryState::Failed, reconciliation.failed),
        (DeliveryState::Bounced, reconciliation.bounced),
        (DeliveryState::NoEmail, reconciliation.no_email),
        (DeliveryState::Delivered, reconciliation.delivered),
    ]
    .into_iter()
    .map(|(state, count)| (state.as_str(), count))
    .collect();
    let runs = send_runs(&mut *conn, RUNS_SHOWN).await?;
    let last_run = runs.first().map(|run| LastRun {
        started_at: run.started_at.clone(),
        finished_at: run.finished_at.clone(),
        sent: run.sent,
        deferred: run.deferred,
        failed: run.failed,
    });
    let reachable = reconciliation.people - reconciliation.no_email;
    let handed_over = reconciliation.sent + reconciliation.delivered;
    let progress = Progress {
        reachable,
        sent: handed_over,
        reached_percent: if reachable > 0 {
            100.0 * handed_over as f64 / reachable as f64
        } else {
            100.0
        },
    };
    let top_errors = reasons(&mut *conn, Reasons::Errors, ERRORS_SHOWN).await?;
    let not_reached = NotReached {
        total: reconciliation.failed + reconciliation.bounced + reconciliation.no_email,
        failed: reconciliation.failed,
        bounced: reconciliation.bounced,
        no_email: reconciliation.no_email,
        failed_reasons: reasons(&mut *conn, Reasons::Refusals, ERRORS_SHOWN).await?,
        bounce_reasons: reasons(&mut *conn, Reasons::Bounces, ERRORS_SHOWN).await?,
    };
    let domains = store::status::top_domains(&mut *conn, DOMAINS_SHOWN).await?;
    let relays = crate::store::relay::counts_by_relay(&mut *conn).await?;
    let slowed = crate::store::relay::slowed_in_last_run(&mut *conn).await?;
    let past_the_relay = PastTheRelay {
        counts: crate::store::confirmation::counts(&mut *conn).await?,
        providers: crate::store::confirmation::providers(&mut *conn, DOMAINS_SHOWN as usize)
            .await?,
        relays: crate::store::relay::notifications_by_relay(&mut *conn).await?,
    };
    let imports = imports(&mut *conn, reconciliation.people).await?;
    Ok(Status {
        total: reconciliation.people,
        states,
        last_run,
        progress,
        runs,
        top_errors,
        domains,
        relays,
        slowed,
        not_reached,
        estimated_finish: None,
        notify_by_warning: None,
        reconciliation,
        imports,
        plan: None,
        dns_check: crate::store::dns::last(&mut *conn).await?,
        past_the_relay,
    })
}

/// Counts people and deliveries by state and checks that they add up. Every delivery belongs to
/// a distinct existing person (its key is the person's id, a foreign key), so equal totals mean
/// every person has exactly one delivery; no slower person-by-person check is needed.
pub async fn reconcile(conn: &mut SqliteConnection) -> anyhow::Result<Reconciliation> {
    let people = store::status::people_count(&mut *conn).await?;
    let counts: HashMap<DeliveryState, i64> = store::status::deliveries_by_state(&mut *conn)
        .await?
        .into_iter()
        .collect();
    let count = |state| counts.get(&state).copied().unwrap_or(0);
    let reconciliation = Reconciliation {
        ok: true,
        people,
        sent: count(DeliveryState::Sent),
        bounced: count(DeliveryState::Bounced),
        failed: count(DeliveryState::Failed),
        no_email: count(DeliveryState::NoEmail),
        pending: count(DeliveryState::Pending),
        deferred: count(DeliveryState::Deferred),
        sending: count(DeliveryState::Sending),
        delivered: count(DeliveryState::Delivered),
    };
    let counted: i64 = counts.values().sum();
    if counted != people {
        anyhow::bail!(
            "reconciliation failed: {people} people but {counted} deliveries; \
             the database is inconsistent, do not send before it is understood ({})",
            Reconciliation {
                ok: false,
                ..reconciliation
            }
            .line()
        );
    }
    Ok(reconciliation)
}

/// The last `limit` send runs, newest first.
pub async fn send_runs(conn: &mut SqliteConnection, limit: i64) -> anyhow::Result<Vec<SendRun>> {
    let runs = store::status::send_runs(&mut *conn, limit).await?;
    Ok(runs
        .into_iter()
        .map(|run| SendRun {
            id: run.id,
            started_at: format_time(run.started_at),
            finished_at: run.finished_at.map(|t| format_time(Some(t))),
            sent: run.sent,
            deferred: run.deferred,
            failed: run.failed,
            outcome: run.outcome,
        })
        .collect())
}

/// Counts the [`Reasons`] asked for, folds reasons that differ only by an address or a queue
/// id together, and keeps the `limit` commonest.
pub async fn reasons(
    conn: &mut SqliteConnection,
    which: Reasons,
    limit: usize,
) -> anyhow::Result<Vec<ErrorReason>> {
    let mut grouped: HashMap<String, i64> = HashMap::new();
    for (raw, count) in store::status::reason_counts(&mut *conn, which).await? {
        let reason = normalise_reason(raw.as_deref().unwrap_or(""));
        *grouped.entry(reason).or_default() += count;
    }
    let mut reasons: Vec<ErrorReason> = grouped
        .into_iter()
        .map(|(reason, count)| ErrorReason { reason, count })
        .collect();
    reasons.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
    reasons.truncate(limit);
    Ok(reasons)
}

/// A relay's reply without what makes it unique to one letter: addresses, bracketed parts and
/// queue ids become placeholders, so "550 5.1.1 <a@x.fr> unknown" and "550 5.1.1 <b@y.fr>
/// unknown" count as one reason.
pub fn normalise_reason(raw: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    for word in raw.split_whitespace() {
        let core = word.trim_matches(|c: char| "<>()[]{},;:\"'".contains(c));
        let replaced = if core.contains('@') {
            Some("<address>")
        } else if looks_like_queue_id(core) {
            Some("<id>")
        } else {
            None
        };
        let word = match replaced {
            Some(placeholder) => {
                // Keep a trailing colon or comma that belongs to the sentence.
                let tail: String = word
                    .chars()
                    .rev()
                    .take_while(|c| ":,;".contains(*c))
                    .collect();
                format!("{placeholder}{tail}")
            }
            None => word.to_owned(),
        };
        if words.last() != Some(&word) {
            words.push(word);
        }
    }
    let mut reason = words.join(" ");
    if reason.is_empty() {
        reason = "no reason recorded".to_owned();
    }
    if reason.chars().count() > 200 {
        reason = reason.chars().take(199).chain(['…']).collect();
    }
    reason
}

/// A token that names one message rather than a kind of problem: a long mix of letters and
/// digits (Postfix, Exim and Gmail queue ids), or a long number. SMTP codes (550, 5.1.1) stay.
fn looks_like_queue_id(token: &str) -> bool {
    let token = token
        .split_once('=')
        .map_or(token, |(_, value)| value)
        .trim_end_matches('.');
    let digits = token.chars().filter(char::is_ascii_digit).count();
    let letters = token.chars().filter(char::is_ascii_alphabetic).count();
    let idish = token
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    idish && ((token.len() >= 8 && digits >= 2 && letters >= 1) || (digits >= 6 && letters == 0))
}

/// When the letters still due will have gone at the configured rates: the global rate over all
/// of them, or the slowest domain's backlog at its own ceiling, or the last scheduled retry,
/// whichever is latest. Nothing due: when the last letter went.
async fn estimate_finish(
    conn: &mut SqliteConnection,
    config: &Config,
    status: &Status,
    now: i64,
) -> anyhow::Result<Option<EstimatedFinish>> {
    let still_due = status.count(DeliveryState::Pending)
        + status.count(DeliveryState::Deferred)
        + status.count(DeliveryState::Sending);
    if still_due == 0 {
        let last_sent = store::status::last_sent_at(&mut *conn).await?;
        return Ok(last_sent.map(|at| EstimatedFinish {
            still_due: 0,
            seconds: 0,
            at: format_time(Some(at)),
            limited_by: FinishLimit::Done.english(),
            at_ms: at,
            limit: FinishLimit::Done,
        }));
    }
    let mut seconds = 0.0_f64;
    let mut limit = FinishLimit::Unlimited;
    if config.rate.per_second > 0 {
        seconds = still_due as f64 / f64::from(config.rate.per_second);
        limit = FinishLimit::GlobalRate(config.rate.per_second);
    }
    for (domain, &per_second) in &config.rate.per_domain {
        if per_second == 0 {
            continue;
        }
        let backlog = store::status::still_to_send_to(&mut *conn, domain).await?;
        let domain_seconds = backlog as f64 / f64::from(per_second);
        if domain_seconds > seconds {
            seconds = domain_seconds;
            limit = FinishLimit::Domain {
                domain: domain.clone(),
                backlog,
                per_second,
            };
        }
    }
    let mut finish = now + (seconds * 1000.0).ceil() as i64;
    let last_retry = store::status::last_retry_at(&mut *conn).await?;
    if let Some(retry_at) = last_retry.filter(|&at| at > finish) {
        finish = retry_at;
        limit = FinishLimit::LastRetry;
    }
    Ok(Some(EstimatedFinish {
        still_due,
        seconds: ((finish - now).max(0) / 1000) as u64,
        at: format_time(Some(finish)),
        limited_by: limit.english(),
        at_ms: finish,
        limit,
    }))
}

/// A warning when the letters will not all have gone by `incident.notify_by` (the end of that
/// day, UTC), or when the deadline cannot be read.
fn deadline_warning(config: &Config, estimate: Option<&EstimatedFinish>) -> Option<String> {
    let notify_by = config.incident.get("notify_by")?;
    let Some(text) = notify_by.as_str() else {
        return Some(format!(
            "incident.notify_by = {notify_by} is not a date (YYYY-MM-DD)"
        ));
    };
    let Ok(day) = chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") else {
        return Some(format!(
            "incident.notify_by = {text:?} is not a date (YYYY-MM-DD)"
        ));
    };
    let estimate = estimate?;
    let deadline = day.and_hms_opt(23, 59, 59)?.and_utc();
    let finish = chrono::DateTime::parse_from_rfc3339(&estimate.at).ok()?;
    if finish <= deadline {
        return None;
    }
    Some(if estimate.still_due == 0 {
        format!(
            "the last letter went at {}, after incident.notify_by ({text})",
            estimate.at
        )
    } else {
        format!(
            "at the configured rate the last letter goes at {}, after incident.notify_by ({text})",
            estimate.at
        )
    })
}

/// The plan's verdict on `incident.notify_by`, when it misses it.
fn plan_warning(plan: &crate::plan::PlanReport) -> Option<String> {
    if plan.meets_notify_by != Some(false) {
        return None;
    }
    let deadline = plan.notify_by.as_deref().unwrap_or("?");
    Some(match (&plan.end_date, plan.late_by_days) {
        (Some(end), Some(late)) => {
            format!("the plan ends on {end}, {late} days after incident.notify_by ({deadline})")
        }
        _ => format!("the plan does not end by incident.notify_by ({deadline})"),
    })
}

pub async fn run(config: &Config, json: bool) -> anyhow::Result<Exit> {
    let pool = crate::db::open_read_only(&config.campaign.database).await?;
    let status = collect_for(config, &pool).await?;
    if json {
        crate::exit::print_out(&serde_json::to_string_pretty(&status)?);
    } else {
        crate::exit::print_block(&render_table(&status));
    }
    Ok(Exit::Ok)
}

/// The status for a person at a terminal.
pub fn render_table(status: &Status) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!("people          {:>10}", status.total));
    for state in DeliveryState::ALL {
        let count = status.count(state);
        let share = if status.total > 0 {
            100.0 * count as f64 / status.total as f64
        } else {
            0.0
        };
        line(format!(
            "  {:<13} {:>10}  {:>5.1} %",
            state.as_str(),
            count,
            share
        ));
    }
    line(status.imports.line());
    line(status.reconciliation.line());
    line(format!(
        "progress        {:.1} % reached ({} sent of {} with an address)",
        status.progress.reached_percent, status.progress.sent, status.progress.reachable
    ));
    line(match &status.dns_check {
        None => "dns check       never run (breachmail check --dns)".to_owned(),
        Some(last) if last.passed => format!("dns check       passed ({})", last.checked_at),
        Some(last) => format!(
            "dns check       FAILED ({}): {} problem(s), {} DNS failure(s); see breachmail check --dns",
            last.checked_at, last.problems, last.dns_failures
        ),
    });
    line(String::new());
    if status.runs.is_empty() {
        line("send runs       never".to_owned());
    } else {
        line("send runs       started               finished                  sent  deferred    failed  outcome".to_owned());
        for run in &status.runs {
            line(format!(
                "  #{:<12} {:<21} {:<21} {:>8}  {:>8}  {:>8}  {}",
                run.id,
                run.started_at,
                run.finished_at.as_deref().unwrap_or("-"),
                run.sent,
                run.deferred,
                run.failed,
                run.outcome.as_deref().unwrap_or("running or interrupted")
            ));
        }
    }
    if !status.top_errors.is_empty() {
        line(String::new());
        line("top errors (failed and deferred)".to_owned());
        for reason in &status.top_errors {
            line(format!("  {:>8}  {}", reason.count, reason.reason));
        }
    }
    let not_reached = &status.not_reached;
    line(String::new());
    line(format!(
        "not reached     {} ({} refused at sending, {} bounced, {} without e-mail): the postal fallback",
        not_reached.total, not_reached.failed, not_reached.bounced, not_reached.no_email
    ));
    for reason in &not_reached.failed_reasons {
        line(format!("  failed  {:>8}  {}", reason.count, reason.reason));
    }
    for reason in &not_reached.bounce_reasons {
        line(format!("  bounced {:>8}  {}", reason.count, reason.reason));
    }
    line(String::new());
    for text in past_the_relay_lines(&status.past_the_relay) {
        line(text);
    }
    if !status.domains.is_empty() {
        line(String::new());
        line(format!(
            "{:<32} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "top domains", "people", "sent", "deferred", "failed", "bounced"
        ));
        for domain in &status.domains {
            line(format!(
                "  {:<30} {:>8} {:>8} {:>8} {:>8} {:>8}",
                domain.domain,
                domain.people,
                domain.sent,
                domain.deferred,
                domain.failed,
                domain.bounced
            ));
        }
    }
    if !status.relays.is_empty() {
        line(String::new());
        line(format!(
            "{:<32} {:>8} {:>8} {:>8} {:>8}",
            "relays", "sent", "deferred", "failed", "bounced"
        ));
        for relay in &status.relays {
            line(format!(
                "  {:<30} {:>8} {:>8} {:>8} {:>8}",
                relay.relay, relay.sent, relay.deferred, relay.failed, relay.bounced
            ));
        }
    }
    if !status.slowed.is_empty() {
        line(String::new());
        line("slowed in the last send run".to_owned());
        for slowed in &status.slowed {
            let rate = slowed
                .final_rate
                .map_or("back to full rate".to_owned(), |r| {
                    format!("ended at {r:.1}/s")
                });
            line(format!(
                "  {} {}: {} times, {}; last: {}",
                slowed.scope,
                slowed.name,
                slowed.decreases,
                rate,
                slowed.reason.as_deref().unwrap_or("")
            ));
        }
    }
    line(String::new());
    match &status.estimated_finish {
        Some(estimate) if estimate.still_due == 0 => line(format!(
            "finished        {} (nothing left to send{})",
            estimate.at,
            match status.past_the_relay.counts.still_at_relay {
                0 => String::new(),
                waiting => format!(
                    "; {waiting} still at the relay, not yet accepted by the person's provider"
                ),
            }
        )),
        Some(estimate) => line(format!(
            "estimated finish {} ({} still due, in {}; limited by {}){}",
            estimate.at,
            estimate.still_due,
            human_duration(estimate.seconds),
            estimate.limited_by,
            if status.plan.is_some() {
                " at the rate alone: the plan below adds the windows and caps"
            } else {
                ""
            }
        )),
        None => line("estimated finish unknown (nothing sent, nothing due)".to_owned()),
    }
    if let Some(warning) = &status.notify_by_warning {
        line(format!("WARNING         {warning}"));
    }
    if let Some(plan) = &status.plan {
        out.push('\n');
        out.push_str(&crate::plan::render_text(plan));
    }
    out
}

/// The three levels, the relays that confirm nothing, and the providers' waits, for `status`.
fn past_the_relay_lines(past: &PastTheRelay) -> Vec<String> {
    let counts = &past.counts;
    let mut lines = vec![format!(
        "past the relay  {} handed to the relay, {} accepted by the provider, {} bounced; {} still at the relay, {} sent through a relay that does not confirm delivery",
        counts.handed_to_relay,
        counts.accepted_by_provider,
        counts.bounced,
        counts.still_at_relay,
        counts.not_confirmed
    )];
    for relay in past.relays.iter().filter(|r| !r.requested) {
        let why = if relay.offered {
            "delivery notifications are turned off (delivery_notifications = false)"
        } else {
            "it does not offer delivery status notifications (DSN)"
        };
        lines.push(format!(
            "  relay {} does not confirm delivery: {why}; its letters stay `sent`",
            relay.relay
        ));
    }
    if past.providers.is_empty() {
        return lines;
    }
    lines.push(format!(
        "  {:<30} {:>14} {:>9} {:>12} {:>12}",
        "provider", "at the relay", "accepted", "median wait", "95% within"
    ));
    let wait =
        |seconds: Option<f64>| seconds.map_or("-".to_owned(), |s| human_duration(s.round() as u64));
    for provider in &past.providers {
        lines.push(format!(
            "  {:<30} {:>14} {:>9} {:>12} {:>12}",
            provider.domain,
            provider.still_at_relay,
            provider.accepted,
            wait(provider.median_seconds),
            wait(provider.p95_seconds)
        ));
    }
    lines
}

fn human_duration(seconds: u64) -> String {
    let (days, hours, minutes) = (
        seconds / 86_400,
        (seconds % 86_400) / 3600,
        (seconds % 3600) / 60,
    );
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h{m:02}m"),
        (d, h, _) => format!("{d}d{h:02}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_that_differ_by_address_or_queue_id_group_together() {
        let a = normalise_reason("550 5.1.1 <jean.dupont@orange.fr>: Recipient address rejected");
        let b = normalise_reason("550 5.1.1 <l.moreau@orange.fr>: Recipient address rejected");
        assert_eq!(a, b);
        assert_eq!(
            a, "550 5.1.1 <address>: Recipient address rejected",
            "the code and the words stay"
        );
        let c = normalise_reason("451 4.3.0 queued as 4bX9kQ2mZ7z1 try later");
        let d = normalise_reason("451 4.3.0 queued as 9ZpQ0aa81bcD try later");
        assert_eq!(c, d);
        assert!(c.contains("<id>"), "{c}");
        assert_eq!(normalise_reason(""), "no reason recorded");
        assert_eq!(
            normalise_reason("421 4.7.0 Try again later"),
            "421 4.7.0 Try again later"
        );
    }

    #[test]
    fn durations_read_like_a_person_would_say_them() {
        assert_eq!(human_duration(42), "42s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3_900), "1h05m");
        assert_eq!(human_duration(90_000), "1d01h");
    }
}
