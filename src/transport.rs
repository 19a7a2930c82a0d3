//! Where a finished message goes: an SMTP relay (one session per connection worker) or a folder
//! of `.eml` files. Both sit behind `Connection::deliver`, so `send` has one code path.
//!
//! The SMTP side drives lettre's `AsyncSmtpConnection` step by step (MAIL, RCPT, DATA, the
//! message) instead of its pooled transport: the step that failed decides the outcome. A failure
//! before the final dot means "not delivered"; a timeout or hang-up after it means "maybe
//! delivered", which the audit must flag as a possible duplicate when it is retried. Every step
//! is bounded by `smtp.timeout` here, because lettre's own timeout only covers the connect.
//!
//! Its parts: [`session`] opens a relay session (TLS or STARTTLS, login, what EHLO offers) and
//! keeps it across letters; [`transaction`] carries one letter (a command at a time, pipelined,
//! or chunked) and reads its verdict; [`envelope`] writes the envelope and the message's bytes;
//! [`folder`] writes `.eml` files; [`readable`] cleans the relay's reply lines for lettre.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lettre::transport::smtp::extension::ClientId;
use secrecy::SecretString;

use crate::config::{Config, Relay};
use crate::domain::RelayNotifications;
use crate::smtp_reply::{Accepted, Scope, SmtpReply, Step};
pub use crate::tls::Refuser;

pub use crate::message::Outgoing;
pub use folder::{Folder, write_to_folder};
pub use session::SmtpConnection;
pub use stub::{Stub, StubConnection};

mod envelope;
mod folder;
mod readable;
mod session;
mod stub;
mod transaction;

use session::Login;

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// 2xx after the final dot: the relay has it (its reply holds the queue id), or the outbox
    /// folder does; `notify`: the relay was asked for delivery status notifications for it
    /// (RFC 3461).
    Accepted { reply: Accepted, notify: bool },
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
}

impl Reply {
    /// The relay's reply, when one decided the attempt.
    pub fn smtp(&self) -> Option<&SmtpReply> {
        match self {
            Reply::Relay(reply) => Some(reply),
            Reply::Broken { .. } | Reply::Unsendable { .. } => None,
        }
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Relay(reply) => write!(f, "{reply}"),
            Reply::Broken { step, reason } => write!(f, "{}: {reason}", step.as_str()),
            Reply::Unsendable { reason } => f.write_str(reason),
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
    /// Letters go to this in-memory transport instead ([`Relayer::stub`], for tests).
    stub: Option<Stub>,
}

/// Whether a relay's sessions offered DSN (RFC 3461) during a run: set when a session opens.
#[derive(Debug, Default)]
struct NotificationsSeen {
    offered: std::sync::atomic::AtomicBool,
    not_offered: std::sync::atomic::AtomicBool,
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
pub fn password_from_environment() -> Result<Option<SecretString>, crate::exit::UsageError> {
    if let Ok(password) = std::env::var("BREACHMAIL_SMTP_PASSWORD")
        && !password.is_empty()
    {
        return Ok(Some(SecretString::from(password)));
    }
    if let Some(path) = std::env::var_os("BREACHMAIL_SMTP_PASSWORD_FILE") {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            crate::exit::UsageError::new(format!(
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
    pub fn from_config(config: &Config) -> Result<Relayer, crate::exit::UsageError> {
        Ok(Relayer::all(config)?.remove(0))
    }

    /// One per relay letters may go through, in the order of the configuration.
    pub fn all(config: &Config) -> Result<Vec<Relayer>, crate::exit::UsageError> {
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
                    return Err(crate::exit::UsageError::new(format!(
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
                stub: None,
            });
        }
        if relayers.is_empty() {
            return Err(crate::exit::UsageError::new("no relay is configured"));
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

    /// A relay whose letters go to `stub`, in memory: the send path's tests run against it as
    /// against a relay. Not reachable from the configuration.
    pub fn stub(name: &str, stub: &Stub) -> Relayer {
        Relayer {
            name: name.to_owned(),
            // Never read: `connection` hands out the stub.
            relay: Relay::File(PathBuf::new()),
            timeout: Duration::from_secs(30),
            credentials: None,
            hello: ClientId::default(),
            section: "stub".to_owned(),
            tls: None,
            delivery_notifications: false,
            notifications_seen: Arc::default(),
            stub: Some(stub.clone()),
        }
    }

    /// A connection that is not opened until the first message.
    pub fn connection(&self) -> Connection {
        if let Some(stub) = &self.stub {
            return Connection::Stub(stub.connection());
        }
        match &self.relay {
            Relay::File(dir) => Connection::Folder(Folder::new(dir.clone())),
            _ => Connection::Smtp(SmtpConnection::new(self.clone())),
        }
    }
}

/// Where letters go, one connection at a time: lettre's shape (one trait; SMTP, a folder and
/// an in-memory stub behind it), with the step-by-step verdict this program needs.
///
/// The methods return `Send` futures, written as `async fn` in each implementation. Such a
/// trait cannot be used as `dyn Transport` (its futures have no size known in advance), and
/// boxing one future per letter would buy nothing: the three transports are known, so
/// [`Connection`] dispatches over them as an enum, and `send` holds one concrete type.
pub trait Transport {
    /// Hands one message over and says what became of it. Never panics, never returns early
    /// without a verdict: every claimed delivery gets exactly one outcome.
    ///
    /// `next`, the letter this connection will carry after this one, lets its envelope go in
    /// the same write as this message (an SMTP session's `ahead`); nothing of its message goes.
    /// The next call must then be for that letter, or the session is dropped.
    ///
    /// `may_commit` is asked immediately before the bytes that commit the letter (see
    /// [`MayCommit`]); when it says no, the transaction is abandoned (the session closed,
    /// without the final dot) and the attempt is [`Attempt::Withheld`].
    fn deliver(
        &mut self,
        message: &Outgoing,
        next: Option<&Outgoing>,
        may_commit: MayCommit<'_>,
    ) -> impl Future<Output = Attempt> + Send;

    /// Says goodbye politely; errors do not matter any more.
    fn close(&mut self) -> impl Future<Output = ()> + Send;
}

/// One connection worker's link to where messages go: see [`Transport`].
pub enum Connection {
    Smtp(SmtpConnection),
    Folder(Folder),
    Stub(StubConnection),
}

impl Connection {
    /// See [`Transport::deliver`].
    pub async fn deliver(
        &mut self,
        message: &Outgoing,
        next: Option<&Outgoing>,
        may_commit: MayCommit<'_>,
    ) -> Attempt {
        match self {
            Connection::Smtp(smtp) => smtp.deliver(message, next, may_commit).await,
            Connection::Folder(folder) => folder.deliver(message, next, may_commit).await,
            Connection::Stub(stub) => stub.deliver(message, next, may_commit).await,
        }
    }

    /// See [`Transport::close`].
    pub async fn close(&mut self) {
        match self {
            Connection::Smtp(smtp) => smtp.close().await,
            Connection::Folder(folder) => folder.close().await,
            Connection::Stub(stub) => stub.close().await,
        }
    }
}

impl Transport for Connection {
    async fn deliver(
        &mut self,
        message: &Outgoing,
        next: Option<&Outgoing>,
        may_commit: MayCommit<'_>,
    ) -> Attempt {
        Connection::deliver(self, message, next, may_commit).await
    }

    async fn close(&mut self) {
        Connection::close(self).await
    }
}

/// What a reply decides: 2xx accepted, 5xx final, 4xx temporary with whom it concerns.
pub fn classify(reply: SmtpReply) -> Attempt {
    if reply.is_positive() {
        return Attempt::Accepted {
            reply: Accepted::ByRelay(reply),
            notify: false,
        };
    }
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
    fn hosts_that_are_not_loopback_are_told_apart() {
        use crate::loopback::is_loopback_host;
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
}
