//! Reading one bounce message: decides whether a returned mail is a hard bounce, a
//! soft (temporary) bounce, a delay notice, a complaint (an ARF feedback report, RFC 5965),
//! an auto-reply, a person's reply or not a bounce at all, and pulls out what
//! breachmail needs to mark the notice: the failed recipients with their delivery
//! status, the VERP address the bounce came back to, and the Message-ID / X-Notice-Id
//! of the notice that bounced.
//!
//! Standard RFC 3464 / RFC 6533 delivery reports are read field by field; the many
//! non-standard shapes (Exim, Sendmail, Exchange text, Gmail, Orange...) are read from
//! their human text with wording tables. MIME decoding is left to `mail-parser`.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use mail_parser::{HeaderName, HeaderValue, Message, MessageParser, MimeHeaders, PartType};

use crate::smtp_reply::{Class, EnhancedCode};

/// Bounces bigger than this are refused unparsed: no real DSN is this big, and the
/// limit keeps one hostile message from eating the memory of a 340,000-notice run.
pub const MAX_BOUNCE_BYTES: usize = 10 * 1024 * 1024;

/// Longest diagnostic text kept per recipient (in characters).
const MAX_DIAGNOSTIC_CHARS: usize = 500;

/// What a returned message means for the notice it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BounceKind {
    /// Permanent failure: the notice will never reach this address.
    Hard,
    /// Temporary failure: the notice may still arrive, or may be resent later.
    Soft,
    /// "Still trying": the relay has not given up yet; a note, not a bounce.
    Delayed,
    /// A success notification (RFC 3464 `Action: relayed`, `delivered` or `expanded`): the
    /// person's provider accepted the notice.
    Delivered,
    /// A feedback-loop report (ARF): the person marked the notice as spam.
    Complaint,
    /// A vacation / out-of-office answer: the notice was delivered.
    AutoReply,
    /// A person wrote back: someone should read it, they may be asking for help.
    Reply,
    /// Nothing that reports a delivery problem.
    NotABounce,
}

impl BounceKind {
    /// Short lowercase name, as used in reports and in `corpus/expected.tsv`.
    pub fn as_str(self) -> &'static str {
        match self {
            BounceKind::Hard => "hard",
            BounceKind::Soft => "soft",
            BounceKind::Delayed => "delayed",
            BounceKind::Delivered => "delivered",
            BounceKind::Complaint => "complaint",
            BounceKind::AutoReply => "auto-reply",
            BounceKind::Reply => "reply",
            BounceKind::NotABounce => "not-a-bounce",
        }
    }
}

impl fmt::Display for BounceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything breachmail learns from one returned message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounce {
    pub kind: BounceKind,
    pub recipients: Vec<RecipientStatus>,
    pub envelope_to: Option<String>,
    pub original_message_id: Option<String>,
    pub notice_id: Option<String>,
    pub message_id: Option<String>,
    /// What a feedback report says, for a complaint.
    pub feedback: Option<Feedback>,
    /// The envelope id the notice went with (RFC 3461 `ENVID`, our notice id), as the report's
    /// `Original-Envelope-Id` quotes it back.
    pub envelope_id: Option<String>,
    /// The report's own `Date`, Unix milliseconds: when the relay wrote it.
    pub date: Option<i64>,
}

/// The fields of an ARF feedback report (RFC 5965) that the operator needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feedback {
    /// `abuse`, `fraud`, `not-spam`, ... as the report says, lowercased.
    pub feedback_type: String,
    /// Who runs the feedback loop: the report sender's domain (`yahoo.com`, `laposte.net`),
    /// so that complaints can be counted per provider.
    pub provider: String,
}

/// The delivery outcome for one recipient named in a bounce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientStatus {
    pub final_recipient: Option<String>,
    pub action: Option<String>,
    pub status: Option<String>,
    pub diagnostic: Option<String>,
    pub kind: BounceKind,
    /// The server the relay handed the notice to (`Remote-MTA`, the provider's), without its
    /// `dns;` type.
    pub remote_mta: Option<String>,
    /// `Last-Attempt-Date`, Unix milliseconds, when the report gives it.
    pub last_attempt_at: Option<i64>,
}

/// Why a returned message could not be read as mail at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Zero bytes, or only whitespace.
    Empty,
    /// Bigger than [`MAX_BOUNCE_BYTES`]; never parsed.
    TooLarge { size: usize },
    /// Does not start with a mail header block (binary junk, a stray text file...).
    NotAMessage,
    /// A multipart message cut short before anything usable.
    Truncated,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Empty => f.write_str("empty message"),
            ParseError::TooLarge { size } => write!(
                f,
                "message of {size} bytes is over the {MAX_BOUNCE_BYTES}-byte bounce limit"
            ),
            ParseError::NotAMessage => f.write_str("not a mail message (no header block)"),
            ParseError::Truncated => {
                f.write_str("truncated multipart message with no usable delivery report")
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// Reads one raw bounce (RFC 5322 bytes, optionally preceded by an mbox "From " line).
pub fn parse_bounce(raw: &[u8]) -> Result<Bounce, ParseError> {
    if raw.len() > MAX_BOUNCE_BYTES {
        return Err(ParseError::TooLarge { size: raw.len() });
    }
    let raw = skip_mbox_from_line(raw);
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError::Empty);
    }
    if !starts_with_mail_headers(raw) {
        return Err(ParseError::NotAMessage);
    }
    // mail-parser promises not to panic, but it does index arithmetic on hostile input
    // (debug-build overflow checks included). One bad bounce must not stop a run that
    // reads hundreds of thousands, so a panic inside it is turned into an error.
    let parsed = catch_unwind(AssertUnwindSafe(|| mime_parser().parse(raw)))
        .map_err(|_| ParseError::NotAMessage)?;
    let message = parsed.ok_or(ParseError::NotAMessage)?;
    read_bounce(&message, raw)
}

fn mime_parser() -> &'static MessageParser {
    // Building the parser fills a header table; do it once for the whole run.
    static PARSER: OnceLock<MessageParser> = OnceLock::new();
    PARSER.get_or_init(MessageParser::new)
}

/// What the walk over the MIME parts of a bounce collects.
#[derive(Default)]
struct ReportParts {
    /// Bodies of message/delivery-status and message/global-delivery-status parts.
    delivery_status: Vec<String>,
    /// Bodies of message/feedback-report parts (RFC 5965).
    feedback_report: Vec<String>,
    /// Human-readable text/plain parts of the bounce itself.
    plain_text: Vec<String>,
    /// text/html parts, tags stripped; used only when there is no plain text.
    html_text: Vec<String>,
    /// Headers of the returned notice (message/rfc822 or text/rfc822-headers).
    returned: ReturnedNotice,
}

/// What survived of the notice that bounced.
#[derive(Default)]
struct ReturnedNotice {
    message_id: Option<String>,
    notice_id: Option<String>,
    /// The notice's From address: never a failed recipient.
    sender: Option<String>,
    /// The notice's Return-Path: our VERP address, which feedback loops send back intact.
    return_path: Option<String>,
}

impl ReturnedNotice {
    fn fill_from(&mut self, other: ReturnedNotice) {
        if self.message_id.is_none() {
            self.message_id = other.message_id;
        }
        if self.notice_id.is_none() {
            self.notice_id = other.notice_id;
        }
        if self.sender.is_none() {
            self.sender = other.sender;
        }
        if self.return_path.is_none() {
            self.return_path = other.return_path;
        }
    }
}

fn read_bounce(message: &Message<'_>, raw: &[u8]) -> Result<Bounce, ParseError> {
    let root_headers = message
        .parts
        .first()
        .map(|p| p.headers.as_slice())
        .unwrap_or(&[]);
    let header = |name: &str| header_text(message, root_headers, name);

    let subject = header("subject").unwrap_or_default();
    let bounce_from = header("from").unwrap_or_default();
    let envelope_to = envelope_address(message, root_headers);
    let message_id = header("message-id").and_then(|value| message_id_from(&value));

    let mut report = ReportParts::default();
    collect_parts(message, &mut report);

    let mut recipients: Vec<RecipientStatus> = report
        .delivery_status
        .iter()
        .flat_map(|text| recipients_from_delivery_status(text))
        .collect();

    let human_text = if report.plain_text.is_empty() {
        report.html_text.join("\n")
    } else {
        report.plain_text.join("\n")
    };

    // Quoted originals in text bounces tell us the notice's sender, which must not be
    // mistaken for a failed recipient.
    let mut returned = std::mem::take(&mut report.returned);
    returned.fill_from(scan_quoted_headers(&human_text));

    let feedback = report
        .feedback_report
        .first()
        .map(|text| feedback_from_report(text, &bounce_from));
    let mut envelope_to = envelope_to;
    if let Some((feedback, original_recipient)) = &feedback {
        // A feedback loop sends its report to the address registered with it, not to the
        // VERP address: the returned notice's Return-Path still carries the signed token.
        if let Some(verp) = returned
            .return_path
            .clone()
            .filter(|address| address.starts_with(VERP_PREFIX))
        {
            envelope_to = Some(verp);
        }
        recipients = vec![RecipientStatus {
            final_recipient: original_recipient.clone(),
            action: None,
            status: None,
            diagnostic: Some(feedback.feedback_type.clone()),
            kind: BounceKind::Complaint,
            remote_mta: None,
            last_attempt_at: None,
        }];
    } else if recipients.is_empty() {
        let mut not_recipients: Vec<String> = Vec::new();
        not_recipients.extend(first_address(&bounce_from));
        not_recipients.extend(envelope_to.clone());
        not_recipients.extend(returned.sender.clone());
        recipients = recipients_from_text(&subject, &bounce_from, &human_text, &not_recipients);
    }

    let has_kind = |kind: BounceKind| recipients.iter().any(|r| r.kind == kind);
    let no_report = report.delivery_status.is_empty();
    let kind = if feedback.is_some() {
        BounceKind::Complaint
    } else if has_kind(BounceKind::Hard) {
        BounceKind::Hard
    } else if has_kind(BounceKind::Soft) {
        BounceKind::Soft
    } else if has_kind(BounceKind::Delayed) {
        BounceKind::Delayed
    } else if has_kind(BounceKind::Delivered) {
        BounceKind::Delivered
    } else if no_report && is_auto_reply(&header, &subject, &human_text) {
        // Postfix marks its own DSNs "Auto-Submitted: auto-replied": only a message
        // without a delivery report counts as a vacation-style answer.
        BounceKind::AutoReply
    } else if no_report && recipients.is_empty() && is_human_reply(&header, &subject, &bounce_from)
    {
        BounceKind::Reply
    } else {
        BounceKind::NotABounce
    };

    // A cut report that yielded neither an address nor any code or wording is noise.
    let usable = recipients
        .iter()
        .any(|r| r.final_recipient.is_some() || r.diagnostic.is_some())
        || matches!(
            kind,
            BounceKind::AutoReply | BounceKind::Reply | BounceKind::Complaint
        );
    if !usable && is_cut_multipart(message, raw) {
        return Err(ParseError::Truncated);
    }

    // In-Reply-To / References come before quoted body text: they are exact, while
    // quoted text may be mangled by the bouncing server.
    let replied_to = header("in-reply-to")
        .and_then(|value| message_id_from(&value))
        .or_else(|| {
            header("references")
                .and_then(|value| value.split_whitespace().last().and_then(message_id_from))
        });
    let mut original_message_id = returned.message_id.or(replied_to);
    let mut notice_id = returned.notice_id;
    if original_message_id.is_none() || notice_id.is_none() {
        // Last resort: parts mail-parser could not decode (cut or broken MIME) may still
        // carry the notice headers in the raw body.
        let body = raw_body(raw);
        let scanned = scan_quoted_headers(&String::from_utf8_lossy(body));
        original_message_id = original_message_id.or(scanned.message_id);
        notice_id = notice_id.or(scanned.notice_id);
    }

    let envelope_id = report
        .delivery_status
        .iter()
        .find_map(|text| envelope_id_from_delivery_status(text));
    let date = header("date").and_then(|value| rfc822_millis(&value));

    Ok(Bounce {
        kind,
        recipients,
        envelope_to,
        original_message_id,
        notice_id,
        message_id,
        feedback: feedback.map(|(feedback, _)| feedback),
        envelope_id,
        date,
    })
}

/// Reads a message/feedback-report body (RFC 5965 section 3.1): the feedback type and the
/// original recipient (often redacted by the provider), and names the provider by the report
/// sender's domain, else the Reporting-MTA's.
fn feedback_from_report(text: &str, report_from: &str) -> (Feedback, Option<String>) {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let field = |name: &str| {
        fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.as_str())
    };
    let feedback_type = field("feedback-type")
        .and_then(|value| value.split_whitespace().next())
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| "abuse".to_string());
    let original_recipient = field("original-rcpt-to").and_then(first_address);
    let reporting_mta = field("reporting-mta").map(|value| {
        value
            .split_once(';')
            .map_or(value, |(_, host)| host)
            .trim()
            .to_ascii_lowercase()
    });
    let provider = first_address(report_from)
        .and_then(|address| {
            address
                .rsplit_once('@')
                .map(|(_, domain)| domain.to_string())
        })
        .or(reporting_mta)
        .map(|domain| organisation_domain(&domain))
        .filter(|domain| !domain.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    (
        Feedback {
            feedback_type,
            provider,
        },
        original_recipient,
    )
}

/// `fbl.mail.yahoo.com` -> `yahoo.com`; `feedback.laposte.net` -> `laposte.net`. The last two
/// labels, or three under a short second-level label (`example.co.uk`).
fn organisation_domain(domain: &str) -> String {
    let labels: Vec<&str> = domain.trim_end_matches('.').split('.').collect();
    let keep = match labels.as_slice() {
        [.., second, last] if last.len() == 2 && second.len() <= 3 && labels.len() > 2 => 3,
        _ => 2,
    };
    labels
        .get(labels.len().saturating_sub(keep)..)
        .unwrap_or_default()
        .join(".")
}

/// A person writing back: a message that answers another (In-Reply-To, References, a "Re:"
/// subject) and that no machine sent (no Auto-Submitted, no mailing-list or bulk marks, not a
/// mailer-daemon).
fn is_human_reply(header: &impl Fn(&str) -> Option<String>, subject: &str, from: &str) -> bool {
    let from = from.to_lowercase();
    if has_any(&from, BOUNCE_SENDERS) {
        return false;
    }
    let machine = header("auto-submitted").is_some_and(|v| !v.trim().eq_ignore_ascii_case("no"))
        || header("precedence").is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "bulk" | "list" | "junk" | "auto_reply"
            )
        })
        || header("list-id").is_some();
    if machine {
        return false;
    }
    let subject = subject.trim_start().to_lowercase();
    header("in-reply-to").is_some()
        || header("references").is_some()
        || REPLY_SUBJECT_PREFIXES
            .iter()
            .any(|prefix| subject.starts_with(prefix))
}

/// How mail programs mark an answer or a forward, in French and English (and German, for
/// Outlook's "AW:").
const REPLY_SUBJECT_PREFIXES: &[&str] = &[
    "re:", "re :", "ré:", "réf", "aw:", "tr:", "tr :", "fw:", "fwd:",
];

/// Sorts the top-level parts of the bounce by what they are for. Nested messages are
/// not descended into for text: their body is the notice itself, whose wording must
/// not be read as the bounce's.
fn collect_parts(message: &Message<'_>, report: &mut ReportParts) {
    for part in &message.parts {
        let (ctype, subtype) = part
            .content_type()
            .map(|ct| {
                (
                    ct.ctype().to_ascii_lowercase(),
                    ct.subtype().unwrap_or_default().to_ascii_lowercase(),
                )
            })
            .unwrap_or_else(|| ("text".to_string(), "plain".to_string()));
        let is_delivery_status = ctype == "message"
            && (subtype == "delivery-status" || subtype == "global-delivery-status");
        let is_feedback_report = ctype == "message" && subtype == "feedback-report";
        let is_returned_headers = (ctype == "text" && subtype == "rfc822-headers")
            || (ctype == "message"
                && (subtype == "global-headers" || subtype == "rfc822" || subtype == "global"));

        let text: std::borrow::Cow<'_, str> = match &part.body {
            PartType::Multipart(_) => continue,
            PartType::Message(nested) => {
                report.returned.fill_from(returned_from_message(nested));
                continue;
            }
            PartType::Text(text) | PartType::Html(text) => text.as_ref().into(),
            PartType::Binary(bytes) | PartType::InlineBinary(bytes) => {
                if !(is_delivery_status || is_feedback_report || is_returned_headers) {
                    continue; // attachments such as icons in Exchange NDRs
                }
                String::from_utf8_lossy(bytes)
            }
        };
        if is_delivery_status {
            report.delivery_status.push(text.into_owned());
        } else if is_feedback_report {
            report.feedback_report.push(text.into_owned());
        } else if is_returned_headers {
            report.returned.fill_from(scan_quoted_headers(&text));
        } else if matches!(part.body, PartType::Html(_)) {
            report.html_text.push(html_to_text(&text));
        } else if ctype == "text" {
            report.plain_text.push(text.into_owned());
        }
    }
}

fn returned_from_message(nested: &Message<'_>) -> ReturnedNotice {
    let headers = nested
        .parts
        .first()
        .map(|p| p.headers.as_slice())
        .unwrap_or(&[]);
    ReturnedNotice {
        message_id: header_text(nested, headers, "message-id").and_then(|v| message_id_from(&v)),
        notice_id: header_text(nested, headers, "x-notice-id").and_then(|v| notice_id_from(&v)),
        sender: header_text(nested, headers, "from").and_then(|v| first_address(&v)),
        return_path: header_text(nested, headers, "return-path").and_then(|v| first_address(&v)),
    }
}

/// Local-part prefix of breachmail's VERP bounce addresses ("b-<token>@bounces...").
pub const VERP_PREFIX: &str = "b-";

/// The address the bounce was delivered to. Postfix puts the pre-alias address in
/// X-Original-To and the final mailbox in Delivered-To, and forwarding adds more
/// Delivered-To lines, so the first VERP-looking address among all of them wins; the
/// first address in Delivered-To / X-Original-To / To / Envelope-To order otherwise.
fn envelope_address(message: &Message<'_>, headers: &[mail_parser::Header<'_>]) -> Option<String> {
    let mut candidates = Vec::new();
    for name in ["delivered-to", "x-original-to", "to", "envelope-to"] {
        for header in headers
            .iter()
            .filter(|h| h.name.as_str().eq_ignore_ascii_case(name))
        {
            let value = message
                .raw_message
                .get(header.offset_start as usize..header.offset_end as usize)
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            candidates.extend(first_address(&value));
        }
    }
    candidates
        .iter()
        .find(|address| address.starts_with(VERP_PREFIX))
        .or(candidates.first())
        .cloned()
}

/// A header's value as unfolded text. The raw bytes are preferred over mail-parser's
/// typed value so that unknown headers (Delivered-To, X-Notice-Id...) and known ones
/// read the same way; RFC 2047 words are taken decoded from the typed value.
fn header_text(
    message: &Message<'_>,
    headers: &[mail_parser::Header<'_>],
    name: &str,
) -> Option<String> {
    let header = headers
        .iter()
        .find(|h| h.name.as_str().eq_ignore_ascii_case(name))?;
    let decoded = match (&header.name, &header.value) {
        (HeaderName::Subject, HeaderValue::Text(text)) => Some(text.to_string()),
        _ => None,
    };
    let raw = message
        .raw_message
        .get(header.offset_start as usize..header.offset_end as usize)
        .map(|bytes| collapse_whitespace(&String::from_utf8_lossy(bytes)));
    decoded.or(raw).or_else(|| match &header.value {
        HeaderValue::Text(text) => Some(text.to_string()),
        HeaderValue::TextList(list) => Some(list.join(" ")),
        _ => None,
    })
}

fn skip_mbox_from_line(raw: &[u8]) -> &[u8] {
    if raw.starts_with(b"From ") {
        match raw.iter().position(|&b| b == b'\n') {
            Some(end) => raw.get(end + 1..).unwrap_or_default(),
            None => &[],
        }
    } else {
        raw
    }
}

/// True when the bytes open with a header block holding at least one field every mail
/// has; random bytes and plain text files fail this.
fn starts_with_mail_headers(raw: &[u8]) -> bool {
    const MAIL_FIELDS: &[&str] = &[
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "received",
        "return-path",
        "content-type",
        "delivered-to",
        "mime-version",
    ];
    let mut known_fields = 0;
    for (index, line) in raw.split(|&b| b == b'\n').take(500).enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            if index == 0 {
                return false;
            }
            continue; // folded continuation
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return false;
        };
        let name = line.get(..colon).unwrap_or_default();
        if name.is_empty() || !name.iter().all(|&b| (33..=126).contains(&b)) {
            return false;
        }
        if MAIL_FIELDS
            .iter()
            .any(|field| field.as_bytes().eq_ignore_ascii_case(name))
        {
            known_fields += 1;
        }
    }
    known_fields > 0
}

/// A multipart message whose closing boundary never came: cut in transit or on disk.
fn is_cut_multipart(message: &Message<'_>, raw: &[u8]) -> bool {
    let Some(content_type) = message.parts.first().and_then(|p| p.content_type()) else {
        return false;
    };
    if !content_type.ctype().eq_ignore_ascii_case("multipart") {
        return false;
    }
    let Some(boundary) = content_type.attribute("boundary") else {
        return true;
    };
    let closing = format!("--{boundary}--");
    !contains_bytes(raw, closing.as_bytes())
}

fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Everything after the first blank line.
fn raw_body(raw: &[u8]) -> &[u8] {
    let mut previous_newline = false;
    for (index, &byte) in raw.iter().enumerate() {
        if byte == b'\n' {
            if previous_newline {
                return raw.get(index + 1..).unwrap_or_default();
            }
            previous_newline = true;
        } else if byte != b'\r' {
            previous_newline = false;
        }
    }
    &[]
}

// ---------------------------------------------------------------------------
// RFC 3464 / RFC 6533 delivery-status fields
// ---------------------------------------------------------------------------

/// Reads a message/delivery-status body: a per-message block, then one block per
/// recipient, blocks separated by blank lines, fields possibly folded.
fn recipients_from_delivery_status(text: &str) -> Vec<RecipientStatus> {
    let mut recipients = Vec::new();
    let mut block: Vec<(String, String)> = Vec::new();
    for line in text.lines().chain(std::iter::once("")) {
        if line.trim().is_empty() {
            if let Some(recipient) = recipient_from_block(&block) {
                recipients.push(recipient);
            }
            block.clear();
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = block.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            block.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    recipients
}

fn recipient_from_block(block: &[(String, String)]) -> Option<RecipientStatus> {
    let field = |name: &str| {
        block
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.as_str())
    };
    let address = field("final-recipient").or_else(|| field("original-recipient"));
    let action = field("action");
    let status_field = field("status");
    if address.is_none() && (action.is_none() || status_field.is_none()) {
        return None; // the per-message block, or noise
    }
    let final_recipient = address.and_then(|value| {
        // "rfc822; user@example.org" / "utf-8; ..." : drop the address type.
        let bare = value.split_once(';').map_or(value, |(_, rest)| rest);
        let bare = bare
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .trim();
        (!bare.is_empty()).then(|| bare.to_lowercase())
    });
    let action = action
        .and_then(|value| value.split_whitespace().next())
        .map(str::to_ascii_lowercase);
    let diagnostic = field("diagnostic-code").and_then(clean_diagnostic);
    let status = status_field
        .and_then(EnhancedCode::find_in)
        .or_else(|| diagnostic.as_deref().and_then(EnhancedCode::find_in));
    let kind = classify(status, action.as_deref(), diagnostic.as_deref());
    let status = status.map(|code| code.to_string());
    let remote_mta = field("remote-mta").and_then(|value| {
        let host = value.split_once(';').map_or(value, |(_, host)| host).trim();
        (!host.is_empty()).then(|| truncate_chars(host, 255))
    });
    let last_attempt_at = field("last-attempt-date").and_then(rfc822_millis);
    Some(RecipientStatus {
        final_recipient,
        action,
        status,
        diagnostic,
        kind,
        remote_mta,
        last_attempt_at,
    })
}

/// The per-message `Original-Envelope-Id` (RFC 3464 § 2.2.1), xtext-decoded (RFC 3461 § 4).
fn envelope_id_from_delivery_status(text: &str) -> Option<String> {
    let value = text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("original-envelope-id")
            .then(|| value.trim())
    })?;
    let decoded = xtext_decode(value);
    (!decoded.is_empty()).then(|| truncate_chars(&decoded, 100))
}

/// `+XX` hexadecimal escapes back to their character; anything malformed stays as written.
fn xtext_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'+'
            && let Some(byte) = value
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An RFC 5322 date (`Tue, 11 Mar 2025 13:20:11 +0100 (CET)`) as Unix milliseconds.
fn rfc822_millis(value: &str) -> Option<i64> {
    let date = mail_parser::DateTime::parse_rfc822(value.trim())?;
    date.is_valid().then(|| date.to_timestamp() * 1000)
}

/// "smtp; 550 5.1.1 ..." -> "550 5.1.1 ...", whitespace collapsed, length capped.
fn clean_diagnostic(value: &str) -> Option<String> {
    let text = match value.split_once(';') {
        // Only a short type token ("smtp", "X-Postfix") is a prefix; a ';' further on
        // belongs to the server's text.
        Some((kind, rest)) if !kind.trim().is_empty() && !kind.trim().contains(' ') => rest,
        _ => value,
    };
    let text = collapse_whitespace(text);
    (!text.is_empty()).then(|| truncate_chars(&text, MAX_DIAGNOSTIC_CHARS))
}

/// Hard or soft for one recipient, by the class of its status ([`Class`], the rule the relay's
/// replies follow too), but for a full mailbox ([`is_mailbox_full`]).
fn classify(
    status: Option<EnhancedCode>,
    action: Option<&str>,
    diagnostic: Option<&str>,
) -> BounceKind {
    let class = status.map(EnhancedCode::class);
    let failing = matches!(class, Some(Class::Transient | Class::Permanent))
        || matches!(action, Some("failed" | "delayed"))
        || (status.is_none() && action.is_none());
    if failing && is_mailbox_full(status, diagnostic) {
        return BounceKind::Soft;
    }
    if action == Some("delayed") {
        // "Still trying": whatever the code, the relay has not given up.
        return BounceKind::Delayed;
    }
    if matches!(action, Some("delivered" | "relayed" | "expanded"))
        && !matches!(class, Some(Class::Transient | Class::Permanent))
    {
        // RFC 3464 § 2.3.3: delivered to the mailbox, or relayed to a server that does not
        // report further (the provider's MX): either way, past our relay and accepted.
        return BounceKind::Delivered;
    }
    match class {
        Some(Class::Permanent) => return BounceKind::Hard,
        Some(Class::Transient) => return BounceKind::Soft,
        Some(Class::Positive) => return BounceKind::NotABounce,
        None => {}
    }
    match action {
        Some("failed") => return BounceKind::Hard,
        Some(_) => return BounceKind::NotABounce,
        None => {}
    }
    match diagnostic.and_then(find_smtp_code).and_then(Class::of_code) {
        Some(Class::Permanent) => BounceKind::Hard,
        Some(_) => BounceKind::Soft,
        None => BounceKind::NotABounce,
    }
}

/// The one place a notification reads otherwise than the relay's reply: a full mailbox (X.2.2,
/// or worded so) is soft whatever its class. The person exists and the mailbox usually empties,
/// so the letter waits for its retry rather than going to the post. A relay that answers our
/// RCPT with `552 5.2.2` refuses that attempt for good ([`SmtpReply::is_permanent`]); a report
/// of the same, days later from the provider, is a person to try again.
fn is_mailbox_full(status: Option<EnhancedCode>, diagnostic: Option<&str>) -> bool {
    status.is_some_and(EnhancedCode::is_mailbox_full)
        || diagnostic.is_some_and(|d| has_any(&d.to_lowercase(), MAILBOX_FULL_WORDING))
}

// ---------------------------------------------------------------------------
// Text-only bounces
// ---------------------------------------------------------------------------

const MAILBOX_FULL_WORDING: &[&str] = &[
    "mailbox full",
    "mailbox is full",
    "mailbox size limit",
    "over quota",
    "overquota",
    "quota exceeded",
    "exceeded storage",
    "insufficient storage",
    "out of storage",
    "storage allocation",
    "boîte aux lettres pleine",
    "boite aux lettres pleine",
    "boîte pleine",
    "boite pleine",
    "est pleine",
    "is full",
    "quota dépassé",
    "espace de stockage",
];

const UNKNOWN_USER_WORDING: &[&str] = &[
    "user unknown",
    "unknown user",
    "no such user",
    "does not exist",
    "doesn't exist",
    "address not found",
    "recipient not found",
    "recipientnotfound",
    "invalid recipient",
    "no mailbox",
    "mailbox unavailable",
    "adresse inconnue",
    "utilisateur inconnu",
    "destinataire inconnu",
    "n'existe pas",
];

const UNKNOWN_DOMAIN_WORDING: &[&str] = &[
    "unrouteable address",
    "domain not found",
    "host not found",
    "no mx",
    "domaine inconnu",
];

const BOUNCE_SUBJECTS: &[&str] = &[
    "undelivered mail",
    "undeliverable",
    "undelivered",
    "mail delivery failed",
    "mail delivery failure",
    "returned mail",
    "delivery status notification",
    "failure notice",
    "delivery failure",
    "delivery has failed",
    "could not send message",
    "delayed mail",
    "delivery delayed",
    "message not delivered",
    "non remis",
    "erreur de remise",
    "échec de la remise",
    "non distribué",
    "unzustellbar",
];

const BOUNCE_SENDERS: &[&str] = &[
    "mailer-daemon",
    "postmaster",
    "mail delivery subsystem",
    "mail delivery system",
];

const BOUNCE_BODY_WORDING: &[&str] = &[
    "this is the mail system at host",
    "created automatically by mail delivery software",
    "could not be delivered to one or more of its recipients",
    "the following addresses had permanent fatal errors",
    "transcript of session follows",
    "delivery has failed to these recipients",
    "the response from the remote server was",
    "unable to deliver your message",
    "n'a pas pu être remis",
    "message still undelivered",
];

const DELAY_WORDING: &[&str] = &[
    "(delay)",
    "delayed",
    "still undelivered",
    "not yet been delivered",
    "will retry",
    "will continue trying",
    "still being retried",
    "temporary problem",
    "could not send message for past",
];

/// Where a text bounce starts quoting the notice: nothing after it is the MTA speaking.
const QUOTED_NOTICE_MARKERS: &[&str] = &[
    "this is a copy of the message",
    "original message follows",
    "unsent message follows",
    "below this line is a copy of the message",
    "original message headers",
    "----- original message -----",
    "message d'origine",
    "copie du message",
    "en-têtes du message d'origine",
];

/// Header lines whose addresses are never a failed recipient.
const NOT_RECIPIENT_LINES: &[&str] = &[
    "from:",
    "sender:",
    "reply-to:",
    "return-path:",
    "message-id:",
    "in-reply-to:",
    "references:",
    "received:",
    "reporting-mta:",
    "generating server:",
    "x-",
];

fn has_any(lowercase_text: &str, wording: &[&str]) -> bool {
    wording.iter().any(|w| lowercase_text.contains(w))
}

/// Finds recipients and their SMTP outcome in the prose of a non-standard bounce.
fn recipients_from_text(
    subject: &str,
    bounce_from: &str,
    text: &str,
    not_recipients: &[String],
) -> Vec<RecipientStatus> {
    let subject_lower = subject.to_lowercase();
    let text_lower = text.to_lowercase();
    let is_bounce = has_any(&subject_lower, BOUNCE_SUBJECTS)
        || has_any(&bounce_from.to_lowercase(), BOUNCE_SENDERS)
        || has_any(&text_lower, BOUNCE_BODY_WORDING);
    if !is_bounce {
        return Vec::new();
    }
    let delayed = has_any(&subject_lower, DELAY_WORDING);

    let lines: Vec<&str> = text
        .lines()
        .take_while(|line| !has_any(&line.to_lowercase(), QUOTED_NOTICE_MARKERS))
        .collect();
    let line_addresses: Vec<Vec<String>> = lines
        .iter()
        .map(|line| {
            let lower = line.trim_start().to_lowercase();
            if NOT_RECIPIENT_LINES.iter().any(|p| lower.starts_with(p)) {
                return Vec::new();
            }
            addresses_in(line)
                .into_iter()
                .filter(|a| {
                    let local = a.split('@').next().unwrap_or_default();
                    !not_recipients.contains(a) && !matches!(local, "mailer-daemon" | "postmaster")
                })
                .collect()
        })
        .collect();

    let mut found: Vec<String> = Vec::new();
    for address in line_addresses.iter().flatten() {
        if !found.contains(address) {
            found.push(address.clone());
        }
    }

    let section_lower = lines.join("\n").to_lowercase();
    if found.is_empty() {
        // A bounce that names nobody still tells us the notice failed.
        let outcome = outcome_from_lines(&lines, &section_lower, delayed);
        return vec![outcome.into_recipient(None)];
    }
    let single = found.len() == 1;
    found
        .into_iter()
        .map(|address| {
            let window = recipient_window(&lines, &line_addresses, &address);
            let window_lower = window.join("\n").to_lowercase();
            let mut outcome = outcome_from_lines(&window, &window_lower, delayed);
            if single && outcome.diagnostic.is_none() {
                // One recipient: the code may sit further away (Sendmail transcript).
                outcome = outcome_from_lines(&lines, &section_lower, delayed);
            }
            outcome.into_recipient(Some(address))
        })
        .collect()
}

/// The lines that talk about one recipient: each line naming it plus up to five
/// following lines, stopping where another recipient is named.
fn recipient_window<'a>(
    lines: &[&'a str],
    line_addresses: &[Vec<String>],
    address: &str,
) -> Vec<&'a str> {
    let mut window = Vec::new();
    for (index, addresses) in line_addresses.iter().enumerate() {
        if !addresses.iter().any(|a| a == address) {
            continue;
        }
        for (offset, line) in lines.iter().enumerate().skip(index).take(6) {
            let others = line_addresses.get(offset).is_some_and(|list| {
                list.iter().any(|a| a != address) && !list.iter().any(|a| a == address)
            });
            if offset > index && others {
                break;
            }
            window.push(*line);
        }
    }
    window
}

struct TextOutcome {
    status: Option<EnhancedCode>,
    diagnostic: Option<String>,
    kind: BounceKind,
}

impl TextOutcome {
    fn into_recipient(self, final_recipient: Option<String>) -> RecipientStatus {
        RecipientStatus {
            final_recipient,
            action: None,
            status: self.status.map(|code| code.to_string()),
            diagnostic: self.diagnostic,
            kind: self.kind,
            remote_mta: None,
            last_attempt_at: None,
        }
    }
}

/// Status and diagnostic from prose. The enhanced code wins; failing that the wording
/// gives the code RFC 3463 would use; failing that the basic SMTP reply gives X.0.0.
fn outcome_from_lines(lines: &[&str], lower: &str, delayed: bool) -> TextOutcome {
    let code_line = lines
        .iter()
        .find(|line| EnhancedCode::find_in(line).is_some() || find_smtp_code(line).is_some());
    let enhanced = lines.iter().find_map(|line| EnhancedCode::find_in(line));
    let basic = lines.iter().find_map(|line| find_smtp_code(line));
    let code = |class, subject, detail| EnhancedCode {
        class,
        subject,
        detail,
    };
    let wording_status = if has_any(lower, MAILBOX_FULL_WORDING) {
        Some(code(4, 2, 2))
    } else if has_any(lower, UNKNOWN_USER_WORDING) {
        Some(code(5, 1, 1))
    } else if has_any(lower, UNKNOWN_DOMAIN_WORDING) {
        Some(code(5, 1, 2))
    } else {
        None
    };
    let status = enhanced
        .or_else(|| {
            // A 4xx reply with permanent wording is still temporary: keep the class.
            match (wording_status, basic.and_then(Class::of_code)) {
                (Some(w), Some(Class::Transient)) => Some(EnhancedCode { class: 4, ..w }),
                (Some(w), _) => Some(w),
                (None, Some(_)) => basic.map(|basic| code((basic / 100) as u8, 0, 0)),
                (None, None) => None,
            }
        })
        .or_else(|| {
            Some(if delayed {
                code(4, 0, 0)
            } else {
                code(5, 0, 0)
            })
        });
    let diagnostic = code_line
        .map(|line| line.to_string())
        .or_else(|| {
            lines.iter().find_map(|line| {
                let lower = line.to_lowercase();
                (has_any(&lower, MAILBOX_FULL_WORDING)
                    || has_any(&lower, UNKNOWN_USER_WORDING)
                    || has_any(&lower, UNKNOWN_DOMAIN_WORDING))
                .then(|| line.to_string())
            })
        })
        .and_then(|line| {
            let line = collapse_whitespace(&line);
            (!line.is_empty()).then(|| truncate_chars(&line, MAX_DIAGNOSTIC_CHARS))
        });
    let action = if delayed { Some("delayed") } else { None };
    let kind = classify(status, action, diagnostic.as_deref());
    TextOutcome {
        status,
        diagnostic,
        kind,
    }
}

// ---------------------------------------------------------------------------
// Auto-replies
// ---------------------------------------------------------------------------

const AUTO_REPLY_SUBJECTS: &[&str] = &[
    "out of office",
    "out-of-office",
    "out of the office",
    "absence",
    "absent",
    "abwesend",
    "congés",
    "réponse automatique",
    "reponse automatique",
    "automatic reply",
    "auto-reply",
    "autoreply",
    "auto reply",
    "auto response",
    "auto-response",
    "autoresponse",
    "abwesenheit",
    "vacation",
    "accusé de réception",
    "we received your message",
    "nous avons bien reçu",
];

/// How vacation answers open when their subject says nothing (the first lines of the body).
const AUTO_REPLY_BODY_WORDING: &[&str] = &[
    "i am out of the office",
    "i'm out of the office",
    "i am currently out of",
    "i'm currently out of",
    "i will be out of the office",
    "je suis absent",
    "je serai absent",
    "je suis actuellement absent",
    "en congés",
    "ceci est une réponse automatique",
    "this is an automatic reply",
    "this is an automated response",
];

/// RFC 3834 (`Auto-Submitted: auto-replied`, or `auto-generated` without a delivery report,
/// which only the caller can know), the flags vacation programs and Exchange set, the subjects
/// of Outlook, Gmail, Yahoo, Orange and Zimbra answers, and their usual opening lines.
fn is_auto_reply(header: &impl Fn(&str) -> Option<String>, subject: &str, body: &str) -> bool {
    let auto_submitted = header("auto-submitted").is_some_and(|v| {
        let v = v.to_ascii_lowercase();
        v.starts_with("auto-replied") || v.starts_with("auto-generated")
    });
    let autoreply_flag = ["x-autoreply", "x-autorespond", "x-autoresponder"]
        .iter()
        .any(|name| header(name).is_some_and(|v| !v.eq_ignore_ascii_case("no")));
    let exchange = header("x-ms-exchange-inbox-rules-loop").is_some()
        || header("x-auto-response-suppress").is_some_and(|v| v.eq_ignore_ascii_case("all"));
    let precedence = header("precedence").is_some_and(|v| v.eq_ignore_ascii_case("auto_reply"));
    let subject = subject.to_lowercase();
    let opening: String = body.chars().take(600).collect::<String>().to_lowercase();
    auto_submitted
        || autoreply_flag
        || exchange
        || precedence
        || has_any(&subject, AUTO_REPLY_SUBJECTS)
        || subject.starts_with("auto:")
        || has_any(&opening, AUTO_REPLY_BODY_WORDING)
}

// ---------------------------------------------------------------------------
// Small text readers
// ---------------------------------------------------------------------------

/// Message-ID / X-Notice-Id / From lines of a quoted or returned header block. Lines
/// may be quoted with "> " and values may be folded onto the next line.
fn scan_quoted_headers(text: &str) -> ReturnedNotice {
    let mut notice = ReturnedNotice::default();
    let lines: Vec<&str> = text.lines().collect();
    for (index, line) in lines.iter().enumerate() {
        let line = line.trim_start_matches(['>', ' ', '\t']);
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        let mut value = value.trim().to_string();
        if value.is_empty()
            && let Some(next) = lines.get(index + 1)
        {
            value = next.trim().to_string();
        }
        match name.as_str() {
            "message-id" | "x-original-message-id" if notice.message_id.is_none() => {
                notice.message_id = message_id_from(&value);
            }
            "x-notice-id" if notice.notice_id.is_none() => {
                notice.notice_id = notice_id_from(&value);
            }
            "from" if notice.sender.is_none() => notice.sender = first_address(&value),
            "return-path" if notice.return_path.is_none() => {
                notice.return_path = first_address(&value);
            }
            _ => {}
        }
    }
    notice
}

/// "<abc@host>" or "abc@host" -> "abc@host".
fn message_id_from(value: &str) -> Option<String> {
    let value = value.trim();
    let id = match (value.find('<'), value.find('>')) {
        (Some(start), Some(end)) if start < end => value.get(start + 1..end)?,
        _ => value.split_whitespace().next()?,
    };
    let id = id.trim().trim_start_matches('<').trim_end_matches('>');
    (!id.is_empty() && id.contains('@')).then(|| id.to_string())
}

fn notice_id_from(value: &str) -> Option<String> {
    value
        .split_whitespace()
        .next()
        .map(|token| token.trim_matches(['<', '>', '"', '\'']).to_string())
        .filter(|token| !token.is_empty())
}

/// The first e-mail address in a header value or line, lowercased.
fn first_address(value: &str) -> Option<String> {
    addresses_in(value).into_iter().next()
}

/// E-mail addresses in free text, lowercased, in order of appearance.
fn addresses_in(text: &str) -> Vec<String> {
    const LOCAL_SYMBOLS: &str = ".!#$%&'*+-/=?^_`{|}~";
    let is_local = |c: char| c.is_alphanumeric() || LOCAL_SYMBOLS.contains(c);
    let is_domain = |c: char| c.is_alphanumeric() || c == '.' || c == '-';
    let mut addresses = Vec::new();
    for (at, _) in text.match_indices('@') {
        let before = text.get(..at).unwrap_or_default();
        let after = text.get(at + 1..).unwrap_or_default();
        let local_start = before
            .char_indices()
            .rev()
            .take_while(|&(_, c)| is_local(c))
            .last()
            .map_or(at, |(i, _)| i);
        let domain_len: usize = after
            .chars()
            .take_while(|&c| is_domain(c))
            .map(char::len_utf8)
            .sum();
        let local = before
            .get(local_start..)
            .unwrap_or_default()
            .trim_start_matches(['.', '\'', '`']);
        let domain = after
            .get(..domain_len)
            .unwrap_or_default()
            .trim_end_matches(['.', '-']);
        if !local.is_empty() && domain.contains('.') && !domain.starts_with('.') {
            addresses.push(format!("{local}@{domain}").to_lowercase());
        }
    }
    addresses
}

/// First basic SMTP reply code (4xx / 5xx) standing alone in the text.
fn find_smtp_code(text: &str) -> Option<u16> {
    let bytes = text.as_bytes();
    for start in 0..bytes.len() {
        let digits = bytes.get(start..start + 3)?;
        if !matches!(digits.first(), Some(b'4' | b'5')) || !digits.iter().all(u8::is_ascii_digit) {
            continue;
        }
        let before_ok = start == 0
            || bytes
                .get(start - 1)
                .is_some_and(|b| matches!(b, b' ' | b'\t' | b'(' | b'\'' | b'"' | b'<' | b'#'));
        let after_ok = bytes
            .get(start + 3)
            .is_none_or(|b| matches!(b, b' ' | b'-' | b':' | b')' | b'\'' | b'\r' | b'\n'));
        if before_ok && after_ok {
            let code = digits
                .iter()
                .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
            return Some(code);
        }
    }
    None
}

fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn truncate_chars(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// Crude HTML to text for HTML-only bounces (some Exchange and Gmail ones): enough to
/// find addresses and codes, not to render.
fn html_to_text(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    let mut in_tag = false;
    let mut tag = String::new();
    for c in html.chars() {
        match (in_tag, c) {
            (false, '<') => {
                in_tag = true;
                tag.clear();
            }
            (true, '>') => {
                in_tag = false;
                let name = tag.trim_start_matches('/').to_ascii_lowercase();
                if ["br", "p", "div", "tr", "li", "h1", "h2", "h3", "table"]
                    .iter()
                    .any(|t| name.split([' ', '/']).next() == Some(t))
                {
                    text.push('\n');
                }
            }
            (true, c) => tag.push(c),
            (false, c) => text.push(c),
        }
    }
    text.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp_reply::{SmtpReply, Step};

    fn status(text: &str) -> Option<EnhancedCode> {
        EnhancedCode::find_in(text)
    }

    #[test]
    fn enhanced_status_is_found_and_bounded() {
        let found = |text| status(text).map(|code| code.to_string());
        assert_eq!(found("550 5.1.1 <a@b.c>").as_deref(), Some("5.1.1"));
        assert_eq!(found("'550 5.1.10 RESOLVER'").as_deref(), Some("5.1.10"));
        assert_eq!(found("host 192.0.2.1 said"), None);
        assert_eq!(found("5.1"), None);
        assert_eq!(found(""), None);
    }

    #[test]
    fn a_full_mailbox_is_the_one_difference_from_the_relays_rule() {
        // The relay's 552 5.2.2 at RCPT ends that attempt; the same in a notification is soft.
        let at_rcpt = SmtpReply::new(Step::RcptTo, 552, "5.2.2 Mailbox full");
        assert!(at_rcpt.is_permanent());
        assert_eq!(
            classify(at_rcpt.enhanced(), Some("failed"), None),
            BounceKind::Soft
        );
        // Every other code follows the class, as the relay's replies do.
        for (text, kind) in [
            ("5.1.1", BounceKind::Hard),
            ("5.7.1", BounceKind::Hard),
            ("4.4.7", BounceKind::Soft),
            ("4.2.1", BounceKind::Soft),
        ] {
            assert_eq!(classify(status(text), Some("failed"), None), kind, "{text}");
        }
    }

    #[test]
    fn smtp_code_is_found() {
        assert_eq!(find_smtp_code("<<< 550 5.1.1 x"), Some(550));
        assert_eq!(find_smtp_code("554: delivery error"), Some(554));
        assert_eq!(find_smtp_code("year 2025 port 25"), None);
        assert_eq!(find_smtp_code("45"), None);
    }

    #[test]
    fn addresses_are_extracted() {
        assert_eq!(
            addresses_in("RCPT TO:<Jean.Dupont@Example.ORG>: 550"),
            vec!["jean.dupont@example.org"]
        );
        assert_eq!(addresses_in("<user@host>"), Vec::<String>::new());
        assert_eq!(addresses_in("@@@"), Vec::<String>::new());
    }

    #[test]
    fn classification_follows_the_brief() {
        assert_eq!(
            classify(status("5.1.1"), Some("failed"), None),
            BounceKind::Hard
        );
        assert_eq!(
            classify(status("4.4.1"), Some("delayed"), None),
            BounceKind::Delayed
        );
        assert_eq!(
            classify(status("5.2.2"), Some("failed"), None),
            BounceKind::Soft
        );
        assert_eq!(
            classify(status("5.0.0"), None, Some("552 Mailbox full")),
            BounceKind::Soft
        );
        assert_eq!(classify(None, Some("failed"), None), BounceKind::Hard);
        for action in ["delivered", "relayed", "expanded"] {
            assert_eq!(
                classify(status("2.0.0"), Some(action), None),
                BounceKind::Delivered
            );
        }
        assert_eq!(
            classify(status("2.0.0"), None, None),
            BounceKind::NotABounce
        );
        assert_eq!(
            classify(status("5.1.1"), Some("delivered"), None),
            BounceKind::Hard,
            "a failing status is never taken for a delivery"
        );
    }

    #[test]
    fn delivery_status_blocks_are_read() {
        let text = "Reporting-MTA: dns; mx.example.fr\r\n\r\nFinal-Recipient: rfc822; A@Example.org\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 user\r\n unknown\r\n\r\nFinal-Recipient: rfc822;b@example.org\r\nAction: delayed\r\nStatus: 4.4.1\r\n";
        let recipients = recipients_from_delivery_status(text);
        assert_eq!(recipients.len(), 2);
        assert_eq!(
            recipients[0].final_recipient.as_deref(),
            Some("a@example.org")
        );
        assert_eq!(
            recipients[0].diagnostic.as_deref(),
            Some("550 5.1.1 user unknown")
        );
        assert_eq!(recipients[0].kind, BounceKind::Hard);
        assert_eq!(recipients[1].kind, BounceKind::Delayed);
    }

    #[test]
    fn errors_for_non_mail() {
        assert_eq!(parse_bounce(b""), Err(ParseError::Empty));
        assert_eq!(parse_bounce(b" \r\n "), Err(ParseError::Empty));
        assert_eq!(
            parse_bounce(b"\x00\xff\x13garbage"),
            Err(ParseError::NotAMessage)
        );
        assert_eq!(parse_bounce(b"hello world\n"), Err(ParseError::NotAMessage));
        let big = vec![b'a'; MAX_BOUNCE_BYTES + 1];
        assert!(matches!(
            parse_bounce(&big),
            Err(ParseError::TooLarge { .. })
        ));
    }

    #[test]
    fn success_report_is_not_an_auto_reply() {
        let raw = b"From: MAILER-DAEMON@mx.example.fr\r\nTo: b-abc@bounces.example.fr\r\n\
Auto-Submitted: auto-replied\r\nSubject: Successful Mail Delivery Report\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"x\"\r\n\r\n\
--x\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n\
Final-Recipient: rfc822; a@example.org\r\nAction: relayed\r\nStatus: 2.0.0\r\n\r\n--x--\r\n";
        let bounce = parse_bounce(raw).expect("parses");
        assert_eq!(bounce.kind, BounceKind::Delivered, "a success notification");
        assert_eq!(bounce.recipients.len(), 1);
        assert_eq!(
            bounce.envelope_to.as_deref(),
            Some("b-abc@bounces.example.fr")
        );
    }

    #[test]
    fn verp_address_wins_over_final_mailbox() {
        let raw = b"Delivered-To: collector@bounces.example.fr\nX-Original-To: B-Tok3n@Bounces.Example.FR\nFrom: x@y.fr\nSubject: Out of Office\n\nbody\n";
        let bounce = parse_bounce(raw).expect("parses");
        assert_eq!(
            bounce.envelope_to.as_deref(),
            Some("b-tok3n@bounces.example.fr")
        );
        assert_eq!(bounce.kind, BounceKind::AutoReply);
    }

    #[test]
    fn headers_without_body_are_not_a_bounce() {
        let bounce = parse_bounce(b"From: a@example.org\r\nSubject: hi\r\n").expect("parses");
        assert_eq!(bounce.kind, BounceKind::NotABounce);
    }

    #[test]
    fn complaints_name_their_provider() {
        let report = "Feedback-Type: Abuse\r\nUser-Agent: x\r\nReporting-MTA: dns; fbl.mail.example.co.uk\r\nOriginal-Rcpt-To: <A@B.example>\r\n";
        let (feedback, recipient) = feedback_from_report(report, "");
        assert_eq!(feedback.feedback_type, "abuse");
        assert_eq!(feedback.provider, "example.co.uk");
        assert_eq!(recipient.as_deref(), Some("a@b.example"));
        let (feedback, _) = feedback_from_report(
            "Feedback-Type: fraud\n",
            "AntiSpam <feedback@arf.mail.yahoo.com>",
        );
        assert_eq!(feedback.provider, "yahoo.com");
        assert_eq!(feedback.feedback_type, "fraud");
    }

    #[test]
    fn a_person_answering_is_a_reply_a_machine_is_not() {
        let reply =
            b"From: A <a@example.org>\r\nTo: x@example.fr\r\nSubject: RE: notice\r\n\r\nHelp?\r\n";
        assert_eq!(parse_bounce(reply).expect("parses").kind, BounceKind::Reply);
        let list = b"From: A <a@example.org>\r\nList-Id: <l.example.org>\r\nSubject: Re: notice\r\n\r\nx\r\n";
        assert_eq!(
            parse_bounce(list).expect("parses").kind,
            BounceKind::NotABounce
        );
        let generated = b"From: A <a@example.org>\r\nAuto-Submitted: auto-generated\r\nSubject: Re: notice\r\n\r\nx\r\n";
        assert_eq!(
            parse_bounce(generated).expect("parses").kind,
            BounceKind::AutoReply
        );
    }

    /// Real notifications from Postfix 3.7 (Debian 12) relaying to a provider on loopback, asked
    /// with `RET=HDRS ENVID=… NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;…`.
    fn postfix(name: &str) -> Bounce {
        let path = format!("{}/tests/bounces/{name}", env!("CARGO_MANIFEST_DIR"));
        parse_bounce(&std::fs::read(&path).expect("corpus file")).expect("parses")
    }

    #[test]
    fn postfix_relayed_is_a_delivery_with_the_providers_answer() {
        let bounce = postfix("postfix-relayed.eml");
        assert_eq!(bounce.kind, BounceKind::Delivered);
        assert_eq!(bounce.envelope_id.as_deref(), Some("AAAA-BBBB-CCC1"));
        assert_eq!(
            bounce.envelope_to.as_deref(),
            Some("b-0000002s01k3h6q9z2m4x7w@bounces.example.fr")
        );
        // Sun,  6 Dec 2026 07:13:18 +0000
        assert_eq!(bounce.date, Some(1_796_541_198_000));
        let [report] = bounce.recipients.as_slice() else {
            panic!("one recipient: {:?}", bounce.recipients)
        };
        assert_eq!(report.kind, BounceKind::Delivered);
        assert_eq!(report.action.as_deref(), Some("relayed"));
        assert_eq!(report.final_recipient.as_deref(), Some("anne@people.test"));
        assert_eq!(report.remote_mta.as_deref(), Some("127.0.0.1"));
        assert_eq!(
            report.diagnostic.as_deref(),
            Some("250 2.0.0 Ok: queued as 4P00000001")
        );
    }

    #[test]
    fn postfix_delivered_to_a_mailbox_is_a_delivery_too() {
        let bounce = postfix("postfix-delivered.eml");
        assert_eq!(bounce.kind, BounceKind::Delivered);
        let report = &bounce.recipients[0];
        assert_eq!(report.action.as_deref(), Some("delivered"));
        assert_eq!(
            report.remote_mta, None,
            "its own delivery agent: no Remote-MTA"
        );
        assert_eq!(
            report.diagnostic.as_deref(),
            Some("delivery via virtual: delivered to maildir")
        );
    }

    #[test]
    fn postfix_greylisted_then_relayed_tells_the_wait_then_the_delivery() {
        let delayed = postfix("postfix-delayed-greylisted.eml");
        assert_eq!(delayed.kind, BounceKind::Delayed);
        assert_eq!(delayed.envelope_id.as_deref(), Some("AAAA-BBBB-CCC2"));
        let diagnostic = delayed.recipients[0].diagnostic.as_deref().unwrap_or("");
        assert!(
            diagnostic.starts_with("451 4.7.1") && diagnostic.contains("Greylisted"),
            "the provider's reason, unfolded: {diagnostic}"
        );
        let relayed = postfix("postfix-relayed-after-greylisting.eml");
        assert_eq!(relayed.kind, BounceKind::Delivered);
        assert_eq!(relayed.envelope_id, delayed.envelope_id);
        assert!(relayed.date > delayed.date);
    }

    #[test]
    fn postfix_refused_by_the_provider_is_a_hard_bounce() {
        let bounce = postfix("postfix-failed-at-provider.eml");
        assert_eq!(bounce.kind, BounceKind::Hard);
        assert_eq!(bounce.envelope_id.as_deref(), Some("AAAA-BBBB-CCC3"));
        assert_eq!(bounce.recipients[0].status.as_deref(), Some("5.1.1"));
    }

    #[test]
    fn envelope_ids_are_xtext_decoded() {
        assert_eq!(xtext_decode("AB+2BCD+3D"), "AB+CD=");
        assert_eq!(xtext_decode("A+ZZ"), "A+ZZ", "malformed stays as written");
        assert_eq!(
            envelope_id_from_delivery_status(
                "Reporting-MTA: dns; x\nOriginal-Envelope-Id: K7QF-3MZ9-P2XA\n"
            ),
            Some("K7QF-3MZ9-P2XA".to_owned())
        );
    }
}
