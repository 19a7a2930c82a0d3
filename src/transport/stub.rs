//! An in-memory transport, for tests of the send path: its verdicts are scripted (for one
//! recipient, or for the next letters in order), and it keeps every letter it was handed with
//! the verdict it gave. It answers as a relay would: nothing is kept of a letter withheld
//! before its final dot.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Attempt, MayCommit, Outgoing, Relayer, Transport, withheld};
use crate::smtp_reply::{Accepted, SmtpReply, Step};

/// The stub's script and record, shared by every connection to it (clones share them too).
#[derive(Clone, Default)]
pub struct Stub(Arc<Mutex<Script>>);

#[derive(Default)]
struct Script {
    for_recipient: HashMap<String, VecDeque<Attempt>>,
    in_order: VecDeque<Attempt>,
    received: Vec<(Outgoing, Attempt)>,
    closed: usize,
}

impl Stub {
    /// A stub that accepts every letter ("250 2.0.0 Ok: queued as STUB1", …) until told
    /// otherwise.
    pub fn new() -> Stub {
        Stub::default()
    }

    /// The verdicts of the next letters to `recipient`, one each, in order; they come before
    /// the verdicts given to [`Stub::then`].
    pub fn answer(&self, recipient: &str, verdicts: impl IntoIterator<Item = Attempt>) -> &Stub {
        self.script()
            .for_recipient
            .entry(recipient.to_owned())
            .or_default()
            .extend(verdicts);
        self
    }

    /// The verdicts of the next letters, whoever they are to, one each, in order.
    pub fn then(&self, verdicts: impl IntoIterator<Item = Attempt>) -> &Stub {
        self.script().in_order.extend(verdicts);
        self
    }

    /// Every letter handed over, in order, with the verdict given (withheld ones excepted).
    pub fn received(&self) -> Vec<(Outgoing, Attempt)> {
        self.script().received.clone()
    }

    /// How many connections were closed.
    pub fn closed(&self) -> usize {
        self.script().closed
    }

    /// A relay named `name` whose letters come here.
    pub fn relayer(&self, name: &str) -> Relayer {
        Relayer::stub(name, self)
    }

    /// A connection to this stub.
    pub fn connection(&self) -> StubConnection {
        StubConnection(self.clone())
    }

    fn script(&self) -> MutexGuard<'_, Script> {
        // A test that panicked while holding it left nothing half-written.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Script {
    fn verdict_for(&mut self, message: &Outgoing) -> Attempt {
        let scripted = self
            .for_recipient
            .get_mut(&message.recipient)
            .and_then(VecDeque::pop_front)
            .or_else(|| self.in_order.pop_front());
        scripted.unwrap_or_else(|| {
            let queue_id = format!("2.0.0 Ok: queued as STUB{}", self.received.len() + 1);
            Attempt::Accepted {
                reply: Accepted::ByRelay(SmtpReply::new(Step::Message, 250, &queue_id)),
                notify: false,
            }
        })
    }
}

/// One connection to a [`Stub`].
pub struct StubConnection(Stub);

impl Transport for StubConnection {
    async fn deliver(
        &mut self,
        message: &Outgoing,
        _next: Option<&Outgoing>,
        may_commit: MayCommit<'_>,
    ) -> Attempt {
        if !may_commit() {
            return withheld();
        }
        let mut script = self.0.script();
        let attempt = script.verdict_for(message);
        script.received.push((message.clone(), attempt.clone()));
        attempt
    }

    async fn close(&mut self) {
        self.0.script().closed += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::classify;

    fn letter(recipient: &str) -> Outgoing {
        Outgoing {
            message_id: format!("{recipient}@id"),
            envelope_from: "b@bounces.example.fr".into(),
            recipient: recipient.into(),
            notice_id: "K7QF-3MZ9-P2XA".into(),
            file_name: format!("{recipient}.eml"),
            bytes: b"Subject: x\r\n\r\nHello\r\n".to_vec(),
        }
    }

    #[tokio::test]
    async fn verdicts_come_per_recipient_then_in_order_then_accepted() {
        let stub = Stub::new();
        let unknown = classify(SmtpReply::new(Step::RcptTo, 550, "5.1.1 unknown"));
        let greylisted = classify(SmtpReply::new(Step::RcptTo, 451, "4.7.1 Greylisted"));
        stub.answer("anne@a.fr", [unknown.clone()])
            .then([greylisted.clone()]);
        let mut connection = stub.relayer("stub").connection();
        let yes = || true;
        assert_eq!(
            connection.deliver(&letter("bob@b.fr"), None, &yes).await,
            greylisted
        );
        assert_eq!(
            connection.deliver(&letter("anne@a.fr"), None, &yes).await,
            unknown
        );
        let accepted = connection.deliver(&letter("anne@a.fr"), None, &yes).await;
        let Attempt::Accepted { reply, .. } = &accepted else {
            panic!("{accepted:?}");
        };
        assert_eq!(
            reply.smtp().map(SmtpReply::to_string).as_deref(),
            Some("250 2.0.0 Ok: queued as STUB3")
        );
        // Withheld: the stub, like a relay, never had it.
        let no = || false;
        assert!(matches!(
            connection.deliver(&letter("carl@c.fr"), None, &no).await,
            Attempt::Withheld { .. }
        ));
        connection.close().await;
        let received: Vec<String> = stub
            .received()
            .into_iter()
            .map(|(message, _)| message.recipient)
            .collect();
        assert_eq!(received, ["bob@b.fr", "anne@a.fr", "anne@a.fr"]);
        assert_eq!(stub.closed(), 1);
    }
}
