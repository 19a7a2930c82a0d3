//! An in-process SMTP server for breachmail's integration tests.
//!
//! It listens on 127.0.0.1 on a port the kernel picks, speaks enough of RFC 5321
//! for lettre (EHLO/HELO, AUTH PLAIN/LOGIN, MAIL, RCPT, DATA, RSET, NOOP, VRFY,
//! QUIT, pipelined commands, several transactions per connection), and answers
//! each recipient as a [`Script`] says: accept, fail temporarily, reject, reject
//! after the data, hang up or stall after the data, or throttle with 421. It
//! records what was accepted, what was received but never confirmed, how often
//! each recipient was tried and how many sessions were open at once, so that
//! tests can assert on delivery, retries and concurrency without a real relay.
//! Waits are driven by a change notification, never by sleeping.
//!
//! It speaks TLS too, with a certificate for `localhost` and `127.0.0.1` made
//! when the server starts and signed by a throwaway CA ([`SmtpServer::ca_pem`]):
//! STARTTLS when the script advertises it, or TLS from the first byte
//! (`implicit_tls`, for `smtps://`). Each message records whether its session
//! was encrypted, and the server counts logins attempted in clear.
//!
//! It can also behave like the relays and providers a real campaign meets:
//! a round trip of latency per flight of commands (so pipelining shows), CHUNKING
//! (BDAT), greylisting (a recipient's first try gets `451 4.7.1`), a per-domain
//! throttle (`450 4.7.28` beyond N a second for that domain), a relay-side rate
//! limit (`421 4.7.0` at MAIL beyond N a second, and the session closed), and
//! outages ([`SmtpServer::shutdown`] mid-run, every session cut).
//!
//! It depends on tokio, tokio-rustls and rcgen only, so that it can be included
//! as a module from any integration test.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// The SIZE advertised in EHLO. Messages above it get 552 after the final dot;
/// the cap also keeps a runaway client from filling the test's memory.
pub const MAX_MESSAGE_SIZE: usize = 10 * 1024 * 1024;

/// Longest command or data line read in one piece. RFC 5321 says 1000 octets;
/// we are lenient for data (longer lines are read in pieces) and only refuse
/// command lines that exceed it.
const MAX_LINE: usize = 64 * 1024;

/// What the server says when a client connects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Greeting {
    /// `220`, then a normal session.
    #[default]
    Ready,
    /// `421 4.3.2 Service not available` and close, as a relay that is
    /// overloaded or shutting down does. The connection is still counted.
    Refuse421,
}

/// How the server treats one recipient.
///
/// Counted behaviours (`times`) count per recipient across all connections,
/// so a retry over a new connection sees the next attempt.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Behaviour {
    /// `250 2.0.0 Ok: queued as <QUEUEID>` after the final dot.
    #[default]
    Accept,
    /// At RCPT TO, answer `code text` for the first `times` attempts, then accept.
    TempFail {
        times: usize,
        code: u16,
        text: String,
    },
    /// At RCPT TO, always answer `code text` (meant for 4xx).
    TempFailForever { code: u16, text: String },
    /// At RCPT TO, always answer `code text` (meant for 5xx, e.g. 550 5.1.1).
    Reject { code: u16, text: String },
    /// Accept the recipient, read the data, then answer `code text` after the dot.
    RejectAfterData { code: u16, text: String },
    /// Read the whole message including the final dot, record it in
    /// [`SmtpServer::unconfirmed`], then close the socket without replying.
    /// After `times` such hang-ups for this recipient, accept.
    HangUpAfterData { times: usize },
    /// Read the whole message, record it in [`SmtpServer::unconfirmed`], then
    /// never answer; the socket stays open until the client closes it or the
    /// server shuts down. After `times` such stalls for this recipient, accept.
    StallAfterData { times: usize },
    /// At RCPT TO, answer `421 4.7.0 ...` and close the connection, for the
    /// first `times` attempts; then accept.
    Throttle { times: usize },
    /// Accept the message, answering these bytes after the final dot as they are
    /// (CRLF included): a 250 in Latin-1, or a queue report of 50 kB, as some
    /// relays send.
    AcceptWithReply { reply: Vec<u8> },
    /// Accept the message (250 after the final dot), then read nothing more on that
    /// session, and so answer nothing of what the client pipelined behind the dot (the
    /// next letter's envelope), until [`SmtpServer::release`]: a relay slow to answer,
    /// for as long as a test needs. Once per recipient.
    HoldAfterReply,
}

impl Behaviour {
    /// `451 4.3.0` for the first `times` attempts.
    pub fn temp_fail(times: usize) -> Self {
        Behaviour::TempFail {
            times,
            code: 451,
            text: "4.3.0 Temporary failure, try again later".into(),
        }
    }

    /// Greylisting as Postgrey and most providers do it: the first try is
    /// answered `451 4.7.1 Greylisted, please try again later`, the next accepted.
    pub fn greylist() -> Self {
        Behaviour::TempFail {
            times: 1,
            code: 451,
            text: "4.7.1 Greylisted, please try again later".into(),
        }
    }

    /// `550 5.1.1 User unknown`.
    pub fn reject() -> Self {
        Behaviour::Reject {
            code: 550,
            text: "5.1.1 User unknown".into(),
        }
    }

    /// `554 5.7.1 Message rejected` after the final dot.
    pub fn reject_after_data() -> Self {
        Behaviour::RejectAfterData {
            code: 554,
            text: "5.7.1 Message rejected".into(),
        }
    }
}

/// The certificate a test server presents.
#[derive(Clone, Debug, Default)]
pub struct TestCertificate {
    /// The names it is for; empty: `localhost` and `127.0.0.1`.
    pub names: Vec<String>,
    /// Self-signed, as Debian's "snakeoil", instead of signed by the throwaway CA.
    pub self_signed: bool,
    /// Its validity ended in 2020.
    pub expired: bool,
}

/// What to answer, per recipient (matched on the RCPT TO address,
/// case-insensitively), with a default for everyone else.
#[derive(Clone, Debug, Default)]
pub struct Script {
    pub default: Behaviour,
    pub per_recipient: HashMap<String, Behaviour>,
    /// Advertise STARTTLS in EHLO (until the session is encrypted) and upgrade
    /// the session with the server's test certificate when asked.
    pub advertise_starttls: bool,
    /// TLS from the first byte, as an `smtps://` relay: [`SmtpServer::url`]
    /// then says `smtps://`.
    pub implicit_tls: bool,
    /// The certificate presented over TLS (by default signed by a throwaway CA,
    /// for `localhost` and `127.0.0.1`).
    pub certificate: TestCertificate,
    /// `Some((user, password))`: advertise AUTH PLAIN LOGIN and answer MAIL
    /// with 530 until the client has authenticated with these.
    pub require_auth: Option<(String, String)>,
    pub greeting: Greeting,
    /// Advertise CHUNKING and take `BDAT n [LAST]` (RFC 3030).
    pub chunking: bool,
    /// Waited once per flight of commands from the client (what arrives together
    /// is read together): a relay this far away, round trip.
    pub latency: Duration,
    /// At most this many MAIL FROM a second over all sessions; beyond it,
    /// `421 4.7.0 rate limit exceeded, slow down` and the session closed.
    pub relay_limit: Option<u32>,
    /// At most this many RCPT TO a second per lowercased recipient domain;
    /// beyond it `450 4.7.28` (the wording of a provider that throttles).
    pub domain_limits: HashMap<String, u32>,
    /// Advertise DSN (RFC 3461) and take `RET`/`ENVID` on MAIL and `NOTIFY`/`ORCPT` on
    /// RCPT. Without it those parameters are refused with 555, as Postfix refuses options
    /// it does not offer.
    pub dsn: bool,
    /// Leave PIPELINING out of EHLO: the client then sends one command at a time.
    pub no_pipelining: bool,
}

impl Script {
    /// Every recipient is accepted.
    pub fn accept_all() -> Self {
        Script::default()
    }

    /// Limits what the relay takes to `per_second` letters (see
    /// [`Script::relay_limit`]).
    pub fn relay_limit(mut self, per_second: u32) -> Self {
        self.relay_limit = Some(per_second);
        self
    }

    /// Limits one domain to `per_second` recipients (see [`Script::domain_limits`]).
    pub fn domain_limit(mut self, domain: &str, per_second: u32) -> Self {
        self.domain_limits.insert(domain.to_lowercase(), per_second);
        self
    }

    /// Adds (or replaces) the behaviour for one recipient.
    pub fn with(mut self, rcpt: &str, behaviour: Behaviour) -> Self {
        self.per_recipient.insert(rcpt.to_lowercase(), behaviour);
        self
    }
}

/// One message as the server received it.
#[derive(Clone, Debug)]
pub struct Received {
    /// The reverse-path without angle brackets (empty for `<>`).
    pub mail_from: String,
    /// The recipients that were accepted at RCPT TO, as the client spelled them.
    pub rcpt_to: Vec<String>,
    /// The message after dot-unstuffing. Per RFC 5321 the CRLF before the
    /// terminating `.` ends the last line, so it is part of the data: for
    /// lettre this is the formatted message followed by CRLF.
    pub data: Vec<u8>,
    /// When the final dot was read.
    pub at: Instant,
    /// The queue id in the 250 reply (or the one it would have had).
    pub queue_id: String,
    /// The session carried TLS (after STARTTLS, or implicit TLS) when the
    /// message came.
    pub encrypted: bool,
    /// The MAIL FROM parameters as sent (`RET=HDRS ENVID=…`; empty when none).
    pub mail_parameters: String,
    /// The RCPT TO parameters of each accepted recipient, as sent.
    pub rcpt_parameters: Vec<String>,
}

#[derive(Default)]
struct State {
    accepted: Vec<Received>,
    unconfirmed: Vec<Received>,
    /// RCPT TO commands per lowercased recipient.
    attempts: HashMap<String, usize>,
    /// How often a HangUpAfterData/StallAfterData fired per lowercased recipient.
    data_faults: HashMap<String, usize>,
    connections: usize,
    open: usize,
    peak: usize,
    next_queue_id: u64,
    /// Completed TLS handshakes (STARTTLS or implicit).
    tls_sessions: usize,
    /// AUTH commands received on a session that was not encrypted.
    auth_in_clear: usize,
    /// AUTH commands received, encrypted or not.
    logins: usize,
    /// The current one-second window of the relay limit and what it counted.
    relay_window: Option<(Instant, u32)>,
    /// The same per recipient domain.
    domain_windows: HashMap<String, (Instant, u32)>,
    /// MAIL FROM refused by the relay limit, RCPT TO refused by a domain limit.
    relay_limited: usize,
    domain_limited: usize,
    /// BDAT transactions completed.
    bdat_messages: usize,
    /// Flights of commands: reads that had to wait for the client, i.e. round trips.
    flights: usize,
    /// Sessions holding after a [`Behaviour::HoldAfterReply`], and whether each had
    /// the client's next commands waiting, unread, when it began to hold.
    holds: Vec<bool>,
    released: bool,
    /// Messages whose final dot came on a session that had begun to hold before.
    after_release: usize,
}

/// Counts one more in a one-second window; false when it is over `limit`.
fn within(window: &mut Option<(Instant, u32)>, limit: u32) -> bool {
    let now = Instant::now();
    match window {
        Some((start, count)) if now.duration_since(*start) < Duration::from_secs(1) => {
            *count += 1;
            *count <= limit
        }
        _ => {
            *window = Some((now, 1));
            limit >= 1
        }
    }
}

struct Shared {
    script: Script,
    /// `script.per_recipient` with lowercased keys, for case-insensitive lookup.
    per_recipient: HashMap<String, Behaviour>,
    port: u16,
    tls: TlsAcceptor,
    ca_pem: String,
    state: Mutex<State>,
    /// Bumped after every change to `state`; waiters re-check their condition.
    /// A watch (unlike a bare Notify) cannot lose a wake-up between the check
    /// and the wait, because a receiver remembers which version it has seen.
    changed: watch::Sender<()>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking session must not hide the recorded state from the test.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let r = f(&mut self.lock());
        self.changed.send_replace(());
        r
    }

    fn behaviour(&self, key: &str) -> Behaviour {
        self.per_recipient
            .get(key)
            .cloned()
            .unwrap_or_else(|| self.script.default.clone())
    }

    fn queue_id(&self, state: &mut State) -> String {
        state.next_queue_id += 1;
        format!("{:04X}{:06X}", self.port, state.next_queue_id)
    }
}

/// Decrements the open-session count however a session ends, including when
/// its task is aborted at shutdown.
struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.update(|s| s.open -= 1);
    }
}

/// A running test SMTP server. Dropping it stops it too (asynchronously);
/// [`SmtpServer::shutdown`] waits until every socket is closed.
pub struct SmtpServer {
    port: u16,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    accept_loop: Option<JoinHandle<()>>,
}

impl SmtpServer {
    /// Binds 127.0.0.1:0, spawns the accept loop on the current tokio runtime
    /// and returns at once; the port accepts connections from then on.
    pub async fn start(script: Script) -> SmtpServer {
        SmtpServer::start_on(0, script).await
    }

    /// The same on a given port (0: the kernel picks), to bring a relay back
    /// where it was after an outage.
    pub async fn start_on(port: u16, script: Script) -> SmtpServer {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("local_addr").port();
        let per_recipient = script
            .per_recipient
            .iter()
            .map(|(k, v)| (k.to_lowercase(), v.clone()))
            .collect();
        let (tls, ca_pem) = test_tls_with(&script.certificate);
        let shared = Arc::new(Shared {
            script,
            per_recipient,
            port,
            tls,
            ca_pem,
            state: Mutex::new(State::default()),
            changed: watch::Sender::new(()),
        });
        let (stop, stop_rx) = watch::channel(false);
        let accept_loop = tokio::spawn(accept_loop(listener, Arc::clone(&shared), stop_rx));
        SmtpServer {
            port,
            shared,
            stop,
            accept_loop: Some(accept_loop),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `smtp://127.0.0.1:PORT`, or `smtps://127.0.0.1:PORT` with implicit TLS.
    pub fn url(&self) -> String {
        let scheme = if self.shared.script.implicit_tls {
            "smtps"
        } else {
            "smtp"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The PEM of the CA that signed this server's certificate (or of the
    /// certificate itself, when self-signed): what a client must trust (e.g.
    /// through `smtp.tls_ca` or `BREACHMAIL_TEST_CA_FILE`) to accept it.
    pub fn ca_pem(&self) -> String {
        self.shared.ca_pem.clone()
    }

    /// How many TLS handshakes completed (STARTTLS or implicit).
    pub fn tls_sessions(&self) -> usize {
        self.shared.lock().tls_sessions
    }

    /// How many AUTH commands arrived on a session that was not encrypted.
    pub fn auth_in_clear(&self) -> usize {
        self.shared.lock().auth_in_clear
    }

    /// How many AUTH commands arrived in all.
    pub fn logins(&self) -> usize {
        self.shared.lock().logins
    }

    /// MAIL FROM answered 421 by the relay limit.
    pub fn relay_limited(&self) -> usize {
        self.shared.lock().relay_limited
    }

    /// RCPT TO answered 450 by a domain limit.
    pub fn domain_limited(&self) -> usize {
        self.shared.lock().domain_limited
    }

    /// Round trips: how often the server had read everything the client sent and waited
    /// for more (a pipelined group is one).
    pub fn flights(&self) -> usize {
        self.shared.lock().flights
    }

    /// Messages that came with BDAT instead of DATA.
    pub fn bdat_messages(&self) -> usize {
        self.shared.lock().bdat_messages
    }

    /// Every message answered with 250 after the final dot, in order.
    pub fn accepted(&self) -> Vec<Received> {
        self.shared.lock().accepted.clone()
    }

    /// Messages read in full but never confirmed (hang-ups and stalls): the
    /// client cannot know whether these were delivered.
    pub fn unconfirmed(&self) -> Vec<Received> {
        self.shared.lock().unconfirmed.clone()
    }

    /// How many times RCPT TO was tried for this recipient (case-insensitive).
    pub fn attempts(&self, rcpt: &str) -> usize {
        let key = rcpt.to_lowercase();
        self.shared.lock().attempts.get(&key).copied().unwrap_or(0)
    }

    /// How many TCP connections were accepted, refused-at-greeting ones included.
    pub fn connection_attempts(&self) -> usize {
        self.shared.lock().connections
    }

    /// The peak number of simultaneously open sessions.
    pub fn max_concurrent_connections(&self) -> usize {
        self.shared.lock().peak
    }

    /// Sessions open right now.
    pub fn open_connections(&self) -> usize {
        self.shared.lock().open
    }

    /// Waits until a session holds after a [`Behaviour::HoldAfterReply`]; says whether
    /// the client had already sent more behind the final dot (its next envelope).
    pub async fn wait_for_hold(&self, timeout: Duration) -> Option<bool> {
        self.wait_until(timeout, |s| !s.holds.is_empty()).await;
        self.shared.lock().holds.first().copied()
    }

    /// Lets every held session read and answer again.
    pub fn release(&self) {
        self.shared.update(|s| s.released = true);
    }

    /// Final dots read on a session after it had held: what its client sent on after
    /// the release.
    pub fn messages_after_release(&self) -> usize {
        self.shared.lock().after_release
    }

    /// Waits until at least `n` messages were accepted; false on timeout.
    pub async fn wait_for_accepted(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| s.accepted.len() >= n).await
    }

    /// Waits until at least `n` messages are in [`SmtpServer::unconfirmed`].
    pub async fn wait_for_unconfirmed(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| s.unconfirmed.len() >= n).await
    }

    /// Waits until at least `n` connections were accepted.
    pub async fn wait_for_connections(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| s.connections >= n).await
    }

    /// Waits until RCPT TO was tried at least `n` times for `rcpt`.
    pub async fn wait_for_attempts(&self, rcpt: &str, n: usize, timeout: Duration) -> bool {
        let key = rcpt.to_lowercase();
        self.wait_until(timeout, |s| s.attempts.get(&key).copied().unwrap_or(0) >= n)
            .await
    }

    async fn wait_until(&self, timeout: Duration, pred: impl Fn(&State) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        // Subscribe before the first check so no change can slip in between.
        let mut rx = self.shared.changed.subscribe();
        loop {
            if pred(&self.shared.lock()) {
                return true;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                // Timed out, or the sender is gone (cannot happen while `self` lives).
                _ => return pred(&self.shared.lock()),
            }
        }
    }

    /// An outage: every session cut at once, the port closed. Returns what was
    /// accepted until then.
    pub async fn outage(self) -> Vec<Received> {
        let shared = Arc::clone(&self.shared);
        self.shutdown().await;
        shared.lock().accepted.clone()
    }

    /// Stops accepting, closes every open session and the listening socket,
    /// and returns once they are all closed (so a test can then expect
    /// "connection refused" on this port).
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(handle) = self.accept_loop.take() {
            let _ = handle.await;
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        // Best effort when the test did not call shutdown(): the accept loop
        // closes everything the next time the runtime polls it.
        let _ = self.stop.send(true);
    }
}

/// A port on 127.0.0.1 where nothing listens (bound, then released). Another
/// process could grab it in between, which is unlikely enough for tests.
pub fn unused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    // Sessions live in a JoinSet so shutdown can abort and await all of them.
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                // Replies to pipelined commands go out one by one: with Nagle's algorithm
                // each would wait for the client's delayed ACK of the one before (40 ms).
                let _ = stream.set_nodelay(true);
                // Counted here, before the task runs, so a test that has seen
                // its client connect also sees the count.
                shared.update(|s| {
                    s.connections += 1;
                    s.open += 1;
                    s.peak = s.peak.max(s.open);
                });
                let guard = OpenGuard(Arc::clone(&shared));
                let shared = Arc::clone(&shared);
                sessions.spawn(async move {
                    let _guard = guard;
                    // An I/O error just means the client went away.
                    let _ = Session::new(Stream::Plain(stream), &shared).run().await;
                });
            }
        }
    }
    drop(listener);
    sessions.shutdown().await;
}

struct Transaction {
    mail_from: String,
    mail_parameters: String,
    /// Accepted recipients: (as spelled by the client, lowercased key, behaviour).
    rcpts: Vec<(String, String, Behaviour)>,
    rcpt_parameters: Vec<String>,
}

/// What happens after the final dot.
enum AfterData {
    Reply(String),
    /// The reply, then nothing read until the test releases the session.
    ReplyThenHold(String),
    /// Bytes written as they are, after the message was recorded as accepted.
    Raw(Vec<u8>),
    HangUp,
    Stall,
}

struct Session<'a> {
    conn: BufReader<Stream>,
    shared: &'a Shared,
    greeted: bool,
    authenticated: bool,
    tx: Option<Transaction>,
    /// The chunks of the current BDAT transaction.
    bdat: Vec<u8>,
    /// This session held after a [`Behaviour::HoldAfterReply`] and was released.
    held: bool,
}

impl<'a> Session<'a> {
    fn new(stream: Stream, shared: &'a Shared) -> Self {
        Session {
            conn: BufReader::new(stream),
            shared,
            greeted: false,
            authenticated: shared.script.require_auth.is_none(),
            tx: None,
            bdat: Vec::new(),
            held: false,
        }
    }

    fn encrypted(&self) -> bool {
        matches!(self.conn.get_ref(), Stream::Tls(_))
    }

    /// Replaces the plain socket by a TLS session over it. Anything the client
    /// pipelined after STARTTLS is dropped with the buffer, as RFC 3207 wants.
    /// False if the handshake failed (the client refused our certificate).
    async fn upgrade(&mut self) -> io::Result<bool> {
        let conn = std::mem::replace(&mut self.conn, BufReader::new(Stream::Gone));
        let Stream::Plain(tcp) = conn.into_inner() else {
            return Ok(false);
        };
        match self.shared.tls.accept(tcp).await {
            Ok(tls) => {
                self.conn = BufReader::new(Stream::Tls(Box::new(tls)));
                self.shared.update(|s| s.tls_sessions += 1);
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    }

    async fn starttls(&mut self) -> io::Result<bool> {
        if self.encrypted() {
            self.reply(503, "5.5.1 Error: TLS already active").await?;
            return Ok(true);
        }
        self.reply(220, "2.0.0 Ready to start TLS").await?;
        if !self.upgrade().await? {
            return Ok(false);
        }
        // RFC 3207: the client starts over with EHLO and forgets what it knew.
        self.greeted = false;
        self.tx = None;
        Ok(true)
    }

    /// A new flight of commands took the configured latency to come and go.
    async fn round_trip(&self, flight_starts: bool) {
        if flight_starts {
            self.shared.update(|s| s.flights += 1);
        }
        let latency = self.shared.script.latency;
        if flight_starts && !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
    }

    /// Writes a reply; a multi-line `text` becomes a multi-line reply.
    async fn reply(&mut self, code: u16, text: &str) -> io::Result<()> {
        let lines: Vec<&str> = text.split('\n').collect();
        let mut out = String::new();
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            out.push_str(&format!("{code}{sep}{}\r\n", line.trim_end_matches('\r')));
        }
        // Replies go out one by one even when commands were pipelined: simpler,
        // and clients must cope with either.
        self.conn.write_all(out.as_bytes()).await?;
        self.conn.flush().await
    }

    /// Reads one line without its line ending; None at EOF or if it is too long.
    async fn read_command(&mut self) -> io::Result<Option<String>> {
        let mut line = Vec::new();
        let flight_starts = self.conn.buffer().is_empty();
        let n = (&mut self.conn)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(None);
        }
        self.round_trip(flight_starts).await;
        if !line.ends_with(b"\n") {
            if n >= MAX_LINE {
                self.reply(500, "5.5.6 Line too long").await?;
            }
            return Ok(None);
        }
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        Ok(Some(String::from_utf8_lossy(&line).into_owned()))
    }

    async fn run(mut self) -> io::Result<()> {
        if self.shared.script.implicit_tls && !self.upgrade().await? {
            return Ok(());
        }
        if self.shared.script.greeting == Greeting::Refuse421 {
            return self
                .reply(
                    421,
                    "4.3.2 Service not available, closing transmission channel",
                )
                .await;
        }
        self.reply(220, "127.0.0.1 ESMTP breachmail test server")
            .await?;
        while let Some(line) = self.read_command().await? {
            let (verb, arg) = match line.split_once(' ') {
                Some((v, a)) => (v.to_ascii_uppercase(), a.trim()),
                None => (line.to_ascii_uppercase(), ""),
            };
            match verb.as_str() {
                "EHLO" | "HELO" => self.helo(&verb, arg).await?,
                "AUTH" => self.auth(arg).await?,
                "STARTTLS" if self.shared.script.advertise_starttls => {
                    if !self.starttls().await? {
                        return Ok(());
                    }
                }
                "MAIL" => {
                    if !self.mail(arg).await? {
                        return Ok(());
                    }
                }
                "BDAT" if self.shared.script.chunking => {
                    if !self.bdat(arg).await? {
                        return Ok(());
                    }
                }
                "RCPT" => {
                    if !self.rcpt(arg).await? {
                        return Ok(());
                    }
                }
                "DATA" => {
                    if !self.data().await? {
                        return Ok(());
                    }
                }
                "RSET" => {
                    self.tx = None;
                    self.bdat.clear();
                    self.reply(250, "2.0.0 Ok").await?
                }
                "NOOP" => self.reply(250, "2.0.0 Ok").await?,
                "VRFY" => self.reply(252, "2.5.2 Cannot VRFY user").await?,
                "QUIT" => return self.reply(221, "2.0.0 Bye").await,
                "" => self.reply(500, "5.5.2 Syntax error").await?,
                _ => self.reply(502, "5.5.2 Command not recognized").await?,
            }
        }
        Ok(())
    }

    async fn helo(&mut self, verb: &str, arg: &str) -> io::Result<()> {
        if arg.is_empty() {
            return self
                .reply(501, &format!("5.5.4 Syntax: {verb} hostname"))
                .await;
        }
        self.greeted = true;
        self.tx = None;
        if verb == "HELO" {
            return self.reply(250, "127.0.0.1").await;
        }
        let mut lines = vec![
            format!("127.0.0.1 greets {arg}"),
            "PIPELINING".to_string(),
            "8BITMIME".to_string(),
            "SMTPUTF8".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
            "CHUNKING".to_string(),
            format!("SIZE {MAX_MESSAGE_SIZE}"),
            "DSN".to_string(),
        ];
        if !self.shared.script.chunking {
            lines.retain(|l| l != "CHUNKING");
        }
        if !self.shared.script.dsn {
            lines.retain(|l| l != "DSN");
        }
        if self.shared.script.no_pipelining {
            lines.retain(|l| l != "PIPELINING");
        }
        // As Postfix with `smtpd_tls_auth_only`: where STARTTLS is offered, AUTH is
        // offered only once it has been taken.
        if self.shared.script.require_auth.is_some()
            && (self.encrypted() || !self.shared.script.advertise_starttls)
        {
            lines.push("AUTH PLAIN LOGIN".to_string());
        }
        if self.shared.script.advertise_starttls && !self.encrypted() {
            lines.push("STARTTLS".to_string());
        }
        self.reply(250, &lines.join("\n")).await
    }

    async fn auth(&mut self, arg: &str) -> io::Result<()> {
        self.shared.update(|s| s.logins += 1);
        if !self.encrypted() {
            self.shared.update(|s| s.auth_in_clear += 1);
        }
        let Some((user, pass)) = self.shared.script.require_auth.clone() else {
            return self.reply(502, "5.5.1 AUTH not available").await;
        };
        if !self.greeted {
            return self.reply(503, "5.5.1 Error: send EHLO first").await;
        }
        if self.authenticated {
            return self.reply(503, "5.5.1 Error: already authenticated").await;
        }
        let (mechanism, initial) = match arg.split_once(' ') {
            Some((m, i)) => (m.to_ascii_uppercase(), Some(i.trim().to_string())),
            None => (arg.to_ascii_uppercase(), None),
        };
        let given = match mechanism.as_str() {
            "PLAIN" => {
                let response = match initial {
                    Some(r) => r,
                    None => match self.challenge("").await? {
                        Some(r) => r,
                        None => return Ok(()),
                    },
                };
                // authzid NUL authcid NUL passwd
                base64_decode(&response).and_then(|raw| {
                    let mut parts = raw.split(|&b| b == 0);
                    let _authzid = parts.next()?;
                    let u = String::from_utf8(parts.next()?.to_vec()).ok()?;
                    let p = String::from_utf8(parts.next()?.to_vec()).ok()?;
                    Some((u, p))
                })
            }
            "LOGIN" => {
                let u = match initial {
                    Some(r) => Some(r),
                    None => self.challenge("VXNlcm5hbWU6").await?, // "Username:"
                };
                let Some(u) = u else { return Ok(()) };
                let Some(p) = self.challenge("UGFzc3dvcmQ6").await? else {
                    return Ok(()); // "Password:"
                };
                let decode = |s: &str| base64_decode(s).and_then(|b| String::from_utf8(b).ok());
                decode(&u).zip(decode(&p))
            }
            _ => {
                return self
                    .reply(504, "5.5.4 Unrecognized authentication type")
                    .await;
            }
        };
        match given {
            Some((u, p)) if u == user && p == pass => {
                self.authenticated = true;
                self.reply(235, "2.7.0 Authentication successful").await
            }
            Some(_) => {
                self.reply(535, "5.7.8 Authentication credentials invalid")
                    .await
            }
            None => self.reply(501, "5.5.2 Cannot decode response").await,
        }
    }

    /// Sends a 334 challenge and reads the answer; None if the client
    /// cancelled with `*` (already answered) or went away.
    async fn challenge(&mut self, text: &str) -> io::Result<Option<String>> {
        self.reply(334, text).await?;
        match self.read_command().await? {
            Some(line) if line.trim() == "*" => {
                self.reply(501, "5.7.0 Authentication cancelled").await?;
                Ok(None)
            }
            other => Ok(other),
        }
    }

    /// Returns false when the connection is to be closed (the relay limit).
    async fn mail(&mut self, arg: &str) -> io::Result<bool> {
        if let Some(limit) = self.shared.script.relay_limit {
            let allowed = self.shared.update(|s| {
                let allowed = within(&mut s.relay_window, limit);
                if !allowed {
                    s.relay_limited += 1;
                }
                allowed
            });
            if !allowed {
                self.reply(421, "4.7.0 rate limit exceeded, slow down")
                    .await?;
                return Ok(false);
            }
        }
        self.mail_allowed(arg).await?;
        Ok(true)
    }

    /// `NOTIFY` (NEVER, or some of SUCCESS, FAILURE, DELAY) and `ORCPT=type;xtext`, when DSN
    /// is offered; nothing else.
    fn rcpt_parameter_allowed(&self, param: &str) -> bool {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        if !self.shared.script.dsn {
            return false;
        }
        match key.to_ascii_uppercase().as_str() {
            "NOTIFY" => {
                let value = value.to_ascii_uppercase();
                value == "NEVER"
                    || value
                        .split(',')
                        .all(|v| ["SUCCESS", "FAILURE", "DELAY"].contains(&v))
            }
            "ORCPT" => value
                .split_once(';')
                .is_some_and(|(kind, address)| !kind.is_empty() && is_xtext(address)),
            _ => false,
        }
    }

    async fn mail_allowed(&mut self, arg: &str) -> io::Result<()> {
        if !self.greeted {
            return self.reply(503, "5.5.1 Error: send HELO/EHLO first").await;
        }
        if !self.authenticated {
            return self.reply(530, "5.7.0 Authentication required").await;
        }
        if self.tx.is_some() {
            return self.reply(503, "5.5.1 Error: nested MAIL command").await;
        }
        let Some((from, params)) = parse_path(arg, "FROM:") else {
            return self.reply(501, "5.5.4 Syntax: MAIL FROM:<address>").await;
        };
        for param in params.split_whitespace() {
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            match key.to_ascii_uppercase().as_str() {
                "BODY" if ["7BIT", "8BITMIME"].contains(&value.to_ascii_uppercase().as_str()) => {}
                "SMTPUTF8" if value.is_empty() => {}
                "RET"
                    if self.shared.script.dsn
                        && ["FULL", "HDRS"].contains(&value.to_ascii_uppercase().as_str()) => {}
                "ENVID" if self.shared.script.dsn && is_xtext(value) && value.len() <= 100 => {}
                "SIZE" => match value.parse::<usize>() {
                    Ok(size) if size > MAX_MESSAGE_SIZE => {
                        return self
                            .reply(552, "5.3.4 Message size exceeds fixed limit")
                            .await;
                    }
                    Ok(_) => {}
                    Err(_) => return self.reply(501, "5.5.4 Bad SIZE parameter").await,
                },
                _ => {
                    return self
                        .reply(555, &format!("5.5.4 Unsupported option: {param}"))
                        .await;
                }
            }
        }
        self.tx = Some(Transaction {
            mail_from: from,
            mail_parameters: params,
            rcpts: Vec::new(),
            rcpt_parameters: Vec::new(),
        });
        self.reply(250, "2.1.0 Ok").await
    }

    /// Returns false when the connection is to be closed (throttling).
    async fn rcpt(&mut self, arg: &str) -> io::Result<bool> {
        if self.tx.is_none() {
            self.reply(503, "5.5.1 Error: need MAIL command").await?;
            return Ok(true);
        }
        let Some((rcpt, params)) = parse_path(arg, "TO:").filter(|(r, _)| !r.is_empty()) else {
            self.reply(501, "5.5.4 Syntax: RCPT TO:<address>").await?;
            return Ok(true);
        };
        if let Some(bad) = params
            .split_whitespace()
            .find(|param| !self.rcpt_parameter_allowed(param))
        {
            self.reply(555, &format!("5.5.4 Unsupported option: {bad}"))
                .await?;
            return Ok(true);
        }
        let key = rcpt.to_lowercase();
        let behaviour = self.shared.behaviour(&key);
        let attempt = self.shared.update(|s| {
            let n = s.attempts.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        });
        let domain = key.rsplit_once('@').map_or("", |(_, d)| d).to_owned();
        if let Some(&limit) = self.shared.script.domain_limits.get(&domain) {
            let allowed = self.shared.update(|s| {
                let mut window = s.domain_windows.get(&domain).copied();
                let allowed = within(&mut window, limit);
                if let Some(window) = window {
                    s.domain_windows.insert(domain.clone(), window);
                }
                if !allowed {
                    s.domain_limited += 1;
                }
                allowed
            });
            if !allowed {
                self.reply(
                    450,
                    "4.7.28 Our system has detected an unusual rate of mail from your IP, slow down",
                )
                .await?;
                return Ok(true);
            }
        }
        match &behaviour {
            Behaviour::TempFail { times, code, text } if attempt <= *times => {
                self.reply(*code, text).await?
            }
            Behaviour::TempFailForever { code, text } | Behaviour::Reject { code, text } => {
                self.reply(*code, text).await?
            }
            Behaviour::Throttle { times } if attempt <= *times => {
                self.reply(
                    421,
                    "4.7.0 Too many connections / rate limited, closing channel",
                )
                .await?;
                return Ok(false);
            }
            _ => {
                if let Some(tx) = self.tx.as_mut() {
                    tx.rcpts.push((rcpt, key, behaviour));
                    tx.rcpt_parameters.push(params);
                }
                self.reply(250, "2.1.5 Ok").await?
            }
        }
        Ok(true)
    }

    /// `BDAT size [LAST]`: the chunk's bytes follow the command at once (RFC
    /// 3030). They are read even when the transaction failed, as the RFC wants.
    /// Returns false when the connection is to be closed.
    async fn bdat(&mut self, arg: &str) -> io::Result<bool> {
        let mut words = arg.split_whitespace();
        let size = words.next().and_then(|w| w.parse::<usize>().ok());
        let last = words.next().is_some_and(|w| w.eq_ignore_ascii_case("LAST"));
        let Some(size) = size.filter(|s| *s <= MAX_MESSAGE_SIZE) else {
            self.reply(501, "5.5.4 Syntax: BDAT size [LAST]").await?;
            return Ok(false);
        };
        let mut chunk = vec![0u8; size];
        self.conn.read_exact(&mut chunk).await?;
        match &self.tx {
            None => {
                self.bdat.clear();
                self.reply(503, "5.5.1 Error: need MAIL command").await?;
                return Ok(true);
            }
            Some(tx) if tx.rcpts.is_empty() => {
                self.bdat.clear();
                self.tx = None;
                self.reply(554, "5.5.1 Error: no valid recipients").await?;
                return Ok(true);
            }
            Some(_) => {}
        }
        self.bdat.extend_from_slice(&chunk);
        if !last {
            return self
                .reply(250, &format!("2.0.0 {size} octets received"))
                .await
                .map(|()| true);
        }
        let data = std::mem::take(&mut self.bdat);
        let at = Instant::now();
        let tx = self.tx.take().expect("checked above");
        self.shared.update(|s| s.bdat_messages += 1);
        self.finish_message(tx, data, at).await
    }

    /// Returns false when the connection is to be closed.
    async fn data(&mut self) -> io::Result<bool> {
        match &self.tx {
            None => {
                self.reply(503, "5.5.1 Error: need MAIL command").await?;
                return Ok(true);
            }
            Some(tx) if tx.rcpts.is_empty() => {
                self.reply(554, "5.5.1 Error: no valid recipients").await?;
                return Ok(true);
            }
            Some(_) => {}
        }
        self.reply(354, "End data with <CR><LF>.<CR><LF>").await?;
        let flight_starts = self.conn.buffer().is_empty();
        let read = self.read_data().await?;
        self.round_trip(flight_starts).await;
        let Some((data, too_big)) = read else {
            return Ok(false); // the client went away mid-message: nothing received
        };
        let at = Instant::now();
        let tx = self.tx.take().expect("checked above");
        if too_big {
            self.reply(552, "5.3.4 Message size exceeds fixed limit")
                .await?;
            return Ok(true);
        }
        self.finish_message(tx, data, at).await
    }

    /// Answers a complete message as the script says. Returns false when the
    /// connection is to be closed.
    async fn finish_message(
        &mut self,
        tx: Transaction,
        data: Vec<u8>,
        at: Instant,
    ) -> io::Result<bool> {
        match self.after_data(tx, data, at) {
            AfterData::Reply(reply) => {
                let (code, text) = reply.split_at(3);
                self.reply(code.parse().expect("3-digit code"), &text[1..])
                    .await?;
                Ok(true)
            }
            AfterData::Raw(bytes) => {
                self.conn.write_all(&bytes).await?;
                self.conn.flush().await?;
                Ok(true)
            }
            AfterData::ReplyThenHold(reply) => {
                let (code, text) = reply.split_at(3);
                self.reply(code.parse().expect("3-digit code"), &text[1..])
                    .await?;
                let queued = !self.conn.buffer().is_empty();
                let mut changed = self.shared.changed.subscribe();
                self.shared.update(|s| s.holds.push(queued));
                while !self.shared.lock().released {
                    if changed.changed().await.is_err() {
                        return Ok(false);
                    }
                }
                self.held = true;
                Ok(true)
            }
            AfterData::HangUp => Ok(false),
            AfterData::Stall => {
                // Never answer; hold the socket until the client gives up.
                // Anything it sends meanwhile (NOOP, QUIT) goes unanswered too.
                let mut sink = [0u8; 4096];
                while self.conn.read(&mut sink).await? > 0 {}
                Ok(false)
            }
        }
    }

    /// Decides and records the outcome of a complete message. The first
    /// recipient (in RCPT order) with an active after-data fault decides for
    /// the whole transaction, since SMTP has one reply per message.
    fn after_data(&self, tx: Transaction, data: Vec<u8>, at: Instant) -> AfterData {
        let shared = self.shared;
        let encrypted = self.encrypted();
        shared.update(|s| {
            let mut outcome = None;
            for (_, key, behaviour) in &tx.rcpts {
                let fired = s.data_faults.get(key).copied().unwrap_or(0);
                outcome = match behaviour {
                    Behaviour::RejectAfterData { code, text } => {
                        Some(AfterData::Reply(format!("{code} {text}")))
                    }
                    Behaviour::HangUpAfterData { times } if fired < *times => {
                        Some(AfterData::HangUp)
                    }
                    Behaviour::StallAfterData { times } if fired < *times => Some(AfterData::Stall),
                    Behaviour::HoldAfterReply if fired < 1 => {
                        Some(AfterData::ReplyThenHold(String::new()))
                    }
                    _ => None,
                };
                if outcome.is_some() {
                    if !matches!(outcome, Some(AfterData::Reply(_))) {
                        *s.data_faults.entry(key.clone()).or_insert(0) += 1;
                    }
                    break;
                }
            }
            let raw = tx.rcpts.iter().find_map(|(_, _, b)| match b {
                Behaviour::AcceptWithReply { reply } => Some(reply.clone()),
                _ => None,
            });
            let queue_id = shared.queue_id(s);
            let received = Received {
                mail_from: tx.mail_from,
                rcpt_to: tx.rcpts.into_iter().map(|(r, _, _)| r).collect(),
                data,
                at,
                queue_id: queue_id.clone(),
                encrypted,
                mail_parameters: tx.mail_parameters,
                rcpt_parameters: tx.rcpt_parameters,
            };
            if self.held {
                s.after_release += 1;
            }
            match outcome {
                Some(AfterData::Reply(reply)) => AfterData::Reply(reply),
                Some(AfterData::ReplyThenHold(_)) => {
                    s.accepted.push(received);
                    AfterData::ReplyThenHold(format!("250 2.0.0 Ok: queued as {queue_id}"))
                }
                Some(fault) => {
                    s.unconfirmed.push(received);
                    fault
                }
                None => {
                    s.accepted.push(received);
                    match raw {
                        Some(bytes) => AfterData::Raw(bytes),
                        None => AfterData::Reply(format!("250 2.0.0 Ok: queued as {queue_id}")),
                    }
                }
            }
        })
    }

    /// Reads the message up to the line holding a lone dot, undoing dot-stuffing.
    /// Reading line by line from the buffered stream finds CRLF.CRLF however
    /// the client's writes were split. None if the client closed mid-message;
    /// the flag is set if it exceeded [`MAX_MESSAGE_SIZE`] (then it is dropped).
    async fn read_data(&mut self) -> io::Result<Option<(Vec<u8>, bool)>> {
        let mut data = Vec::new();
        let mut too_big = false;
        let mut line = Vec::new();
        // Overlong lines arrive in pieces; only a piece that starts a line can
        // be the terminator or carry a stuffed dot.
        let mut at_line_start = true;
        loop {
            line.clear();
            let n = (&mut self.conn)
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut line)
                .await?;
            if n == 0 {
                return Ok(None);
            }
            // A bare-LF terminator is tolerated, as most servers do.
            if at_line_start && (line == b".\r\n" || line == b".\n") {
                return Ok(Some((data, too_big)));
            }
            let content = if at_line_start && line.starts_with(b".") {
                &line[1..]
            } else {
                &line[..]
            };
            at_line_start = line.ends_with(b"\n");
            if data.len() + content.len() > MAX_MESSAGE_SIZE {
                too_big = true;
                data.clear();
            } else if !too_big {
                data.extend_from_slice(content);
            }
        }
    }
}

/// Parses `FROM:<addr> params` / `TO:<addr> params` (prefix case-insensitive,
/// a space before `<` tolerated). Returns the address without brackets.
/// RFC 3461 § 4: printable ASCII but `+` and `=`, or `+XX` in upper-case hexadecimal.
fn is_xtext(value: &str) -> bool {
    let bytes = value.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                let hex = bytes.get(i + 1..i + 3);
                if !hex.is_some_and(|h| {
                    h.iter()
                        .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c))
                }) {
                    return false;
                }
                i += 3;
            }
            b'!'..=b'~' if bytes[i] != b'=' => i += 1,
            _ => return false,
        }
    }
    true
}

fn parse_path(arg: &str, prefix: &str) -> Option<(String, String)> {
    let head = arg.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = arg[prefix.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    Some((rest[..end].to_string(), rest[end + 1..].trim().to_string()))
}

/// Standard base64 (RFC 4648), padding optional; None on a bad character.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.trim().bytes().take_while(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The session's socket: plain TCP, or TLS over it once upgraded.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// Only while the socket is being handed to the TLS handshake.
    Gone,
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "socket handed to TLS")
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Gone => Poll::Ready(Err(gone())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Gone => Poll::Ready(Err(gone())),
        }
    }
}

/// A throwaway CA and a certificate it signed for `localhost` and `127.0.0.1`:
/// the acceptor that presents it, and the CA's PEM for the client to trust.
pub fn test_tls() -> (TlsAcceptor, String) {
    test_tls_with(&TestCertificate::default())
}

/// A number for each throwaway CA of the process, so that two are never the same issuer.
fn next_ca() -> usize {
    static CAS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    CAS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The acceptor for `certificate`, and the PEM a client must trust to accept it.
pub fn test_tls_with(certificate: &TestCertificate) -> (TlsAcceptor, String) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("breachmail test CA {}", next_ca()),
    );
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let ca = rcgen::Issuer::new(ca_params, ca_key);

    let key = rcgen::KeyPair::generate().expect("server key");
    let names = if certificate.names.is_empty() {
        vec!["localhost".to_string(), "127.0.0.1".to_string()]
    } else {
        certificate.names.clone()
    };
    let mut params = rcgen::CertificateParams::new(names).expect("server params");
    if certificate.expired {
        params.not_before = rcgen::date_time_ymd(2019, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 1, 1);
    }
    let (cert, trusted) = if certificate.self_signed {
        let cert = params.self_signed(&key).expect("self-signed certificate");
        let pem = cert.pem();
        (cert, pem)
    } else {
        let cert = params.signed_by(&key, &ca).expect("server certificate");
        (cert, ca_cert.pem())
    };

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("server TLS config");
    (TlsAcceptor::from(Arc::new(config)), trusted)
}
