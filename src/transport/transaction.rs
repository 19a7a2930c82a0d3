//! One letter over an open session: MAIL, RCPT, DATA and the message, one command at a time,
//! pipelined (RFC 2920) or chunked (RFC 3030), and the verdict the relay's replies come to.
//! Which step refused, and whether the final dot had gone, decide what the attempt means.

use std::time::Duration;

use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::Data;

use super::envelope::{Envelope, data_payload, envelope_group, envelope_of};
use super::session::Session;
use super::{Attempt, MayCommit, Outgoing, Reply, classify, withheld};
use crate::smtp_reply::{Accepted, Scope, SmtpReply, Step};

/// Runs one SMTP step within the timeout, folding a timeout into lettre's error shape.
pub(super) async fn bounded<T>(
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
pub(super) enum StepError {
    Smtp(lettre::transport::smtp::Error),
    Timeout(Duration),
    /// A pipelined reply not read because an earlier one never came.
    NoReply,
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
    pub(super) fn smtp_reply(&self, step: Step) -> Option<SmtpReply> {
        let StepError::Smtp(error) = self else {
            return None;
        };
        let code = u16::from(error.status()?);
        let text = std::error::Error::source(error).map_or_else(String::new, |s| s.to_string());
        Some(SmtpReply::new(step, code, &text))
    }

    /// An SMTP reply (as opposed to a broken connection or a timeout).
    pub(super) fn reply_code(&self) -> Option<u16> {
        match self {
            StepError::Smtp(e) => e.status().map(u16::from),
            StepError::Timeout(_) | StepError::NoReply => None,
        }
    }
}

/// What one transaction came to, and what it left of the session.
pub(super) struct Verdict {
    pub(super) attempt: Attempt,
    /// Every reply the session was owed was read: it can carry the next letter.
    pub(super) in_step: bool,
    /// A refusal before the final dot: the relay still holds the transaction, RSET ends it.
    pub(super) open_transaction: bool,
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
pub(super) async fn transaction(
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
            reply: Accepted::ByRelay(reply_of(Step::Message, &response)),
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

#[cfg(test)]
mod tests;
