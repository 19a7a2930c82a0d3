//! `breachmail serve`: the helpline's web console. Advisers log in, find the caller (notice id,
//! e-mail address, ref, or last name and postcode), see the same timeline as `lookup` and the
//! letter the person was sent, and act: record a corrected or alternative address (a new
//! generation of the letter, through the ledger), note that they asked for a paper letter, write
//! down what the call was about. The supervisor's page counts the day's calls and the letters
//! still to go out.
//!
//! Safety first, since the console opens the very data that leaked: nothing but the login page is
//! served without a session; sessions expire (idle and absolute); every search and every page
//! opened is logged with who looked at whom; searches are rate-limited per adviser and person
//! pages capped per hour (`console.person_views_per_hour`); the letter is masked like the rest
//! unless the adviser asks to see it in clear (logged); wrong passwords slow down their login and
//! their address; every action carries the session's CSRF token; pages are HTML escaped by the
//! template engine, carry a strict Content-Security-Policy and no script, and errors say nothing
//! of the internals. It listens on loopback unless TLS or an authenticating proxy's header is
//! configured, and takes passwords beyond loopback only over its own TLS.
//!
//! It speaks the campaign's language (`helpline_text`), with times in the schedule's zone.

pub mod accounts;
mod pages;
mod session;
pub mod supervisor;
mod throttle;
mod tls;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use sqlx::SqlitePool;

use crate::config::Config;
use crate::domain::{DeliveryState, Email};
use crate::exit::{Exit, UsageError};
use crate::helpline_text::Voice;
use crate::lookup::{self, PersonReport, VerdictKind};
use crate::render::Letters;
use crate::store::helpline::{self as store, Access};

/// The address a request came from, for `into_make_service_with_connect_info`.
pub use session::Peer;
use session::Signed;

/// What every request handler shares.
pub struct Console {
    pool: SqlitePool,
    config: Config,
    letters: Option<Letters>,
    /// Why the letters could not be loaded, shown on the person's page instead of the letter.
    letters_error: Option<String>,
    pages: pages::Pages,
    searches: governor::DefaultKeyedRateLimiter<String>,
    logins: throttle::LoginThrottle,
    /// The language and time zone of every page.
    voice: Voice,
    /// Passwords are taken on loopback, or over the console's own TLS; anywhere else they would
    /// cross a network in clear (behind a proxy too: the hop from the proxy is plain HTTP).
    password_login: bool,
    /// The `serve` run: the ledger's events of the advisers' actions name it.
    run_id: i64,
    /// Cookies are marked Secure when the browser reaches us over HTTPS (ours or the proxy's).
    secure_cookies: bool,
}

type Shared = Arc<Console>;

/// Refuses an address other than loopback unless the console speaks TLS or sits behind an
/// authenticating proxy: advisers' passwords and people's data must not cross a network in clear.
pub fn check_listen(addr: SocketAddr, config: &crate::config::Console) -> Result<(), UsageError> {
    if addr.ip().is_loopback() || config.tls.is_some() || config.proxy_header.is_some() {
        return Ok(());
    }
    Err(UsageError::new(format!(
        "serve: {addr} is not a loopback address; the console listens elsewhere only with HTTPS (console.tls_cert and console.tls_key) or behind an authenticating proxy (console.proxy_header)"
    )))
}

/// Builds the console on the campaign's database, to listen on `addr`: letters loaded, rate
/// limiters ready.
pub async fn build(config: &Config, addr: SocketAddr) -> anyhow::Result<Shared> {
    let pool = crate::db::open(&config.campaign.database, false).await?;
    // The name search's keys of everyone imported since the last start, before the first search.
    let keyed = store::fill_name_keys(&pool)
        .await
        .context("while computing the name search's keys")?;
    if keyed > 0 {
        tracing::info!("console: search keys computed for {keyed} people");
    }
    let (letters, letters_error) = match Letters::load(config) {
        Ok(letters) => (Some(letters), None),
        Err(error) => (None, Some(format!("{error:#}"))),
    };
    let per_minute = NonZeroU32::new(config.console.searches_per_minute).unwrap_or(NonZeroU32::MIN);
    let run_id = crate::store::campaign::start_run(&pool, "serve").await?;
    Ok(Arc::new(Console {
        pool,
        config: config.clone(),
        letters,
        letters_error,
        pages: pages::Pages::new()?,
        searches: governor::RateLimiter::keyed(governor::Quota::per_minute(per_minute)),
        logins: throttle::LoginThrottle::default(),
        voice: Voice::for_config(config),
        password_login: addr.ip().is_loopback() || config.console.tls.is_some(),
        run_id,
        secure_cookies: config.console.tls.is_some() || config.console.proxy_header.is_some(),
    }))
}

pub fn router(console: Shared) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/search", get(search))
        .route("/person/{id}", get(person))
        .route("/person/{id}/address", post(record_address))
        .route("/person/{id}/paper", post(record_paper_request))
        .route("/person/{id}/note", post(record_call_note))
        .route("/supervisor", get(supervisor_page))
        .fallback(not_found)
        .layer(axum::middleware::map_response_with_state(
            console.clone(),
            plain_errors,
        ))
        .layer(axum::middleware::map_response_with_state(
            console.clone(),
            security_headers,
        ))
        .with_state(console)
}

/// `breachmail serve [--listen ADDR]`: runs until Ctrl-C or SIGTERM.
pub async fn run(config: &Config, listen: Option<&str>) -> anyhow::Result<Exit> {
    let addr: SocketAddr = match listen {
        Some(raw) => raw.parse().map_err(|_| {
            UsageError::new(format!(
                "--listen {raw:?}: expected an address and port such as 127.0.0.1:8080"
            ))
        })?,
        None => config.console.listen,
    };
    check_listen(addr, &config.console)?;
    let tls = match &config.console.tls {
        Some((cert, key)) => Some(tls::acceptor(cert, key)?),
        None => None,
    };
    let console = build(config, addr).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("while listening on {addr}"))?;
    let local = listener.local_addr()?;
    let stop = StopSignals::install()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // The one line on stdout: scripts (and the tests) read the address from it.
    crate::exit::print_out(&format!("listening on {scheme}://{local}"));
    tracing::info!("helpline console on {scheme}://{local}");
    let app = router(console.clone()).into_make_service_with_connect_info::<Peer>();
    // On the signal, axum stops accepting, closes idle connections and lets the requests in
    // flight finish; a request that does not (one waiting for a database another process
    // holds, a client that stalls mid-request) is given up after a bounded wait.
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        stop.received().await;
        tracing::info!("stopping the console");
        let _ = stopping.send(());
    };
    let grace = async move {
        if stopped.await.is_ok() {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let served = match tls {
        Some(acceptor) => {
            let serving = axum::serve(tls::TlsListener::new(listener, acceptor), app)
                .with_graceful_shutdown(signal);
            tokio::select! {
                served = serving => served,
                () = grace => Ok(()),
            }
        }
        None => {
            let serving = axum::serve(listener, app).with_graceful_shutdown(signal);
            tokio::select! {
                served = serving => served,
                () = grace => Ok(()),
            }
        }
    };
    served.context("while serving the console")?;
    // The end of the run, unless the database stays held by another process: the console
    // does not wait out the busy timeout to stop.
    let ended = tokio::time::timeout(
        SHUTDOWN_GRACE,
        crate::store::campaign::finish_run(&console.pool, console.run_id, "stopped", ""),
    )
    .await;
    match ended {
        Ok(recorded) => recorded?,
        Err(_) => tracing::warn!("the database is busy: the console's stop is not recorded"),
    }
    Ok(Exit::Ok)
}

/// How long, after SIGTERM or Ctrl-C, requests in flight may take to finish before the
/// console stops anyway (and how long it then waits to record its end).
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The signals that stop the console (SIGTERM, Ctrl-C), installed before it says it listens:
/// a signal that comes as soon as the first client is answered must find its handler in
/// place, not the default action that kills the process unrecorded. (axum polls the shutdown
/// future in a task of its own, so installing there would come too late.)
struct StopSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> anyhow::Result<StopSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(StopSignals {
                term: signal(SignalKind::terminate()).context("while handling SIGTERM")?,
                interrupt: signal(SignalKind::interrupt()).context("while handling Ctrl-C")?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(StopSignals {})
        }
    }

    async fn received(mut self) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => {}
                _ = self.interrupt.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// An error the framework answers by itself (a malformed number in a path, a form it cannot
/// read, a method the page does not take) says in plain text what it could not parse, quoting
/// the input and a Rust type: it becomes the console's own page, which says neither.
async fn plain_errors(State(console): State<Shared>, response: Response) -> Response {
    let status = response.status();
    let is_page = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if is_page || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (title, message) = pages::words(console.voice.language, "bad_request");
    refused(&console, status, title, message)
}

/// No page of the console may be framed, cached, sniffed, or run a script; over its own TLS,
/// browsers are told to come back over HTTPS only (HSTS).
async fn security_headers(State(console): State<Shared>, mut response: Response) -> Response {
    if console.config.console.tls.is_some() {
        response.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    let headers = response.headers_mut();
    let set = |headers: &mut HeaderMap, name: header::HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(headers, header::CACHE_CONTROL, "no-store");
    response
}

/// A page, or what to say when a request is refused.
fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn refused(console: &Console, status: StatusCode, title: &str, message: &str) -> Response {
    html(
        status,
        console.pages.message(&console.voice, title, message),
    )
}

/// A refusal in the console's language (`pages::words`).
fn refused_with(console: &Console, status: StatusCode, key: &str) -> Response {
    let (title, message) = pages::words(console.voice.language, key);
    refused(console, status, title, message)
}

fn internal_error(console: &Console, error: &anyhow::Error) -> Response {
    tracing::error!("console: {error:#}");
    refused_with(console, StatusCode::INTERNAL_SERVER_ERROR, "internal")
}

async fn not_found(State(console): State<Shared>) -> Response {
    refused_with(&console, StatusCode::NOT_FOUND, "not_found")
}

async fn home(
    State(console): State<Shared>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
) -> Response {
    let signed = match session::require(&console, &headers, peer).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    html(
        StatusCode::OK,
        console
            .pages
            .search(&console.voice, &signed, &Typed::default(), None),
    )
}

#[derive(serde::Deserialize)]
struct LoginQuery {
    expired: Option<String>,
}

async fn login_page(State(console): State<Shared>, Query(query): Query<LoginQuery>) -> Response {
    let notice = if !console.password_login {
        Some("no_password_login")
    } else {
        query.expired.is_some().then_some("expired")
    };
    html(
        StatusCode::OK,
        console
            .pages
            .login(&console.voice, notice, "", console.password_login),
    )
}

#[derive(serde::Deserialize)]
struct LoginForm {
    login: String,
    password: String,
}

async fn login(
    State(console): State<Shared>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Form(form): Form<LoginForm>,
) -> Response {
    let page = |status: StatusCode, notice: &str| {
        let mut response = html(
            status,
            console.pages.login(
                &console.voice,
                Some(notice),
                form.login.trim(),
                console.password_login,
            ),
        );
        if status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        }
        response
    };
    if !console.password_login {
        tracing::warn!(
            "console: a password login from {} was refused: not over TLS",
            peer.0.ip()
        );
        return page(StatusCode::FORBIDDEN, "no_password_login");
    }
    match session::log_in(&console, &form.login, &form.password, peer).await {
        Ok(session::LoginOutcome::LoggedIn(cookie)) => {
            let mut response = Redirect::to("/").into_response();
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            response
        }
        Ok(session::LoginOutcome::Refused) => page(StatusCode::UNAUTHORIZED, "wrong_password"),
        Ok(session::LoginOutcome::Wait(wait)) => {
            let mut response = page(StatusCode::TOO_MANY_REQUESTS, "slow_down");
            if let Ok(value) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Err(error) => internal_error(&console, &error),
    }
}

#[derive(serde::Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(console): State<Shared>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let signed = match session::require_action(&console, &headers, peer, &form.csrf).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    if let Err(error) = session::log_out(&console, &signed).await {
        return internal_error(&console, &error);
    }
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session::clearing_cookie());
    response
}

/// What the adviser typed in the search boxes: kept in the boxes of every page, and carried
/// from a search to the person's page it opens.
#[derive(serde::Deserialize, serde::Serialize, Default, Clone, Debug)]
pub struct Typed {
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub last_name: String,
    #[serde(default)]
    pub postcode: String,
    #[serde(default)]
    pub first_name: String,
}

impl Typed {
    /// `?q=…` (or the name and postcode) for a link, percent-encoded; empty when nothing was typed.
    pub fn query_string(&self) -> String {
        let pairs = [
            ("q", &self.q),
            ("last_name", &self.last_name),
            ("postcode", &self.postcode),
            ("first_name", &self.first_name),
        ];
        let parts: Vec<String> = pairs
            .iter()
            .filter(|(_, value)| !value.trim().is_empty())
            .map(|(name, value)| format!("{name}={}", percent_encode(value)))
            .collect();
        parts.join("&")
    }
}

fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// One line of the results: masked, with what tells one person from another without opening
/// the page (first-name initial, city, masked address).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ResultRow {
    pub id: i64,
    pub notice_id: String,
    pub person_ref: String,
    pub name: String,
    pub email: Option<String>,
    pub postcode: Option<String>,
    pub city: Option<String>,
    pub state: String,
    /// What was sent, in a few words (for a notice id, e-mail or ref search).
    pub sent: Option<String>,
}

/// What one search found, for its page.
pub struct Found {
    pub kind: Option<VerdictKind>,
    pub verdict: String,
    pub script: String,
    pub rows: Vec<ResultRow>,
}

async fn search(
    State(console): State<Shared>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    Query(typed): Query<Typed>,
) -> Response {
    let signed = match session::require(&console, &headers, peer).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    if console.searches.check_key(&signed.adviser.login).is_err() {
        tracing::warn!(
            "console: search refused to {}: over the rate limit",
            signed.adviser.login
        );
        return refused_with(&console, StatusCode::TOO_MANY_REQUESTS, "too_many_searches");
    }
    match run_search(&console, &signed, &typed).await {
        Ok(found) => html(
            StatusCode::OK,
            console
                .pages
                .search(&console.voice, &signed, &typed, Some(&found)),
        ),
        Err(error) => internal_error(&console, &error),
    }
}

fn report_row(report: &PersonReport) -> ResultRow {
    ResultRow {
        id: report.person_id,
        notice_id: report.notice_id.clone(),
        person_ref: report.person_ref.clone(),
        name: report.name.clone(),
        email: report.email.clone(),
        postcode: None,
        city: report.postal.clone(),
        state: report.state_words.clone(),
        sent: Some(report.verdict.text.clone()),
    }
}

async fn run_search(console: &Console, signed: &Signed, typed: &Typed) -> anyhow::Result<Found> {
    let voice = &console.voice;
    let q = typed.q.trim();
    if !q.is_empty() {
        let domain = console.config.sender.from.email.domain().to_owned();
        let answer = lookup::answer(
            &console.pool,
            q,
            &signed.adviser.login,
            "search",
            &domain,
            voice,
        )
        .await?;
        return Ok(Found {
            kind: Some(answer.verdict_kind),
            rows: answer.people.iter().map(report_row).collect(),
            verdict: answer.verdict,
            script: answer.script,
        });
    }
    let (last_name, postcode) = (typed.last_name.trim(), typed.postcode.trim());
    if last_name.is_empty() || postcode.is_empty() {
        let (_, hint) = pages::words(voice.language, "search_hint");
        return Ok(Found {
            kind: None,
            verdict: hint.to_owned(),
            script: String::new(),
            rows: Vec::new(),
        });
    }
    let (count, people) =
        store::people_by_name_postcode(&console.pool, last_name, postcode, typed.first_name.trim())
            .await?;
    let ids: Vec<i64> = people.iter().map(|p| p.person_id).collect();
    store::log_access(
        &console.pool,
        Access {
            adviser: &signed.adviser.login,
            action: "search",
            query_kind: Some("name_postcode"),
            verdict: None,
        },
        &ids,
        crate::db::now_ms(),
    )
    .await?;
    let rows = people
        .iter()
        .map(|row| ResultRow {
            id: row.person_id,
            notice_id: row.notice_id.clone(),
            person_ref: row.person_ref.clone(),
            name: lookup::mask_name(row.first_name.as_deref(), row.last_name.as_deref()),
            email: row.email.as_deref().map(crate::export::mask_email),
            // Everyone listed has the postcode the adviser typed: it is shown as typed.
            postcode: Some(postcode.to_owned()),
            city: row.city.clone(),
            state: voice.state(row.state.as_str()),
            sent: None,
        })
        .collect();
    Ok(Found {
        kind: (count == 0).then_some(VerdictKind::NotFound),
        verdict: voice.name_postcode(count, people.len(), postcode),
        script: if count == 0 {
            voice.check_spelling_script().to_owned()
        } else {
            String::new()
        },
        rows,
    })
}

#[derive(serde::Deserialize, Default)]
struct PersonQuery {
    done: Option<String>,
    problem: Option<String>,
    /// The letter in clear, at the adviser's request (logged).
    reveal: Option<String>,
    #[serde(flatten)]
    typed: Typed,
}

async fn person(
    State(console): State<Shared>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(query): Query<PersonQuery>,
) -> Response {
    let signed = match session::require(&console, &headers, peer).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    match over_the_cap(&console, &signed, id).await {
        Ok(false) => {}
        Ok(true) => {
            return refused_with(&console, StatusCode::TOO_MANY_REQUESTS, "too_many_views");
        }
        Err(error) => return internal_error(&console, &error),
    }
    match person_page(&console, &signed, id, &query).await {
        Ok(Some(page)) => html(StatusCode::OK, page),
        Ok(None) => refused_with(&console, StatusCode::NOT_FOUND, "no_such_person"),
        Err(error) => internal_error(&console, &error),
    }
}

/// Whether this adviser opened `console.person_views_per_hour` person pages in the last hour.
/// A refusal is logged (`view_refused`), for the supervisor's page.
async fn over_the_cap(console: &Console, signed: &Signed, id: i64) -> anyhow::Result<bool> {
    let now = crate::db::now_ms();
    let login = &signed.adviser.login;
    let views = store::views_since(&console.pool, login, now - 3_600_000).await?;
    if views < i64::from(console.config.console.person_views_per_hour) {
        return Ok(false);
    }
    tracing::warn!(
        "console: person page refused to {login}: {views} opened in the last hour, the cap is {}",
        console.config.console.person_views_per_hour
    );
    store::log_access(
        &console.pool,
        Access {
            adviser: login,
            action: "view_refused",
            query_kind: None,
            verdict: None,
        },
        &[id],
        now,
    )
    .await?;
    Ok(true)
}

/// The letter as the person was sent it (or as it goes next), rendered again, masked unless the
/// adviser asked to see it in clear; with a warning when the letters were changed since.
pub struct LetterShown {
    pub subject: String,
    pub text: String,
    pub warning: Option<String>,
}

async fn person_page(
    console: &Console,
    signed: &Signed,
    id: i64,
    query: &PersonQuery,
) -> anyhow::Result<Option<String>> {
    let Some(row) = store::person_by_id(&console.pool, id).await? else {
        return Ok(None);
    };
    let domain = console.config.sender.from.email.domain().to_owned();
    let Some(report) = lookup::report(&console.pool, Some(&row), &domain, &console.voice).await?
    else {
        return Ok(None);
    };
    let reveal = query.reveal.is_some();
    let now = crate::db::now_ms();
    for action in ["view", "reveal"].iter().take(if reveal { 2 } else { 1 }) {
        store::log_access(
            &console.pool,
            Access {
                adviser: &signed.adviser.login,
                action,
                query_kind: None,
                verdict: None,
            },
            &[id],
            now,
        )
        .await?;
    }
    if reveal {
        tracing::info!(
            "console: adviser {} asked to see the letter of person {id} in clear",
            signed.adviser.login
        );
    }
    let notes = store::call_notes(&console.pool, id).await?;
    let accesses = store::accesses_to(&console.pool, id).await?;
    let as_sent = match &report.letter_as_sent {
        Some(sent) => Some(
            letter_shown(
                console,
                id,
                report.delivery.as_ref(),
                Some(sent.to.as_deref()),
                reveal,
            )
            .await?,
        ),
        None => None,
    };
    let next = match &report.next_letter {
        Some(_) => Some(letter_shown(console, id, None, None, reveal).await?),
        None => None,
    };
    let flash = pages::Flash {
        done: query.done.as_deref(),
        problem: query.problem.as_deref(),
    };
    Ok(Some(console.pages.person(
        &console.voice,
        signed,
        &pages::PersonView {
            report: &report,
            notes: &notes,
            accesses: &accesses,
            as_sent: as_sent.as_ref(),
            next: next.as_ref(),
            revealed: reveal,
            typed: &query.typed,
        },
        flash,
    )))
}

/// The person as the table shows them: initials, the first character of the address, the
/// postcode's first two characters, no street, no civility.
fn masked(person: &crate::person::Person) -> crate::person::Person {
    let initial = |part: &Option<String>| {
        part.as_deref()
            .and_then(|p| p.trim().chars().next())
            .map(|c| format!("{c}."))
    };
    crate::person::Person {
        email: person
            .email
            .as_ref()
            .and_then(|e| Email::parse(&crate::export::mask_email(e.as_str())).ok()),
        civility: None,
        first_name: initial(&person.first_name),
        last_name: initial(&person.last_name),
        address_line1: person.address_line1.as_ref().map(|_| "…".to_owned()),
        address_line2: None,
        postcode: person
            .postcode
            .as_deref()
            .map(|p| format!("{}…", p.chars().take(2).collect::<String>())),
        ..person.clone()
    }
}

/// Renders the letter again. `sent_to`: for the letter as sent, the (masked) address it went
/// to, which may no longer be the person's; None for the next letter.
async fn letter_shown(
    console: &Console,
    id: i64,
    delivery: Option<&store::DeliveryRow>,
    sent_to: Option<Option<&str>>,
    reveal: bool,
) -> anyhow::Result<LetterShown> {
    let language = console.voice.language;
    let Some(letters) = &console.letters else {
        return Ok(LetterShown {
            subject: String::new(),
            text: String::new(),
            warning: Some(format!(
                "{}: {}",
                pages::words(language, "letters_missing").1,
                console.letters_error.as_deref().unwrap_or("?")
            )),
        });
    };
    let Some(person) = store::person_for_letter(&console.pool, id).await? else {
        return Ok(LetterShown {
            subject: String::new(),
            text: String::new(),
            warning: Some(pages::words(language, "no_such_person").1.to_owned()),
        });
    };
    let mut person = if reveal { person } else { masked(&person) };
    if let Some(to) = sent_to {
        person.email = to.and_then(|to| Email::parse(to).ok());
    }
    let sent_with = delivery.and_then(|d| d.letters_fingerprint.as_deref());
    let warning = match sent_with {
        Some(fingerprint) if fingerprint != letters.fingerprint() => Some(format!(
            "{} ({} / {})",
            pages::words(language, "letters_changed").1,
            short(fingerprint),
            short(letters.fingerprint())
        )),
        _ => None,
    };
    Ok(match letters.render(&person) {
        Ok(letter) => LetterShown {
            subject: letter.subject,
            text: letter.text,
            warning,
        },
        Err(error) => LetterShown {
            subject: String::new(),
            text: String::new(),
            warning: Some(format!(
                "{}: {error}",
                pages::words(language, "letter_fails").1
            )),
        },
    })
}

fn short(fingerprint: &str) -> &str {
    fingerprint.get(..12).unwrap_or(fingerprint)
}

fn back_to_person(id: i64, outcome: Result<&str, &str>) -> Response {
    let target = match outcome {
        Ok(done) => format!("/person/{id}?done={done}"),
        Err(problem) => format!("/person/{id}?problem={problem}"),
    };
    Redirect::to(&target).into_response()
}

#[derive(serde::Deserialize)]
struct AddressForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    /// corrected | alternative
    #[serde(default)]
    kind: String,
}

async fn record_address(
    State(console): State<Shared>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<AddressForm>,
) -> Response {
    let signed = match session::require_action(&console, &headers, peer, &form.csrf).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let Ok(email) = Email::parse(&form.email) else {
        return back_to_person(id, Err("invalid_address"));
    };
    let alternative = form.kind == "alternative";
    match actions::new_address(&console, &signed, id, &email, alternative).await {
        Ok(true) => back_to_person(id, Ok("address")),
        Ok(false) => back_to_person(id, Err("busy")),
        Err(error) => internal_error(&console, &error),
    }
}

async fn record_paper_request(
    State(console): State<Shared>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let signed = match session::require_action(&console, &headers, peer, &form.csrf).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    match actions::paper_request(&console, &signed, id).await {
        Ok(true) => back_to_person(id, Ok("paper")),
        Ok(false) => back_to_person(id, Err("already_paper")),
        Err(error) => internal_error(&console, &error),
    }
}

#[derive(serde::Deserialize)]
struct NoteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    note: String,
}

/// A call note is free text, but bounded: it is about one call.
const MAX_NOTE_CHARS: usize = 2000;

async fn record_call_note(
    State(console): State<Shared>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<NoteForm>,
) -> Response {
    let signed = match session::require_action(&console, &headers, peer, &form.csrf).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let note = form.note.trim();
    let clean = note
        .chars()
        .all(|c| !c.is_control() || c == '\n' || c == '\r' || c == '\t');
    if note.is_empty() || note.chars().count() > MAX_NOTE_CHARS || !clean {
        return back_to_person(id, Err("invalid_note"));
    }
    match actions::call_note(&console, &signed, id, note).await {
        Ok(true) => back_to_person(id, Ok("note")),
        Ok(false) => refused_with(&console, StatusCode::NOT_FOUND, "no_such_person"),
        Err(error) => internal_error(&console, &error),
    }
}

async fn supervisor_page(
    State(console): State<Shared>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
) -> Response {
    let signed = match session::require(&console, &headers, peer).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    if !signed.adviser.supervisor {
        return refused_with(&console, StatusCode::FORBIDDEN, "supervisors_only");
    }
    match supervisor::figures(&console.pool, &console.config, &console.voice).await {
        Ok(figures) => html(
            StatusCode::OK,
            console.pages.supervisor(
                &console.voice,
                &signed,
                &figures,
                console.config.console.person_views_per_hour,
            ),
        ),
        Err(error) => internal_error(&console, &error),
    }
}

/// The advisers' actions: each one a transaction that writes its record and its event together.
mod actions {
    use super::*;
    use crate::store::ledger::{self, AdviserNote, NewGeneration};

    /// Records the address and starts a new generation to it. False when the letter is being
    /// sent right now (or changed state meanwhile): the adviser tries again in a moment.
    pub async fn new_address(
        console: &Console,
        signed: &Signed,
        id: i64,
        email: &Email,
        alternative: bool,
    ) -> anyhow::Result<bool> {
        let Some(row) = store::person_by_id(&console.pool, id).await? else {
            return Ok(false);
        };
        if row.state == DeliveryState::Sending || row.purged {
            return Ok(false);
        }
        let now = crate::db::now_ms();
        let which = if alternative {
            "alternative"
        } else {
            "corrected"
        };
        let login = &signed.adviser.login;
        let reason = format!("{which} address recorded at the helpline by adviser {login}");
        let mut tx = crate::db::begin_write(&console.pool).await?;
        store::set_person_email(&mut tx, id, email, alternative, now).await?;
        let generation = ledger::start_new_generation(
            &mut tx,
            &NewGeneration {
                person_id: id,
                from_state: row.state,
                email: email.as_str(),
                email_domain: email.domain(),
                reason: &reason,
            },
            console.run_id,
            now,
        )
        .await?;
        let Some(generation) = generation else {
            tx.rollback().await?;
            return Ok(false);
        };
        let note = AdviserNote::Address {
            generation,
            alternative,
            masked: &crate::export::mask_email(email.as_str()),
        };
        ledger::note_adviser(&mut tx, id, login, note, console.run_id, now).await?;
        tx.commit().await?;
        tracing::info!("console: adviser {login} recorded a {which} address for person {id}");
        Ok(true)
    }

    /// False when the person had already asked.
    pub async fn paper_request(
        console: &Console,
        signed: &Signed,
        id: i64,
    ) -> anyhow::Result<bool> {
        if store::person_by_id(&console.pool, id).await?.is_none() {
            return Ok(false);
        }
        let now = crate::db::now_ms();
        let login = &signed.adviser.login;
        let mut tx = crate::db::begin_write(&console.pool).await?;
        if !store::insert_paper_request(&mut tx, id, login, now).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        ledger::note_adviser(
            &mut tx,
            id,
            login,
            AdviserNote::PaperRequested,
            console.run_id,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn call_note(
        console: &Console,
        signed: &Signed,
        id: i64,
        note: &str,
    ) -> anyhow::Result<bool> {
        if store::person_by_id(&console.pool, id).await?.is_none() {
            return Ok(false);
        }
        let now = crate::db::now_ms();
        let login = &signed.adviser.login;
        let mut tx = crate::db::begin_write(&console.pool).await?;
        store::insert_call_note(&mut tx, id, login, note, now).await?;
        // The event says that a call was noted, not what was said: the note is erased by purge,
        // the evidence stays.
        ledger::note_adviser(
            &mut tx,
            id,
            login,
            AdviserNote::CallNoted,
            console.run_id,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}
