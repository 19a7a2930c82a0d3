//! A relay session: TCP, TLS from the first byte or STARTTLS, EHLO and what it offers, the
//! login; and its life across letters (kept after a verdict that leaves it in step, reset after
//! a refusal, dropped after anything else).

use std::sync::Arc;
use std::time::Duration;

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Ehlo, Quit, Rset, Starttls};
use lettre::transport::smtp::extension::ClientId;
use secrecy::{ExposeSecret, SecretString};

use super::transaction::{StepError, Verdict, bounded, transaction};
use super::{Attempt, MayCommit, Outgoing, Refuser, Relayer, Transport, readable};
use crate::config::Relay;
use crate::smtp_reply::{Scope, Step};

impl Relayer {
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
pub(super) struct Login {
    pub(super) user: String,
    pub(super) password: Arc<SecretString>,
    pub(super) variable: String,
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

/// An open relay session and what its EHLO offered beyond what lettre reads.
pub struct Session {
    pub(super) smtp: AsyncSmtpConnection,
    /// RFC 2920: the envelope goes in one write, its replies are read together.
    pub(super) pipelining: bool,
    /// RFC 3030: the message goes as one `BDAT n LAST` chunk, in the same write as the envelope.
    pub(super) chunking: bool,
    /// RFC 3461: the relay offers DSN and the setting asks for it: each envelope carries
    /// `RET=HDRS ENVID=` and `NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=`.
    pub(super) notify: bool,
    /// The letter whose envelope (MAIL, RCPT, DATA) went behind the last message's final dot,
    /// its three replies not read yet (by its `file_name`, unique per person and generation).
    /// RFC 2920 § 3.1 lets a message be the first "command" of a group: one round trip a letter
    /// instead of two. After DATA's 354 the relay reads everything as the message, so a session
    /// with an envelope ahead is closed without QUIT: a message without its final dot is never
    /// delivered (RFC 5321 § 4.1.1.4).
    pub(super) ahead: Option<String>,
}

/// A connection to an SMTP relay: its session, opened at the first letter and kept while it
/// stays in step.
pub struct SmtpConnection {
    pub(super) relayer: Relayer,
    pub(super) session: Option<Box<Session>>,
}

impl SmtpConnection {
    pub(super) fn new(relayer: Relayer) -> SmtpConnection {
        SmtpConnection {
            relayer,
            session: None,
        }
    }
}

impl Transport for SmtpConnection {
    async fn deliver(
        &mut self,
        message: &Outgoing,
        next: Option<&Outgoing>,
        may_commit: MayCommit<'_>,
    ) -> Attempt {
        deliver_over_smtp(&self.relayer, &mut self.session, message, next, may_commit).await
    }

    /// A session with an envelope ahead may be in the middle of a message: it is closed without
    /// a word, and that letter is not delivered.
    async fn close(&mut self) {
        if let Some(session) = &mut self.session
            && session.ahead.is_none()
        {
            let _ = tokio::time::timeout(self.relayer.timeout, session.smtp.command(Quit)).await;
        }
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
    pub(super) pipelining: bool,
    /// Used only with PIPELINING: alone it saves nothing.
    pub(super) chunking: bool,
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
}
