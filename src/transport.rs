//! Where a finished message goes: an SMTP relay (one session per connection worker) or a folder
//! of `.eml` files. Both sit behind `Connection::deliver`, so `send` has one code path.
//!
//! The SMTP side drives lettre's `AsyncSmtpConnection` step by step (MAIL, RCPT, DATA, the
//! message) instead of its pooled transport: the step that failed decides the outcome. A failure
//! before the final dot means "not delivered"; a timeout or hang-up after it means "maybe
//! delivered", which the audit must flag as a possible duplicate when it is retried. Every step
//! is bounded by `smtp.timeout` here, because lettre's own timeout only covers the connect.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Quit, Rcpt, Rset, Starttls};
use lettre::transport::smtp::extension::{
    ClientId, Extension, MailBodyParameter, MailParameter, RcptParameter,
};
use secrecy::{ExposeSecret, SecretString};

use crate::config::{Config, Relay};
use crate::smtp_reply::{Scope, SmtpReply, Step};
pub use crate::tls::Refuser;

pub use crate::message::Outgoing;

mod readable;

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// 2xx after the final dot: the relay has it. The reply holds its queue id; `notify`: the
    /// relay was asked for delivery status notifications for it (RFC 3461).
    Accepted { reply: Reply, notify: bool },
    /// 4xx, or the connection broke before the final dot: try again later.
    Deferred {
        reply: Reply,
        /// Whom it concerns: this recipient only, its domain, or the relay (which also covers
        /// a session that broke before the message was complete).
        scope: Scope,
    },
    /// 5xx: the relay will never take it.
    Rejected { reply: Reply },
    /// Timeout or hang-up after the final dot: it may have been delivered.
    Unknown { reason: String },
    /// The relay could not be reached at all: nothing was attempted for this person.
    Unreachable { reason: String },
    /// The relay was reached but will not work as configured (login refused, no STARTTLS on a
    /// remote host, certificate not trusted): nothing was attempted, and retrying cannot help.
    /// `by` says whose refusal it was: our TLS settings, or the relay.
    Misconfigured { reason: String, by: Refuser },
    /// The run may no longer hand letters over (its sender lease lapsed, or was taken over):
    /// the transaction was abandoned before the bytes that would have committed the letter
    /// to the relay (the final dot, or BDAT LAST), so the relay did not take it.
    Withheld { reason: String },
}

/// What answered for a letter: the relay's reply as read, typed, or, where no reply decided
/// it, what did instead. `Display` writes what the ledger records (the relay's reply with its
/// step, see [`SmtpReply`]'s `Display`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The relay's reply: code, enhanced status code, step and text.
    Relay(SmtpReply),
    /// The session broke (a hang-up, a timeout) at `step`, before the message was complete
    /// and before the relay answered: the relay's trouble, not the recipient's.
    Broken { step: Step, reason: String },
    /// Refused here, before anything was sent: an envelope the relay cannot be given.
    Unsendable { reason: String },
    /// Written to the outbox folder under this file name.
    Written { file_name: String },
}

impl Reply {
    /// The relay's reply, when one decided the attempt.
    pub fn smtp(&self) -> Option<&SmtpReply> {
        match self {
            Reply::Relay(reply) => Some(reply),
            Reply::Broken { .. } | Reply::Unsendable { .. } | Reply::Written { .. } => None,
        }
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Relay(reply) => write!(f, "{reply}"),
            Reply::Broken { step, reason } => write!(f, "{}: {reason}", step.as_str()),
            Reply::Unsendable { reason } => f.write_str(reason),
            Reply::Written { file_name } => write!(f, "written to {file_name}"),
        }
    }
}

/// Asked immediately before the bytes that commit a letter to the relay (the final dot, or
/// `BDAT … LAST` with the message): false when the run may no longer hand letters over.
pub type MayCommit<'a> = &'a (dyn Fn() -> bool + Send + Sync);

fn withheld() -> Attempt {
    Attempt::Withheld {
        reason: "the sender lease lapsed before the final dot".into(),
    }
}

/// How to reach the relay, shared by every connection worker.
#[derive(Clone)]
pub struct Relayer {
    name: String,
    relay: Relay,
    timeout: Duration,
    credentials: Option<Login>,
    hello: ClientId,
    /// Where its keys are in the configuration (`smtp`, `relay[N]`), as errors name them.
    section: String,
    /// How this relay's certificate is verified ([`crate::tls`]); None for the outbox folder.
    tls: Option<Arc<crate::tls::TlsClient>>,
    /// Ask for delivery status notifications when the relay offers them.
    delivery_notifications: bool,
    /// What this relay's sessions offered in this run, shared by its connections.
    notifications_seen: Arc<NotificationsSeen>,
}

/// Whether a relay's sessions offered DSN (RFC 3461) during a run: set when a session opens.
#[derive(Debug, Default)]
struct NotificationsSeen {
    offered: std::sync::atomic::AtomicBool,
    not_offered: std::sync::atomic::AtomicBool,
}

/// What a run learnt of a relay's delivery status notifications, for the evidence and `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayNotifications {
    /// Its EHLO listed DSN (in every session of the run).
    pub offered: bool,
    /// Offered and asked for: each letter went with NOTIFY and ENVID.
    pub requested: bool,
}

impl std::fmt::Debug for Relayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password, not even its length.
        f.debug_struct("Relayer")
            .field("relay", &self.relay.to_string())
            .field("timeout", &self.timeout)
            .field("username", &self.credentials.as_ref().map(|l| &l.user))
            .finish()
    }
}

/// Reads the SMTP password from `BREACHMAIL_SMTP_PASSWORD`, or the file named by
/// `BREACHMAIL_SMTP_PASSWORD_FILE`. Never from the configuration file.
pub fn password_from_environment() -> Result<Option<SecretString>, crate::UsageError> {
    if let Ok(password) = std::env::var("BREACHMAIL_SMTP_PASSWORD")
        && !password.is_empty()
    {
        return Ok(Some(SecretString::from(password)));
    }
    if let Some(path) = std::env::var_os("BREACHMAIL_SMTP_PASSWORD_FILE") {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            crate::UsageError::new(format!(
                "BREACHMAIL_SMTP_PASSWORD_FILE: cannot read {}: {e}",
                Path::new(&path).display()
            ))
        })?;
        return Ok(Some(SecretString::from(
            text.trim_end_matches(['\r', '\n']).to_owned(),
        )));
    }
    Ok(None)
}

impl Relayer {
    /// The relay of `smtp.url` (the first of the `[[relay]]` entries when there are several).
    pub fn from_config(config: &Config) -> Result<Relayer, crate::UsageError> {
        Ok(Relayer::all(config)?.remove(0))
    }

    /// One per relay letters may go through, in the order of the configuration.
    pub fn all(config: &Config) -> Result<Vec<Relayer>, crate::UsageError> {
        let mut relayers = Vec::new();
        for entry in &config.relays {
            let password = match entry.password_variable.as_deref() {
                Some("BREACHMAIL_SMTP_PASSWORD") | None => password_from_environment()?,
                Some(variable) => std::env::var(variable)
                    .ok()
                    .filter(|p| !p.is_empty())
                    .map(SecretString::from),
            };
            let credentials = match (&entry.username, password) {
                (Some(user), Some(password)) => Some(Login {
                    user: user.clone(),
                    password: Arc::new(password),
                    variable: entry
                        .password_variable
                        .clone()
                        .unwrap_or_else(|| "BREACHMAIL_SMTP_PASSWORD".to_owned()),
                }),
                (Some(_), None) => {
                    return Err(crate::UsageError::new(format!(
                        "the relay {} has a username but {} is not set: set the password in the environment",
                        entry.name,
                        entry
                            .password_variable
                            .as_deref()
                            .unwrap_or("BREACHMAIL_SMTP_PASSWORD")
                    )));
                }
                (None, _) => None,
            };
            if credentials.is_some() && matches!(entry.relay, Relay::File(_)) {
                tracing::warn!(
                    "smtp.username is set but the transport is file://: no login happens"
                );
            }
            let tls = match &entry.relay {
                Relay::Smtp { host, .. } | Relay::Smtps { host, .. } => {
                    Some(Arc::new(crate::tls::TlsClient::new(
                        host,
                        &entry.tls,
                        &entry.section,
                        &format!("the relay {}", entry.relay),
                    )?))
                }
                Relay::File(_) => None,
            };
            relayers.push(Relayer {
                name: entry.name.clone(),
                relay: entry.relay.clone(),
                timeout: config.smtp.timeout,
                credentials,
                hello: ClientId::default(),
                tls,
                section: entry.section.clone(),
                delivery_notifications: entry.delivery_notifications,
                notifications_seen: Arc::default(),
            });
        }
        if relayers.is_empty() {
            return Err(crate::UsageError::new("no relay is configured"));
        }
        Ok(relayers)
    }

    /// Whether this relay's sessions offered delivery status notifications in this run, and
    /// whether they were asked for; None when no session was opened.
    pub fn notifications(&self) -> Option<RelayNotifications> {
        use std::sync::atomic::Ordering::Relaxed;
        let seen = &self.notifications_seen;
        let (yes, no) = (seen.offered.load(Relaxed), seen.not_offered.load(Relaxed));
        if !yes && !no {
            return None;
        }
        // A relay whose sessions disagreed (a pool of servers behind one name) cannot be
        // counted on to confirm every letter.
        let offered = yes && !no;
        Some(RelayNotifications {
            offered,
            requested: offered && self.delivery_notifications,
        })
    }

    /// How the database names this relay (`host:port`).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn relay(&self) -> &Relay {
        &self.relay
    }

    /// A connection that is not opened until the first message.
    pub fn connection(&self) -> Connection {
        match &self.relay {
            Relay::File(dir) => Connection::File(dir.clone()),
            _ => Connection::Smtp {
                relayer: self.clone(),
                session: None,
            },
        }
    }

    /// TLS over a connected socket, the certificate verified as [`crate::tls`] says.
    async fn handshake(
        &self,
        tcp: tokio::net::TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, Attempt> {
        let Some(tls) = &self.tls else {
            return Err(Attempt::Misconfigured {
                reason: "not an SMTP relay".into(),
                by: Refuser::Us,
            });
        };
        let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
        match tokio::time::timeout(self.timeout, connector.connect(tls.name.clone(), tcp)).await {
            Ok(Ok(tls)) => Ok(tls),
            Ok(Err(e)) => Err(
                match tls.explain(&e, &format!("the relay {}", self.relay)) {
                    Some((reason, by)) => Attempt::Misconfigured { reason, by },
                    None => Attempt::Unreachable {
                        reason: format!("TLS with {} failed: {e}", self.relay),
                    },
                },
            ),
            Err(_) => Err(Attempt::Unreachable {
                reason: format!(
                    "TLS with {}: no answer within {}s",
                    self.relay,
                    self.timeout.as_secs_f32()
                ),
            }),
        }
    }

    /// STARTTLS (RFC 3207): the command over the clear session, then TLS over its socket, then
    /// a new session over TLS, which sends EHLO again, so that the extensions and login
    /// mechanisms read are the ones offered under TLS. Whatever the clear session had read
    /// beyond the `220` is dropped with it, never taken as said under TLS (the command injection
    /// of CVE-2011-0411).
    async fn starttls(
        &self,
        mut clear: AsyncSmtpConnection,
        wire: &readable::Wire,
    ) -> Result<AsyncSmtpConnection, Attempt> {
        let failed = |e: &StepError| {
            classify_open_error(e, format!("STARTTLS with {} failed: {e}", self.relay))
        };
        bounded(self.timeout, clear.command(Starttls))
            .await
            .map_err(|e| failed(&e))?;
        drop(clear);
        let tcp = wire.take_clear().ok_or_else(|| Attempt::Unreachable {
            reason: format!("STARTTLS with {}: the session broke", self.relay),
        })?;
        let tls = self.handshake(tcp).await?;
        let readable =
            readable::ReadableReplies::primed(readable::Wire::tls(tls), "220 TLS started");
        bounded(
            self.timeout,
            AsyncSmtpConnection::connect_with_transport(Box::new(readable), &self.hello),
        )
        .await
        .map_err(|e| failed(&e))
    }

    /// Opens a session: TCP (or TLS), EHLO, STARTTLS when offered (required unless loopback),
    /// AUTH (only over TLS).
    ///
    /// TLS is ours (tokio-rustls), not lettre's, so that the relay's replies are made readable
    /// above it ([`readable`]) as they are on a clear session: lettre upgrades only the stream it
    /// was given, under anything that sits between it and the socket.
    async fn open(&self) -> Result<Session, Attempt> {
        let unreachable = |reason: String| Attempt::Unreachable { reason };
        let ours = |reason: String| Attempt::Misconfigured {
            reason,
            by: Refuser::Us,
        };
        let (host, port, implicit_tls) = match &self.relay {
            Relay::Smtp { host, port } => (host.as_str(), *port, false),
            Relay::Smtps { host, port } => (host.as_str(), *port, true),
            Relay::File(_) => return Err(ours("not an SMTP relay".into())),
        };
        let loopback = self.relay.is_loopback();
        // Our own socket, to switch Nagle's algorithm off: SMTP is a conversation of small
        // writes, and Nagle plus delayed ACKs would add 40 ms to every message.
        let tcp = tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect((host, port)))
            .await
            .map_err(|_| {
                unreachable(format!(
                    "cannot connect to {}: no answer within {}s",
                    self.relay,
                    self.timeout.as_secs_f32()
                ))
            })?
            .map_err(|e| unreachable(format!("cannot connect to {}: {e}", self.relay)))?;
        let _ = tcp.set_nodelay(true);
        let (mut session, encrypted) = if implicit_tls {
            let tls = self.handshake(tcp).await?;
            let readable = readable::ReadableReplies::new(readable::Wire::tls(tls));
            let greet =
                AsyncSmtpConnection::connect_with_transport(Box::new(readable), &self.hello);
            let session = bounded(self.timeout, greet).await.map_err(|e| {
                classify_open_error(&e, format!("{} did not greet: {e}", self.relay))
            })?;
            (session, true)
        } else {
            let wire = readable::Wire::clear(tcp);
            let readable = readable::ReadableReplies::new(wire.clone());
            let greet =
                AsyncSmtpConnection::connect_with_transport(Box::new(readable), &self.hello);
            let session = bounded(self.timeout, greet).await.map_err(|e| {
                classify_open_error(&e, format!("{} did not greet: {e}", self.relay))
            })?;
            match encryption_step(false, session.can_starttls(), loopback) {
                EncryptionStep::AlreadyEncrypted | EncryptionStep::StayInClear => (session, false),
                EncryptionStep::StartTls => (self.starttls(session, &wire).await?, true),
                EncryptionStep::Refuse => {
                    return Err(ours(format!(
                        "{} does not offer STARTTLS: refusing to send personal data in clear to a host that is not loopback",
                        self.relay
                    )));
                }
            }
        };
        let offers = learn_extensions(self.timeout, &self.hello, &mut session).await;
        self.note_offers(&offers);
        if let Some(login) = &self.credentials {
            self.log_in(&mut session, login, encrypted).await?;
        }
        Ok(Session {
            smtp: session,
            pipelining: offers.pipelining,
            chunking: offers.chunking,
            notify: offers.dsn && self.delivery_notifications,
            ahead: None,
        })
    }
}

impl Relayer {
    fn note_offers(&self, offers: &Offers) {
        use std::sync::atomic::Ordering::Relaxed;
        let seen = &self.notifications_seen;
        if offers.dsn {
            if !seen.offered.swap(true, Relaxed) && self.delivery_notifications {
                tracing::info!(relay = %self.name, "the relay offers delivery status notifications: asking for them");
            }
        } else if !seen.not_offered.swap(true, Relaxed) {
            tracing::warn!(relay = %self.name, "the relay does not offer delivery status notifications (DSN): its letters stay `sent`, no provider's acceptance will be known");
        }
    }

    /// AUTH PLAIN or LOGIN, only inside TLS. A refused login is the configuration's fault (the
    /// user name or the password): no retry mends it, so it stops the run, naming the keys.
    async fn log_in(
        &self,
        session: &mut AsyncSmtpConnection,
        login: &Login,
        encrypted: bool,
    ) -> Result<(), Attempt> {
        let user = &login.user;
        let keys = format!("{}.username ({user}) and {}", self.section, login.variable);
        if !may_log_in(encrypted) {
            return Err(Attempt::Misconfigured {
                reason: format!(
                    "the relay {} does not offer STARTTLS: refusing to send the password of {user} unencrypted (the login only ever travels inside TLS); use smtps://, or turn TLS on at the relay",
                    self.relay
                ),
                by: Refuser::Us,
            });
        }
        let mechanisms = [Mechanism::Plain, Mechanism::Login];
        if session
            .server_info()
            .get_auth_mechanism(&mechanisms)
            .is_none()
        {
            return Err(Attempt::Misconfigured {
                reason: format!(
                    "the relay {} offers no login (AUTH PLAIN or LOGIN) over TLS, and {}.username is set: remove it if the relay needs no login, or have the relay's administrator enable authentication",
                    self.relay, self.section
                ),
                by: Refuser::Server,
            });
        }
        let credentials = Credentials::new(user.clone(), login.password.expose_secret().to_owned());
        bounded(self.timeout, session.auth(&mechanisms, &credentials))
            .await
            .map(|_| ())
            .map_err(|e| match e.reply_code() {
                Some(500..=599) => Attempt::Misconfigured {
                    reason: format!(
                        "the relay {} refused the login: {}; check {keys}",
                        self.relay,
                        e.smtp_reply(Step::Login)
                            .map_or_else(|| e.to_string(), |r| r.to_string())
                    ),
                    by: Refuser::Server,
                },
                _ => Attempt::Unreachable {
                    reason: format!("logging in to {} as {user}: {e}", self.relay),
                },
            })
    }
}

/// Who logs in to a relay: the user name, the password (from the environment), and the
/// variable it came from, for the errors.
#[derive(Clone)]
struct Login {
    user: String,
    password: Arc<SecretString>,
    variable: String,
}

/// What a freshly greeted session must do before it carries a letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EncryptionStep {
    /// `smtps://`: TLS from the first byte.
    AlreadyEncrypted,
    /// The relay offers STARTTLS: always take it, loopback or not.
    StartTls,
    /// No STARTTLS on loopback (a local relay on the same machine): nothing crosses a network.
    StayInClear,
    /// No STARTTLS on a host that is not loopback: personal data would cross the network in
    /// clear, so the session is refused. There is no option to allow it.
    Refuse,
}

fn encryption_step(implicit_tls: bool, offers_starttls: bool, loopback: bool) -> EncryptionStep {
    match (implicit_tls, offers_starttls, loopback) {
        (true, _, _) => EncryptionStep::AlreadyEncrypted,
        (false, true, _) => EncryptionStep::StartTls,
        (false, false, true) => EncryptionStep::StayInClear,
        (false, false, false) => EncryptionStep::Refuse,
    }
}

/// The password goes only over TLS, loopback or not.
fn may_log_in(encrypted: bool) -> bool {
    encrypted
}

/// Runs one SMTP step within the timeout, folding a timeout into lettre's error shape.
async fn bounded<T>(
    timeout: Duration,
    step: impl std::future::Future<Output = Result<T, lettre::transport::smtp::Error>>,
) -> Result<T, StepError> {
    match tokio::time::timeout(timeout, step).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(StepError::Smtp(e)),
        Err(_) => Err(StepError::Timeout(timeout)),
    }
}

#[derive(Debug)]
enum StepError {
    Smtp(lettre::transport::smtp::Error),
    Timeout(Duration),
    /// A pipelined reply not read because an earlier one never came.
    NoReply,
}

/// A TLS failure (untrusted certificate, wrong name) is configuration, not weather.
fn classify_open_error(error: &StepError, reason: String) -> Attempt {
    match error {
        StepError::Smtp(e) if is_tls_failure(e) => Attempt::Misconfigured {
            reason,
            by: Refuser::Us,
        },
        _ => Attempt::Unreachable { reason },
    }
}

/// A failed handshake (e.g. "invalid peer certificate: UnknownIssuer") comes as an `io::Error`
/// with rustls' error inside it, possibly further down a chain of errors. Retrying
/// cannot mend it, so it must not look like a relay that is merely down.
fn is_tls_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<tokio_rustls::rustls::Error>() {
            return true;
        }
        // `io::Error::source` skips the error it wraps: look inside it explicitly.
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.is::<tokio_rustls::rustls::Error>())
        {
            return true;
        }
        current = error.source();
    }
    false
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepError::Smtp(e) => write!(f, "{e}"),
            StepError::Timeout(d) => write!(f, "no answer within {}s", d.as_secs_f32()),
            StepError::NoReply => f.write_str("the session broke before this reply"),
        }
    }
}

impl StepError {
    /// The relay's refusal, read once into its type: "550 5.1.1 User unknown" at RCPT TO.
    /// lettre keeps a refusal's code as `status()` and the reply's lines, joined, as the
    /// error's source.
    fn smtp_reply(&self, step: Step) -> Option<SmtpReply> {
        let StepError::Smtp(error) = self else {
            return None;
        };
        let code = u16::from(error.status()?);
        let text = std::error::Error::source(error).map_or_else(String::new, |s| s.to_string());
        Some(SmtpReply::new(step, code, &text))
    }

    /// An SMTP reply (as opposed to a broken connection or a timeout).
    fn reply_code(&self) -> Option<u16> {
        match self {
            StepError::Smtp(e) => e.status().map(u16::from),
            StepError::Timeout(_) | StepError::NoReply => None,
        }
    }
}

/// One connection worker's link to where messages go.
pub enum Connection {
    Smtp {
        relayer: Relayer,
        session: Option<Box<Session>>,
    },
    File(PathBuf),
}

/// An open relay session and what its EHLO offered beyond what lettre reads.
pub struct Session {
    smtp: AsyncSmtpConnection,
    /// RFC 2920: the envelope goes in one write, its replies are read together.
    pipelining: bool,
    /// RFC 3030: the message goes as one `BDAT n LAST` chunk, in the same write as the envelope.
    chunking: bool,
    /// RFC 3461: the relay offers DSN and the setting asks for it: each envelope carries
    /// `RET=HDRS ENVID=` and `NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=`.
    notify: bool,
    /// The letter whose envelope (MAIL, RCPT, DATA) went behind the last message's final dot,
    /// its three replies not read yet (by its `file_name`, unique per person and generation).
    /// RFC 2920 § 3.1 lets a message be the first "command" of a group: one round trip a letter
    /// instead of two. After DATA's 354 the relay reads everything as the message, so a session
    /// with an envelope ahead is closed without QUIT: a message without its final dot is never
    /// delivered (RFC 5321 § 4.1.1.4).
    ahead: Option<String>,
}

impl Connection {
    /// Hands one message over and says what became of it. Never panics, never returns early
    /// without a verdict: every claimed delivery gets exactly one outcome.
    ///
    /// `next`, the letter this connection will carry after this one, lets its envelope go in
    /// the same write as this message (see [`Session::ahead`]); nothing of its message goes.
    /// The next call must then be for that letter, or the session is dropped.
    ///
    /// `may_commit` is asked immediately before the bytes that commit the letter (see
    /// [`MayCommit`]); when it says no, the transaction is abandoned (the session closed,
    /// without the final dot) and the attempt is [`Attempt::Withheld`].
    pub async fn deliver(
        &mut self,
        message: &Outgoing,
        next: Option<&Outgoing>,
        may_commit: MayCommit<'_>,
    ) -> Attempt {
        match self {
            Connection::File(dir) => {
                if !may_commit() {
                    return withheld();
                }
                deliver_to_folder(dir, message).await
            }
            Connection::Smtp { relayer, session } => {
                deliver_over_smtp(relayer, session, message, next, may_commit).await
            }
        }
    }

    /// Says goodbye politely; errors do not matter any more. A session with an envelope ahead
    /// may be in the middle of a message: it is closed without a word, and that letter is not
    /// delivered.
    pub async fn close(&mut self) {
        if let Connection::Smtp {
            relayer,
            session: Some(session),
        } = self
            && session.ahead.is_none()
        {
            let _ = tokio::time::timeout(relayer.timeout, session.smtp.command(Quit)).await;
        }
    }
}

/// Writes a message into a folder as `message.file_name`, owner-only (the folder too): the
/// `file://` transport and `preview` alike. Returns the file's name.
pub fn write_to_folder(dir: &Path, message: &Outgoing) -> std::io::Result<String> {
    crate::files::create_private_dir(dir)?;
    crate::files::write_private(&dir.join(&message.file_name), &message.bytes)?;
    Ok(message.file_name.clone())
}

async fn deliver_to_folder(dir: &Path, message: &Outgoing) -> Attempt {
    let (dir, message) = (dir.to_path_buf(), message.clone());
    let written = tokio::task::spawn_blocking(move || write_to_folder(&dir, &message)).await;
    match written {
        Ok(Ok(file_name)) => Attempt::Accepted {
            reply: Reply::Written { file_name },
            notify: false,
        },
        Ok(Err(e)) => Attempt::Unreachable {
            reason: format!("cannot write to the outbox: {e}"),
        },
        Err(e) => Attempt::Unreachable {
            reason: format!("cannot write to the outbox: {e}"),
        },
    }
}

async fn deliver_over_smtp(
    relayer: &Relayer,
    session: &mut Option<Box<Session>>,
    message: &Outgoing,
    next: Option<&Outgoing>,
    may_commit: MayCommit<'_>,
) -> Attempt {
    // A session the relay closed (or that broke on the last message) is replaced, and so is
    // one whose envelope ahead is another letter's (it cannot be taken back).
    if session.as_ref().is_some_and(|s| {
        s.smtp.has_broken() || s.ahead.as_ref().is_some_and(|a| *a != message.file_name)
    }) {
        *session = None;
    }
    if session.is_none() {
        match relayer.open().await {
            Ok(opened) => *session = Some(Box::new(opened)),
            Err(attempt) => return attempt,
        }
    }
    let Some(open) = session.as_mut() else {
        return Attempt::Unreachable {
            reason: "no session".into(),
        };
    };
    let Verdict {
        attempt,
        in_step,
        open_transaction,
    } = transaction(relayer.timeout, open, message, next, may_commit).await;
    let mut attempt = attempt;
    if let Attempt::Accepted { notify, .. } = &mut attempt {
        *notify = open.notify;
    }
    // A refused recipient (or a refused DATA after it) leaves the transaction open: without
    // RSET the next MAIL would be "nested" (503) and the next person refused for nothing. After
    // the final dot the relay has closed the transaction itself, whatever it answered.
    let reset = async |open: &mut Session| {
        !open_transaction
            || bounded(relayer.timeout, open.smtp.command(Rset))
                .await
                .is_ok()
    };
    let keep = match &attempt {
        Attempt::Accepted { .. } => in_step,
        Attempt::Rejected { .. } => in_step && reset(open).await,
        // After a 4xx the session may still be fine, but a relay that asks us to slow down
        // usually closes it; a clean RSET tells which.
        Attempt::Deferred { scope, .. } => in_step && *scope != Scope::Relay && reset(open).await,
        // A withheld letter's transaction may be past DATA's 354: only closing the session
        // without the final dot ends it without delivering.
        Attempt::Unknown { .. }
        | Attempt::Unreachable { .. }
        | Attempt::Misconfigured { .. }
        | Attempt::Withheld { .. } => false,
    };
    if !keep {
        *session = None;
    }
    attempt
}

/// What a relay's EHLO offered beyond what lettre reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Offers {
    pipelining: bool,
    /// Used only with PIPELINING: alone it saves nothing.
    chunking: bool,
    /// RFC 3461 delivery status notifications.
    dsn: bool,
}

/// lettre keeps only the extensions it uses; PIPELINING, CHUNKING and DSN are read from a
/// second EHLO (RFC 5321 allows it at any time; it is sent before AUTH, so no relay can take it
/// as the end of the login). A relay that does not answer it is used without them.
async fn learn_extensions(
    timeout: Duration,
    hello: &ClientId,
    smtp: &mut AsyncSmtpConnection,
) -> Offers {
    let Ok(reply) = bounded(timeout, smtp.command(Ehlo::new(hello.clone()))).await else {
        return Offers::default();
    };
    let lines: Vec<&str> = reply.message().collect();
    offers_of(&lines)
}

/// Reads the keywords of an EHLO reply's lines.
fn offers_of(lines: &[&str]) -> Offers {
    let offers = |name: &str| {
        lines.iter().any(|line| {
            line.split_whitespace()
                .next()
                .is_some_and(|keyword| keyword.eq_ignore_ascii_case(name))
        })
    };
    let pipelining = offers("PIPELINING");
    Offers {
        pipelining,
        chunking: pipelining && offers("CHUNKING"),
        dsn: offers("DSN"),
    }
}

/// The envelope of one letter, checked, with the MAIL and RCPT parameters it needs.
struct Envelope {
    from: Option<lettre::Address>,
    to: lettre::Address,
    parameters: Vec<MailParameter>,
    rcpt_parameters: Vec<RcptParameter>,
}

impl Envelope {
    fn mail(&self) -> Mail {
        Mail::new(self.from.clone(), self.parameters.clone())
    }

    fn rcpt(&self) -> Rcpt {
        Rcpt::new(self.to.clone(), self.rcpt_parameters.clone())
    }
}

/// RFC 3461 parameters: the headers only come back in a notification (`RET=HDRS`: never the
/// letter, which holds personal data), the notice id as the envelope id, and every outcome
/// asked for. lettre xtext-encodes the values (RFC 3461 § 4: `+` and `=` and what is not
/// printable ASCII as `+XX`). ORCPT is left out for an address outside ASCII: its `rfc822`
/// type cannot carry one, and the VERP token matches the notification anyway.
fn notification_parameters(message: &Outgoing) -> (Vec<MailParameter>, Vec<RcptParameter>) {
    let mail = vec![
        MailParameter::Other {
            keyword: "RET".into(),
            value: Some("HDRS".into()),
        },
        MailParameter::Other {
            keyword: "ENVID".into(),
            value: Some(message.notice_id.clone()),
        },
    ];
    let mut rcpt = vec![RcptParameter::Other {
        keyword: "NOTIFY".into(),
        value: Some("SUCCESS,FAILURE,DELAY".into()),
    }];
    if message.recipient.is_ascii() {
        rcpt.push(RcptParameter::Other {
            keyword: "ORCPT".into(),
            value: Some(format!("rfc822;{}", message.recipient)),
        });
    }
    (mail, rcpt)
}

fn envelope_of(
    smtp: &AsyncSmtpConnection,
    notify: bool,
    message: &Outgoing,
) -> Result<Envelope, Attempt> {
    let (Ok(from), Ok(to)) = (
        message.envelope_from.parse::<lettre::Address>(),
        message.recipient.parse::<lettre::Address>(),
    ) else {
        return Err(Attempt::Rejected {
            reply: Reply::Unsendable {
                reason: format!("invalid envelope address for {}", message.recipient),
            },
        });
    };
    let mut parameters = Vec::new();
    if !message.recipient.is_ascii() || !message.envelope_from.is_ascii() {
        if !smtp.server_info().supports_feature(Extension::SmtpUtfEight) {
            return Err(Attempt::Rejected {
                reply: Reply::Unsendable {
                    reason: "the address needs SMTPUTF8, which the relay does not offer".into(),
                },
            });
        }
        parameters.push(MailParameter::SmtpUtfEight);
    }
    if !message.bytes.is_ascii() && smtp.server_info().supports_feature(Extension::EightBitMime) {
        parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    let mut rcpt_parameters = Vec::new();
    if notify {
        let (mail, rcpt) = notification_parameters(message);
        parameters.extend(mail);
        rcpt_parameters = rcpt;
    }
    Ok(Envelope {
        from: Some(from),
        to,
        parameters,
        rcpt_parameters,
    })
}

/// What one transaction came to, and what it left of the session.
struct Verdict {
    attempt: Attempt,
    /// Every reply the session was owed was read: it can carry the next letter.
    in_step: bool,
    /// A refusal before the final dot: the relay still holds the transaction, RSET ends it.
    open_transaction: bool,
}

impl Verdict {
    fn before_final_dot(attempt: Attempt, in_step: bool) -> Verdict {
        Verdict {
            attempt,
            in_step,
            open_transaction: true,
        }
    }

    /// Abandoned before the final dot: the session is dropped (mid-message after DATA's 354,
    /// only closing it ends the transaction without delivering).
    fn withheld() -> Verdict {
        Verdict {
            attempt: withheld(),
            in_step: false,
            open_transaction: false,
        }
    }

    fn after_final_dot(attempt: Attempt) -> Verdict {
        Verdict {
            attempt,
            in_step: true,
            open_transaction: false,
        }
    }
}

/// MAIL, RCPT, DATA, message: the step that failed says what it means. Pipelined when the
/// relay offers it, the next letter's envelope behind the message; in one write with the
/// message when it offers CHUNKING too.
async fn transaction(
    timeout: Duration,
    session: &mut Session,
    message: &Outgoing,
    next: Option<&Outgoing>,
    may_commit: MayCommit<'_>,
) -> Verdict {
    let text = std::str::from_utf8(&message.bytes).ok();
    if session.ahead.take().is_some() {
        // Its envelope went behind the last message (only UTF-8 letters go ahead, and the
        // caller checked it is this one): its replies are waiting to be read.
        if let Some(text) = text {
            return pipelined(timeout, session, None, text, next, may_commit).await;
        }
    }
    let envelope = match envelope_of(&session.smtp, session.notify, message) {
        Ok(envelope) => envelope,
        Err(refused) => {
            return Verdict {
                attempt: refused,
                in_step: true,
                open_transaction: false,
            };
        }
    };
    match (session.pipelining, session.chunking, text) {
        (true, true, Some(text)) => {
            chunked(timeout, &mut session.smtp, envelope, text, may_commit).await
        }
        (true, _, Some(text)) => {
            pipelined(timeout, session, Some(envelope), text, next, may_commit).await
        }
        _ => one_by_one(timeout, &mut session.smtp, envelope, message, may_commit).await,
    }
}

/// One command, one reply: for relays without PIPELINING (and the rare message that is not
/// UTF-8).
async fn one_by_one(
    timeout: Duration,
    smtp: &mut AsyncSmtpConnection,
    envelope: Envelope,
    message: &Outgoing,
    may_commit: MayCommit<'_>,
) -> Verdict {
    let steps: [(Step, Box<dyn std::fmt::Display + Send>); 3] = [
        (Step::MailFrom, Box::new(envelope.mail())),
        (Step::RcptTo, Box::new(envelope.rcpt())),
        (Step::Data, Box::new(Data)),
    ];
    for (step, command) in steps {
        if let Err(error) = bounded(timeout, smtp.command(command)).await {
            return Verdict::before_final_dot(
                before_final_dot(step, &error),
                error.reply_code().is_some(),
            );
        }
    }
    // The message and its final dot in one write (see `data_payload`).
    let sent = match std::str::from_utf8(&message.bytes) {
        Ok(text) => {
            let payload = data_payload(text, "");
            if !may_commit() {
                return Verdict::withheld();
            }
            bounded(timeout, smtp.command(payload)).await
        }
        Err(_) => {
            if !may_commit() {
                return Verdict::withheld();
            }
            bounded(timeout, smtp.message(&message.bytes)).await
        }
    };
    Verdict::after_final_dot(after_final_dot(sent))
}

/// MAIL, RCPT and DATA as one group (RFC 2920).
fn envelope_group(envelope: Envelope) -> String {
    format!("{}{}{}", envelope.mail(), envelope.rcpt(), Data)
}

/// RFC 2920: MAIL, RCPT and DATA in one write, their three replies read together, then the
/// message once DATA said 354, with the next letter's envelope behind its final dot. One round
/// trip a letter while the letters keep coming, two for the first. `envelope` is None when this
/// letter's envelope already went ahead.
async fn pipelined(
    timeout: Duration,
    session: &mut Session,
    envelope: Option<Envelope>,
    text: &str,
    next: Option<&Outgoing>,
    may_commit: MayCommit<'_>,
) -> Verdict {
    let steps = [Step::MailFrom, Step::RcptTo, Step::Data];
    let replies = read_replies(
        timeout,
        &mut session.smtp,
        envelope.map(envelope_group),
        &steps,
    )
    .await;
    if let Some(refusal) = first_refusal(&replies) {
        // Every reply of the group was read (or the session is dropped): nothing was sent.
        return refusal;
    }
    let ahead = next.and_then(|next| {
        std::str::from_utf8(&next.bytes).ok()?;
        let envelope = envelope_of(&session.smtp, session.notify, next).ok()?;
        Some((next.file_name.clone(), envelope_group(envelope)))
    });
    let then = ahead.as_ref().map_or("", |(_, group)| group.as_str());
    let payload = data_payload(text, then);
    // The replies above may have taken long (a slow relay, a frozen process): the lease is
    // asked again, last, before the final dot.
    if !may_commit() {
        return Verdict::withheld();
    }
    let sent = bounded(timeout, session.smtp.command(payload)).await;
    // The relay answered the message, so it read on: the envelope's replies come next. Without
    // an answer the session is dropped, and the envelope with it.
    if sent
        .as_ref()
        .map_or_else(|e| e.reply_code().is_some(), |_| true)
    {
        session.ahead = ahead.map(|(file_name, _)| file_name);
    }
    Verdict::after_final_dot(after_final_dot(sent))
}

/// RFC 3030 with RFC 2920: MAIL, RCPT and `BDAT n LAST` with the message, in one write; the
/// three replies read together. One round trip a letter. The message is written before any
/// reply is read, so a missing reply may hide a delivery: it is an unknown outcome.
async fn chunked(
    timeout: Duration,
    smtp: &mut AsyncSmtpConnection,
    envelope: Envelope,
    text: &str,
    may_commit: MayCommit<'_>,
) -> Verdict {
    // The same bytes as DATA carries (the message and the CRLF before the final dot), so both
    // ways deliver the same message.
    let commands = format!(
        "{}{}BDAT {} LAST\r\n",
        envelope.mail(),
        envelope.rcpt(),
        text.len() + 2,
    );
    let mut group = String::with_capacity(commands.len() + text.len() + 2);
    group.push_str(&commands);
    group.push_str(text);
    group.push_str("\r\n");
    // Envelope and message go in one write: nothing of this letter has left yet.
    if !may_commit() {
        return Verdict::withheld();
    }
    let replies = read_replies(
        timeout,
        smtp,
        Some(group),
        &[Step::MailFrom, Step::RcptTo, Step::Message],
    )
    .await;
    let [mail, rcpt, last] = replies;
    match (&mail, &rcpt) {
        (Ok(_), Ok(_)) => Verdict::after_final_dot(after_final_dot(last.map_err(|(_, e)| e))),
        // The envelope was refused: the relay cannot have taken the message, whatever came
        // after (RFC 3030 § 2: the chunk of a failed transaction is read and dropped).
        (Err((step, error)), _) | (_, Err((step, error))) if error.reply_code().is_some() => {
            let in_step = matches!(&last, Err((_, e)) if e.reply_code().is_some()) || last.is_ok();
            Verdict::before_final_dot(before_final_dot(*step, error), in_step)
        }
        // The message went in the same write: the session is dropped (as after every unknown
        // outcome), with whatever the relay holds.
        (Err((_, error)), _) | (_, Err((_, error))) => Verdict {
            attempt: Attempt::Unknown {
                reason: format!("no reply after the message: {error}"),
            },
            in_step: false,
            open_transaction: false,
        },
    }
}

type Replies<const N: usize> =
    [Result<lettre::transport::smtp::response::Response, (Step, StepError)>; N];

/// Writes a group of commands (None: it went ahead, behind the last message) and reads one
/// reply per step, in order. After a missing reply (timeout, hang-up) the others are not
/// waited for.
async fn read_replies<const N: usize>(
    timeout: Duration,
    smtp: &mut AsyncSmtpConnection,
    group: Option<String>,
    steps: &[Step; N],
) -> Replies<N> {
    let mut replies: Vec<Result<_, (Step, StepError)>> = Vec::with_capacity(N);
    let first = match group {
        Some(group) => bounded(timeout, smtp.command(group)).await,
        None => bounded(timeout, smtp.read_response()).await,
    };
    let mut broken = first.as_ref().is_err_and(|e| e.reply_code().is_none());
    replies.push(first.map_err(|e| (steps[0], e)));
    for step in &steps[1..] {
        if broken {
            replies.push(Err((*step, StepError::NoReply)));
            continue;
        }
        let reply = bounded(timeout, smtp.read_response()).await;
        broken = reply.as_ref().is_err_and(|e| e.reply_code().is_none());
        replies.push(reply.map_err(|e| (*step, e)));
    }
    match replies.try_into() {
        Ok(replies) => replies,
        // Cannot happen: one reply was pushed per step.
        Err(_) => std::array::from_fn(|i| Err((steps[i], StepError::NoReply))),
    }
}

/// The first refused or missing reply of a pipelined envelope, with whether the session is
/// still in step.
fn first_refusal<const N: usize>(replies: &Replies<N>) -> Option<Verdict> {
    let in_step = replies.iter().all(|r| {
        r.as_ref()
            .map_or_else(|(_, e)| e.reply_code().is_some(), |_| true)
    });
    replies.iter().find_map(|reply| match reply {
        Ok(_) => None,
        Err((step, error)) => Some(Verdict::before_final_dot(
            before_final_dot(*step, error),
            in_step,
        )),
    })
}

/// What the reply after the message says: 2xx is sent, whatever its text.
fn after_final_dot(
    sent: Result<lettre::transport::smtp::response::Response, StepError>,
) -> Attempt {
    match sent {
        Ok(response) => Attempt::Accepted {
            reply: Reply::Relay(reply_of(Step::Message, &response)),
            notify: false,
        },
        Err(error) => match error.smtp_reply(Step::Message) {
            Some(reply) => classify(reply),
            // The message was (maybe fully) written and no verdict came back.
            None => Attempt::Unknown {
                reason: format!("no reply after the message: {error}"),
            },
        },
    }
}

/// The message after DATA: dot-stuffed, CRLF-terminated, with the final dot, written at once,
/// and `then` (the next letter's envelope, or nothing) in the same write. lettre writes the
/// body and the final dot separately, and that second small write waits for the first one's
/// delayed ACK: 40 ms per message on a fast relay. Built to its size in one piece (lettre
/// clones a `String` as it is): line by line through `Display`, it was 9 % of the runtime
/// threads' time in `send`.
fn data_payload(text: &str, then: &str) -> String {
    let mut payload = String::with_capacity(text.len() + then.len() + 16);
    let mut rest = text;
    if rest.starts_with('.') {
        payload.push('.');
    }
    // Lines that start with a dot are rare: the stretches between them go whole.
    while let Some(at) = memchr::memmem::find(rest.as_bytes(), b"\n.") {
        payload.push_str(&rest[..=at]);
        payload.push('.');
        rest = &rest[at + 1..];
    }
    payload.push_str(rest);
    payload.push_str("\r\n.\r\n");
    payload.push_str(then);
    payload
}

/// A failure before the message was complete: the relay's reply, or a broken session, which
/// is the relay's trouble, not the recipient's.
fn before_final_dot(step: Step, error: &StepError) -> Attempt {
    match error.smtp_reply(step) {
        Some(reply) => classify(reply),
        None => Attempt::Deferred {
            reply: Reply::Broken {
                step,
                reason: error.to_string(),
            },
            scope: Scope::Relay,
        },
    }
}

/// A positive reply as lettre read it, its lines joined.
fn reply_of(step: Step, response: &lettre::transport::smtp::response::Response) -> SmtpReply {
    let text: Vec<&str> = response.message().collect();
    SmtpReply::new(step, u16::from(response.code()), &text.join(" "))
}

/// 5xx is final, 4xx is temporary, and the reply says whom it concerns.
pub fn classify(reply: SmtpReply) -> Attempt {
    if reply.is_permanent() {
        Attempt::Rejected {
            reply: Reply::Relay(reply),
        }
    } else {
        let scope = reply.scope();
        Attempt::Deferred {
            reply: Reply::Relay(reply),
            scope,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_is_read_from_the_ehlo_keywords_only() {
        let postfix = [
            "relay.example.fr",
            "PIPELINING",
            "SIZE 10240000",
            "ETRN",
            "STARTTLS",
            "ENHANCEDSTATUSCODES",
            "8BITMIME",
            "DSN",
            "SMTPUTF8",
            "CHUNKING",
        ];
        let offers = offers_of(&postfix);
        assert_eq!(
            offers,
            Offers {
                pipelining: true,
                chunking: true,
                dsn: true
            }
        );
        // A provider's MX without DSN; a host name that happens to contain the word is not
        // the keyword.
        let without = offers_of(&["dsn.example.fr greets you", "PIPELINING", "8BITMIME"]);
        assert!(!without.dsn);
        assert!(
            !offers_of(&["x", "CHUNKING"]).chunking,
            "CHUNKING only with PIPELINING"
        );
    }

    #[test]
    fn notification_parameters_carry_the_notice_id_and_an_xtext_recipient() {
        let letter = |recipient: &str| Outgoing {
            message_id: "m@x".into(),
            envelope_from: "b-x@bounces.example.fr".into(),
            recipient: recipient.into(),
            notice_id: "K7QF-3MZ9-P2XA".into(),
            file_name: "f".into(),
            bytes: Vec::new(),
        };
        let (mail, rcpt) = notification_parameters(&letter("jean+alertes=1@exemple.fr"));
        let text = |p: &[String]| p.join(" ");
        assert_eq!(
            text(&mail.iter().map(ToString::to_string).collect::<Vec<_>>()),
            "RET=HDRS ENVID=K7QF-3MZ9-P2XA"
        );
        assert_eq!(
            text(&rcpt.iter().map(ToString::to_string).collect::<Vec<_>>()),
            "NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;jean+2Balertes+3D1@exemple.fr"
        );
        // An address outside ASCII has no rfc822 ORCPT: NOTIFY alone.
        let (_, rcpt) = notification_parameters(&letter("élodie@société.fr"));
        assert_eq!(rcpt.len(), 1);
    }

    #[test]
    fn the_payload_is_dot_stuffed_and_ends_with_the_final_dot() {
        let payload = data_payload("Subject: x\r\n\r\n.hidden\r\nline\r\n..two", "");
        assert_eq!(
            payload,
            "Subject: x\r\n\r\n..hidden\r\nline\r\n...two\r\n.\r\n"
        );
        assert_eq!(data_payload(".a\n.\n", ""), "..a\n..\n\r\n.\r\n");
        assert_eq!(data_payload("", ""), "\r\n.\r\n");
        // The next letter's envelope goes after the final dot, never inside the message.
        let then = "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n";
        assert_eq!(
            data_payload(".x\r\n", then),
            format!("..x\r\n\r\n.\r\n{then}")
        );
    }

    #[test]
    fn a_remote_relay_without_starttls_is_refused() {
        use EncryptionStep::*;
        // The rule the integration tests cannot reach: they only have loopback.
        assert_eq!(encryption_step(false, false, false), Refuse);
        assert_eq!(encryption_step(false, true, false), StartTls);
        assert_eq!(encryption_step(true, false, false), AlreadyEncrypted);
        // Loopback still upgrades when offered, and may stay in clear otherwise.
        assert_eq!(encryption_step(false, true, true), StartTls);
        assert_eq!(encryption_step(false, false, true), StayInClear);
    }

    #[test]
    fn the_password_never_goes_in_clear() {
        assert!(!may_log_in(false));
        assert!(may_log_in(true));
    }

    #[test]
    fn hosts_that_are_not_loopback_are_told_apart() {
        use crate::config::is_loopback_host;
        for host in ["localhost", "127.0.0.1", "127.5.6.7", "[::1]", "::1"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "smtp.example.fr",
            "10.0.0.1",
            "192.168.1.1",
            "localhost.example.fr",
            "0.0.0.0",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn a_refused_certificate_is_recognised_inside_an_io_error() {
        use tokio_rustls::rustls;
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert!(is_tls_failure(&io));
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(!is_tls_failure(&plain));
    }

    #[test]
    fn replies_are_classified_by_whom_they_concern() {
        let at_rcpt = |code, text| classify(SmtpReply::new(Step::RcptTo, code, text));
        assert!(matches!(
            at_rcpt(550, "5.1.1 unknown"),
            Attempt::Rejected { .. }
        ));
        assert!(matches!(
            at_rcpt(451, "4.7.1 Greylisted, please try again later"),
            Attempt::Deferred {
                scope: Scope::Recipient,
                ..
            }
        ));
        assert!(matches!(
            at_rcpt(421, "4.7.0 too many connections"),
            Attempt::Deferred {
                scope: Scope::Relay,
                ..
            }
        ));
        assert!(matches!(
            at_rcpt(450, "4.7.28 unusual rate, slow down"),
            Attempt::Deferred {
                scope: Scope::Domain,
                ..
            }
        ));
    }

    #[test]
    fn a_2xx_after_the_message_is_sent_whatever_its_text() {
        let response = lettre::transport::smtp::response::Response::new(
            lettre::transport::smtp::response::Code::new(
                lettre::transport::smtp::response::Severity::PositiveCompletion,
                lettre::transport::smtp::response::Category::MailSystem,
                lettre::transport::smtp::response::Detail::Zero,
            ),
            vec!["2.0.0 Ok: queued \u{fffd}".into()],
        );
        assert!(matches!(
            after_final_dot(Ok(response)),
            Attempt::Accepted { .. }
        ));
        assert!(matches!(
            after_final_dot(Err(StepError::NoReply)),
            Attempt::Unknown { .. }
        ));
    }
}
