//! The campaign's vocabulary as types: a value of one of these exists only if it is valid.
//!
//! Raw strings stop at the edge (the CSV reader, an SQL row, the config file); from there on the
//! code passes `Email`, `PersonRef`, `NoticeId`, `DeliveryState` and `Category`, so a header can
//! never receive a line break and a state can never be misspelt.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

/// Longest value accepted in any imported field. Longer is a data error, not a name.
pub const MAX_FIELD_CHARS: usize = 1000;

/// Why an imported value was refused: the message names what would be right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

fn invalid(message: impl Into<String>) -> Invalid {
    Invalid(message.into())
}

/// Refuses control characters (CR/LF would inject mail headers) and absurd lengths.
pub fn check_header_safe(value: &str) -> Result<(), Invalid> {
    if value.chars().count() > MAX_FIELD_CHARS {
        return Err(invalid(format!("longer than {MAX_FIELD_CHARS} characters")));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(invalid(format!(
            "contains the control character U+{:04X}",
            c as u32
        )));
    }
    Ok(())
}

/// The source system's key for a person: unique, non-empty, printable.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PersonRef(String);

impl PersonRef {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let value = raw.trim();
        if value.is_empty() {
            return Err(invalid("is empty"));
        }
        if value.len() > 200 {
            return Err(invalid("longer than 200 characters"));
        }
        check_header_safe(value)?;
        // A ref names preview files (`<ref>.<generation>.eml`): keep it away from path separators.
        if value.contains(['/', '\\']) || value == "." || value == ".." {
            return Err(invalid("contains a path separator"));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Serialised as its text, for the letters' templates and the exports.
impl serde::Serialize for PersonRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl fmt::Display for PersonRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A deliverable e-mail address. Internationalised domains and local parts are accepted; the
/// domain is kept lowercased separately for rate limits and statistics.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email {
    address: String,
    domain_start: usize,
}

impl Email {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let value = raw.trim();
        check_header_safe(value)?;
        if value.len() > 254 {
            return Err(invalid("longer than 254 characters"));
        }
        let Some((local, domain)) = value.rsplit_once('@') else {
            return Err(invalid(format!("{value:?} has no @")));
        };
        if local.is_empty() || local.len() > 64 {
            return Err(invalid(format!(
                "{value:?}: the part before @ must be 1 to 64 characters"
            )));
        }
        let domain = domain.trim_end_matches('.').to_lowercase();
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2 || labels.iter().any(|l| l.is_empty() || l.len() > 63) {
            return Err(invalid(format!(
                "{value:?}: the domain must have at least two non-empty labels"
            )));
        }
        if labels
            .iter()
            .any(|l| l.starts_with('-') || l.ends_with('-'))
        {
            return Err(invalid(format!(
                "{value:?}: a domain label starts or ends with '-'"
            )));
        }
        if !domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '.')
        {
            return Err(invalid(format!(
                "{value:?}: the domain holds a character other than letters, digits, '-' and '.'"
            )));
        }
        // lettre is the final judge of what it can put in an envelope.
        let address = format!("{local}@{domain}");
        if address.parse::<lettre::Address>().is_err() {
            return Err(invalid(format!("{value:?} is not a valid e-mail address")));
        }
        Ok(Self {
            domain_start: local.len() + 1,
            address,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.address
    }

    pub fn domain(&self) -> &str {
        &self.address[self.domain_start..]
    }
}

/// Serialised as its text, for the letters' templates and the exports.
impl serde::Serialize for Email {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address)
    }
}

/// The public reference a person quotes to the helpline: 12 characters from an alphabet without
/// look-alikes (Crockford's base 32), grouped by four.
///
/// The first two characters name the person's bucket (see [`NoticeId::in_bucket`]), the other ten
/// are random: 50 bits, unguessable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NoticeId(String);

const NOTICE_ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// People per notice id bucket, in import order.
const NOTICE_BUCKET_PEOPLE: i64 = 4096;

impl NoticeId {
    /// Twelve random characters.
    pub fn random() -> Self {
        Self::with_prefix(&[])
    }

    /// The id of the `row`-th person imported: its first two characters count buckets of 4,096
    /// people (modulo 1,024), the rest is random. Ids made one after the other then sit side by
    /// side in the database's unique index, so a commit of 50,000 new people rewrites a few
    /// hundred of its pages; with fully random ids it rewrote all of them, and the import's cost
    /// per person grew with the number of people (3.4 million: 1.6 times that of 340,000).
    /// That the first two characters follow the import order says nothing about anyone.
    pub fn in_bucket(row: i64) -> Self {
        let bucket = (row / NOTICE_BUCKET_PEOPLE).rem_euclid(1024) as usize;
        Self::with_prefix(&[NOTICE_ALPHABET[bucket / 32], NOTICE_ALPHABET[bucket % 32]])
    }

    fn with_prefix(prefix: &[u8]) -> Self {
        let mut rng = rand::rng();
        let mut id = String::with_capacity(14);
        for i in 0..12 {
            if i > 0 && i % 4 == 0 {
                id.push('-');
            }
            let c = prefix
                .get(i)
                .copied()
                .unwrap_or_else(|| NOTICE_ALPHABET[rng.random_range(0..NOTICE_ALPHABET.len())]);
            id.push(c as char);
        }
        Self(id)
    }

    /// Accepts what a person reads out or types: any case, with or without dashes.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let compact: String = raw
            .trim()
            .chars()
            .filter(|c| *c != '-' && *c != ' ')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if compact.len() != 12 || !compact.bytes().all(|b| NOTICE_ALPHABET.contains(&b)) {
            return Err(invalid(format!(
                "{raw:?} is not a notice id (XXXX-XXXX-XXXX)"
            )));
        }
        Ok(Self(format!(
            "{}-{}-{}",
            &compact[0..4],
            &compact[4..8],
            &compact[8..12]
        )))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Serialised as its text, for the letters' templates and the exports.
impl serde::Serialize for NoticeId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl fmt::Display for NoticeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The SQL side of a checked text type: bound as its text, and checked again when read back
/// (`parse`), so a value edited by hand in the database that no letter could carry is an error
/// naming the column, not a header.
macro_rules! sql_text {
    ($type:ty) => {
        impl sqlx::Type<sqlx::Sqlite> for $type {
            fn type_info() -> sqlx::sqlite::SqliteTypeInfo {
                <String as sqlx::Type<sqlx::Sqlite>>::type_info()
            }

            fn compatible(ty: &sqlx::sqlite::SqliteTypeInfo) -> bool {
                <String as sqlx::Type<sqlx::Sqlite>>::compatible(ty)
            }
        }

        impl<'q> sqlx::Encode<'q, sqlx::Sqlite> for $type {
            fn encode_by_ref(
                &self,
                buf: &mut <sqlx::Sqlite as sqlx::Database>::ArgumentBuffer<'q>,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <String as sqlx::Encode<'q, sqlx::Sqlite>>::encode(self.as_str().to_owned(), buf)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Sqlite> for $type {
            fn decode(
                value: sqlx::sqlite::SqliteValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <&str as sqlx::Decode<'r, sqlx::Sqlite>>::decode(value)?;
                Ok(<$type>::parse(text)?)
            }
        }
    };
}

sql_text!(PersonRef);
sql_text!(Email);
sql_text!(NoticeId);

/// Where one person's letter stands. The life cycle is [`Transition`] (docs/dev/internals.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeliveryState {
    Pending,
    Sending,
    Sent,
    Deferred,
    Failed,
    Bounced,
    NoEmail,
    /// The relay reported (a delivery status notification) that the person's provider
    /// accepted the letter: past the relay, not read.
    Delivered,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 8] = [
        DeliveryState::Pending,
        DeliveryState::Sending,
        DeliveryState::Sent,
        DeliveryState::Deferred,
        DeliveryState::Failed,
        DeliveryState::Bounced,
        DeliveryState::NoEmail,
        DeliveryState::Delivered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Sending => "sending",
            DeliveryState::Sent => "sent",
            DeliveryState::Deferred => "deferred",
            DeliveryState::Failed => "failed",
            DeliveryState::Bounced => "bounced",
            DeliveryState::NoEmail => "no_email",
            DeliveryState::Delivered => "delivered",
        }
    }

    /// Not (or not yet) reached by e-mail, for good: the postal fallback's population.
    pub fn is_unreached(self) -> bool {
        DeliveryState::NOT_REACHED.contains(&self)
    }
}

impl FromStr for DeliveryState {
    type Err = Invalid;
    fn from_str(raw: &str) -> Result<Self, Invalid> {
        DeliveryState::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| invalid(format!("{raw:?} is not a delivery state")))
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The sets of states the campaign's questions are asked in. Every query that asks one of them
/// uses these lists (through [`sql_states`]), so "still to send" cannot mean two things.
impl DeliveryState {
    /// May be claimed by a send run (a deferred one only once its retry time has come).
    pub const DUE: &'static [DeliveryState] = &[DeliveryState::Pending, DeliveryState::Deferred];
    /// Not reached yet, and not given up on: what a campaign still has to send.
    pub const STILL_TO_SEND: &'static [DeliveryState] = &[
        DeliveryState::Pending,
        DeliveryState::Deferred,
        DeliveryState::Sending,
    ];
    /// Not reached by e-mail, for good: the postal fallback's population.
    pub const NOT_REACHED: &'static [DeliveryState] = &[
        DeliveryState::Failed,
        DeliveryState::Bounced,
        DeliveryState::NoEmail,
    ];
    /// Handed to a relay and not known to have failed: the first of the three levels (handed to
    /// the relay / accepted by the provider / bounced). `delivered` is the second.
    pub const HANDED_OVER: &'static [DeliveryState] =
        &[DeliveryState::Sent, DeliveryState::Delivered];
}

/// A set of states as an SQL list, `'pending','deferred'`, for `state IN (...)`. The names are
/// this module's constants, never input, so the list is safe to splice into a statement.
pub fn sql_states(states: &[DeliveryState]) -> String {
    states
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(",")
}

/// What one line of evidence (a row of `events`) records. Kinds that change a delivery's state
/// are the [`Transition`]s'; the others are notes on a person (a soft bounce, a complaint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Imported,
    Updated,
    Claimed,
    Sent,
    Deferred,
    Failed,
    Released,
    Recovered,
    Bounced,
    SoftBounce,
    Resend,
    /// An adviser recorded a corrected or alternative address (the letter goes again).
    AddressCorrected,
    /// The caller asked for a paper letter: `export postal` includes them.
    PaperRequested,
    /// An adviser's note of a call (its text is erased by `purge`).
    CallNote,
    /// A delay notice ("still trying") came back: a note, the state stays.
    Delayed,
    /// The person marked the letter as spam (a provider's ARF feedback report).
    Complained,
    /// The relay reported the person's provider accepted the letter (`sent` → `delivered`).
    Delivered,
}

impl EventKind {
    pub const ALL: [EventKind; 17] = [
        EventKind::Imported,
        EventKind::Updated,
        EventKind::Claimed,
        EventKind::Sent,
        EventKind::Deferred,
        EventKind::Failed,
        EventKind::Released,
        EventKind::Recovered,
        EventKind::Bounced,
        EventKind::SoftBounce,
        EventKind::Resend,
        EventKind::AddressCorrected,
        EventKind::PaperRequested,
        EventKind::CallNote,
        EventKind::Delayed,
        EventKind::Complained,
        EventKind::Delivered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Imported => "imported",
            EventKind::Updated => "updated",
            EventKind::Claimed => "claimed",
            EventKind::Sent => "sent",
            EventKind::Deferred => "deferred",
            EventKind::Failed => "failed",
            EventKind::Released => "released",
            EventKind::Recovered => "recovered",
            EventKind::Bounced => "bounced",
            EventKind::SoftBounce => "soft_bounce",
            EventKind::Resend => "resend",
            EventKind::AddressCorrected => "address_corrected",
            EventKind::PaperRequested => "paper_requested",
            EventKind::CallNote => "call_note",
            EventKind::Delayed => "delayed",
            EventKind::Complained => "complained",
            EventKind::Delivered => "delivered",
        }
    }
}

impl FromStr for EventKind {
    type Err = Invalid;
    fn from_str(raw: &str) -> Result<Self, Invalid> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == raw)
            .ok_or_else(|| invalid(format!("{raw:?} is not an event kind")))
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change of a delivery's state: the life cycle as one type. Each names the states it may
/// start from and the states it may lead to; the store writes a transition as
/// `UPDATE … WHERE state IN (from)` and its event only when a row changed, so a transition
/// happens with its evidence or not at all.
///
/// ```text
///  import ─► pending ─claim─► sending ─send─► sent ─bounce─► bounced
///     │        ▲  ▲              │ │ └─defer─► deferred ─claim─┘ (back to sending)
///     ▼        │  └──release─────┘ └─fail───► failed
///  no_email ─update      (recover: a dead run's sending ─► pending)
///  sent ─deliver─► delivered ─bounce─► bounced  (the relay's notifications, RFC 3461)
///  resend: sent, delivered, deferred, failed, bounced, no_email, pending ─► pending (new generation)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transition {
    /// A new person: no state before.
    Import,
    /// `import --update` changed the address of a letter not yet gone.
    Update,
    Claim,
    Send,
    Defer,
    Fail,
    /// Claimed but never handed to a relay: back to where it was, no attempt counted.
    Release,
    /// Left in `sending` by a run that is gone: sent again.
    Recover,
    Bounce,
    /// A new generation of the same delivery, to the current (or another) address.
    Resend,
    /// The relay's notification says the person's provider accepted the letter.
    Deliver,
}

impl Transition {
    pub const ALL: [Transition; 11] = [
        Transition::Import,
        Transition::Update,
        Transition::Claim,
        Transition::Send,
        Transition::Defer,
        Transition::Fail,
        Transition::Release,
        Transition::Recover,
        Transition::Bounce,
        Transition::Resend,
        Transition::Deliver,
    ];

    /// The event that records it.
    pub fn kind(self) -> EventKind {
        match self {
            Transition::Import => EventKind::Imported,
            Transition::Update => EventKind::Updated,
            Transition::Claim => EventKind::Claimed,
            Transition::Send => EventKind::Sent,
            Transition::Defer => EventKind::Deferred,
            Transition::Fail => EventKind::Failed,
            Transition::Release => EventKind::Released,
            Transition::Recover => EventKind::Recovered,
            Transition::Bounce => EventKind::Bounced,
            Transition::Resend => EventKind::Resend,
            Transition::Deliver => EventKind::Delivered,
        }
    }

    /// The states it may start from (none for an import).
    pub fn from_states(self) -> &'static [DeliveryState] {
        use DeliveryState::*;
        match self {
            Transition::Import => &[],
            Transition::Update => &[Pending, Deferred, NoEmail],
            Transition::Claim => DeliveryState::DUE,
            Transition::Send
            | Transition::Defer
            | Transition::Fail
            | Transition::Release
            | Transition::Recover => &[Sending],
            // A provider may accept a letter and bounce it later (a forwarding, a mailbox
            // closed since): the bounce still counts.
            Transition::Bounce => DeliveryState::HANDED_OVER,
            Transition::Resend => &[Pending, Sent, Delivered, Deferred, Failed, Bounced, NoEmail],
            Transition::Deliver => &[Sent],
        }
    }

    /// The states it may lead to.
    pub fn to_states(self) -> &'static [DeliveryState] {
        use DeliveryState::*;
        match self {
            Transition::Import => &[Pending, NoEmail],
            Transition::Update => &[Pending, Deferred, NoEmail],
            Transition::Claim => &[Sending],
            Transition::Send => &[Sent],
            Transition::Defer => &[Deferred],
            Transition::Fail => &[Failed],
            Transition::Release => DeliveryState::DUE,
            Transition::Recover => &[Pending],
            Transition::Bounce => &[Bounced],
            Transition::Resend => &[Pending],
            Transition::Deliver => &[Delivered],
        }
    }

    /// The `state IN (...)` list of its from-states, for the statement that makes it.
    pub fn sql_from(self) -> String {
        sql_states(self.from_states())
    }

    /// Whether `from → to` is this transition (`from` is None only for an import).
    pub fn allows(self, from: Option<DeliveryState>, to: DeliveryState) -> bool {
        let from_ok = match from {
            None => self.from_states().is_empty(),
            Some(from) => self.from_states().contains(&from),
        };
        from_ok && self.to_states().contains(&to)
    }
}

/// A category of personal data that may have been exposed, in the order letters list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    Name,
    Email,
    Postal,
    Phone,
    Identifier,
    Status,
    Birthdate,
}

impl Category {
    pub const ALL: [Category; 7] = [
        Category::Name,
        Category::Email,
        Category::Postal,
        Category::Phone,
        Category::Identifier,
        Category::Status,
        Category::Birthdate,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Category::Name => "name",
            Category::Email => "email",
            Category::Postal => "postal",
            Category::Phone => "phone",
            Category::Identifier => "identifier",
            Category::Status => "status",
            Category::Birthdate => "birthdate",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let code = raw.trim().to_ascii_lowercase();
        Category::ALL
            .into_iter()
            .find(|c| c.code() == code)
            .ok_or_else(|| {
                invalid(format!(
                    "unknown category {raw:?} (known: name, email, postal, phone, identifier, status, birthdate)"
                ))
            })
    }

    /// Parses a `;`-separated list into the canonical order, without repeats.
    pub fn parse_list(raw: &str) -> Result<Vec<Category>, Invalid> {
        let mut categories = Vec::new();
        for part in raw.split([';', ',']).filter(|p| !p.trim().is_empty()) {
            categories.push(Category::parse(part)?);
        }
        categories.sort();
        categories.dedup();
        Ok(categories)
    }

    pub fn join(categories: &[Category]) -> String {
        categories
            .iter()
            .map(|c| c.code())
            .collect::<Vec<_>>()
            .join(";")
    }
}

/// How a letter greets the person. Anything not clearly one of these gets the neutral greeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Civility {
    Mr,
    Ms,
}

impl Civility {
    pub fn parse(raw: &str) -> Option<Self> {
        let folded = raw.trim().trim_end_matches('.').to_lowercase();
        match folded.as_str() {
            "m" | "mr" | "monsieur" | "mister" | "sir" => Some(Civility::Mr),
            "mme" | "madame" | "mrs" | "ms" | "miss" | "mlle" | "mademoiselle" => {
                Some(Civility::Ms)
            }
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Civility::Mr => "mr",
            Civility::Ms => "ms",
        }
    }
}

/// Keeps only the last four characters of an agency identifier, as "…4821".
pub fn mask_identifier(raw: &str) -> Option<String> {
    let chars: Vec<char> = raw.trim().chars().filter(|c| !c.is_whitespace()).collect();
    if chars.is_empty() {
        return None;
    }
    let tail: String = chars[chars.len().saturating_sub(4)..].iter().collect();
    Some(format!("…{tail}"))
}

/// Keeps only the last two digits of a phone number, as "•• •• •• •• 12".
pub fn mask_phone(raw: &str) -> Option<String> {
    let digits: Vec<char> = raw.chars().filter(|c| c.is_ascii_digit()).collect();
    if digits.len() < 4 {
        return None;
    }
    let tail: String = digits[digits.len() - 2..].iter().collect();
    Some(format!("•• •• •• •• {tail}"))
}

/// What a run learnt of a relay's delivery status notifications, for the evidence and `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayNotifications {
    /// Its EHLO listed DSN (in every session of the run).
    pub offered: bool,
    /// Offered and asked for: each letter went with NOTIFY and ENVID.
    pub requested: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_accepts_internationalised_domains_and_lowercases_the_domain() {
        let email = Email::parse(" Jean.Dupont@Exemple.FR ").unwrap();
        assert_eq!(email.as_str(), "Jean.Dupont@exemple.fr");
        assert_eq!(email.domain(), "exemple.fr");
        let idn = Email::parse("élodie@société.fr").unwrap();
        assert_eq!(idn.domain(), "société.fr");
    }

    #[test]
    fn email_refuses_what_cannot_be_delivered() {
        for bad in [
            "",
            "no-at-sign",
            "@exemple.fr",
            "a@b",
            "a@-b.fr",
            "a@exemple..fr",
            "a@exem ple.fr",
            "a\r\nBcc: x@y.fr@exemple.fr",
            "a b@exemple.fr",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn header_safety_refuses_line_breaks_and_long_values() {
        assert!(check_header_safe("Dupont\r\nBcc: x@y.fr").is_err());
        assert!(check_header_safe(&"x".repeat(MAX_FIELD_CHARS + 1)).is_err());
        assert!(check_header_safe("Élodie O'Brien-Müller").is_ok());
    }

    #[test]
    fn notice_ids_are_random_and_round_trip() {
        let a = NoticeId::random();
        let b = NoticeId::random();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 14);
        let typed = a.as_str().to_lowercase().replace('-', "");
        assert_eq!(NoticeId::parse(&typed).unwrap(), a);
        assert!(
            NoticeId::parse("K7QF-3MZ9-P2XI").is_err(),
            "I is not in the alphabet"
        );
    }

    #[test]
    fn notice_ids_in_a_bucket_share_two_characters_and_nothing_else() {
        let first = NoticeId::in_bucket(1);
        assert!(first.as_str().starts_with("00"), "{first}");
        let same: Vec<NoticeId> = (1..NOTICE_BUCKET_PEOPLE).map(NoticeId::in_bucket).collect();
        assert!(same.iter().all(|id| id.as_str().starts_with("00")));
        let distinct: std::collections::HashSet<&str> =
            same.iter().map(|id| &id.as_str()[2..]).collect();
        assert_eq!(
            distinct.len(),
            same.len(),
            "the other ten characters are random"
        );
        assert!(
            NoticeId::in_bucket(NOTICE_BUCKET_PEOPLE)
                .as_str()
                .starts_with("01")
        );
        assert!(
            NoticeId::in_bucket(33 * NOTICE_BUCKET_PEOPLE)
                .as_str()
                .starts_with("11")
        );
        // Buckets wrap after 1,024: the id stays twelve characters of the alphabet.
        let wrapped = NoticeId::in_bucket(1024 * NOTICE_BUCKET_PEOPLE + 5);
        assert!(wrapped.as_str().starts_with("00"));
        assert_eq!(NoticeId::parse(wrapped.as_str()).unwrap(), wrapped);
    }

    #[test]
    fn categories_parse_into_canonical_order_without_repeats() {
        let list = Category::parse_list("phone; Name;email;phone").unwrap();
        assert_eq!(Category::join(&list), "name;email;phone");
        assert!(Category::parse_list("name;password").is_err());
    }

    #[test]
    fn masks_keep_only_the_tail() {
        assert_eq!(mask_identifier("1234567A4821").as_deref(), Some("…4821"));
        assert_eq!(mask_identifier("  ").as_deref(), None);
        assert_eq!(
            mask_phone("+33 6 12 34 56 78").as_deref(),
            Some("•• •• •• •• 78")
        );
    }

    #[test]
    fn states_round_trip() {
        for state in DeliveryState::ALL {
            assert_eq!(state.as_str().parse::<DeliveryState>().unwrap(), state);
        }
    }

    #[test]
    fn every_state_is_reachable_and_every_transition_leads_somewhere_allowed() {
        for state in DeliveryState::ALL {
            assert!(
                Transition::ALL
                    .iter()
                    .any(|t| t.to_states().contains(&state)),
                "{state} cannot be reached"
            );
        }
        assert!(Transition::Import.allows(None, DeliveryState::Pending));
        assert!(Transition::Claim.allows(Some(DeliveryState::Deferred), DeliveryState::Sending));
        assert!(!Transition::Release.allows(Some(DeliveryState::Sent), DeliveryState::Pending));
        assert!(!Transition::Send.allows(Some(DeliveryState::Pending), DeliveryState::Sent));
        assert_eq!(sql_states(DeliveryState::DUE), "'pending','deferred'");
        assert!(Transition::Deliver.allows(Some(DeliveryState::Sent), DeliveryState::Delivered));
        assert!(Transition::Bounce.allows(Some(DeliveryState::Delivered), DeliveryState::Bounced));
        assert!(
            !Transition::Deliver.allows(Some(DeliveryState::Bounced), DeliveryState::Delivered)
        );
        for set in [
            DeliveryState::DUE,
            DeliveryState::STILL_TO_SEND,
            DeliveryState::NOT_REACHED,
        ] {
            assert!(!set.contains(&DeliveryState::Delivered), "{set:?}");
        }
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>().unwrap(), kind);
        }
    }

    #[test]
    fn refs_refuse_path_separators() {
        assert!(PersonRef::parse("../etc").is_err());
        assert!(PersonRef::parse("").is_err());
        assert_eq!(PersonRef::parse(" A-1 ").unwrap().as_str(), "A-1");
    }
}
