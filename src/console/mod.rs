//! `breachmail serve`: the helpline's web console. Advisers log in, find the caller (notice id,
//! e-mail address, ref, or last name and postcode), see the same timeline as `lookup` and the
//! letter the person was sent, and act: record a corrected or alternative address (a new
//! generation of the letter, through the ledger), note that they asked for a paper letter, write
//! down what the call was about. The supervisor's page counts the day's calls and the letters
//! still to go out.
//!
//! Safety first, since the console opens the very data that leaked: nothing but the login page is
//! served without a session; sessions expire (idle and absolute); every search and every page
//! opened is logged with who looked at whom; searches are rate-limited per adviser; every action
//! carries the session's CSRF token; pages are HTML escaped by the template engine, carry a strict
//! Content-Security-Policy and no script. It listens on loopback unless TLS or an authenticating
//! proxy's header is configured.

pub mod accounts;
mod pages;
mod session;
pub mod supervisor;
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
use crate::lookup::{self, Query as LookupQuery};
use crate::render::Letters;
use crate::store::helpline::{self as store, Access};
use crate::{Exit, UsageError};

use session::{Peer, Signed};

/// What every request handler shares.
pub struct Console {
    pool: SqlitePool,
    config: Config,
    letters: Option<Letters>,
    /// Why the letters could not be loaded, shown on the person's page instead of the letter.
    letters_error: Option<String>,
    pages: pages::Pages,
    searches: governor::DefaultKeyedRateLimiter<String>,
    logins: governor::DefaultKeyedRateLimiter<String>,
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

/// Builds the console on the campaign's database: letters loaded, rate limiters ready.
pub async fn build(config: &Config) -> anyhow::Result<Shared> {
    let pool = crate::db::open(&config.campaign.database, false).await?;
    let (letters, letters_error) = match Letters::load(config) {
        Ok(letters) => (Some(letters), None),
        Err(error) => (None, Some(format!("{error:#}"))),
    };
    let per_minute = NonZeroU32::new(config.console.searches_per_minute).unwrap_or(NonZeroU32::MIN);
    let logins_per_minute = NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN);
    let run_id = crate::db::start_run(&pool, "serve").await?;
    Ok(Arc::new(Console {
        pool,
        config: config.clone(),
        letters,
        letters_error,
        pages: pages::Pages::new()?,
        searches: governor::RateLimiter::keyed(governor::Quota::per_minute(per_minute)),
        logins: governor::RateLimiter::keyed(governor::Quota::per_minute(logins_per_minute)),
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
        .layer(axum::middleware::map_response(security_headers))
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
    let console = build(config).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("while listening on {addr}"))?;
    let local = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // The one line on stdout: scripts (and the tests) read the address from it.
    println!("listening on {scheme}://{local}");
    tracing::info!("helpline console on {scheme}://{local}");
    let app = router(console.clone()).into_make_service_with_connect_info::<Peer>();
    // On the signal, axum stops accepting, closes idle connections and lets the requests in
    // flight finish; a request that does not (one waiting for a database another process
    // holds, a client that stalls mid-request) is given up after a bounded wait.
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown_signal().await;
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
        crate::db::finish_run(&console.pool, console.run_id, "stopped", ""),
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

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// No page of the console may be framed, cached, sniffed, or run a script.
async fn security_headers(mut response: Response) -> Response {
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
    html(status, console.pages.message(title, message))
}

fn internal_error(console: &Console, error: &anyhow::Error) -> Response {
    tracing::error!("console: {error:#}");
    refused(
        console,
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The console could not answer; the error is in its log. Try again, or tell the operator.",
    )
}

async fn not_found(State(console): State<Shared>) -> Response {
    refused(
        &console,
        StatusCode::NOT_FOUND,
        "Not found",
        "No such page.",
    )
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
    html(StatusCode::OK, console.pages.search(&signed, None))
}

#[derive(serde::Deserialize)]
struct LoginQuery {
    expired: Option<String>,
}

async fn login_page(State(console): State<Shared>, Query(query): Query<LoginQuery>) -> Response {
    let notice = query
        .expired
        .is_some()
        .then_some("Your session has expired: log in again.");
    html(StatusCode::OK, console.pages.login(notice))
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
    match session::log_in(&console, &form.login, &form.password, peer).await {
        Ok(session::LoginOutcome::LoggedIn(cookie)) => {
            let mut response = Redirect::to("/").into_response();
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            response
        }
        Ok(session::LoginOutcome::Refused) => html(
            StatusCode::UNAUTHORIZED,
            console.pages.login(Some("Wrong login or password.")),
        ),
        Ok(session::LoginOutcome::TooMany) => html(
            StatusCode::TOO_MANY_REQUESTS,
            console
                .pages
                .login(Some("Too many attempts for this login: wait a minute.")),
        ),
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

#[derive(serde::Deserialize, Default)]
struct SearchQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    last_name: String,
    #[serde(default)]
    postcode: String,
}

/// What one search found, for its page.
pub struct Found {
    pub verdict: String,
    pub genuine: Option<bool>,
    pub people: Vec<store::PersonRow>,
}

async fn search(
    State(console): State<Shared>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    Query(query): Query<SearchQuery>,
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
        return refused(
            &console,
            StatusCode::TOO_MANY_REQUESTS,
            "Too many searches",
            "You have made many searches in a short time: wait a minute before the next one.",
        );
    }
    match run_search(&console, &signed, &query).await {
        Ok(found) => html(StatusCode::OK, console.pages.search(&signed, Some(&found))),
        Err(error) => internal_error(&console, &error),
    }
}

async fn run_search(
    console: &Console,
    signed: &Signed,
    query: &SearchQuery,
) -> anyhow::Result<Found> {
    let q = query.q.trim();
    let (kind, people, verdict, genuine) = if !q.is_empty() {
        let parsed = LookupQuery::parse(q);
        let people = lookup::find(&console.pool, &parsed).await?;
        let genuine = matches!(parsed, LookupQuery::NoticeId(_)).then_some(!people.is_empty());
        let verdict = lookup::verdict(&parsed, q, people.len());
        (parsed.kind(), people, verdict, genuine)
    } else if !query.last_name.trim().is_empty() && !query.postcode.trim().is_empty() {
        let people = store::people_by_name_postcode(
            &console.pool,
            query.last_name.trim(),
            query.postcode.trim(),
        )
        .await?;
        let verdict = match people.len() {
            0 => "no person with this last name in this postcode".to_owned(),
            1 => "one person found".to_owned(),
            n => format!("{n} people found"),
        };
        ("name_postcode", people, verdict, None)
    } else {
        return Ok(Found {
            verdict:
                "type a notice number, an e-mail address or a ref; or a last name and a postcode"
                    .to_owned(),
            genuine: None,
            people: Vec::new(),
        });
    };
    let ids: Vec<i64> = people.iter().map(|p| p.person_id).collect();
    store::log_access(
        &console.pool,
        Access {
            adviser: &signed.adviser.login,
            action: "search",
            query_kind: Some(kind),
        },
        &ids,
        crate::db::now_ms(),
    )
    .await?;
    Ok(Found {
        verdict,
        genuine,
        people,
    })
}

#[derive(serde::Deserialize, Default)]
struct PersonQuery {
    done: Option<String>,
    problem: Option<String>,
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
    match person_page(&console, &signed, id, &query).await {
        Ok(Some(page)) => html(StatusCode::OK, page),
        Ok(None) => refused(
            &console,
            StatusCode::NOT_FOUND,
            "Not found",
            "No such person.",
        ),
        Err(error) => internal_error(&console, &error),
    }
}

/// The letter as the person was sent it, rendered again, with a warning when the letters were
/// changed since.
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
    let Some(report) = lookup::report(&console.pool, Some(&row), &domain).await? else {
        return Ok(None);
    };
    store::log_access(
        &console.pool,
        Access {
            adviser: &signed.adviser.login,
            action: "view",
            query_kind: None,
        },
        &[id],
        crate::db::now_ms(),
    )
    .await?;
    let notes = store::call_notes(&console.pool, id).await?;
    let accesses = store::accesses_to(&console.pool, id).await?;
    let letter = letter_shown(console, id, report.delivery.as_ref()).await?;
    let flash = pages::Flash {
        done: query.done.as_deref(),
        problem: query.problem.as_deref(),
    };
    Ok(Some(console.pages.person(
        signed, &row, &report, &notes, &accesses, &letter, flash,
    )))
}

async fn letter_shown(
    console: &Console,
    id: i64,
    delivery: Option<&store::DeliveryRow>,
) -> anyhow::Result<LetterShown> {
    let Some(letters) = &console.letters else {
        return Ok(LetterShown {
            subject: String::new(),
            text: String::new(),
            warning: Some(format!(
                "The letters cannot be loaded, so the letter cannot be shown: {}",
                console.letters_error.as_deref().unwrap_or("unknown error")
            )),
        });
    };
    let Some(person) = store::person_for_letter(&console.pool, id).await? else {
        return Ok(LetterShown {
            subject: String::new(),
            text: String::new(),
            warning: Some("No such person.".to_owned()),
        });
    };
    let sent_with = delivery.and_then(|d| d.letters_fingerprint.as_deref());
    let warning = match sent_with {
        None => Some(
            "No letter has been sent to this person yet: this is the letter as it would go out now."
                .to_owned(),
        ),
        Some(fingerprint) if fingerprint != letters.fingerprint() => Some(format!(
            "The letters were changed after this one was sent (fingerprint {} then, {} now): the text below is today's wording, not necessarily what the person received.",
            short(fingerprint),
            short(letters.fingerprint())
        )),
        Some(_) => None,
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
            warning: Some(format!("The letter cannot be rendered: {error}")),
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
        Ok(false) => refused(
            &console,
            StatusCode::NOT_FOUND,
            "Not found",
            "No such person.",
        ),
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
        return refused(
            &console,
            StatusCode::FORBIDDEN,
            "Supervisors only",
            "This page is for the helpline's supervisors.",
        );
    }
    match supervisor::figures(&console.pool, &console.config).await {
        Ok(figures) => html(StatusCode::OK, console.pages.supervisor(&signed, &figures)),
        Err(error) => internal_error(&console, &error),
    }
}

/// The advisers' actions: each one a transaction that writes its record and its event together.
mod actions {
    use super::*;
    use crate::ledger::{self, Event, NewGeneration};

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
        ledger::append_event(
            &mut tx,
            Event {
                person_id: id,
                run_id: Some(console.run_id),
                kind: store::EVENT_ADDRESS_CORRECTED,
                from_state: None,
                to_state: None,
                generation: Some(generation),
                detail: Some(format!(
                    "adviser {login}: {which} address {}",
                    crate::export::mask_email(email.as_str())
                )),
            },
            now,
        )
        .await?;
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
        ledger::append_event(
            &mut tx,
            Event {
                person_id: id,
                run_id: Some(console.run_id),
                kind: store::EVENT_PAPER_REQUESTED,
                from_state: None,
                to_state: None,
                generation: None,
                detail: Some(format!("adviser {login}: asked for a paper letter")),
            },
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
        ledger::append_event(
            &mut tx,
            Event {
                person_id: id,
                run_id: Some(console.run_id),
                kind: store::EVENT_CALL_NOTE,
                from_state: None,
                to_state: None,
                generation: None,
                detail: Some(format!("adviser {login}: call noted")),
            },
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}
