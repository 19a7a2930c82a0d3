//! What a relay's reply means, and for whom: read once, here, into one type.
//!
//! A reply is a basic code (RFC 5321), usually an enhanced status code (RFC 3463: class.subject.
//! detail) and a text, and it came at one step of the session (greeting, MAIL, RCPT, after the
//! message, …). Together they say whether to try again (`is_transient`, `is_permanent`) and whom
//! the verdict is about (`scope`): this recipient only (greylisting, a busy mailbox), the
//! recipient's whole domain (a provider asking us to send more slowly), or the relay itself (421,
//! a refusal at the greeting or at MAIL, too many connections). `send` paces each scope on its
//! own, so that one greylisted person never slows the other 339,999.
//!
//! The text is only read where the codes cannot tell: the big providers put their rate limits
//! under 4.7.x codes that also cover greylisting and policy, and some old relays give no enhanced
//! code at all.

use std::fmt;

/// The step of the SMTP session at which a reply came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Greeting,
    Ehlo,
    StartTls,
    Login,
    MailFrom,
    RcptTo,
    Data,
    /// After the message and its final dot (DATA), or after the last BDAT chunk.
    Message,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Greeting => "greeting",
            Step::Ehlo => "EHLO",
            Step::StartTls => "STARTTLS",
            Step::Login => "AUTH",
            Step::MailFrom => "MAIL FROM",
            Step::RcptTo => "RCPT TO",
            Step::Data => "DATA",
            Step::Message => "after the message",
        }
    }

    /// Whether the step concerns the session as a whole, before any recipient was named.
    fn is_session(self) -> bool {
        matches!(
            self,
            Step::Greeting | Step::Ehlo | Step::StartTls | Step::Login | Step::MailFrom
        )
    }
}

/// Whom a reply is about: what must slow down, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// This recipient only: the letter waits for its own retry, nothing else changes.
    Recipient,
    /// Every recipient at this domain: that domain's pace goes down.
    Domain,
    /// The relay: the whole run's pace goes down.
    Relay,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Recipient => "recipient",
            Scope::Domain => "domain",
            Scope::Relay => "relay",
        }
    }
}

/// Whether to try again: the one rule, for the relay's replies and for the delivery
/// notifications alike. The class is the first digit of a basic reply code (RFC 5321 § 4.2.1)
/// or of an enhanced status code (RFC 3463 § 3.1): 2 (and a basic 3) is positive, 4 is
/// transient (the same letter may succeed later), 5 is permanent (never again to this address).
/// Whom a transient reply slows is another question, answered by [`SmtpReply::scope`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Positive,
    Transient,
    Permanent,
}

impl Class {
    /// The class of a basic reply code (`250`, `451`, `550`); None outside 200 to 599.
    pub fn of_code(code: u16) -> Option<Class> {
        match code {
            200..=399 => Some(Class::Positive),
            400..=499 => Some(Class::Transient),
            500..=599 => Some(Class::Permanent),
            _ => None,
        }
    }
}

/// An enhanced status code, `4.7.1` (RFC 3463): class, subject and detail, the class 2, 4 or
/// 5 and the others of one to three digits. Read here only, for the relay's replies and for
/// the codes of delivery notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnhancedCode {
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

impl EnhancedCode {
    /// Reads `4.7.1` at the start of a reply's text (RFC 3463 puts it first).
    fn at_start_of(text: &str) -> Option<EnhancedCode> {
        let word = text.split_whitespace().next()?;
        match EnhancedCode::read_at(word.as_bytes(), 0) {
            Some((code, end)) if end == word.len() => Some(code),
            _ => None,
        }
    }

    /// The first code standing on its own anywhere in the text ("smtp; 550 5.1.10 RESOLVER"):
    /// not part of a longer dotted number such as an IP address or a version.
    pub fn find_in(text: &str) -> Option<EnhancedCode> {
        let bytes = text.as_bytes();
        (0..bytes.len()).find_map(|start| {
            let after_number =
                start > 0 && (bytes[start - 1].is_ascii_digit() || bytes[start - 1] == b'.');
            if after_number {
                return None;
            }
            let (code, end) = EnhancedCode::read_at(bytes, start)?;
            let continues = bytes.get(end).is_some_and(|b| {
                b.is_ascii_digit()
                    || (*b == b'.' && bytes.get(end + 1).is_some_and(u8::is_ascii_digit))
            });
            (!continues).then_some(code)
        })
    }

    /// The code starting at `start`, and where it ends.
    fn read_at(bytes: &[u8], start: usize) -> Option<(EnhancedCode, usize)> {
        let class = match bytes.get(start)? {
            digit @ (b'2' | b'4' | b'5') => digit - b'0',
            _ => return None,
        };
        let mut position = start + 1;
        let mut parts = [0u16; 2];
        for part in &mut parts {
            if bytes.get(position) != Some(&b'.') {
                return None;
            }
            position += 1;
            let digits = bytes
                .get(position..)
                .unwrap_or_default()
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .take(4)
                .fold((0usize, 0u16), |(n, value), d| {
                    (n + 1, value * 10 + u16::from(d - b'0'))
                });
            if !(1..=3).contains(&digits.0) {
                return None;
            }
            *part = digits.1;
            position += digits.0;
        }
        let code = EnhancedCode {
            class,
            subject: parts[0],
            detail: parts[1],
        };
        Some((code, position))
    }

    /// The class, by the one rule of [`Class`].
    pub fn class(self) -> Class {
        match self.class {
            2 => Class::Positive,
            4 => Class::Transient,
            _ => Class::Permanent,
        }
    }

    /// X.2.2, mailbox full (RFC 3463 § 3.3): the person exists, and the mailbox may empty.
    pub fn is_mailbox_full(self) -> bool {
        self.subject == 2 && self.detail == 2
    }
}

/// One reply of the relay, with the step it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpReply {
    code: u16,
    enhanced: Option<EnhancedCode>,
    step: Step,
    text: String,
}

/// Replies are kept in the database and shown to the operator: a relay that answers pages of
/// text is cut here.
const MAX_TEXT: usize = 500;

/// Wording of "you send too much, too fast" in the replies of the big providers and of the
/// usual relays (Postfix, Exim, Exchange), in English and French. Lowercase.
const RATE_WORDING: [&str; 14] = [
    "rate",
    "trop de",
    "ralenti",
    "too many",
    "too much",
    "too fast",
    "too quickly",
    "throttl",
    "slow down",
    "exceeded",
    "limit",
    "temporarily deferred",
    "ts01",
    "ts02",
];

/// Greylisting, as Postgrey, rspamd, Exim, Orange, Free and others word it. Lowercase.
const GREYLIST_WORDING: [&str; 4] = ["greylist", "graylist", "grey list", "gray list"];

impl SmtpReply {
    /// A reply as lettre or the test relay gives it: its code and its text (which begins with
    /// the enhanced code when the relay sends one). The text is cut to 500 characters.
    pub fn new(step: Step, code: u16, text: &str) -> SmtpReply {
        let text: String = text.trim().chars().take(MAX_TEXT).collect();
        SmtpReply {
            code,
            enhanced: EnhancedCode::at_start_of(&text),
            step,
            text,
        }
    }

    /// Reads back a reply as `Display` wrote it ("451 4.7.1 Greylisted (at RCPT TO)"), for the
    /// code of a recorded reply. The step is not kept there, so it is taken as given.
    pub fn parse(step: Step, recorded: &str) -> Option<SmtpReply> {
        let code: u16 = recorded.get(..3)?.parse().ok()?;
        if !(200..=599).contains(&code) {
            return None;
        }
        let rest = recorded[3..].trim_start_matches([' ', '-']);
        let rest = rest
            .rsplit_once(" (at ")
            .map_or(rest, |(text, _)| text)
            .trim();
        Some(SmtpReply::new(step, code, rest))
    }

    pub fn code(&self) -> u16 {
        self.code
    }

    pub fn enhanced(&self) -> Option<EnhancedCode> {
        self.enhanced
    }

    pub fn step(&self) -> Step {
        self.step
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The class of the basic code, which decides (see [`Class`]); the enhanced code refines
    /// whom the reply concerns, never whether it is final.
    pub fn class(&self) -> Option<Class> {
        Class::of_code(self.code)
    }

    pub fn is_positive(&self) -> bool {
        self.class() == Some(Class::Positive)
    }

    /// 4xx: try again later.
    pub fn is_transient(&self) -> bool {
        self.class() == Some(Class::Transient)
    }

    /// 5xx: never again to this address.
    pub fn is_permanent(&self) -> bool {
        self.class() == Some(Class::Permanent)
    }

    /// The relay closes the session after this reply (RFC 5321 § 3.8: 421).
    pub fn closes_session(&self) -> bool {
        self.code == 421
    }

    fn speaks_of(&self, words: &[&str]) -> bool {
        let lower = self.text.to_lowercase();
        words.iter().any(|w| lower.contains(w))
    }

    pub fn is_greylisting(&self) -> bool {
        self.is_transient() && self.speaks_of(&GREYLIST_WORDING)
    }

    /// Whom the reply is about; see [`Scope`]. Only meaningful for a transient reply: a
    /// permanent one ends that letter, whatever its scope, and a positive one slows nothing.
    pub fn scope(&self) -> Scope {
        if self.is_positive() {
            return Scope::Recipient;
        }
        // 421 closes the session whatever the step; a refusal before any recipient was named
        // is about us, not about a person.
        if self.closes_session() || self.step.is_session() {
            return Scope::Relay;
        }
        if self.speaks_of(&["connection", "connexion", "concurrent", "sessions"])
            && self.is_transient()
        {
            return Scope::Relay;
        }
        if self.is_greylisting() {
            return Scope::Recipient;
        }
        let Some(enhanced) = self.enhanced else {
            return if self.is_transient() && self.speaks_of(&RATE_WORDING) {
                Scope::Domain
            } else {
                Scope::Recipient
            };
        };
        match (enhanced.subject, enhanced.detail) {
            // Mailbox status (4.2.1 "mailbox busy" or "receiving mail too quickly", 4.2.2 full):
            // about this mailbox only.
            (2, _) | (1, _) => Scope::Recipient,
            // Mail system status: 4.3.1 storage, 4.3.2 not accepting, 4.3.5 configuration are
            // the relay's; 4.3.0 "try again later" is about the letter.
            (3, 1) | (3, 2) | (3, 5) => Scope::Relay,
            (3, _) => Scope::Recipient,
            // Network and routing (4.4.x): the destination is congested or unreachable.
            (4, _) => Scope::Domain,
            // Security or policy: the providers' rate limits (Gmail 4.7.28, Outlook 4.7.500 to
            // 4.7.650, Yahoo 4.7.0 TSS04) live here beside policy refusals.
            (7, _) if self.is_transient() && self.speaks_of(&RATE_WORDING) => Scope::Domain,
            (7, 28) | (7, 500..=699) => Scope::Domain,
            _ => Scope::Recipient,
        }
    }

    /// In a few words, for the log and `status`.
    pub fn meaning(&self) -> &'static str {
        if self.is_positive() {
            return "accepted";
        }
        if self.is_greylisting() {
            return "greylisted";
        }
        match (self.scope(), self.is_transient()) {
            (Scope::Relay, true) => "the relay asks to slow down or is busy",
            (Scope::Domain, true) => "the domain asks to slow down",
            (Scope::Recipient, true) => "temporary failure for this recipient",
            (_, false) => "refused",
        }
    }
}

impl fmt::Display for SmtpReply {
    /// "451 4.7.1 Greylisted, please try again later (at RCPT TO)": the code first, so that the
    /// ledger and the exports can read it back. A positive reply goes without its step: the
    /// only one kept is the reply after the message, "250 2.0.0 Ok: queued as 4P0001", as the
    /// relay wrote it (its queue id is matched against delivery notifications).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_positive() {
            return if self.text.is_empty() {
                write!(f, "{}", self.code)
            } else {
                write!(f, "{} {}", self.code, self.text)
            };
        }
        if self.text.is_empty() {
            write!(f, "{} (at {})", self.code, self.step.as_str())
        } else {
            write!(f, "{} {} (at {})", self.code, self.text, self.step.as_str())
        }
    }
}

/// Who took an accepted letter: a relay, with its reply after the message, or the outbox
/// folder of the `file://` transport, which has no reply (none is made up for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    ByRelay(SmtpReply),
    Written { file_name: String },
}

impl Accepted {
    /// The relay's reply, when a relay took it.
    pub fn smtp(&self) -> Option<&SmtpReply> {
        match self {
            Accepted::ByRelay(reply) => Some(reply),
            Accepted::Written { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(step: Step, code: u16, text: &str) -> SmtpReply {
        SmtpReply::new(step, code, text)
    }

    #[test]
    fn the_enhanced_code_is_read_from_the_start_of_the_text() {
        let reply = at(
            Step::RcptTo,
            451,
            "4.7.1 Greylisted, please try again later",
        );
        assert_eq!(
            reply.enhanced().map(|e| e.to_string()),
            Some("4.7.1".into())
        );
        assert_eq!(at(Step::RcptTo, 451, "Try again").enhanced(), None);
        assert_eq!(at(Step::RcptTo, 451, "4.7 nope").enhanced(), None);
    }

    #[test]
    fn an_enhanced_code_is_found_standing_on_its_own() {
        let found = |text| EnhancedCode::find_in(text).map(|c| c.to_string());
        assert_eq!(found("550 5.1.1 <a@b.c>").as_deref(), Some("5.1.1"));
        assert_eq!(found("'550 5.1.10 RESOLVER'").as_deref(), Some("5.1.10"));
        assert_eq!(found("host 192.0.2.1 said"), None);
        assert_eq!(found("version 1.4.2.5"), None);
        assert_eq!(found("5.1.1234 x"), None);
        assert_eq!(found("5.1"), None);
        assert_eq!(found(""), None);
        // At the start of a reply, the first word must be the code and nothing else.
        assert_eq!(at(Step::RcptTo, 550, "5.1.1: unknown").enhanced(), None);
        assert_eq!(at(Step::RcptTo, 550, "5.1.1000 x").enhanced(), None);
    }

    #[test]
    fn one_class_rule_for_codes_and_enhanced_codes() {
        assert_eq!(Class::of_code(354), Some(Class::Positive));
        assert_eq!(Class::of_code(421), Some(Class::Transient));
        assert_eq!(Class::of_code(552), Some(Class::Permanent));
        assert_eq!(Class::of_code(600), None);
        let class = |text| EnhancedCode::find_in(text).map(EnhancedCode::class);
        assert_eq!(class("2.0.0"), Some(Class::Positive));
        assert_eq!(class("4.2.2"), Some(Class::Transient));
        assert_eq!(class("5.2.2"), Some(Class::Permanent));
        // The basic code decides a reply, even when its enhanced code disagrees.
        assert!(at(Step::RcptTo, 450, "5.1.1 odd").is_transient());
    }

    #[test]
    fn transient_and_permanent() {
        assert!(at(Step::RcptTo, 451, "4.3.0 later").is_transient());
        assert!(at(Step::RcptTo, 550, "5.1.1 unknown").is_permanent());
        assert!(!at(Step::Message, 250, "2.0.0 Ok").is_transient());
    }

    /// The table of docs/operator/sending.md and docs/operator/relay.md: what each reply means and whom it slows.
    #[test]
    fn replies_are_read_for_whom_they_concern() {
        use Scope::*;
        let cases = [
            // greylisting: the letter waits, nobody else
            (
                Step::RcptTo,
                451,
                "4.7.1 Greylisted, please try again later",
                Recipient,
            ),
            (
                Step::RcptTo,
                450,
                "4.7.1 <a@b.fr>: Recipient address rejected: Greylisted",
                Recipient,
            ),
            (
                Step::RcptTo,
                450,
                "4.2.0 Greylisted, see http://postgrey.schweikert.ch/",
                Recipient,
            ),
            (
                Step::RcptTo,
                451,
                "4.3.0 Temporary failure, try again later",
                Recipient,
            ),
            (
                Step::RcptTo,
                450,
                "4.2.1 The user you are trying to contact is receiving mail too quickly",
                Recipient,
            ),
            (Step::RcptTo, 452, "4.2.2 Mailbox full", Recipient),
            // a provider slowing a domain
            (
                Step::RcptTo,
                421,
                "4.7.0 Try again later, closing connection.",
                Relay,
            ),
            (
                Step::Message,
                450,
                "4.7.28 Our system has detected an unusual rate of unsolicited mail",
                Domain,
            ),
            (
                Step::RcptTo,
                451,
                "4.7.500 Server busy. Please try again later from [203.0.113.1]",
                Domain,
            ),
            (
                Step::Message,
                451,
                "4.7.0 [TSS04] Messages from 203.0.113.1 temporarily deferred",
                Domain,
            ),
            (
                Step::RcptTo,
                450,
                "4.4.2 Destination temporarily unreachable",
                Domain,
            ),
            (Step::RcptTo, 451, "Too many messages, slow down", Domain),
            // the relay itself
            (Step::Greeting, 421, "4.3.2 Service not available", Relay),
            (
                Step::MailFrom,
                451,
                "4.7.0 rate limit exceeded, slow down",
                Relay,
            ),
            (
                Step::MailFrom,
                421,
                "4.7.0 rate limit exceeded, slow down",
                Relay,
            ),
            (
                Step::RcptTo,
                451,
                "4.3.1 Insufficient system storage",
                Relay,
            ),
            (
                Step::RcptTo,
                450,
                "Too many connections from your host",
                Relay,
            ),
            // refusals concern the recipient
            (Step::RcptTo, 550, "5.1.1 User unknown", Recipient),
            (Step::Message, 554, "5.7.1 Message rejected", Recipient),
        ];
        for (step, code, text, scope) in cases {
            assert_eq!(
                at(step, code, text).scope(),
                scope,
                "{code} {text} at {step:?}"
            );
        }
    }

    #[test]
    fn a_recorded_reply_reads_back() {
        let reply = at(Step::RcptTo, 451, "4.7.1 Greylisted");
        let recorded = reply.to_string();
        assert_eq!(recorded, "451 4.7.1 Greylisted (at RCPT TO)");
        assert_eq!(SmtpReply::parse(Step::RcptTo, &recorded), Some(reply));
        assert_eq!(
            SmtpReply::parse(Step::RcptTo, "no reply after the message"),
            None
        );
    }

    #[test]
    fn an_acceptance_is_recorded_as_the_relay_wrote_it() {
        let reply = at(Step::Message, 250, "2.0.0 Ok: queued as 4P0001");
        assert_eq!(reply.to_string(), "250 2.0.0 Ok: queued as 4P0001");
        assert_eq!(
            SmtpReply::parse(Step::Message, &reply.to_string()),
            Some(reply)
        );
    }

    #[test]
    fn long_texts_are_cut() {
        let reply = at(Step::Message, 250, &"x".repeat(10_000));
        assert_eq!(reply.text().len(), MAX_TEXT);
    }
}
