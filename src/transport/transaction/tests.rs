//! The three ways to carry a letter, over an in-memory session: the relay's end is a script
//! that reads what the client wrote and answers as a relay would, early, late, in pieces, or
//! not at all. Each test pins one rule of `transaction` or of the session's life after it.

use std::time::Duration;

use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::extension::ClientId;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;
use crate::transport::readable::{ReadableReplies, Socket};
use crate::transport::{Relayer, SmtpConnection, Stub, Transport};

/// How long the relay's script waits to hear something before the test fails.
const PATIENCE: Duration = Duration::from_secs(20);

impl Socket for DuplexStream {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        Err(std::io::Error::other("an in-memory session has no address"))
    }
}

/// The relay's end of the session.
struct Relay {
    end: DuplexStream,
    heard: Vec<u8>,
    /// Where the next `hears` starts looking.
    cursor: usize,
}

impl Relay {
    /// Reads until `text` comes (after what was already waited for).
    async fn hears(&mut self, text: &str) {
        let waited = tokio::time::timeout(PATIENCE, async {
            loop {
                if let Some(at) = find(&self.heard[self.cursor..], text.as_bytes()) {
                    self.cursor += at + text.len();
                    return;
                }
                let mut chunk = [0u8; 4096];
                let n = self.end.read(&mut chunk).await.expect("the relay reads");
                assert!(n > 0, "the client closed before saying {text:?}");
                self.heard.extend_from_slice(&chunk[..n]);
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "the relay never heard {text:?}; it heard:\n{}",
            self.transcript()
        );
    }

    async fn says(&mut self, reply: &str) {
        self.end
            .write_all(reply.as_bytes())
            .await
            .expect("the relay writes");
    }

    /// Everything the client wrote, read to its end (the client's side is gone by then).
    async fn rest(mut self) -> String {
        let _ = tokio::time::timeout(PATIENCE, self.end.read_to_end(&mut self.heard)).await;
        self.transcript()
    }

    fn transcript(&self) -> String {
        String::from_utf8_lossy(&self.heard).into_owned()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

#[derive(Clone, Copy)]
enum Way {
    OneByOne,
    Pipelined,
    Chunked,
}

/// A session greeted over an in-memory stream of `buffer` bytes each way, as
/// [`SmtpConnection`] holds it, with `timeout` on every step.
async fn connected(way: Way, buffer: usize, timeout: Duration) -> (SmtpConnection, Relay) {
    let (client, server) = tokio::io::duplex(buffer);
    let mut relay = Relay {
        end: server,
        heard: Vec::new(),
        cursor: 0,
    };
    let hello = ClientId::Domain("sender.example.fr".into());
    let stream = Box::new(ReadableReplies::new(client));
    let (smtp, ()) = tokio::join!(
        AsyncSmtpConnection::connect_with_transport(stream, &hello),
        async {
            relay.says("220 relay.test ESMTP\r\n").await;
            relay.hears("EHLO sender.example.fr\r\n").await;
            relay.says("250-relay.test\r\n250 8BITMIME\r\n").await;
        }
    );
    let session = Session {
        smtp: smtp.expect("greeted"),
        pipelining: !matches!(way, Way::OneByOne),
        chunking: matches!(way, Way::Chunked),
        notify: false,
        ahead: None,
    };
    let mut relayer = Relayer::stub("relay.test", &Stub::new());
    relayer.timeout = timeout;
    let connection = SmtpConnection {
        relayer,
        session: Some(Box::new(session)),
    };
    (connection, relay)
}

async fn session(way: Way) -> (SmtpConnection, Relay) {
    connected(way, 64 * 1024, PATIENCE).await
}

fn letter(recipient: &str, body: &str) -> Outgoing {
    Outgoing {
        message_id: format!("{recipient}@id"),
        envelope_from: "b-1@bounces.example.fr".into(),
        recipient: recipient.into(),
        notice_id: "K7QF-3MZ9-P2XA".into(),
        file_name: format!("{recipient}.eml"),
        bytes: format!("Subject: Your data\r\n\r\n{body}\r\n").into_bytes(),
    }
}

const YES: &(dyn Fn() -> bool + Send + Sync) = &|| true;
const NO: &(dyn Fn() -> bool + Send + Sync) = &|| false;

/// The relay's reply the attempt carries.
fn reply(attempt: &Attempt) -> &SmtpReply {
    let reply = match attempt {
        Attempt::Accepted { reply, .. } => reply.smtp(),
        Attempt::Deferred { reply, .. } | Attempt::Rejected { reply } => reply.smtp(),
        _ => None,
    };
    reply.unwrap_or_else(|| panic!("no relay's reply in {attempt:?}"))
}

const ENVELOPE: &str = "MAIL FROM:<b-1@bounces.example.fr>";

#[tokio::test]
async fn one_by_one_waits_for_each_reply_and_a_refused_data_is_rejected_before_the_dot() {
    let (mut connection, mut relay) = session(Way::OneByOne).await;
    let anne = letter("anne@example.org", "Dear Anne");
    let (attempt, ()) = tokio::join!(connection.deliver(&anne, None, YES), async {
        relay.hears(ENVELOPE).await;
        relay.says("250 2.1.0 Ok\r\n").await;
        relay.hears("RCPT TO:<anne@example.org>\r\n").await;
        relay.says("250 2.1.5 Ok\r\n").await;
        relay.hears("DATA\r\n").await;
        relay.says("554 5.5.1 Error: no valid recipients\r\n").await;
        relay.hears("RSET\r\n").await;
        relay.says("250 2.0.0 Ok\r\n").await;
    });
    assert!(matches!(attempt, Attempt::Rejected { .. }), "{attempt:?}");
    let refusal = reply(&attempt);
    assert_eq!((refusal.code(), refusal.step()), (554, Step::Data));
    assert_eq!(refusal.text(), "5.5.1 Error: no valid recipients");
    // Reset, the session carries the next letter.
    assert!(connection.session.is_some());
    drop(connection);
    assert!(!relay.rest().await.contains("Dear Anne"));
}

#[tokio::test]
async fn a_recipient_refused_in_a_pipelined_envelope_never_gets_the_message() {
    let (mut connection, mut relay) = session(Way::Pipelined).await;
    let anne = letter("anne@example.org", "Dear Anne");
    let (attempt, ()) = tokio::join!(connection.deliver(&anne, None, YES), async {
        // The envelope comes in one write: its three replies go back together.
        relay.hears("RCPT TO:<anne@example.org>\r\nDATA\r\n").await;
        relay
            .says("250 2.1.0 Ok\r\n550 5.1.1 <anne@example.org>: Recipient address rejected: User unknown\r\n554 5.5.1 Error: no valid recipients\r\n")
            .await;
        relay.hears("RSET\r\n").await;
        relay.says("250 2.0.0 Ok\r\n").await;
    });
    let refusal = reply(&attempt);
    assert!(matches!(attempt, Attempt::Rejected { .. }), "{attempt:?}");
    assert_eq!((refusal.code(), refusal.step()), (550, Step::RcptTo));
    assert_eq!(
        refusal.enhanced().map(|e| e.to_string()).as_deref(),
        Some("5.1.1")
    );
    assert!(connection.session.is_some(), "reset and kept");
    drop(connection);
    assert!(!relay.rest().await.contains("Dear Anne"));
}

#[tokio::test]
async fn a_refusal_after_the_final_dot_is_the_messages() {
    let (mut connection, mut relay) = session(Way::Pipelined).await;
    let anne = letter("anne@example.org", "Dear Anne");
    let (attempt, ()) = tokio::join!(connection.deliver(&anne, None, YES), async {
        relay.hears("DATA\r\n").await;
        relay
            .says("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n")
            .await;
        relay.hears("Dear Anne\r\n\r\n.\r\n").await;
        relay.says("554 5.7.1 Message rejected as spam\r\n").await;
    });
    assert!(matches!(attempt, Attempt::Rejected { .. }), "{attempt:?}");
    let refusal = reply(&attempt);
    assert_eq!((refusal.code(), refusal.step()), (554, Step::Message));
    // The relay ended the transaction itself: no RSET, the session carries on.
    assert!(connection.session.is_some());
    drop(connection);
    assert!(!relay.rest().await.contains("RSET"));
}

#[tokio::test]
async fn a_421_closes_the_session_and_concerns_the_relay() {
    let (mut connection, mut relay) = session(Way::OneByOne).await;
    let anne = letter("anne@example.org", "Dear Anne");
    let (attempt, ()) = tokio::join!(connection.deliver(&anne, None, YES), async {
        relay.hears(ENVELOPE).await;
        relay.says("250 2.1.0 Ok\r\n").await;
        relay.hears("RCPT TO:").await;
        relay
            .says("421 4.7.0 relay.test Error: too many errors\r\n")
            .await;
    });
    assert!(
        matches!(
            attempt,
            Attempt::Deferred {
                scope: Scope::Relay,
                ..
            }
        ),
        "{attempt:?}"
    );
    assert_eq!(reply(&attempt).step(), Step::RcptTo);
    // Dropped without a word: no RSET, no QUIT into a closing session.
    assert!(connection.session.is_none());
    assert!(!relay.rest().await.contains("RSET"));
}

#[tokio::test]
async fn replies_split_across_reads_are_read_whole() {
    // Seven bytes at a time each way: every reply arrives in pieces.
    let (mut connection, mut relay) = connected(Way::Pipelined, 7, PATIENCE).await;
    let anne = letter("anne@example.org", "Dear Anne");
    let (attempt, ()) = tokio::join!(connection.deliver(&anne, None, YES), async {
        relay.hears("DATA\r\n").await;
        relay
            .says("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go ahead\r\n")
            .await;
        relay.hears("\r\n.\r\n").await;
        relay.says("250 2.0.0 Ok: queued as 4P0001\r\n").await;
    });
    assert!(matches!(attempt, Attempt::Accepted { .. }), "{attempt:?}");
    assert_eq!(
        reply(&attempt).to_string(),
        "250 2.0.0 Ok: queued as 4P0001"
    );
}

#[tokio::test]
async fn a_multi_line_refusal_is_one_reply() {
    let (mut connection, mut relay) = session(Way::Pipelined).await;
    let anne = letter("anne@example.org", "Dear Anne");
    let (attempt, ()) = tokio::join!(connection.deliver(&anne, None, YES), async {
        relay.hears("DATA\r\n").await;
        relay
            .says("250 2.1.0 Ok\r\n550-5.1.1 The email account that you tried to reach does not exist.\r\n550-5.1.1 Please try double-checking the recipient's email\r\n550 5.1.1 address for typos.\r\n554 5.5.1 Error: no valid recipients\r\n")
            .await;
        relay.hears("RSET\r\n").await;
        relay.says("250 2.0.0 Ok\r\n").await;
    });
    let refusal = reply(&attempt);
    assert_eq!((refusal.code(), refusal.step()), (550, Step::RcptTo));
    assert_eq!(
        refusal.text(),
        "5.1.1 The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos."
    );
    // The lines belonged to one reply: DATA's own reply was read after them, in step.
    assert!(connection.session.is_some());
}

#[tokio::test]
async fn a_relay_that_refuses_while_the_chunk_is_still_coming_is_read_in_order() {
    // 64 bytes each way and a message of 4,000: the relay answers the envelope while the
    // client is still writing the message.
    let (mut connection, mut relay) = connected(Way::Chunked, 64, PATIENCE).await;
    let anne = letter("anne@example.org", &"x".repeat(4000));
    let (attempt, ()) = tokio::join!(connection.deliver(&anne, None, YES), async {
        relay.hears("RCPT TO:<anne@example.org>\r\n").await;
        relay
            .says("250 2.1.0 Ok\r\n550 5.1.1 User unknown\r\n")
            .await;
        // RFC 3030: the chunk of a failed transaction is read and refused.
        relay
            .hears(&format!("BDAT {} LAST\r\n", anne.bytes.len() + 2))
            .await;
        relay.hears(&format!("{}\r\n\r\n", "x".repeat(4000))).await;
        relay.says("554 5.5.1 Error: no valid recipients\r\n").await;
        relay.hears("RSET\r\n").await;
        relay.says("250 2.0.0 Ok\r\n").await;
    });
    assert!(matches!(attempt, Attempt::Rejected { .. }), "{attempt:?}");
    assert_eq!(reply(&attempt).step(), Step::RcptTo);
    assert!(connection.session.is_some(), "in step, reset and kept");
}

#[tokio::test]
async fn a_chunked_letter_goes_in_one_write_and_is_accepted_after_bdat_last() {
    let (mut connection, mut relay) = session(Way::Chunked).await;
    let anne = letter("anne@example.org", "Dear Anne");
    let (attempt, ()) = tokio::join!(connection.deliver(&anne, None, YES), async {
        relay.hears("Dear Anne\r\n\r\n").await;
        relay
            .says("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: queued as 4P0002\r\n")
            .await;
    });
    assert!(matches!(attempt, Attempt::Accepted { .. }), "{attempt:?}");
    assert_eq!(reply(&attempt).step(), Step::Message);
    drop(connection);
    let transcript = relay.rest().await;
    let chunk = format!(
        "RCPT TO:<anne@example.org>\r\nBDAT {} LAST\r\nSubject: Your data",
        anne.bytes.len() + 2
    );
    assert!(transcript.contains(&chunk), "{transcript}");
    assert!(!transcript.contains("DATA\r\n"), "{transcript}");
}

#[tokio::test]
async fn the_next_letters_envelope_goes_behind_the_message_and_is_answered_on_the_next_call() {
    let (mut connection, mut relay) = session(Way::Pipelined).await;
    let anne = letter("anne@example.org", "Dear Anne");
    let bob = letter("bob@example.org", "Dear Bob");
    let (attempt, ()) = tokio::join!(connection.deliver(&anne, Some(&bob), YES), async {
        relay.hears("DATA\r\n").await;
        relay
            .says("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go ahead\r\n")
            .await;
        // Anne's final dot and Bob's envelope in one write.
        relay
            .hears("Dear Anne\r\n\r\n.\r\nMAIL FROM:<b-1@bounces.example.fr>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
            .await;
        relay.says("250 2.0.0 Ok: queued as 4P0001\r\n").await;
    });
    assert!(matches!(attempt, Attempt::Accepted { .. }), "{attempt:?}");
    let ahead = connection.session.as_ref().and_then(|s| s.ahead.clone());
    assert_eq!(ahead.as_deref(), Some("bob@example.org.eml"));
    // Bob's envelope is answered only now, on the call for Bob, which writes no envelope.
    let (attempt, ()) = tokio::join!(connection.deliver(&bob, None, YES), async {
        relay
            .says("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go ahead\r\n")
            .await;
        relay.hears("Dear Bob\r\n\r\n.\r\n").await;
        relay.says("250 2.0.0 Ok: queued as 4P0002\r\n").await;
    });
    assert_eq!(
        reply(&attempt).to_string(),
        "250 2.0.0 Ok: queued as 4P0002"
    );
    drop(connection);
    let transcript = relay.rest().await;
    assert_eq!(transcript.matches("MAIL FROM:").count(), 2, "{transcript}");
}

#[tokio::test]
async fn a_lapsed_lease_withholds_the_final_dot() {
    let (mut connection, mut relay) = session(Way::Pipelined).await;
    let anne = letter("anne@example.org", "Dear Anne");
    let (attempt, ()) = tokio::join!(connection.deliver(&anne, None, NO), async {
        relay.hears("DATA\r\n").await;
        relay
            .says("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go ahead\r\n")
            .await;
    });
    assert!(matches!(attempt, Attempt::Withheld { .. }), "{attempt:?}");
    // Past DATA's 354 only closing the session ends the transaction without delivering.
    assert!(connection.session.is_none());
    let transcript = relay.rest().await;
    assert!(!transcript.contains("Dear Anne"), "{transcript}");
}

#[tokio::test]
async fn a_lapsed_lease_withholds_bdat_last_and_its_envelope() {
    let (mut connection, relay) = session(Way::Chunked).await;
    let anne = letter("anne@example.org", "Dear Anne");
    let attempt = connection.deliver(&anne, None, NO).await;
    assert!(matches!(attempt, Attempt::Withheld { .. }), "{attempt:?}");
    assert!(connection.session.is_none());
    drop(connection);
    let transcript = relay.rest().await;
    assert!(!transcript.contains("MAIL FROM"), "{transcript}");
}

#[tokio::test]
async fn no_reply_after_the_final_dot_is_an_unknown_outcome() {
    // The relay answers everything but the message: the step times out after the dot.
    let (mut connection, mut relay) =
        connected(Way::Pipelined, 64 * 1024, Duration::from_millis(300)).await;
    let anne = letter("anne@example.org", "Dear Anne");
    let (attempt, ()) = tokio::join!(connection.deliver(&anne, None, YES), async {
        relay.hears("DATA\r\n").await;
        relay
            .says("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go ahead\r\n")
            .await;
        relay.hears("\r\n.\r\n").await;
    });
    assert!(matches!(attempt, Attempt::Unknown { .. }), "{attempt:?}");
    assert!(
        connection.session.is_none(),
        "a session out of step is dropped"
    );
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
