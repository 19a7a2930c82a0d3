//! `message`: a rendered letter made into the exact bytes that go out, once per person.
//!
//! `preview`, `check` and `send` all call `MessageBuilder::build`, so what the operator reads in a
//! preview is byte for byte what a person receives (only the Date, the MIME boundary and the DKIM
//! timestamp differ between two builds). Headers are built by lettre from typed values, except the
//! From and Reply-To, written once per campaign as quoted strings when their names are plain
//! ASCII (see `mailbox_header`), and the multipart's Content-Type, which must be a header of the
//! message for DKIM to sign it. Any control character in a value that reaches a header is
//! refused here even though the import already refuses them, because a header injection in a
//! mass mailing would be a disaster no earlier check should be trusted to prevent alone.

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use lettre::Address;
use lettre::message::header::{self, ContentTransferEncoding, Header, HeaderName, HeaderValue};
use lettre::message::{Body, Mailbox, Mailboxes};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::dkim::Signer;
use crate::domain::Email;
use crate::person::Person;
use crate::render::{Letter, RenderError};
use crate::verp::{self, DeliveryRef};

/// One message ready for the transport: its envelope and its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The Message-ID without angle brackets.
    pub message_id: String,
    /// The SMTP envelope sender (`MAIL FROM`): the VERP address or the From address.
    pub envelope_from: String,
    /// The SMTP envelope recipient (`RCPT TO`).
    pub recipient: String,
    /// The person's notice id: the envelope id (RFC 3461 `ENVID`) a relay's delivery status
    /// notifications quote back.
    pub notice_id: String,
    /// Its name in a folder (`preview`, the `file://` transport): [`file_name`].
    pub file_name: String,
    pub bytes: Vec<u8>,
}

impl Outgoing {
    /// SHA-256 (hex) of the bytes, recorded as the evidence of what was sent. Computed when asked:
    /// `check` and `preview` have no use for it, and it was a tenth of their work.
    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(&self.bytes))
    }
}

/// Builds every person's message the same way: sender, signing key and DKIM key loaded once.
pub struct MessageBuilder {
    from: Mailbox,
    /// The From and Reply-To headers, encoded once for the whole campaign.
    from_header: HeaderValue,
    reply_to_header: Option<HeaderValue>,
    bounce_domain: Option<String>,
    signing_key: Vec<u8>,
    dkim: Signer,
}

impl MessageBuilder {
    /// `signing_key` is the campaign's secret (see `store::campaign::signing_key`): it derives the Message-ID
    /// and signs the VERP envelope sender.
    pub fn new(config: &Config, signing_key: &[u8]) -> anyhow::Result<Self> {
        let dkim = Signer::new(&config.dkim)?;
        Ok(Self {
            from: config.sender.from.clone(),
            from_header: mailbox_header::<header::From>(&config.sender.from),
            reply_to_header: config
                .sender
                .reply_to
                .as_ref()
                .map(mailbox_header::<header::ReplyTo>),
            bounce_domain: config.sender.bounce_domain.clone(),
            signing_key: signing_key.to_vec(),
            dkim,
        })
    }

    /// Whether messages are DKIM-signed.
    pub fn signs(&self) -> bool {
        self.dkim.signs()
    }

    /// The message exactly as it goes out to `person`.
    pub fn build(
        &self,
        person: &Person,
        letter: &Letter,
        date: DateTime<Utc>,
    ) -> Result<Outgoing, RenderError> {
        let refuse = |reason: String| RenderError::new("message", reason);
        // An `Email` is header-safe and was accepted by lettre when it was made.
        let email = person
            .email
            .as_ref()
            .map(Email::as_str)
            .ok_or_else(|| refuse(format!("{} has no e-mail address", person.person_ref)))?;
        let address: Address = email
            .parse()
            .map_err(|e| refuse(format!("{email:?} is not a usable e-mail address: {e}")))?;
        let name = person.display_name();
        if let Some(name) = &name {
            header_safe("the name", name).map_err(refuse)?;
        }
        header_safe("the subject", &letter.subject).map_err(refuse)?;

        let delivery = DeliveryRef {
            person_id: person.id,
            generation: person.generation,
        };
        let message_id = verp::message_id(&self.signing_key, delivery, self.from.email.domain());
        let envelope_from = match &self.bounce_domain {
            Some(domain) => verp::envelope_sender(&self.signing_key, delivery, domain),
            None => self.from.email.to_string(),
        };
        // Given, not derived: lettre would otherwise parse the From and To headers it has just
        // formatted back into addresses (a tenth of the cost of building a message).
        let envelope =
            lettre::address::Envelope::new(Some(self.from.email.clone()), vec![address.clone()])
                .map_err(|e| refuse(format!("cannot make the envelope: {e}")))?;
        let boundary = mime_boundary();
        let mut builder = lettre::Message::builder()
            .envelope(envelope)
            .raw_header(self.from_header.clone())
            .to(Mailbox::new(name, address.clone()))
            .subject(letter.subject.clone())
            .date(SystemTime::from(date))
            .message_id(Some(format!("<{message_id}>")))
            .header(NoticeIdHeader(person.notice_id.to_string()))
            .header(AutoSubmitted);
        if let Some(reply_to) = &self.reply_to_header {
            builder = builder.raw_header(reply_to.clone());
        }
        // The multipart's Content-Type is a header of the message itself, not of its body as
        // lettre's MultiPart makes it, so that DKIM can sign it: the type decides how the
        // message reads, and a signature that leaves it out lets a relay swap the parts.
        let message = builder
            .header(header::MIME_VERSION_1_0)
            .raw_header(multipart_content_type(&boundary))
            .body(Body::dangerous_pre_encoded(
                alternative_body(
                    &boundary,
                    &encoded_body(&letter.text),
                    &encoded_body(&letter.html),
                ),
                ContentTransferEncoding::SevenBit,
            ))
            .map_err(|e| refuse(format!("cannot assemble the message: {e}")))?;
        Ok(Outgoing {
            message_id,
            envelope_from,
            recipient: address.to_string(),
            notice_id: person.notice_id.to_string(),
            file_name: file_name(person),
            bytes: self.dkim.sign(message.formatted(), date.timestamp()),
        })
    }
}

/// The body lettre's `Body::new` makes of `text` (same transfer encoding, same bytes), in one
/// pass: lettre inserts each CR of the CRLF line endings by shifting the rest of the text, which
/// made most of the cost of a 30 KB letter.
fn encoded_body(text: &str) -> Body {
    match transfer_encoding(text.as_bytes()) {
        ContentTransferEncoding::SevenBit => {
            Body::dangerous_pre_encoded(crlf(text.as_bytes()), ContentTransferEncoding::SevenBit)
        }
        ContentTransferEncoding::QuotedPrintable => Body::dangerous_pre_encoded(
            quoted_printable_lines(text.as_bytes()),
            ContentTransferEncoding::QuotedPrintable,
        ),
        // Rare for a letter (mostly non-ASCII text): lettre's own path.
        _ => Body::new(text.to_owned()),
    }
}

/// The From (or Reply-To) header of `mailbox`. A plain ASCII display name goes out as a quoted
/// string, which any reader shows as is; lettre would make an encoded word of a name holding a
/// parenthesis or an apostrophe, and a From name in base64 for no reason is what spam filters
/// score (SpamAssassin's FROM_EXCESS_BASE64). Only a name outside ASCII is left to lettre.
fn mailbox_header<H: Header + From<Mailboxes>>(mailbox: &Mailbox) -> HeaderValue {
    match mailbox.name.as_deref() {
        Some(display) if display.bytes().all(|b| matches!(b, b' '..=b'~')) => {
            let address: &str = mailbox.email.as_ref();
            let mut value = String::with_capacity(display.len() + address.len() + 6);
            value.push('"');
            for c in display.chars() {
                if matches!(c, '"' | '\\') {
                    value.push('\\');
                }
                value.push(c);
            }
            value.push_str("\" <");
            value.push_str(address);
            value.push('>');
            HeaderValue::dangerous_new_pre_encoded(H::name(), value.clone(), value)
        }
        _ => H::from(Mailboxes::from(mailbox.clone())).display(),
    }
}

/// A MIME boundary: 40 random letters and digits, as lettre makes them. The parts are
/// quoted-printable or short ASCII lines, so a random run this long never occurs in them.
fn mime_boundary() -> String {
    use rand::Rng as _;
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(40)
        .map(char::from)
        .collect()
}

/// `Content-Type: multipart/alternative; boundary="…"`, folded as lettre folds it.
fn multipart_content_type(boundary: &str) -> HeaderValue {
    let raw = format!("multipart/alternative; boundary=\"{boundary}\"");
    let encoded = format!("multipart/alternative;\r\n boundary=\"{boundary}\"");
    HeaderValue::dangerous_new_pre_encoded(header::ContentType::name(), raw, encoded)
}

/// The body of a multipart/alternative message: the text part first, then the HTML part (the
/// last part is the one a reader prefers), each with its type and transfer encoding, laid out
/// as lettre's MultiPart lays them out.
fn alternative_body(boundary: &str, text: &Body, html: &Body) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.as_ref().len() + html.as_ref().len() + 512);
    for (content_type, part) in [
        ("text/plain; charset=utf-8", text),
        ("text/html; charset=utf-8", html),
    ] {
        out.extend_from_slice(b"--");
        out.extend_from_slice(boundary.as_bytes());
        out.extend_from_slice(b"\r\nContent-Type: ");
        out.extend_from_slice(content_type.as_bytes());
        out.extend_from_slice(b"\r\nContent-Transfer-Encoding: ");
        out.extend_from_slice(transfer_encoding_name(part.encoding()).as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(part.as_ref());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"--\r\n");
    out
}

fn transfer_encoding_name(encoding: ContentTransferEncoding) -> &'static str {
    match encoding {
        ContentTransferEncoding::SevenBit => "7bit",
        ContentTransferEncoding::QuotedPrintable => "quoted-printable",
        ContentTransferEncoding::Base64 => "base64",
        ContentTransferEncoding::EightBit => "8bit",
        ContentTransferEncoding::Binary => "binary",
    }
}

/// `text` with every LF not already preceded by a CR made CRLF.
fn crlf(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 32);
    for (n, (line, _)) in lines(text).enumerate() {
        if n > 0 {
            // The byte before this LF is the last one written.
            if out.last() != Some(&b'\r') {
                out.push(b'\r');
            }
            out.push(b'\n');
        }
        out.extend_from_slice(line);
    }
    out
}

/// The pieces of `text` between LFs (as `split` gives them), each with whether it is the last,
/// found with memchr: a byte-by-byte split was a sixth of the encoding's time.
fn lines(text: &[u8]) -> impl Iterator<Item = (&[u8], bool)> {
    let mut breaks = memchr::memchr_iter(b'\n', text);
    let mut start = Some(0);
    std::iter::from_fn(move || {
        let from = start?;
        match breaks.next() {
            Some(end) => {
                start = Some(end + 1);
                Some((&text[from..end], false))
            }
            None => {
                start = None;
                Some((&text[from..], true))
            }
        }
    })
}

/// Lines whose encoding a thread remembers before it starts again (a letter has a few hundred).
const LINE_CACHE_LINES: usize = 4096;

/// A thread's encoded lines, and the hashes of lines met once: a line is kept from its second
/// sighting, so the lines holding one person's name or address cost no allocation.
#[derive(Default)]
struct LineCache {
    encoded: std::collections::HashMap<Box<[u8]>, Box<[u8]>, foldhash::fast::FixedState>,
    seen_once: std::collections::HashSet<u64, foldhash::fast::FixedState>,
    hasher: foldhash::fast::FixedState,
}

thread_local! {
    static ENCODED_LINES: std::cell::RefCell<LineCache> = std::cell::RefCell::default();
}

/// `quoted_printable(&crlf(text))`, a line at a time. The encoder's count of characters on a line
/// starts again after each line break, so a line's encoding depends on its bytes alone; and most
/// lines of a letter are the same for thousands of people, so each thread remembers the lines it
/// has encoded more than once. Encoding was half the cost of building a message; a line met
/// before now costs a hash and a copy.
fn quoted_printable_lines(text: &[u8]) -> Vec<u8> {
    use std::hash::BuildHasher;
    let mut out = Vec::with_capacity(text.len() + text.len() / 4);
    ENCODED_LINES.with_borrow_mut(|cache| {
        for (segment, last) in lines(text) {
            // crlf() keeps a CR already before the LF: it is part of the line break.
            let line = match segment.strip_suffix(b"\r") {
                Some(line) if !last => line,
                _ => segment,
            };
            if let Some(encoded) = cache.encoded.get(line) {
                out.extend_from_slice(encoded);
            } else {
                let encoded = quoted_printable(line);
                out.extend_from_slice(&encoded);
                if cache.seen_once.insert(cache.hasher.hash_one(line)) {
                    if cache.seen_once.len() >= LINE_CACHE_LINES {
                        cache.seen_once.clear();
                    }
                } else {
                    if cache.encoded.len() >= LINE_CACHE_LINES {
                        cache.encoded.clear();
                    }
                    cache.encoded.insert(line.into(), encoded.into());
                }
            }
            if !last {
                out.extend_from_slice(b"\r\n");
            }
        }
    });
    out
}

/// The choice lettre makes for a UTF-8 text body (no SMTPUTF8 assumed): 7bit for short ASCII
/// lines, else quoted-printable unless over a third of the bytes would need escaping, then base64.
fn transfer_encoding(text: &[u8]) -> ContentTransferEncoding {
    // Line length only matters for ASCII: any other UTF-8 text is never sent as 7bit.
    if text.is_ascii() {
        let mut last = 0;
        let mut too_long = false;
        for i in memchr::memchr_iter(b'\n', text) {
            too_long |= i - last >= 76;
            last = i;
        }
        too_long |= text.len() - last >= 76;
        if !too_long {
            return ContentTransferEncoding::SevenBit;
        }
    }
    // Counted in bytes per chunk of 255 so the compiler can use every lane of its vectors.
    let escaped: usize = text
        .chunks(255)
        .map(|chunk| {
            let in_chunk: u8 = chunk
                .iter()
                .map(|&b| u8::from(!matches!(b, b'\t' | b' '..=b'~')))
                .sum();
            usize::from(in_chunk)
        })
        .sum();
    if escaped <= text.len() / 3 {
        ContentTransferEncoding::QuotedPrintable
    } else {
        ContentTransferEncoding::Base64
    }
}

/// Quoted-printable (RFC 2045 6.7) of a text with CRLF line endings, lines of at most 76
/// characters: the algorithm of the `quoted_printable` crate lettre uses, step for step, so the
/// bytes are the same, on bytes rather than chars.
fn quoted_printable(input: &[u8]) -> Vec<u8> {
    const LIMIT: usize = 76;
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    struct Encoder {
        out: Vec<u8>,
        on_line: usize,
        backup: usize,
    }
    impl Encoder {
        fn append(&mut self, bytes: &[u8]) {
            if self.on_line + bytes.len() > LIMIT {
                if self.on_line == LIMIT {
                    // No room for the soft break: put it before the last thing appended.
                    self.on_line = self.out.len() - self.backup;
                    self.out.splice(self.backup..self.backup, *b"=\r\n");
                } else {
                    self.out.extend_from_slice(b"=\r\n");
                    self.on_line = 0;
                }
            }
            self.out.extend_from_slice(bytes);
            self.on_line += bytes.len();
            self.backup = self.out.len() - bytes.len();
        }
        /// A space or tab may not end an encoded line.
        fn trailing_space_tab(&mut self) {
            let code: &[u8] = match self.out.last() {
                Some(b' ') => b"=20",
                Some(b'\t') => b"=09",
                _ => return,
            };
            self.on_line -= 1;
            self.out.pop();
            self.append(code);
        }
    }
    let needs_encoding = |b: u8| !matches!(b, b'\t' | b' '..=b'<' | b'>'..=b'~');
    let mut e = Encoder {
        out: Vec::with_capacity(input.len() + input.len() / 4),
        on_line: 0,
        backup: 0,
    };
    let mut was_cr = false;
    let mut i = 0;
    while i < input.len() {
        let byte = input[i];
        i += 1;
        if was_cr {
            was_cr = false;
            if byte == b'\n' {
                e.trailing_space_tab();
                e.out.extend_from_slice(b"\r\n");
                e.on_line = 0;
                continue;
            }
            e.append(b"=0D");
        }
        if byte == b'\r' {
            was_cr = true;
            continue;
        }
        if LIMIT - e.on_line >= 3 && !needs_encoding(byte) {
            // A run of bytes that need no encoding, up to near the end of the line.
            let max_run = LIMIT - e.on_line - 2;
            let start = i - 1;
            let run = input[start..]
                .iter()
                .take(max_run)
                .take_while(|&&b| !needs_encoding(b))
                .count();
            let end = start + run;
            e.out.extend_from_slice(&input[start..end]);
            e.on_line += end - start;
            e.backup = e.out.len();
            i = end;
            continue;
        }
        match byte {
            b'\t' | b' '..=b'<' | b'>'..=b'~' => e.append(&[byte]),
            _ => e.append(&[
                b'=',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0x0F)],
            ]),
        }
    }
    if was_cr {
        e.append(b"=0D");
    } else {
        e.trailing_space_tab();
    }
    e.out
}

fn header_safe(what: &str, value: &str) -> Result<(), String> {
    match value.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!(
            "{what} contains the control character U+{:04X}, which could add a header",
            c as u32
        )),
        None => Ok(()),
    }
}

/// `X-Notice-Id`: the public reference the person quotes to the helpline.
#[derive(Debug, Clone)]
struct NoticeIdHeader(String);

impl Header for NoticeIdHeader {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Notice-Id")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self(s.trim().to_owned()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// `Auto-Submitted: auto-generated` (RFC 3834): tells autoresponders not to answer.
#[derive(Debug, Clone)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_owned())
    }
}

/// The file a person's message is written to in a folder: `<ref>.<generation>.eml`, the same
/// for `preview` and the `file://` transport. The generation keeps a resent letter beside the
/// first one; read from the right, the name cannot be mistaken for another person's (a ref holds
/// no path separator, and ends where the last `.<digits>.eml` begins).
pub fn file_name(person: &Person) -> String {
    format!("{}.{}.eml", person.person_ref, person.generation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ascii_sender_name_is_a_quoted_string_lettre_reads_back() {
        let mailbox = Mailbox::new(
            Some("Agence \"Nord\" \\ Est (exemple)".to_owned()),
            "ne-pas-repondre@example.fr".parse().expect("address"),
        );
        let value = mailbox_header::<header::From>(&mailbox);
        let mut headers = lettre::message::header::Headers::new();
        headers.insert_raw(value);
        assert_eq!(
            headers.get_raw("From"),
            Some("\"Agence \\\"Nord\\\" \\\\ Est (exemple)\" <ne-pas-repondre@example.fr>")
        );
        let parsed = headers
            .get::<header::From>()
            .expect("lettre parses it back");
        let parsed: Mailboxes = parsed.into();
        assert_eq!(parsed.into_single(), Some(mailbox));
    }

    /// Our encoder against lettre's `Body::new`, which it replaces, and against itself once every
    /// line is in the thread's cache.
    fn assert_same_body(text: &str) {
        let ours = encoded_body(text);
        // Lines are kept from their second sighting and read back from the third.
        for _ in 0..2 {
            let again = encoded_body(text);
            assert_eq!(
                ours.as_ref(),
                again.as_ref(),
                "{text:?} from the line cache"
            );
        }
        let lettres = Body::new(text.to_owned());
        assert_eq!(ours.encoding(), lettres.encoding(), "{text:?}");
        assert_eq!(
            String::from_utf8_lossy(ours.as_ref()),
            String::from_utf8_lossy(lettres.as_ref()),
            "{text:?}"
        );
    }

    #[test]
    fn bodies_are_encoded_as_lettre_encodes_them() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for entry in std::fs::read_dir(root.join("tests/golden")).expect("golden files") {
            let text = std::fs::read_to_string(entry.expect("entry").path()).expect("golden");
            assert_same_body(&text);
        }
        for text in [
            "",
            "Hello",
            "\n",
            "\r",
            "a\r",
            "a\rb\n\nc\r\n",
            "trailing space \nand tab\t\nend ",
            "end\t",
            "= sign=\n=",
            "é",
            "\u{202F}",
        ] {
            assert_same_body(text);
        }
        // Every mix near the line limit, where the soft breaks go.
        let atoms = [
            "a", " ", "\t", "=", "é", "€", "\n", "\r\n", "\r", "<b>", "'",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..3000 {
            let mut text = String::new();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let long = 60 + (seed % 40) as usize;
            let mut state = seed;
            for n in 0..(long + (seed % 200) as usize) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // Mostly letters, so lines grow past the limit.
                let atom = if n % 3 == 0 {
                    atoms[(state % atoms.len() as u64) as usize]
                } else {
                    "x"
                };
                text.push_str(atom);
            }
            assert_same_body(&text);
        }
    }
}
