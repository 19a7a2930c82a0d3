//! Who is asking: logins (Argon2 password, or an authenticating proxy's header), the session
//! cookie, its expiry, and the CSRF token every action must carry.
//!
//! The cookie holds 32 random bytes; the database holds only their SHA-256, so a copy of the
//! database opens no session. It is `HttpOnly` and `SameSite=Strict` (and `Secure` behind HTTPS).
//! A session ends after `console.session_idle` without a request and after `console.session_max`
//! in any case.

use std::net::SocketAddr;

use axum::extract::connect_info::Connected;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::serve::IncomingStream;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::Console;
use crate::store::helpline::{self as store, Adviser};

const COOKIE: &str = "breachmail_session";

/// A session's expiry is pushed back when it would gain at least this much.
const EXTEND_EVERY_MS: i64 = 60_000;

/// The address a request came from (the proxy's, behind one).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, super::tls::TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, super::tls::TlsListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// A request from a logged-in adviser.
#[derive(Debug, Clone)]
pub struct Signed {
    pub adviser: Adviser,
    pub csrf_token: String,
    token_sha256: String,
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Compares without stopping at the first difference, so the time taken says nothing about how
/// much of a guessed token was right.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|value| value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn cookie(console: &Console, token: &str) -> HeaderValue {
    let secure = if console.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let max_age = console.config.console.session_max.as_secs();
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("breachmail_session=; Path=/"))
}

pub fn clearing_cookie() -> HeaderValue {
    HeaderValue::from_static("breachmail_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

fn to_login(expired: bool) -> Response {
    let target = if expired {
        "/login?expired=1"
    } else {
        "/login"
    };
    let mut response = Redirect::to(target).into_response();
    if expired {
        response
            .headers_mut()
            .insert(header::SET_COOKIE, clearing_cookie());
    }
    response
}

fn expiry(console: &Console, created_at: i64, now: i64) -> i64 {
    let settings = &console.config.console;
    let idle = now + settings.session_idle.as_millis() as i64;
    let cap = created_at + settings.session_max.as_millis() as i64;
    idle.min(cap)
}

/// The adviser behind this request, or the redirection to the login page.
pub async fn require(
    console: &Console,
    headers: &HeaderMap,
    peer: Peer,
) -> Result<Signed, Response> {
    let now = crate::db::now_ms();
    let failed = |error: anyhow::Error| super::internal_error(console, &error);
    if let Some(token) = session_cookie(headers) {
        let sha = token_sha256(&token);
        let session = store::live_session(&console.pool, &sha, now)
            .await
            .map_err(failed)?;
        let Some(session) = session else {
            return Err(to_login(true));
        };
        // Extended at most once a minute: a write per request would queue twenty advisers
        // behind each other for a minute's precision on a thirty-minute expiry.
        let extended = expiry(console, session.created_at, now);
        if extended - session.expires_at >= EXTEND_EVERY_MS {
            store::extend_session(&console.pool, &sha, now, extended)
                .await
                .map_err(failed)?;
        }
        return Ok(Signed {
            adviser: session.adviser,
            csrf_token: session.csrf_token,
            token_sha256: sha,
        });
    }
    if let Some(login) = proxy_login(console, headers, peer) {
        return proxy_session(console, &login, now).await;
    }
    Err(to_login(false))
}

/// [`require`], and the form's CSRF token must be the session's.
pub async fn require_action(
    console: &Console,
    headers: &HeaderMap,
    peer: Peer,
    csrf: &str,
) -> Result<Signed, Response> {
    let signed = require(console, headers, peer).await?;
    if csrf.is_empty() || !same_secret(csrf, &signed.csrf_token) {
        tracing::warn!(
            "console: an action by {} was refused: missing or wrong CSRF token",
            signed.adviser.login
        );
        return Err(super::refused_with(console, StatusCode::FORBIDDEN, "csrf"));
    }
    Ok(signed)
}

/// The login the proxy's header names, believed only from the addresses of
/// `console.trusted_proxies`: loopback too only when listed, since any process of the machine
/// can connect from there and set the header.
fn proxy_login(console: &Console, headers: &HeaderMap, peer: Peer) -> Option<String> {
    let settings = &console.config.console;
    let header = settings.proxy_header.as_deref()?;
    if !settings.trusted_proxies.contains(&peer.0.ip()) {
        return None;
    }
    headers
        .get(header)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

/// Behind the proxy the adviser is already authenticated: a session is opened for them (its CSRF
/// token protects their actions), and the browser is sent back to the page with its cookie.
async fn proxy_session(console: &Console, login: &str, now: i64) -> Result<Signed, Response> {
    let failed = |error: anyhow::Error| super::internal_error(console, &error);
    let adviser = store::adviser_by_login(&console.pool, login)
        .await
        .map_err(failed)?
        .filter(|a| !a.disabled);
    let Some(adviser) = adviser else {
        return Err(super::refused_with(
            console,
            StatusCode::FORBIDDEN,
            "unknown_adviser",
        ));
    };
    let token = random_token();
    let csrf = random_token();
    let sha = token_sha256(&token);
    store::insert_session(
        &console.pool,
        &sha,
        adviser.id,
        &csrf,
        now,
        expiry(console, now, now),
    )
    .await
    .map_err(failed)?;
    let mut response = Redirect::to("/").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie(console, &token));
    Err(response)
}

pub enum LoginOutcome {
    /// The cookie to set.
    LoggedIn(HeaderValue),
    Refused,
    /// Too many wrong passwords for this login or from this address: try again after this.
    Wait(std::time::Duration),
}

/// Checks the password (an unknown login is checked against a decoy hash, so it takes as long to
/// refuse as a wrong password) and opens a session.
pub async fn log_in(
    console: &Console,
    login: &str,
    password: &str,
    peer: Peer,
) -> anyhow::Result<LoginOutcome> {
    let login = login.trim();
    let address = peer.0.ip();
    if let Some(wait) = console.logins.wait(login, address) {
        tracing::warn!(
            "console: login for {login:?} from {address} slowed down: {} s to wait",
            wait.as_secs().max(1)
        );
        return Ok(LoginOutcome::Wait(wait));
    }
    let adviser = store::adviser_by_login(&console.pool, login)
        .await?
        .filter(|a| !a.disabled);
    let hash = adviser
        .as_ref()
        .and_then(|a| a.password_hash.clone())
        .unwrap_or_else(|| super::accounts::decoy_hash().to_owned());
    let password = password.to_owned();
    let matches =
        tokio::task::spawn_blocking(move || super::accounts::password_matches(&password, &hash))
            .await?;
    let Some(adviser) = adviser.filter(|a| matches && a.password_hash.is_some()) else {
        tracing::warn!("console: login refused for {login:?} from {address}");
        console.logins.failed(login, address);
        return Ok(LoginOutcome::Refused);
    };
    console.logins.succeeded(login, address);
    let now = crate::db::now_ms();
    let token = random_token();
    let csrf = random_token();
    store::insert_session(
        &console.pool,
        &token_sha256(&token),
        adviser.id,
        &csrf,
        now,
        expiry(console, now, now),
    )
    .await?;
    tracing::info!(
        "console: adviser {} logged in from {}",
        adviser.login,
        peer.0.ip()
    );
    Ok(LoginOutcome::LoggedIn(cookie(console, &token)))
}

pub async fn log_out(console: &Console, signed: &Signed) -> anyhow::Result<()> {
    store::end_session(&console.pool, &signed.token_sha256, crate::db::now_ms()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_well_formed_session_cookie_is_read() {
        let token = random_token();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; {COOKIE}={token}")).unwrap(),
        );
        assert_eq!(session_cookie(&headers), Some(token));
        let mut forged = HeaderMap::new();
        forged.insert(
            header::COOKIE,
            HeaderValue::from_static("breachmail_session=' OR 1=1 --"),
        );
        assert_eq!(session_cookie(&forged), None);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abcd", "abcd"));
        assert!(!same_secret("abcd", "abce"));
        assert!(!same_secret("abcd", "abc"));
        assert!(!same_secret("", "a"));
    }
}
