//! `breachmail.toml`: reading, environment overrides and validation of the campaign's settings.
//!
//! The file is parsed into a TOML table, `BREACHMAIL_<SECTION>_<KEY>` variables are laid over it,
//! and only then is it turned into typed settings, so an override is checked exactly like the
//! file. Every error names the key and what would be right. Secrets never come from the file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::Mailbox;
use serde::Deserialize;

use crate::exit::UsageError;

/// The sections scripts may override from the environment, in the spec's order.
const SECTIONS: [&str; 10] = [
    "campaign", "sender", "smtp", "rate", "retry", "dkim", "incident", "schedule", "console",
    "bounces",
];

/// Variables that look like overrides but are not config keys.
const NOT_OVERRIDES: &[&str] = &[
    "BREACHMAIL_BUSY_TIMEOUT",
    "BREACHMAIL_CONFIG",
    "BREACHMAIL_LOG",
    "BREACHMAIL_SMTP_PASSWORD",
    "BREACHMAIL_SMTP_PASSWORD_FILE",
    "BREACHMAIL_BOUNCES_PASSWORD",
    "BREACHMAIL_BOUNCES_PASSWORD_FILE",
    "BREACHMAIL_TEST_CA_FILE",
    crate::clock::TEST_NOW_VARIABLE,
    "BREACHMAIL_TEST_ABORT_AFTER_BATCHES",
    "BREACHMAIL_TEST_LEASE_TTL",
];

#[derive(Debug, Clone)]
pub struct Config {
    /// The config file's folder: relative paths in the file are relative to it.
    pub dir: PathBuf,
    pub campaign: Campaign,
    pub sender: Sender,
    pub smtp: Smtp,
    /// The relays letters go through: the `[[relay]]` entries, or the one of `smtp.url`.
    pub relays: Vec<RelayEntry>,
    pub rate: Rate,
    pub retry: Retry,
    /// The `[dkim]` keys: every letter carries one signature per key; none: no signature.
    pub dkim: Vec<Dkim>,
    /// `[schedule]`: sending windows, daily caps, warm-up, order; None: send whenever run.
    pub schedule: Option<crate::schedule::Schedule>,
    pub bounces: Bounces,
    /// Every `[incident]` key, as the templates see it under `incident.*`.
    pub incident: serde_json::Map<String, serde_json::Value>,
    pub console: Console,
}

/// `[console]`: the helpline's web console (`breachmail serve`).
#[derive(Debug, Clone)]
pub struct Console {
    /// Where to listen; anything but loopback needs `tls_cert` or `proxy_header`.
    pub listen: std::net::SocketAddr,
    /// A session ends after this long without a request...
    pub session_idle: Duration,
    /// ...and after this long in any case.
    pub session_max: Duration,
    /// Searches an adviser may make per minute (a burst of that many, then one at a time).
    pub searches_per_minute: u32,
    /// The header an authenticating reverse proxy sets to the adviser's login.
    pub proxy_header: Option<String>,
    /// The addresses the proxy connects from; its header is believed from these only.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// PEM certificate chain and private key: the console speaks HTTPS itself.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The console's language (`fr` or `en`); None: `campaign.default_language`.
    pub language: Option<String>,
    /// Person pages one adviser may open in an hour; beyond, refused and shown to supervisors.
    pub person_views_per_hour: u32,
}

#[derive(Debug, Clone)]
pub struct Campaign {
    pub database: PathBuf,
    pub letters: PathBuf,
    pub default_language: String,
}

#[derive(Debug, Clone)]
pub struct Sender {
    pub from: Mailbox,
    pub reply_to: Option<Mailbox>,
    pub bounce_domain: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Smtp {
    pub relay: Relay,
    pub username: Option<String>,
    pub max_connections: usize,
    pub timeout: Duration,
    /// Ask relays that offer it for delivery status notifications (RFC 3461), so that `bounces`
    /// learns which letters the people's providers accepted (`delivered`).
    pub delivery_notifications: bool,
    /// `smtp.tls_ca`, `smtp.tls_server_name`.
    pub tls: crate::tls::TlsSettings,
}

/// One relay of several (`[[relay]]`), or the only one (`smtp.url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayEntry {
    /// How the audit, `status` and the report name it: `host:port` (or the outbox folder).
    pub name: String,
    pub relay: Relay,
    pub username: Option<String>,
    /// The environment variable that holds the password (`BREACHMAIL_SMTP_PASSWORD` for the
    /// relay of `smtp.url`).
    pub password_variable: Option<String>,
    /// Its share of the letters, among the relays that have a free connection.
    pub weight: u32,
    pub max_connections: usize,
    /// Letters per second through this relay; 0: only `rate.per_second` applies.
    pub per_second: u32,
    /// Ask this relay for delivery status notifications when it offers them.
    pub delivery_notifications: bool,
    /// How its certificate is verified (`tls_ca`, `tls_server_name`).
    pub tls: crate::tls::TlsSettings,
    /// Where its keys are, as errors name them: `smtp` or `relay[N]`.
    pub section: String,
}

impl Relay {
    /// `host:port`, or `file://DIR`: how a relay is named in the database.
    pub fn name(&self) -> String {
        match self {
            Relay::Smtp { host, port } | Relay::Smtps { host, port } => format!("{host}:{port}"),
            Relay::File(_) => "outbox".to_owned(),
        }
    }
}

/// Where letters go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relay {
    /// `smtp://host:port`: STARTTLS when offered, required unless the host is loopback.
    Smtp { host: String, port: u16 },
    /// `smtps://host:port`: TLS from the first byte.
    Smtps { host: String, port: u16 },
    /// `file://DIR`: one `.eml` per message in DIR (the default, for trying things out).
    File(PathBuf),
}

impl Relay {
    pub fn is_loopback(&self) -> bool {
        match self {
            Relay::Smtp { host, .. } | Relay::Smtps { host, .. } => {
                crate::loopback::is_loopback_host(host)
            }
            Relay::File(_) => true,
        }
    }
}

impl fmt::Display for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Relay::Smtp { host, port } => write!(f, "smtp://{host}:{port}"),
            Relay::Smtps { host, port } => write!(f, "smtps://{host}:{port}"),
            Relay::File(dir) => write!(f, "file://{}", dir.display()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Rate {
    /// Messages per second over all domains; 0 means unlimited.
    pub per_second: u32,
    /// Ceilings per recipient domain (lowercased).
    pub per_domain: BTreeMap<String, u32>,
}

#[derive(Debug, Clone)]
pub struct Retry {
    pub max_attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
    pub give_up_after: Duration,
}

/// `[bounces]`: where `bounces` reads when no file is named, and what it does with what it read.
#[derive(Debug, Clone, Default)]
pub struct Bounces {
    /// The bounce mailbox, `imaps://USER@HOST[:PORT]/FOLDER`.
    pub imap: Option<crate::imap_url::ImapUrl>,
    /// Move messages read to this folder instead of flagging them `\Seen`.
    pub move_to: Option<String>,
    /// Delete messages once recorded.
    pub delete: bool,
    /// Write people's replies into this folder.
    pub replies_to: Option<PathBuf>,
    /// How the mailbox server's certificate is verified (`tls_ca`, `tls_server_name`).
    pub tls: crate::tls::TlsSettings,
}

#[derive(Debug, Clone)]
pub struct Dkim {
    pub selector: String,
    pub domain: String,
    pub private_key: PathBuf,
    /// How errors name this key's file: `dkim.private_key` or `dkim.key[N].private_key`.
    pub config_key: String,
}

// What the file may contain. `deny_unknown_fields` turns a typo into an error naming the key.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    campaign: FileCampaign,
    #[serde(default)]
    sender: FileSender,
    #[serde(default)]
    smtp: FileSmtp,
    #[serde(default)]
    relay: Vec<FileRelay>,
    #[serde(default)]
    rate: FileRate,
    #[serde(default)]
    retry: FileRetry,
    dkim: Option<FileDkim>,
    #[serde(default)]
    bounces: FileBounces,
    #[serde(default)]
    incident: toml::Table,
    schedule: Option<FileSchedule>,
    #[serde(default)]
    console: FileConsole,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileConsole {
    listen: String,
    session_idle: String,
    session_max: String,
    searches_per_minute: i64,
    proxy_header: Option<String>,
    trusted_proxies: Vec<String>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    language: Option<String>,
    person_views_per_hour: i64,
}

impl Default for FileConsole {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            session_idle: "30m".into(),
            session_max: "12h".into(),
            searches_per_minute: 30,
            proxy_header: None,
            trusted_proxies: Vec::new(),
            tls_cert: None,
            tls_key: None,
            language: None,
            person_views_per_hour: 40,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct FileBounces {
    imap: Option<String>,
    move_to: Option<String>,
    delete: bool,
    replies_to: Option<String>,
    tls_ca: Option<String>,
    tls_server_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileCampaign {
    database: String,
    letters: String,
    default_language: String,
}

impl Default for FileCampaign {
    fn default() -> Self {
        Self {
            database: "breachmail.db".into(),
            letters: "letters".into(),
            default_language: "fr".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileSender {
    from: String,
    reply_to: Option<String>,
    bounce_domain: Option<String>,
}

impl Default for FileSender {
    fn default() -> Self {
        Self {
            from: "Notification <ne-pas-repondre@notification.example.fr>".into(),
            reply_to: None,
            bounce_domain: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileSmtp {
    url: String,
    username: Option<String>,
    max_connections: i64,
    timeout: String,
    delivery_notifications: bool,
    tls_ca: Option<String>,
    tls_server_name: Option<String>,
}

impl Default for FileSmtp {
    fn default() -> Self {
        Self {
            url: "file://outbox".into(),
            username: None,
            max_connections: 8,
            timeout: "30s".into(),
            delivery_notifications: true,
            tls_ca: None,
            tls_server_name: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRelay {
    url: String,
    username: Option<String>,
    /// The name of the environment variable holding the password, never the password.
    password_variable: Option<String>,
    #[serde(default = "one")]
    weight: i64,
    max_connections: Option<i64>,
    #[serde(default)]
    per_second: i64,
    /// Default: `smtp.delivery_notifications`.
    delivery_notifications: Option<bool>,
    tls_ca: Option<String>,
    tls_server_name: Option<String>,
}

fn one() -> i64 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileRate {
    per_second: i64,
    per_domain: BTreeMap<String, i64>,
}

impl Default for FileRate {
    fn default() -> Self {
        Self {
            per_second: 50,
            per_domain: BTreeMap::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileRetry {
    max_attempts: i64,
    first_delay: String,
    max_delay: String,
    give_up_after: String,
}

impl Default for FileRetry {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            first_delay: "5m".into(),
            max_delay: "6h".into(),
            give_up_after: "5d".into(),
        }
    }
}

/// `[dkim]`: one key as `selector`, `domain`, `private_key`, or several as `[[dkim.key]]`
/// entries of the same three (RSA and Ed25519 side by side).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDkim {
    selector: Option<String>,
    domain: Option<String>,
    private_key: Option<String>,
    #[serde(default)]
    key: Vec<FileDkimKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDkimKey {
    selector: String,
    domain: String,
    private_key: String,
}

/// The `[dkim]` keys, every one checked, every error naming its key.
fn dkim_keys(file: Option<FileDkim>, dir: &Path) -> Result<Vec<Dkim>, UsageError> {
    let Some(file) = file else {
        return Ok(Vec::new());
    };
    let one = |prefix: &str, selector: &str, domain: &str, private_key: &str| {
        Ok(Dkim {
            selector: non_empty(&format!("{prefix}selector"), selector)?.to_owned(),
            domain: domain_name(&format!("{prefix}domain"), domain)?,
            private_key: dir.join(non_empty(&format!("{prefix}private_key"), private_key)?),
            config_key: format!("{prefix}private_key"),
        })
    };
    match (file.selector, file.domain, file.private_key) {
        (None, None, None) if !file.key.is_empty() => file
            .key
            .iter()
            .enumerate()
            .map(|(n, k)| {
                one(
                    &format!("dkim.key[{}].", n + 1),
                    &k.selector,
                    &k.domain,
                    &k.private_key,
                )
            })
            .collect(),
        (Some(selector), Some(domain), Some(private_key)) if file.key.is_empty() => {
            Ok(vec![one("dkim.", &selector, &domain, &private_key)?])
        }
        (selector, domain, private_key) if file.key.is_empty() => {
            let missing = [
                ("selector", selector),
                ("domain", domain),
                ("private_key", private_key),
            ]
            .into_iter()
            .find(|(_, value)| value.is_none())
            .map_or("private_key", |(name, _)| name);
            Err(UsageError::new(format!(
                "dkim.{missing}: missing (a key needs selector, domain and private_key)"
            )))
        }
        _ => Err(UsageError::new(
            "dkim: give either selector, domain and private_key (one key), or one [[dkim.key]] \
             entry with those three per key (several keys), not a mix",
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSchedule {
    timezone: String,
    #[serde(default)]
    windows: Vec<String>,
    #[serde(default)]
    skip_dates: Vec<String>,
    daily_cap: Option<i64>,
    #[serde(default)]
    warm_up: Vec<i64>,
    #[serde(default)]
    per_domain_daily_cap: BTreeMap<String, i64>,
    #[serde(default)]
    order: Vec<String>,
}

/// `[schedule]`, every value checked, every error naming its key.
fn schedule(file: FileSchedule) -> Result<crate::schedule::Schedule, UsageError> {
    use crate::schedule::{OrderKey, Schedule, Window};
    let timezone = file.timezone.trim().parse::<chrono_tz::Tz>().map_err(|_| {
        key_error(
            "schedule.timezone",
            &file.timezone,
            "an IANA time zone name such as \"Europe/Paris\" or \"America/Montreal\"",
        )
    })?;
    let windows = file
        .windows
        .iter()
        .enumerate()
        .map(|(i, text)| {
            Window::parse(text)
                .map_err(|why| key_error(&format!("schedule.windows[{i}]"), text, &why))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let skip_dates = file
        .skip_dates
        .iter()
        .enumerate()
        .map(|(i, text)| {
            chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| {
                key_error(
                    &format!("schedule.skip_dates[{i}]"),
                    text,
                    "a date such as \"2026-05-01\"",
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let daily_cap = file
        .daily_cap
        .map(|n| positive("schedule.daily_cap", n))
        .transpose()?;
    let warm_up = file
        .warm_up
        .iter()
        .enumerate()
        .map(|(i, n)| positive(&format!("schedule.warm_up[{i}]"), *n))
        .collect::<Result<_, _>>()?;
    let per_domain_daily_cap = file
        .per_domain_daily_cap
        .into_iter()
        .map(|(domain, n)| {
            let key = format!("schedule.per_domain_daily_cap.{domain}");
            Ok((domain_name(&key, &domain)?, positive(&key, n)?))
        })
        .collect::<Result<_, UsageError>>()?;
    let mut order = Vec::new();
    for (i, text) in file.order.iter().enumerate() {
        let key = OrderKey::parse(text)
            .map_err(|why| key_error(&format!("schedule.order[{i}]"), text, &why))?;
        if order.contains(&key) {
            return Err(key_error(
                &format!("schedule.order[{i}]"),
                text,
                "each key once",
            ));
        }
        order.push(key);
    }
    Ok(Schedule {
        timezone,
        windows,
        skip_dates,
        daily_cap,
        warm_up,
        per_domain_daily_cap,
        order,
    })
}

fn positive(key: &str, value: i64) -> Result<u32, UsageError> {
    u32::try_from(value).ok().filter(|n| *n > 0).ok_or_else(|| {
        key_error(
            key,
            &value.to_string(),
            "a whole number of letters, at least 1 (leave the key out for no limit)",
        )
    })
}

/// Where the config is: `--config`, else `$BREACHMAIL_CONFIG`, else `./breachmail.toml`.
pub fn locate(flag: Option<&Path>) -> PathBuf {
    if let Some(path) = flag {
        return path.to_path_buf();
    }
    match std::env::var_os("BREACHMAIL_CONFIG") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from("breachmail.toml"),
    }
}

impl Config {
    /// Reads the file, lays the environment over it, and validates everything.
    pub fn load(path: &Path) -> Result<Config, UsageError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            UsageError::new(format!(
                "cannot read the configuration {}: {e} (create a campaign with `breachmail init DIR`, or pass --config FILE)",
                path.display()
            ))
        })?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::from_toml(&text, &dir, &env)
            .map_err(|e| UsageError::new(format!("{}: {}", path.display(), e.0)))
    }

    /// The pure part of `load`: text, folder and environment in, settings out.
    pub fn from_toml(
        text: &str,
        dir: &Path,
        env: &[(String, String)],
    ) -> Result<Config, UsageError> {
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| UsageError::new(format!("not valid TOML: {e}")))?;
        if let Some(smtp) = table.get("smtp").and_then(|s| s.as_table())
            && smtp.contains_key("password")
        {
            return Err(UsageError::new(
                "smtp.password: secrets are not read from the file; set BREACHMAIL_SMTP_PASSWORD (or BREACHMAIL_SMTP_PASSWORD_FILE) in the environment instead",
            ));
        }
        if let Some(bounces) = table.get("bounces").and_then(|s| s.as_table())
            && bounces.contains_key("password")
        {
            return Err(UsageError::new(
                "bounces.password: secrets are not read from the file; set BREACHMAIL_BOUNCES_PASSWORD (or BREACHMAIL_BOUNCES_PASSWORD_FILE) in the environment instead",
            ));
        }
        apply_environment(&mut table, env)?;
        let file: FileConfig = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| UsageError::new(describe_toml_error(&e)))?;
        Self::validate(file, dir)
    }

    fn validate(file: FileConfig, dir: &Path) -> Result<Config, UsageError> {
        let campaign = Campaign {
            database: dir.join(non_empty("campaign.database", &file.campaign.database)?),
            letters: dir.join(non_empty("campaign.letters", &file.campaign.letters)?),
            default_language: language_code(
                "campaign.default_language",
                &file.campaign.default_language,
            )?,
        };
        let sender = Sender {
            from: mailbox("sender.from", &file.sender.from)?,
            reply_to: file
                .sender
                .reply_to
                .as_deref()
                .filter(|s| !s.trim().is_empty())
                .map(|s| mailbox("sender.reply_to", s))
                .transpose()?,
            bounce_domain: file
                .sender
                .bounce_domain
                .as_deref()
                .filter(|s| !s.trim().is_empty())
                .map(|s| domain_name("sender.bounce_domain", s))
                .transpose()?,
        };
        let max_connections = file.smtp.max_connections;
        if !(1..=256).contains(&max_connections) {
            return Err(key_error(
                "smtp.max_connections",
                &max_connections.to_string(),
                "a whole number from 1 to 256",
            ));
        }
        let smtp = Smtp {
            relay: relay("smtp.url", &file.smtp.url, dir)?,
            username: file.smtp.username.filter(|u| !u.is_empty()),
            max_connections: max_connections as usize,
            timeout: duration("smtp.timeout", &file.smtp.timeout)?,
            delivery_notifications: file.smtp.delivery_notifications,
            tls: tls_settings("smtp", &file.smtp.tls_ca, &file.smtp.tls_server_name, dir)?,
        };
        let relays = relay_entries(&file.relay, &smtp, dir)?;
        let rate = Rate {
            per_second: non_negative("rate.per_second", file.rate.per_second)?,
            per_domain: file
                .rate
                .per_domain
                .into_iter()
                .map(|(domain, n)| {
                    let key = format!("rate.per_domain.{domain}");
                    let domain = domain_name(&key, &domain)?;
                    let n = non_negative(&key, n)?;
                    Ok((domain, n))
                })
                .collect::<Result<_, UsageError>>()?,
        };
        let max_attempts = file.retry.max_attempts;
        if !(1..=1000).contains(&max_attempts) {
            return Err(key_error(
                "retry.max_attempts",
                &max_attempts.to_string(),
                "a whole number from 1 to 1000",
            ));
        }
        let retry = Retry {
            max_attempts: max_attempts as u32,
            first_delay: duration("retry.first_delay", &file.retry.first_delay)?,
            max_delay: duration("retry.max_delay", &file.retry.max_delay)?,
            give_up_after: duration("retry.give_up_after", &file.retry.give_up_after)?,
        };
        if retry.max_delay < retry.first_delay {
            return Err(UsageError::new(
                "retry.max_delay is shorter than retry.first_delay: the cap must be at least the first delay",
            ));
        }
        let dkim = dkim_keys(file.dkim, dir)?;
        let bounces = bounces_settings(file.bounces, dir)?;
        let incident = match serde_json::to_value(&file.incident) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => return Err(UsageError::new("incident: must be a table of facts")),
        };
        let schedule = file.schedule.map(schedule).transpose()?;
        let console = console(file.console, dir)?;
        Ok(Config {
            dir: dir.to_path_buf(),
            campaign,
            sender,
            smtp,
            relays,
            rate,
            retry,
            dkim,
            schedule,
            bounces,
            incident,
            console,
        })
    }
}

fn console(file: FileConsole, dir: &Path) -> Result<Console, UsageError> {
    let listen = file.listen.parse().map_err(|_| {
        key_error(
            "console.listen",
            &file.listen,
            "an address and port such as 127.0.0.1:8080",
        )
    })?;
    let searches = file.searches_per_minute;
    if !(1..=10_000).contains(&searches) {
        return Err(key_error(
            "console.searches_per_minute",
            &searches.to_string(),
            "a whole number from 1 to 10000",
        ));
    }
    let proxy_header = file.proxy_header.filter(|h| !h.trim().is_empty());
    if let Some(header) = &proxy_header
        && axum::http::HeaderName::from_bytes(header.as_bytes()).is_err()
    {
        return Err(key_error(
            "console.proxy_header",
            header,
            "an HTTP header name such as X-Remote-User",
        ));
    }
    let trusted_proxies = file
        .trusted_proxies
        .iter()
        .map(|ip| {
            ip.parse()
                .map_err(|_| key_error("console.trusted_proxies", ip, "IP addresses"))
        })
        .collect::<Result<_, _>>()?;
    let tls = match (file.tls_cert, file.tls_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some((
            dir.join(non_empty("console.tls_cert", &cert)?),
            dir.join(non_empty("console.tls_key", &key)?),
        )),
        _ => {
            return Err(UsageError::new(
                "console.tls_cert and console.tls_key go together: set both, or neither",
            ));
        }
    };
    let session_idle = duration("console.session_idle", &file.session_idle)?;
    let session_max = duration("console.session_max", &file.session_max)?;
    let language = file
        .language
        .filter(|l| !l.trim().is_empty())
        .map(|l| match l.trim().to_ascii_lowercase().as_str() {
            code @ ("fr" | "en") => Ok(code.to_owned()),
            _ => Err(key_error("console.language", &l, "\"fr\" or \"en\"")),
        })
        .transpose()?;
    let views = file.person_views_per_hour;
    if !(1..=100_000).contains(&views) {
        return Err(key_error(
            "console.person_views_per_hour",
            &views.to_string(),
            "a whole number from 1 to 100000",
        ));
    }
    Ok(Console {
        listen,
        session_idle,
        session_max: session_max.max(session_idle),
        searches_per_minute: searches as u32,
        proxy_header,
        trusted_proxies,
        tls,
        language,
        person_views_per_hour: views as u32,
    })
}

fn bounces_settings(file: FileBounces, dir: &Path) -> Result<Bounces, UsageError> {
    let given = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
    let imap = given(file.imap)
        .map(|url| {
            crate::imap_url::ImapUrl::parse(&url)
                .map_err(|e| UsageError::new(format!("bounces.imap is not valid: {e}")))
        })
        .transpose()?;
    let move_to = given(file.move_to)
        .map(|folder| {
            crate::imap_url::check_mailbox_name(&folder)
                .map(|()| folder.clone())
                .map_err(|e| UsageError::new(format!("bounces.move_to: {e}")))
        })
        .transpose()?;
    if file.delete && move_to.is_some() {
        return Err(UsageError::new(
            "bounces.delete and bounces.move_to: choose one (delete the messages, or move them)",
        ));
    }
    Ok(Bounces {
        imap,
        move_to,
        delete: file.delete,
        replies_to: given(file.replies_to).map(|d| dir.join(d)),
        tls: tls_settings("bounces", &file.tls_ca, &file.tls_server_name, dir)?,
    })
}

/// `tls_ca` (a path, relative to the configuration's folder) and `tls_server_name` (a DNS name
/// or an address) of `section`.
fn tls_settings(
    section: &str,
    ca: &Option<String>,
    server_name: &Option<String>,
    dir: &Path,
) -> Result<crate::tls::TlsSettings, UsageError> {
    let given = |value: &Option<String>| value.clone().filter(|v| !v.trim().is_empty());
    let server_name = given(server_name)
        .map(|name| {
            let name = name.trim().to_owned();
            let bare = name.trim_start_matches('[').trim_end_matches(']');
            match tokio_rustls::rustls::pki_types::ServerName::try_from(bare) {
                Ok(_) => Ok(bare.to_owned()),
                Err(_) => Err(key_error(
                    &format!("{section}.tls_server_name"),
                    &name,
                    "the host name (or address) the server's certificate carries, such as relay.example.fr",
                )),
            }
        })
        .transpose()?;
    Ok(crate::tls::TlsSettings {
        ca: given(ca).map(|path| dir.join(path)),
        server_name,
    })
}

/// The `[[relay]]` entries, checked; without any, the relay of `smtp.url`.
fn relay_entries(
    entries: &[FileRelay],
    smtp: &Smtp,
    dir: &Path,
) -> Result<Vec<RelayEntry>, UsageError> {
    if entries.is_empty() {
        return Ok(vec![RelayEntry {
            name: smtp.relay.name(),
            relay: smtp.relay.clone(),
            username: smtp.username.clone(),
            password_variable: Some("BREACHMAIL_SMTP_PASSWORD".to_owned()),
            weight: 1,
            max_connections: smtp.max_connections,
            per_second: 0,
            delivery_notifications: smtp.delivery_notifications,
            tls: smtp.tls.clone(),
            section: "smtp".to_owned(),
        }]);
    }
    let mut relays: Vec<RelayEntry> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let key = |name: &str| format!("relay[{i}].{name}");
        let relay = relay(&key("url"), &entry.url, dir)?;
        if matches!(relay, Relay::File(_)) {
            return Err(key_error(
                &key("url"),
                &entry.url,
                "smtp://HOST:PORT or smtps://HOST:PORT (several relays are SMTP relays)",
            ));
        }
        let weight = entry.weight;
        if !(1..=1000).contains(&weight) {
            return Err(key_error(
                &key("weight"),
                &weight.to_string(),
                "a whole number from 1 to 1000",
            ));
        }
        let max_connections = entry.max_connections.unwrap_or(smtp.max_connections as i64);
        if !(1..=256).contains(&max_connections) {
            return Err(key_error(
                &key("max_connections"),
                &max_connections.to_string(),
                "a whole number from 1 to 256",
            ));
        }
        let username = entry.username.clone().filter(|u| !u.is_empty());
        let password_variable = entry.password_variable.clone().filter(|v| !v.is_empty());
        if username.is_some() && password_variable.is_none() {
            return Err(UsageError::new(format!(
                "{}: a username needs password_variable, the name of the environment variable that holds the password",
                key("username")
            )));
        }
        if let Some(variable) = &password_variable
            && !variable
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            // Not echoed: someone may have written the password itself here.
            return Err(UsageError::new(format!(
                "{} is not valid: expected the NAME of an environment variable (capital letters, digits, _), not the password",
                key("password_variable")
            )));
        }
        let name = relay.name();
        if relays.iter().any(|r| r.name == name) {
            return Err(key_error(
                &key("url"),
                &entry.url,
                "a relay not listed twice",
            ));
        }
        relays.push(RelayEntry {
            name,
            relay,
            username,
            password_variable,
            weight: weight as u32,
            max_connections: max_connections as usize,
            per_second: non_negative(&key("per_second"), entry.per_second)?,
            delivery_notifications: entry
                .delivery_notifications
                .unwrap_or(smtp.delivery_notifications),
            tls: tls_settings(
                &format!("relay[{i}]"),
                &entry.tls_ca,
                &entry.tls_server_name,
                dir,
            )?,
            section: format!("relay[{i}]"),
        });
    }
    Ok(relays)
}

/// Lays `BREACHMAIL_<SECTION>_<KEY>=value` over the table. A value is read as a TOML value when it
/// is one (`50`, `{ "orange.fr" = 5 }`, `true`), else as a string.
fn apply_environment(table: &mut toml::Table, env: &[(String, String)]) -> Result<(), UsageError> {
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("BREACHMAIL_") else {
            continue;
        };
        // The passwords of `[[relay]]` entries may live in BREACHMAIL_RELAY_* variables.
        if NOT_OVERRIDES.contains(&name.as_str()) || name.starts_with("BREACHMAIL_RELAY_") {
            continue;
        }
        let rest = rest.to_ascii_lowercase();
        let Some((section, key)) = SECTIONS.iter().find_map(|section| {
            rest.strip_prefix(section)
                .and_then(|r| r.strip_prefix('_'))
                .filter(|key| !key.is_empty())
                .map(|key| (*section, key.to_owned()))
        }) else {
            return Err(UsageError::new(format!(
                "environment variable {name}: no such setting (expected BREACHMAIL_<SECTION>_<KEY> with SECTION one of {})",
                SECTIONS.join(", ").to_uppercase()
            )));
        };
        let value = format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        let section_table = table
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(section_table) = section_table.as_table_mut() else {
            return Err(UsageError::new(format!(
                "{section}: must be a table, to take the override {name}"
            )));
        };
        section_table.insert(key, value);
    }
    Ok(())
}

/// Names the key (`rate.per_second`) in front of serde's description of what is wrong.
fn describe_toml_error(error: &serde_path_to_error::Error<toml::de::Error>) -> String {
    let key = error.path().to_string();
    let message = error.inner().message().trim().to_owned();
    let hint = if message.contains("unknown field") {
        " (check the spelling against docs/operator/configuration.md)"
    } else {
        ""
    };
    if key.is_empty() || key == "." {
        format!("{message}{hint}")
    } else {
        format!("{key}: {message}{hint}")
    }
}

fn key_error(key: &str, value: &str, expected: &str) -> UsageError {
    UsageError::new(format!(
        "{key} = {value:?} is not valid: expected {expected}"
    ))
}

fn non_empty<'a>(key: &str, value: &'a str) -> Result<&'a str, UsageError> {
    if value.trim().is_empty() {
        return Err(key_error(key, value, "a non-empty value"));
    }
    Ok(value)
}

fn non_negative(key: &str, value: i64) -> Result<u32, UsageError> {
    u32::try_from(value)
        .map_err(|_| key_error(key, &value.to_string(), "0 or a positive whole number"))
}

fn language_code(key: &str, value: &str) -> Result<String, UsageError> {
    let code = value.trim().to_ascii_lowercase();
    if code.len() < 2 || code.len() > 8 || !code.chars().all(|c| c.is_ascii_lowercase() || c == '-')
    {
        return Err(key_error(
            key,
            value,
            "a language code such as \"fr\" or \"en\"",
        ));
    }
    Ok(code)
}

fn mailbox(key: &str, value: &str) -> Result<Mailbox, UsageError> {
    crate::domain::check_header_safe(value).map_err(|e| {
        key_error(
            key,
            value,
            &format!("an address without control characters ({e})"),
        )
    })?;
    if let Ok(mailbox) = value.parse::<Mailbox>() {
        return Ok(mailbox);
    }
    // "Name (with parentheses) <a@b>" is what people write; RFC 5322 wants the name quoted.
    if let Some((name, rest)) = value.rsplit_once('<')
        && let Some(address) = rest.trim().strip_suffix('>')
        && let Ok(address) = address.trim().parse::<lettre::Address>()
    {
        let name = name.trim().trim_matches('"').trim();
        return Ok(Mailbox::new(
            (!name.is_empty()).then(|| name.to_owned()),
            address,
        ));
    }
    value.parse::<Mailbox>().map_err(|_| {
        key_error(
            key,
            value,
            "an address such as \"Agence <ne-pas-repondre@notification.example.fr>\" or \"dpo@example.fr\"",
        )
    })
}

fn domain_name(key: &str, value: &str) -> Result<String, UsageError> {
    let domain = value.trim().trim_end_matches('.').to_lowercase();
    crate::domain::Email::parse(&format!("postmaster@{domain}"))
        .map(|_| domain)
        .map_err(|_| key_error(key, value, "a domain name such as \"bounces.example.fr\""))
}

fn relay(key: &str, value: &str, dir: &Path) -> Result<Relay, UsageError> {
    let expected = "smtp://HOST:PORT, smtps://HOST:PORT or file://DIR";
    if let Some(path) = value.strip_prefix("file://") {
        if path.is_empty() {
            return Err(key_error(key, value, expected));
        }
        return Ok(Relay::File(dir.join(path)));
    }
    let (scheme, rest) = value
        .split_once("://")
        .ok_or_else(|| key_error(key, value, expected))?;
    let rest = rest.trim_end_matches('/');
    if rest.contains(['@', '/', '?']) {
        return Err(key_error(
            key,
            value,
            "smtp://HOST:PORT with no user, password or path (the username is smtp.username; the password comes from BREACHMAIL_SMTP_PASSWORD)",
        ));
    }
    let default_port = match scheme {
        "smtp" => 25,
        "smtps" => 465,
        _ => return Err(key_error(key, value, expected)),
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') => (
            host,
            port.parse::<u16>()
                .map_err(|_| key_error(key, value, "a port number from 1 to 65535"))?,
        ),
        _ => (rest, default_port),
    };
    if host.is_empty() {
        return Err(key_error(key, value, expected));
    }
    let host = host.to_owned();
    Ok(match scheme {
        "smtp" => Relay::Smtp { host, port },
        _ => Relay::Smtps { host, port },
    })
}

fn duration(key: &str, value: &str) -> Result<Duration, UsageError> {
    crate::duration::parse(value).ok_or_else(|| {
        key_error(
            key,
            value,
            "a duration such as \"30s\", \"5m\", \"6h\" or \"5d\"",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_toml(text, Path::new("/campaign"), &env).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_file_gives_working_defaults() {
        let config = load("", &[]).unwrap();
        assert_eq!(config.smtp.relay, Relay::File("/campaign/outbox".into()));
        assert_eq!(
            config.campaign.database,
            Path::new("/campaign/breachmail.db")
        );
        assert_eq!(config.rate.per_second, 50);
        assert_eq!(config.retry.first_delay, Duration::from_secs(300));
    }

    #[test]
    fn environment_overrides_every_section() {
        let config = load(
            "[rate]\nper_second = 50\n",
            &[
                ("BREACHMAIL_RATE_PER_SECOND", "7"),
                ("BREACHMAIL_SMTP_URL", "smtp://127.0.0.1:2525"),
                ("BREACHMAIL_RATE_PER_DOMAIN", "{ \"Orange.fr\" = 5 }"),
                ("BREACHMAIL_INCIDENT_REF", "INC-9"),
                ("BREACHMAIL_SMTP_PASSWORD", "not a key"),
            ],
        )
        .unwrap();
        assert_eq!(config.rate.per_second, 7);
        assert_eq!(
            config.smtp.relay,
            Relay::Smtp {
                host: "127.0.0.1".into(),
                port: 2525
            }
        );
        assert_eq!(config.rate.per_domain.get("orange.fr"), Some(&5));
        assert_eq!(config.incident["ref"], "INC-9");
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("[smtp]\ntimout = \"3s\"\n", "timout"),
            ("[smtp]\ntimeout = \"3 parsecs\"\n", "smtp.timeout"),
            ("[sender]\nfrom = \"not an address\"\n", "sender.from"),
            ("[smtp]\nurl = \"http://x\"\n", "smtp.url"),
            ("[smtp]\nmax_connections = 0\n", "smtp.max_connections"),
            ("[rate]\nper_second = -1\n", "rate.per_second"),
            (
                "[smtp]\npassword = \"hunter2\"\n",
                "BREACHMAIL_SMTP_PASSWORD",
            ),
            (
                "[retry]\nfirst_delay = \"1h\"\nmax_delay = \"1m\"\n",
                "retry.max_delay",
            ),
        ];
        for (text, key) in cases {
            let error = load(text, &[]).unwrap_err();
            assert!(error.contains(key), "{text:?} gave {error:?}");
        }
        let error = load("", &[("BREACHMAIL_SMPT_URL", "x")]).unwrap_err();
        assert!(error.contains("BREACHMAIL_SMPT_URL"), "{error}");
        let error = load("", &[("BREACHMAIL_RATE_PER_SECOND", "fast")]).unwrap_err();
        assert!(error.contains("per_second"), "{error}");
    }

    #[test]
    fn a_schedule_is_read_with_every_key() {
        let config = load(
            "[schedule]\ntimezone = \"Europe/Paris\"\nwindows = [\"mon-fri 08:30-18:00\", \"sat 09:00-12:00\"]\n\
             skip_dates = [\"2026-05-01\"]\ndaily_cap = 20000\nwarm_up = [5000, 10000]\n\
             per_domain_daily_cap = { \"Orange.fr\" = 3000 }\norder = [\"priority\", \"exposure\"]\n",
            &[("BREACHMAIL_SCHEDULE_DAILY_CAP", "15000")],
        )
        .unwrap();
        let schedule = config.schedule.unwrap();
        assert_eq!(schedule.timezone, chrono_tz::Europe::Paris);
        assert_eq!(schedule.windows.len(), 2);
        assert_eq!(schedule.daily_cap, Some(15000), "the environment wins");
        assert_eq!(schedule.warm_up, [5000, 10000]);
        assert_eq!(schedule.per_domain_daily_cap.get("orange.fr"), Some(&3000));
        assert_eq!(schedule.skip_dates.len(), 1);
        assert!(load("", &[]).unwrap().schedule.is_none());
    }

    #[test]
    fn the_commented_schedule_in_the_template_is_valid() {
        let template = include_str!("breachmail.toml.in");
        let block: String = template
            .lines()
            .skip_while(|l| *l != "# [schedule]")
            .take_while(|l| l.starts_with('#'))
            .filter(|l| !l.starts_with("#  "))
            .map(|l| format!("{}\n", &l[2..]))
            .collect();
        assert!(block.contains("daily_cap"), "{block}");
        let schedule = load(&block, &[]).unwrap().schedule.unwrap();
        assert_eq!(schedule.warm_up, [5000, 10000, 20000]);
    }

    #[test]
    fn bad_schedule_values_name_their_key() {
        let base = "[schedule]\ntimezone = \"Europe/Paris\"\n";
        let cases = [
            ("windows = [\"mon-fri 25:00-26:00\"]", "schedule.windows[0]"),
            (
                "windows = [\"mon 08:00-09:00\", \"someday 08:00-09:00\"]",
                "schedule.windows[1]",
            ),
            ("daily_cap = 0", "schedule.daily_cap"),
            ("warm_up = [100, 0]", "schedule.warm_up[1]"),
            ("skip_dates = [\"1 May\"]", "schedule.skip_dates[0]"),
            ("order = [\"alphabetical\"]", "schedule.order[0]"),
            (
                "per_domain_daily_cap = { \"orange.fr\" = 0 }",
                "schedule.per_domain_daily_cap.orange.fr",
            ),
            ("dayly_cap = 5", "dayly_cap"),
        ];
        for (line, key) in cases {
            let error = load(&format!("{base}{line}\n"), &[]).unwrap_err();
            assert!(error.contains(key), "{line:?} gave {error:?}");
        }
        let error = load("[schedule]\ntimezone = \"Europe/Lutece\"\n", &[]).unwrap_err();
        assert!(error.contains("schedule.timezone"), "{error}");
        let error = load("[schedule]\ndaily_cap = 5\n", &[]).unwrap_err();
        assert!(error.contains("timezone"), "{error}");
    }

    #[test]
    fn the_console_listens_on_loopback_by_default_and_checks_its_keys() {
        let config = load("", &[]).unwrap();
        assert_eq!(config.console.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.console.session_idle, Duration::from_secs(1800));
        assert!(config.console.tls.is_none() && config.console.proxy_header.is_none());
        let config = load("", &[("BREACHMAIL_CONSOLE_SEARCHES_PER_MINUTE", "5")]).unwrap();
        assert_eq!(config.console.searches_per_minute, 5);
        for (text, key) in [
            ("[console]\nlisten = \"everywhere\"\n", "console.listen"),
            (
                "[console]\nsearches_per_minute = 0\n",
                "console.searches_per_minute",
            ),
            ("[console]\ntls_cert = \"c.pem\"\n", "console.tls_key"),
            (
                "[console]\nproxy_header = \"X Bad\"\n",
                "console.proxy_header",
            ),
        ] {
            let error = load(text, &[]).unwrap_err();
            assert!(error.contains(key), "{text}: {error}");
        }
    }

    #[test]
    fn bounces_section_reads_the_mailbox_and_refuses_passwords() {
        let config = load(
            "[bounces]\nimap = \"imaps://bounces%40example.fr@mail.example.fr/INBOX\"\nmove_to = \"Processed\"\nreplies_to = \"replies\"\n",
            &[("BREACHMAIL_BOUNCES_PASSWORD", "not a key")],
        )
        .unwrap();
        let url = config.bounces.imap.expect("a mailbox");
        assert_eq!(url.user, "bounces@example.fr");
        assert_eq!(config.bounces.move_to.as_deref(), Some("Processed"));
        assert_eq!(
            config.bounces.replies_to.as_deref(),
            Some(Path::new("/campaign/replies"))
        );
        let error = load("[bounces]\npassword = \"hunter2\"\n", &[]).unwrap_err();
        assert!(error.contains("BREACHMAIL_BOUNCES_PASSWORD"), "{error}");
        assert!(!error.contains("hunter2"));
        let error = load("[bounces]\nimap = \"imaps://u:hunter2@h/INBOX\"\n", &[]).unwrap_err();
        assert!(error.contains("bounces.imap"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        let error = load(
            "[bounces]\nimap = \"imaps://u@h/INBOX\"\ndelete = true\nmove_to = \"Done\"\n",
            &[],
        )
        .unwrap_err();
        assert!(error.contains("bounces.delete"), "{error}");
        let config = load(
            "",
            &[("BREACHMAIL_BOUNCES_IMAP", "imap://u@127.0.0.1:1143/Bounces")],
        )
        .unwrap();
        assert_eq!(config.bounces.imap.expect("a mailbox").folder, "Bounces");
    }

    #[test]
    fn the_password_never_appears_in_the_error() {
        let error = load("[smtp]\npassword = \"hunter2\"\n", &[]).unwrap_err();
        assert!(!error.contains("hunter2"));
    }

    #[test]
    fn several_relays_are_read_with_their_weights() {
        let config = load(
            "[[relay]]\nurl = \"smtp://relay-a.example.fr:587\"\nusername = \"agence\"\npassword_variable = \"BREACHMAIL_RELAY_A_PASSWORD\"\nweight = 3\nmax_connections = 4\n\n[[relay]]\nurl = \"smtps://relay-b.example.fr\"\nper_second = 100\n",
            &[("BREACHMAIL_RELAY_A_PASSWORD", "not read here")],
        )
        .unwrap();
        assert_eq!(config.relays.len(), 2);
        assert_eq!(config.relays[0].name, "relay-a.example.fr:587");
        assert_eq!(config.relays[0].weight, 3);
        assert_eq!(config.relays[0].max_connections, 4);
        assert_eq!(config.relays[1].name, "relay-b.example.fr:465");
        assert_eq!(config.relays[1].weight, 1);
        assert_eq!(config.relays[1].max_connections, 8);
        assert_eq!(config.relays[1].per_second, 100);
        // Without [[relay]], the relay of smtp.url.
        let config = load("[smtp]\nurl = \"smtp://127.0.0.1:2525\"\n", &[]).unwrap();
        assert_eq!(config.relays.len(), 1);
        assert_eq!(config.relays[0].name, "127.0.0.1:2525");
        for (text, key) in [
            (
                "[[relay]]\nurl = \"smtp://a:25\"\nweight = 0\n",
                "relay[0].weight",
            ),
            (
                "[[relay]]\nurl = \"smtp://a:25\"\nusername = \"u\"\n",
                "password_variable",
            ),
            (
                "[[relay]]\nurl = \"smtp://a:25\"\npassword_variable = \"hunter2!\"\n",
                "relay[0].password_variable",
            ),
            ("[[relay]]\nurl = \"file://out\"\n", "relay[0].url"),
            (
                "[[relay]]\nurl = \"smtp://a:25\"\n[[relay]]\nurl = \"smtp://a:25\"\n",
                "relay[1].url",
            ),
        ] {
            let error = load(text, &[]).unwrap_err();
            assert!(error.contains(key), "{text:?} gave {error:?}");
        }
    }

    #[test]
    fn tls_keys_are_read_for_the_relays_and_the_mailbox() {
        let config = load(
            "[smtp]\nurl = \"smtp://10.0.0.25:25\"\ntls_ca = \"agence-ca.pem\"\ntls_server_name = \"relay.agence.example\"\n",
            &[
                ("BREACHMAIL_BOUNCES_TLS_CA", "/etc/ssl/certs/mail.pem"),
                ("BREACHMAIL_BOUNCES_TLS_SERVER_NAME", "mail.agence.example"),
            ],
        )
        .unwrap();
        let relay = &config.relays[0];
        assert_eq!(relay.section, "smtp");
        assert_eq!(relay.tls.ca, Some("/campaign/agence-ca.pem".into()));
        assert_eq!(
            relay.tls.server_name.as_deref(),
            Some("relay.agence.example")
        );
        assert_eq!(
            config.bounces.tls.ca,
            Some("/etc/ssl/certs/mail.pem".into())
        );
        assert_eq!(
            config.bounces.tls.server_name.as_deref(),
            Some("mail.agence.example")
        );

        let config = load(
            "[smtp]\ntls_ca = \"not-for-these.pem\"\n[[relay]]\nurl = \"smtp://a.example.fr:25\"\n[[relay]]\nurl = \"smtp://10.0.0.26:25\"\ntls_ca = \"b.pem\"\ntls_server_name = \"[10.0.0.26]\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(config.relays[0].tls, crate::tls::TlsSettings::default());
        assert_eq!(config.relays[1].section, "relay[1]");
        assert_eq!(config.relays[1].tls.ca, Some("/campaign/b.pem".into()));
        assert_eq!(
            config.relays[1].tls.server_name.as_deref(),
            Some("10.0.0.26")
        );

        for (text, key) in [
            (
                "[smtp]\ntls_server_name = \"not a name\"\n",
                "smtp.tls_server_name",
            ),
            (
                "[[relay]]\nurl = \"smtp://a:25\"\ntls_server_name = \"a b\"\n",
                "relay[0].tls_server_name",
            ),
            (
                "[bounces]\ntls_server_name = \"x y\"\n",
                "bounces.tls_server_name",
            ),
        ] {
            let error = load(text, &[]).unwrap_err();
            assert!(error.contains(key), "{error}");
        }
    }
}
