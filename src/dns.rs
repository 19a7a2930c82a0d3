//! `check --dns`: the sending domain read as the receiving providers read it, before the first
//! letter.
//!
//! Gmail, Yahoo and Outlook.com reject or junk bulk mail whose SPF, DKIM and DMARC do not pass and
//! align with the From domain, and a bounce domain without an MX means no bounce ever comes back.
//! Each of those is a DNS record, so each is checked here, against the campaign's own settings:
//! every `[dkim]` key is published under its selector and holds *our* public key; SPF on the
//! envelope and From domains exists, parses, stays within 10 look-ups and ends in `-all` or
//! `~all`; a DMARC record with a policy sits at the From domain or its organisational domain (the
//! public suffix list's, from the `psl` crate); the DKIM and envelope domains align with From as
//! that record asks; the bounce domain has an MX; the From domain is no null MX. Every problem
//! comes with the exact record to publish. A look-up that fails (time-out, SERVFAIL) is a DNS
//! failure, never taken for a missing record: the answer is not known.
//!
//! The checks are written against [`Dns`], so the rules are tested on an in-memory zone in plain
//! `cargo test`; [`HickoryDns`] asks the system's resolver or a named server.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::config::{Config, Relay};
use crate::exit::Exit;

/// What a look-up found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<T> {
    Found(T),
    /// The name does not exist, or has no record of the type (NXDOMAIN, or NOERROR with none).
    Absent,
    /// No answer to rely on (time-out, SERVFAIL, refused): the record may well exist.
    Failed(String),
}

/// The look-ups the checks need.
pub trait Dns {
    /// The TXT records at `name`, each record's strings joined.
    fn txt(&self, name: &str) -> impl Future<Output = Answer<Vec<String>>> + Send;
    /// The MX records at `name`: preference and exchange (without the final dot; `""` for `.`).
    fn mx(&self, name: &str) -> impl Future<Output = Answer<Vec<(u16, String)>>> + Send;
}

/// The system's resolver (`/etc/resolv.conf`) or one named server, through hickory-resolver.
pub struct HickoryDns {
    resolver: hickory_resolver::TokioResolver,
}

impl HickoryDns {
    pub fn new(server: Option<SocketAddr>) -> anyhow::Result<Self> {
        use hickory_resolver::config::{NameServerConfig, ResolverConfig};
        use hickory_resolver::net::runtime::TokioRuntimeProvider;
        let mut builder = match server {
            Some(server) => {
                let mut name_server = NameServerConfig::udp_and_tcp(server.ip());
                for connection in &mut name_server.connections {
                    connection.port = server.port();
                }
                hickory_resolver::TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![name_server]),
                    TokioRuntimeProvider::default(),
                )
            }
            None => hickory_resolver::TokioResolver::builder_tokio().map_err(|e| {
                anyhow::anyhow!("cannot read the system's resolver configuration: {e}")
            })?,
        };
        let options = builder.options_mut();
        options.timeout = Duration::from_secs(3);
        options.attempts = 2;
        // What is published now, not what a cache remembers from a minute ago.
        options.cache_size = 0;
        let resolver = builder
            .build()
            .map_err(|e| anyhow::anyhow!("cannot set up the DNS resolver: {e}"))?;
        Ok(Self { resolver })
    }
}

/// A name as asked: fully qualified, so no search domain of the system is appended.
fn absolute(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

/// The records of a look-up read by `read` (None for records of another type, such as the
/// CNAMEs on the way), or why there are none.
fn answer<U>(
    result: Result<hickory_resolver::lookup::Lookup, hickory_resolver::net::NetError>,
    read: impl Fn(&hickory_resolver::proto::rr::RData) -> Option<U>,
) -> Answer<Vec<U>> {
    use hickory_resolver::net::{DnsError, NetError};
    use hickory_resolver::proto::op::ResponseCode;
    match result {
        Ok(found) => {
            let records: Vec<U> = found
                .answers()
                .iter()
                .filter_map(|r| read(&r.data))
                .collect();
            if records.is_empty() {
                Answer::Absent
            } else {
                Answer::Found(records)
            }
        }
        Err(NetError::Dns(DnsError::NoRecordsFound(no_records))) => {
            match no_records.response_code {
                ResponseCode::NXDomain | ResponseCode::NoError => Answer::Absent,
                code => Answer::Failed(format!("the server answered {code}")),
            }
        }
        Err(NetError::Dns(DnsError::ResponseCode(code))) => {
            Answer::Failed(format!("the server answered {code}"))
        }
        Err(NetError::Timeout) => Answer::Failed("no answer (time-out)".to_owned()),
        Err(error) => Answer::Failed(error.to_string()),
    }
}

impl Dns for HickoryDns {
    async fn txt(&self, name: &str) -> Answer<Vec<String>> {
        use hickory_resolver::proto::rr::RData;
        answer(
            self.resolver.txt_lookup(absolute(name)).await,
            |data| match data {
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|part| String::from_utf8_lossy(part))
                        .collect::<String>(),
                ),
                _ => None,
            },
        )
    }

    async fn mx(&self, name: &str) -> Answer<Vec<(u16, String)>> {
        use hickory_resolver::proto::rr::RData;
        answer(
            self.resolver.mx_lookup(absolute(name)).await,
            |data| match data {
                RData::MX(mx) => Some((
                    mx.preference,
                    mx.exchange
                        .to_utf8()
                        .trim_end_matches('.')
                        .to_ascii_lowercase(),
                )),
                _ => None,
            },
        )
    }
}

/// One DKIM key as the check needs it: where it is published, and what.
#[derive(Debug, Clone)]
pub struct KeyToCheck {
    pub selector: String,
    pub domain: String,
    /// `rsa` or `ed25519`.
    pub kind: &'static str,
    pub bits: usize,
    /// As `p=` carries it (RSA: SubjectPublicKeyInfo DER; Ed25519: the 32 bytes).
    pub public_key: Vec<u8>,
}

impl KeyToCheck {
    fn name(&self, domain: &str) -> String {
        format!("{}._domainkey.{domain}", self.selector)
    }

    fn record(&self, domain: &str) -> Record {
        Record::txt(
            &self.name(domain),
            format!(
                "v=DKIM1; k={}; p={}",
                self.kind,
                base64::engine::general_purpose::STANDARD.encode(&self.public_key)
            ),
        )
    }
}

/// What the check looks at, from the campaign's settings.
#[derive(Debug, Clone)]
pub struct Domains {
    /// The From address's domain.
    pub from: String,
    /// The envelope sender's domain (`sender.bounce_domain`, else From's).
    pub envelope: String,
    pub keys: Vec<KeyToCheck>,
    /// What an SPF record should allow: `a:HOST`, `ip4:ADDR` of the relay, else `mx`.
    pub spf_mechanism: String,
    /// The host an MX should name: the bounce mailbox's server when there is one.
    pub mx_host: String,
}

impl Domains {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let from = config.sender.from.email.domain().to_ascii_lowercase();
        let envelope = config
            .sender
            .bounce_domain
            .clone()
            .unwrap_or_else(|| from.clone());
        let keys = config
            .dkim
            .iter()
            .map(|dkim| {
                let key = crate::dkim::read_private_key(&dkim.config_key, &dkim.private_key)?;
                Ok(KeyToCheck {
                    selector: dkim.selector.clone(),
                    domain: dkim.domain.clone(),
                    kind: key.kind(),
                    bits: key.bits(),
                    public_key: key.public_key(),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        let spf_mechanism = config
            .relays
            .iter()
            .find_map(|entry| match &entry.relay {
                Relay::Smtp { host, .. } | Relay::Smtps { host, .. }
                    if !entry.relay.is_loopback() =>
                {
                    Some(match host.parse::<std::net::IpAddr>() {
                        Ok(std::net::IpAddr::V4(ip)) => format!("ip4:{ip}"),
                        Ok(std::net::IpAddr::V6(ip)) => format!("ip6:{ip}"),
                        Err(_) => format!("a:{host}"),
                    })
                }
                _ => None,
            })
            .unwrap_or_else(|| "mx".to_owned());
        let mx_host = config
            .bounces
            .imap
            .as_ref()
            .map(|imap| imap.host.clone())
            .unwrap_or_else(|| format!("mail.{}", organisational_domain(&envelope)));
        Ok(Self {
            from,
            envelope,
            keys,
            spf_mechanism,
            mx_host,
        })
    }
}

/// The organisational domain (DMARC, RFC 7489 3.2): the public suffix and one label more.
pub fn organisational_domain(domain: &str) -> String {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    psl::domain_str(&domain)
        .map(str::to_owned)
        .unwrap_or(domain)
}

/// DMARC alignment of `domain` with the From domain: strict wants the same name, relaxed the
/// same organisational domain.
pub fn aligned(domain: &str, from: &str, strict: bool) -> bool {
    let (domain, from) = (domain.to_ascii_lowercase(), from.to_ascii_lowercase());
    let (domain, from) = (domain.trim_end_matches('.'), from.trim_end_matches('.'));
    if strict {
        domain == from
    } else {
        organisational_domain(domain) == organisational_domain(from)
    }
}

/// A record to publish, as a zone file line says it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

impl Record {
    fn txt(name: &str, value: String) -> Self {
        Self {
            name: name.to_owned(),
            kind: "TXT".to_owned(),
            value,
        }
    }

    fn mx(name: &str, host: &str) -> Self {
        Self {
            name: name.to_owned(),
            kind: "MX".to_owned(),
            value: format!("10 {}.", host.trim_end_matches('.')),
        }
    }

    /// `name. IN TXT "…" "…"`: a TXT value in strings of at most 255 characters, as a zone
    /// file (and most DNS providers' forms) takes a 2048-bit key.
    pub fn zone_line(&self) -> String {
        let value = if self.kind == "TXT" {
            self.value
                .as_bytes()
                .chunks(255)
                .map(|chunk| format!("\"{}\"", String::from_utf8_lossy(chunk)))
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            self.value.clone()
        };
        format!(
            "{}. IN {} {value}",
            self.name.trim_end_matches('.'),
            self.kind
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    /// Passes, with advice (a 1024-bit RSA key).
    Warning,
    Problem,
    /// The look-up failed: nothing is known about the record.
    DnsFailure,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finding {
    /// `dkim`, `spf`, `dmarc`, `alignment`, `mx`.
    pub check: String,
    /// The DNS name looked at.
    pub name: String,
    pub outcome: Outcome,
    pub detail: String,
    /// The records to publish to fix it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<Record>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DnsReport {
    pub checked_at: String,
    pub resolver: String,
    pub from_domain: String,
    pub envelope_domain: String,
    pub passed: bool,
    pub problems: usize,
    pub dns_failures: usize,
    pub findings: Vec<Finding>,
}

struct Findings(Vec<Finding>);

impl Findings {
    fn add(&mut self, check: &str, name: &str, outcome: Outcome, detail: String) -> &mut Finding {
        self.0.push(Finding {
            check: check.to_owned(),
            name: name.to_owned(),
            outcome,
            detail,
            publish: Vec::new(),
        });
        self.0.last_mut().expect("just pushed")
    }
}

/// Runs every check of `domains` against `dns`.
pub async fn check(dns: &impl Dns, domains: &Domains, resolver: &str) -> DnsReport {
    // The groups ask at the same time: a server that never answers costs one time-out, not six.
    let dkim = async {
        let mut findings = Findings(Vec::new());
        for key in &domains.keys {
            check_dkim_key(dns, key, &mut findings).await;
        }
        findings
    };
    let spf_of = |domain: &'_ str| {
        let domain = domain.to_owned();
        async move {
            let mut findings = Findings(Vec::new());
            check_spf(dns, &domain, &domains.spf_mechanism, &mut findings).await;
            findings
        }
    };
    let spf = async {
        if domains.from == domains.envelope {
            return spf_of(&domains.envelope).await;
        }
        let (envelope, from) = tokio::join!(spf_of(&domains.envelope), spf_of(&domains.from));
        Findings([envelope.0, from.0].concat())
    };
    let dmarc = async {
        let mut findings = Findings(Vec::new());
        let modes = check_dmarc(dns, &domains.from, &mut findings).await;
        (findings, modes)
    };
    let mx = async {
        let (envelope, from) =
            tokio::join!(check_bounce_mx(dns, domains), check_from_mx(dns, domains));
        Findings([envelope.0, from.0].concat())
    };
    let (dkim, spf, (dmarc, modes), mx) = tokio::join!(dkim, spf, dmarc, mx);
    let mut findings = Findings([dkim.0, spf.0, dmarc.0].concat());
    check_alignment(domains, modes, &mut findings);
    findings.0.extend(mx.0);
    let count = |outcome| findings.0.iter().filter(|f| f.outcome == outcome).count();
    let (problems, dns_failures) = (count(Outcome::Problem), count(Outcome::DnsFailure));
    DnsReport {
        checked_at: crate::clock::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        resolver: resolver.to_owned(),
        from_domain: domains.from.clone(),
        envelope_domain: domains.envelope.clone(),
        passed: problems == 0 && dns_failures == 0,
        problems,
        dns_failures,
        findings: findings.0,
    }
}

/// The tags of a DKIM or DMARC record (`k=v; k=v`), names in lower case, values trimmed.
fn tags(record: &str) -> BTreeMap<String, String> {
    record
        .split(';')
        .filter_map(|tag| tag.split_once('='))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect()
}

async fn check_dkim_key(dns: &impl Dns, key: &KeyToCheck, findings: &mut Findings) {
    let name = key.name(&key.domain);
    let ours = key.record(&key.domain);
    let label = match key.kind {
        "rsa" => format!("RSA-{}", key.bits),
        _ => "Ed25519".to_owned(),
    };
    let records = match dns.txt(&name).await {
        Answer::Failed(why) => {
            findings.add("dkim", &name, Outcome::DnsFailure, why);
            return;
        }
        Answer::Absent => Vec::new(),
        Answer::Found(records) => records,
    };
    let keys: Vec<BTreeMap<String, String>> = records
        .iter()
        .map(|r| tags(r))
        .filter(|t| t.contains_key("p"))
        .collect();
    let holds_ours = keys.iter().any(|t| {
        let published: String = t["p"].split_whitespace().collect();
        let kind = t.get("k").map_or("rsa", String::as_str);
        kind.eq_ignore_ascii_case(key.kind)
            && base64::engine::general_purpose::STANDARD
                .decode(published)
                .is_ok_and(|p| same_public_key(&p, &key.public_key))
    });
    if key.kind == "rsa" && key.bits < 1024 {
        findings
            .add(
                "dkim",
                &name,
                Outcome::Problem,
                format!(
                    "our key is RSA-{}: receivers refuse RSA keys under 1024 bits (RFC 8301); make a 2048-bit one",
                    key.bits
                ),
            )
            .publish
            .push(ours);
        return;
    }
    let finding = match (keys.is_empty(), holds_ours) {
        (_, true) if key.kind == "rsa" && key.bits < 2048 => findings.add(
            "dkim",
            &name,
            Outcome::Warning,
            format!(
                "holds our {label} key; 2048 bits are recommended (some receivers score shorter keys down)"
            ),
        ),
        (_, true) => findings.add(
            "dkim",
            &name,
            Outcome::Pass,
            format!("holds our {label} key"),
        ),
        (true, false) => findings.add(
            "dkim",
            &name,
            Outcome::Problem,
            "no DKIM record: no receiver can verify the signature".to_owned(),
        ),
        (false, false) => findings.add(
            "dkim",
            &name,
            Outcome::Problem,
            if keys.iter().any(|t| t["p"].is_empty()) {
                "the key published here is revoked (empty p=)".to_owned()
            } else {
                format!("holds another key than our {label} key: every signature would fail")
            },
        ),
    };
    if finding.outcome == Outcome::Problem {
        finding.publish.push(ours);
    }
}

/// Whether a published `p=` is our key: for RSA the SubjectPublicKeyInfo, or the bare PKCS#1
/// key some publish, which is its tail.
fn same_public_key(published: &[u8], ours: &[u8]) -> bool {
    published == ours || (published.len() > 32 && ours.ends_with(published))
}

/// An SPF record, read.
#[derive(Debug, Default)]
struct Spf {
    /// Domains whose records count towards the limit too (include:, redirect=).
    follow: Vec<String>,
    /// Look-ups of this record's own terms.
    lookups: usize,
    /// The qualifier of its `all` (`-`, `~`, `+`, `?`), if any.
    all: Option<char>,
    redirect: Option<String>,
}

/// Reads an SPF record (RFC 7208 4.6, 5, 6); an error names the term it cannot read.
fn parse_spf(record: &str) -> Result<Spf, String> {
    let mut spf = Spf::default();
    let mut terms = record.split_whitespace();
    terms.next(); // v=spf1
    for term in terms {
        let lower = term.to_ascii_lowercase();
        if let Some((name, value)) = lower.split_once('=')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && !name.is_empty()
        {
            if name == "redirect" {
                spf.lookups += 1;
                spf.redirect = Some(value.to_owned());
                if !value.contains('%') {
                    spf.follow.push(value.to_owned());
                }
            }
            continue;
        }
        let (qualifier, mechanism) = match lower.chars().next() {
            Some(q @ ('+' | '-' | '~' | '?')) => (q, &lower[1..]),
            _ => ('+', lower.as_str()),
        };
        let (name, argument) = match mechanism.find([':', '/']) {
            Some(at) => (&mechanism[..at], Some(&mechanism[at..])),
            None => (mechanism, None),
        };
        let domain = argument
            .and_then(|a| a.strip_prefix(':'))
            .map(|a| a.split('/').next().unwrap_or(a));
        match name {
            "all" if argument.is_none() => spf.all = Some(qualifier),
            "include" => {
                let domain = domain.filter(|d| !d.is_empty()).ok_or_else(|| {
                    format!("cannot read the term {term:?}: include needs a domain")
                })?;
                spf.lookups += 1;
                if !domain.contains('%') {
                    spf.follow.push(domain.to_owned());
                }
            }
            "exists" if domain.is_some_and(|d| !d.is_empty()) => spf.lookups += 1,
            "a" | "mx" | "ptr" => spf.lookups += 1,
            "ip4" | "ip6" if domain.is_some_and(|d| !d.is_empty()) => {}
            _ => return Err(format!("cannot read the term {term:?}")),
        }
    }
    Ok(spf)
}

/// The SPF record among the TXT records at a name: `Ok(None)` when there is none.
fn spf_record(records: &[String]) -> Result<Option<&String>, String> {
    let spf: Vec<&String> = records
        .iter()
        .filter(|r| {
            let lower = r.to_ascii_lowercase();
            lower == "v=spf1" || lower.starts_with("v=spf1 ")
        })
        .collect();
    match spf.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        _ => Err(format!(
            "{} SPF records: receivers treat that as an error (RFC 7208 4.5); keep one",
            spf.len()
        )),
    }
}

/// Most look-ups an SPF evaluation may take (RFC 7208 4.6.4).
const SPF_LOOKUP_LIMIT: usize = 10;

async fn check_spf(dns: &impl Dns, domain: &str, mechanism: &str, findings: &mut Findings) {
    let suggested = Record::txt(domain, format!("v=spf1 {mechanism} -all"));
    let records = match dns.txt(domain).await {
        Answer::Failed(why) => {
            findings.add("spf", domain, Outcome::DnsFailure, why);
            return;
        }
        Answer::Absent => Vec::new(),
        Answer::Found(records) => records,
    };
    let problem = |findings: &mut Findings, detail: String, publish: Record| {
        findings
            .add("spf", domain, Outcome::Problem, detail)
            .publish
            .push(publish);
    };
    let record = match spf_record(&records) {
        Err(why) => return problem(findings, why, suggested),
        Ok(None) => {
            return problem(
                findings,
                "no SPF record: receivers cannot tell our relays from a forger's".to_owned(),
                suggested,
            );
        }
        Ok(Some(record)) => record,
    };
    let spf = match parse_spf(record) {
        Ok(spf) => spf,
        Err(why) => return problem(findings, format!("{record:?}: {why}"), suggested),
    };
    // Every record reached through include: and redirect= counts towards the limit.
    let mut lookups = spf.lookups;
    let mut queue: VecDeque<String> = spf.follow.iter().cloned().collect();
    let mut redirect_all = None;
    let mut read = 0;
    while let Some(next) = queue.pop_front() {
        read += 1;
        if lookups > SPF_LOOKUP_LIMIT || read > 4 * SPF_LOOKUP_LIMIT {
            break;
        }
        let records = match dns.txt(&next).await {
            Answer::Failed(why) => {
                findings.add(
                    "spf",
                    domain,
                    Outcome::DnsFailure,
                    format!("{next}, which the SPF record names: {why}"),
                );
                return;
            }
            Answer::Absent => Vec::new(),
            Answer::Found(records) => records,
        };
        let Ok(Some(included)) = spf_record(&records) else {
            return problem(
                findings,
                format!(
                    "the SPF record names {next}, which has no single SPF record: receivers fail it (permerror)"
                ),
                suggested,
            );
        };
        let included = match parse_spf(included) {
            Ok(included) => included,
            Err(why) => {
                return problem(findings, format!("{next}'s SPF record: {why}"), suggested);
            }
        };
        if spf.redirect.as_deref() == Some(next.as_str()) {
            redirect_all = included.all;
        }
        lookups += included.lookups;
        queue.extend(included.follow);
    }
    if lookups > SPF_LOOKUP_LIMIT {
        return problem(
            findings,
            format!(
                "{lookups} DNS look-ups (include:, a, mx, ptr, exists, redirect=, counted through every included record): receivers stop at {SPF_LOOKUP_LIMIT} and fail SPF (permerror); name the sending servers by ip4:/ip6: instead of includes"
            ),
            suggested,
        );
    }
    // Without an `all` of its own, a record ends as the one its redirect= names.
    let ending = spf.all.or(redirect_all);
    match ending {
        Some('-' | '~') => {
            findings.add(
                "spf",
                domain,
                Outcome::Pass,
                format!(
                    "{record:?}: {lookups} look-up(s), ends in {}all",
                    ending.unwrap_or('-')
                ),
            );
        }
        _ => {
            // The same record, its `all` (if any) made `-all`.
            let mut fixed: Vec<&str> = record
                .split_whitespace()
                .filter(|term| {
                    !term
                        .trim_start_matches(['+', '-', '~', '?'])
                        .eq_ignore_ascii_case("all")
                })
                .collect();
            fixed.push("-all");
            let fixed = fixed.join(" ");
            problem(
                findings,
                format!(
                    "{record:?} does not end in -all or ~all: mail from anywhere else is not refused, and receivers count that against us"
                ),
                Record::txt(domain, fixed),
            );
        }
    }
}

/// The DMARC alignment modes (`adkim`, `aspf`): true for strict.
#[derive(Debug, Clone, Copy, Default)]
pub struct Modes {
    pub dkim_strict: bool,
    pub spf_strict: bool,
}

/// The DMARC record for `from` (at the From domain, else at its organisational domain); returns
/// its alignment modes, relaxed when there is none.
async fn check_dmarc(dns: &impl Dns, from: &str, findings: &mut Findings) -> Modes {
    let organisational = organisational_domain(from);
    let mut names = vec![format!("_dmarc.{from}")];
    if organisational != from {
        names.push(format!("_dmarc.{organisational}"));
    }
    let suggested = Record::txt(
        &format!("_dmarc.{organisational}"),
        format!("v=DMARC1; p=quarantine; rua=mailto:dmarc-reports@{organisational}"),
    );
    for name in &names {
        let records = match dns.txt(name).await {
            Answer::Failed(why) => {
                findings.add("dmarc", name, Outcome::DnsFailure, why);
                return Modes::default();
            }
            Answer::Absent => continue,
            Answer::Found(records) => records,
        };
        let dmarc: Vec<&String> = records
            .iter()
            .filter(|r| r.trim_start().to_ascii_lowercase().starts_with("v=dmarc1"))
            .collect();
        let record = match dmarc.as_slice() {
            [] => continue,
            [one] => *one,
            _ => {
                findings
                    .add(
                        "dmarc",
                        name,
                        Outcome::Problem,
                        format!(
                            "{} DMARC records: receivers ignore them all; keep one",
                            dmarc.len()
                        ),
                    )
                    .publish
                    .push(suggested);
                return Modes::default();
            }
        };
        let tags = tags(record);
        // The From domain below the organisational one follows sp= when the record is there.
        let policy = if *name == format!("_dmarc.{from}") {
            tags.get("p")
        } else {
            tags.get("sp").or(tags.get("p"))
        };
        let modes = Modes {
            dkim_strict: tags
                .get("adkim")
                .is_some_and(|m| m.eq_ignore_ascii_case("s")),
            spf_strict: tags
                .get("aspf")
                .is_some_and(|m| m.eq_ignore_ascii_case("s")),
        };
        match policy.map(|p| p.to_ascii_lowercase()) {
            Some(p) if ["none", "quarantine", "reject"].contains(&p.as_str()) => {
                findings.add(
                    "dmarc",
                    name,
                    Outcome::Pass,
                    format!(
                        "p={p}; DKIM alignment {}, SPF alignment {}",
                        if modes.dkim_strict {
                            "strict"
                        } else {
                            "relaxed"
                        },
                        if modes.spf_strict {
                            "strict"
                        } else {
                            "relaxed"
                        }
                    ),
                );
            }
            _ => {
                findings
                    .add(
                        "dmarc",
                        name,
                        Outcome::Problem,
                        format!("{record:?} has no policy (p=none, quarantine or reject)"),
                    )
                    .publish
                    .push(suggested);
            }
        }
        return modes;
    }
    findings
        .add(
            "dmarc",
            &names[0],
            Outcome::Problem,
            format!(
                "no DMARC record at {from}{}: Gmail, Yahoo and Outlook.com refuse or junk bulk mail without one",
                if names.len() > 1 {
                    format!(" nor at its organisational domain {organisational}")
                } else {
                    String::new()
                }
            ),
        )
        .publish
        .push(suggested);
    Modes::default()
}

fn check_alignment(domains: &Domains, modes: Modes, findings: &mut Findings) {
    let mode = |strict: bool| if strict { "strict" } else { "relaxed" };
    for key in &domains.keys {
        let name = key.name(&key.domain);
        if aligned(&key.domain, &domains.from, modes.dkim_strict) {
            findings.add(
                "alignment",
                &name,
                Outcome::Pass,
                format!(
                    "DKIM d={} aligned with From {} ({})",
                    key.domain,
                    domains.from,
                    mode(modes.dkim_strict)
                ),
            );
        } else {
            findings
                .add(
                    "alignment",
                    &name,
                    Outcome::Problem,
                    format!(
                        "DKIM d={} is not aligned with From {} ({} alignment): the signature does not count for DMARC; sign with domain = \"{}\" in [dkim] and publish this key there",
                        key.domain,
                        domains.from,
                        mode(modes.dkim_strict),
                        domains.from
                    ),
                )
                .publish
                .push(key.record(&domains.from));
        }
    }
    if aligned(&domains.envelope, &domains.from, modes.spf_strict) {
        findings.add(
            "alignment",
            &domains.envelope,
            Outcome::Pass,
            format!(
                "envelope {} aligned with From {} ({})",
                domains.envelope,
                domains.from,
                mode(modes.spf_strict)
            ),
        );
    } else {
        let bounces = format!("bounces.{}", domains.from);
        let finding = findings.add(
            "alignment",
            &domains.envelope,
            Outcome::Problem,
            format!(
                "envelope {} is not aligned with From {} ({} alignment): SPF does not count for DMARC; set sender.bounce_domain = \"{bounces}\" and publish its MX and SPF",
                domains.envelope,
                domains.from,
                mode(modes.spf_strict)
            ),
        );
        finding.publish.push(Record::mx(&bounces, &domains.mx_host));
        finding.publish.push(Record::txt(
            &bounces,
            format!("v=spf1 {} -all", domains.spf_mechanism),
        ));
    }
}

fn is_null_mx(records: &[(u16, String)]) -> bool {
    matches!(records, [(0, exchange)] if exchange.is_empty() || exchange == ".")
}

/// The bounce domain has an MX (not a null one): bounces come back.
async fn check_bounce_mx(dns: &impl Dns, domains: &Domains) -> Findings {
    let mut findings = Findings(Vec::new());
    let envelope = &domains.envelope;
    match dns.mx(envelope).await {
        Answer::Failed(why) => {
            findings.add("mx", envelope, Outcome::DnsFailure, why);
        }
        Answer::Found(records) if !is_null_mx(&records) => {
            let hosts: Vec<&str> = records.iter().map(|(_, h)| h.as_str()).collect();
            findings.add(
                "mx",
                envelope,
                Outcome::Pass,
                format!("bounces come back to {}", hosts.join(", ")),
            );
        }
        found => {
            let why = if matches!(found, Answer::Absent) {
                "no MX"
            } else {
                "a null MX (mail refused)"
            };
            findings
                .add(
                    "mx",
                    envelope,
                    Outcome::Problem,
                    format!("the bounce domain has {why}: no bounce would ever come back, and receivers refuse envelope senders they cannot answer"),
                )
                .publish
                .push(Record::mx(envelope, &domains.mx_host));
        }
    }
    findings
}

/// The From domain, when it is not the bounce domain, is no null MX.
async fn check_from_mx(dns: &impl Dns, domains: &Domains) -> Findings {
    let mut findings = Findings(Vec::new());
    if domains.from == domains.envelope {
        return findings;
    }
    let from = &domains.from;
    match dns.mx(from).await {
        Answer::Failed(why) => {
            findings.add("mx", from, Outcome::DnsFailure, why);
        }
        Answer::Found(records) if is_null_mx(&records) => {
            findings
                .add(
                    "mx",
                    from,
                    Outcome::Problem,
                    "the From domain publishes a null MX (it takes no mail): receivers refuse mail from it (RFC 7505)".to_owned(),
                )
                .publish
                .push(Record::mx(from, &domains.mx_host));
        }
        _ => {
            findings.add(
                "mx",
                from,
                Outcome::Pass,
                "the From domain is not a null MX".to_owned(),
            );
        }
    }
    findings
}

/// The report as the operator reads it.
pub fn render_report(report: &DnsReport) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "DNS check of From {} and envelope {} (resolver: {})\n",
        report.from_domain, report.envelope_domain, report.resolver
    );
    for finding in &report.findings {
        let label = match finding.outcome {
            Outcome::Pass => "ok",
            Outcome::Warning => "WARNING",
            Outcome::Problem => "PROBLEM",
            Outcome::DnsFailure => "DNS FAILURE",
        };
        let _ = writeln!(
            out,
            "  {label:<11} {:<9} {}: {}",
            finding.check, finding.name, finding.detail
        );
        for record in &finding.publish {
            let _ = writeln!(out, "              publish: {}", record.zone_line());
        }
    }
    if report.passed {
        out.push_str("every check passed\n");
    } else {
        let _ = writeln!(
            out,
            "{} problem(s), {} DNS failure(s) (a failure is no answer, not a missing record: run the check again); publish the records above, then run `breachmail check --dns` again",
            report.problems, report.dns_failures
        );
    }
    out
}

/// `breachmail check --dns`: runs the checks, records the result for `status` and `send`, and
/// exits 0 when everything passed, 1 otherwise.
pub async fn run(
    config: &Config,
    resolver: Option<SocketAddr>,
    json: bool,
) -> anyhow::Result<Exit> {
    let domains = Domains::from_config(config)?;
    let dns = HickoryDns::new(resolver)?;
    let resolver_name = resolver.map_or_else(|| "system".to_owned(), |r| r.to_string());
    let report = check(&dns, &domains, &resolver_name).await;
    let pool = crate::db::open(&config.campaign.database, false).await?;
    let row = crate::store::dns::NewDnsCheck {
        checked_at: &report.checked_at,
        passed: report.passed,
        problems: report.problems,
        dns_failures: report.dns_failures,
        report_json: serde_json::to_string(&report)?,
    };
    crate::store::dns::record(&pool, &row).await?;
    pool.close().await;
    if json {
        crate::exit::print_out(&serde_json::to_string(&report)?);
    } else {
        crate::exit::print_block(&render_report(&report));
    }
    Ok(if report.passed {
        Exit::Ok
    } else {
        Exit::Failed
    })
}

/// Before a send through a relay: a warning on stderr when the last `check --dns` failed or never
/// ran. Not a refusal: DNS may be right and the check not yet run where it can reach a resolver.
pub async fn warn_before_send(config: &Config, pool: &sqlx::SqlitePool) -> anyhow::Result<()> {
    if config
        .relays
        .iter()
        .all(|r| matches!(r.relay, Relay::File(_)))
    {
        return Ok(());
    }
    let mut conn = pool.acquire().await?;
    match crate::store::dns::last(&mut conn).await? {
        Some(last) if last.passed => {}
        Some(last) => crate::exit::print_err(&format!(
            "send: warning: the last `breachmail check --dns` ({}) found {} problem(s) and {} DNS failure(s): receivers may refuse or junk these letters",
            last.checked_at, last.problems, last.dns_failures
        )),
        None => crate::exit::print_err(
            "send: warning: `breachmail check --dns` never ran on this campaign: nothing says receivers will accept what we sign (SPF, DKIM, DMARC, MX)",
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An in-memory zone: names to TXT and MX records; a name in `failing` answers SERVFAIL.
    #[derive(Default)]
    struct Zone {
        txt: BTreeMap<String, Vec<String>>,
        mx: BTreeMap<String, Vec<(u16, String)>>,
        failing: Vec<String>,
    }

    impl Zone {
        fn txt(mut self, name: &str, value: &str) -> Self {
            self.txt
                .entry(name.to_owned())
                .or_default()
                .push(value.to_owned());
            self
        }
        fn mx(mut self, name: &str, host: &str) -> Self {
            self.mx
                .entry(name.to_owned())
                .or_default()
                .push((10, host.to_owned()));
            self
        }
    }

    impl Dns for Zone {
        async fn txt(&self, name: &str) -> Answer<Vec<String>> {
            if self.failing.iter().any(|f| f == name) {
                return Answer::Failed("the server answered SERVFAIL".to_owned());
            }
            self.txt
                .get(name)
                .cloned()
                .map_or(Answer::Absent, Answer::Found)
        }
        async fn mx(&self, name: &str) -> Answer<Vec<(u16, String)>> {
            if self.failing.iter().any(|f| f == name) {
                return Answer::Failed("the server answered SERVFAIL".to_owned());
            }
            self.mx
                .get(name)
                .cloned()
                .map_or(Answer::Absent, Answer::Found)
        }
    }

    fn key(domain: &str) -> KeyToCheck {
        KeyToCheck {
            selector: "s2025".into(),
            domain: domain.into(),
            kind: "ed25519",
            bits: 256,
            public_key: vec![7; 32],
        }
    }

    fn domains() -> Domains {
        Domains {
            from: "notification.example.fr".into(),
            envelope: "bounces.example.fr".into(),
            keys: vec![key("notification.example.fr")],
            spf_mechanism: "a:relay.example.fr".into(),
            mx_host: "mail.example.fr".into(),
        }
    }

    fn good_zone() -> Zone {
        let p = base64::engine::general_purpose::STANDARD.encode([7; 32]);
        Zone::default()
            .txt(
                "s2025._domainkey.notification.example.fr",
                &format!("v=DKIM1; k=ed25519; p={p}"),
            )
            .txt("bounces.example.fr", "v=spf1 a:relay.example.fr -all")
            .txt(
                "notification.example.fr",
                "v=spf1 include:spf.example.fr ~all",
            )
            .txt("spf.example.fr", "v=spf1 ip4:192.0.2.0/24 -all")
            .txt(
                "_dmarc.example.fr",
                "v=DMARC1; p=quarantine; rua=mailto:d@example.fr",
            )
            .mx("bounces.example.fr", "mail.example.fr")
            .mx("notification.example.fr", "mail.example.fr")
    }

    fn run(zone: &Zone, domains: &Domains) -> DnsReport {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(check(zone, domains, "test"))
    }

    fn problems(report: &DnsReport) -> Vec<(String, String)> {
        report
            .findings
            .iter()
            .filter(|f| f.outcome != Outcome::Pass)
            .map(|f| (f.check.clone(), f.name.clone()))
            .collect()
    }

    #[test]
    fn organisational_domains_follow_the_public_suffix_list() {
        assert_eq!(
            organisational_domain("notification.example.fr"),
            "example.fr"
        );
        assert_eq!(organisational_domain("a.b.example.co.uk"), "example.co.uk");
        assert_eq!(organisational_domain("example.fr"), "example.fr");
        // gouv.fr is a public suffix: two ministries are two organisations.
        assert_eq!(organisational_domain("emploi.gouv.fr"), "emploi.gouv.fr");
        assert_eq!(organisational_domain("Mail.Example.COM."), "example.com");
    }

    #[test]
    fn relaxed_alignment_wants_the_same_organisational_domain_strict_the_same_name() {
        assert!(aligned("notification.example.fr", "example.fr", false));
        assert!(aligned(
            "bounces.example.fr",
            "notification.example.fr",
            false
        ));
        assert!(!aligned(
            "bounces.example.fr",
            "notification.example.fr",
            true
        ));
        assert!(aligned("Example.FR", "example.fr.", true));
        assert!(!aligned("example.com", "example.fr", false));
        // Under a public suffix of two labels, siblings are other organisations.
        assert!(aligned("a.example.co.uk", "b.example.co.uk", false));
        assert!(!aligned("other.co.uk", "example.co.uk", false));
        assert!(!aligned("travail.gouv.fr", "emploi.gouv.fr", false));
    }

    #[test]
    fn spf_terms_are_counted_and_unknown_ones_refused() {
        let spf = parse_spf(
            "v=spf1 a mx include:a.example ip4:192.0.2.1 exists:%{i}.x.example redirect=b.example",
        )
        .expect("parses");
        assert_eq!(spf.lookups, 5);
        assert_eq!(spf.follow, ["a.example", "b.example"]);
        assert_eq!(spf.all, None);
        assert_eq!(parse_spf("v=spf1 -all").expect("parses").all, Some('-'));
        assert_eq!(
            parse_spf("v=spf1 ip6:2001:db8::/32 ~all")
                .expect("parses")
                .all,
            Some('~')
        );
        assert!(parse_spf("v=spf1 inclde:a.example -all").is_err());
        assert!(parse_spf("v=spf1 include: -all").is_err());
    }

    #[test]
    fn a_correct_zone_passes() {
        let report = run(&good_zone(), &domains());
        assert!(report.passed, "{}", render_report(&report));
        assert_eq!(problems(&report), []);
    }

    #[test]
    fn eleven_spf_look_ups_are_a_problem_with_the_record_to_publish() {
        let mut zone = good_zone();
        zone.txt.insert(
            "bounces.example.fr".into(),
            vec!["v=spf1 include:spf.example.fr a mx a:x.example.fr mx:y.example.fr a:z.example.fr ptr exists:w.example.fr a:v.example.fr a:u.example.fr a:t.example.fr -all".into()],
        );
        let report = run(&zone, &domains());
        let spf = report
            .findings
            .iter()
            .find(|f| f.check == "spf" && f.outcome == Outcome::Problem)
            .expect("SPF problem");
        assert!(spf.detail.starts_with("11 DNS look-ups"), "{}", spf.detail);
        assert_eq!(spf.publish[0].value, "v=spf1 a:relay.example.fr -all");
    }

    #[test]
    fn missing_dmarc_and_mx_and_a_foreign_dkim_key_are_named() {
        let mut zone = good_zone();
        zone.txt.remove("_dmarc.example.fr");
        zone.mx.remove("bounces.example.fr");
        zone.txt.insert(
            "s2025._domainkey.notification.example.fr".into(),
            vec![format!(
                "v=DKIM1; k=ed25519; p={}",
                base64::engine::general_purpose::STANDARD.encode([9; 32])
            )],
        );
        let report = run(&zone, &domains());
        assert!(!report.passed);
        assert_eq!(
            problems(&report),
            [
                (
                    "dkim".to_owned(),
                    "s2025._domainkey.notification.example.fr".to_owned()
                ),
                (
                    "dmarc".to_owned(),
                    "_dmarc.notification.example.fr".to_owned()
                ),
                ("mx".to_owned(), "bounces.example.fr".to_owned()),
            ]
        );
        let publish: Vec<String> = report
            .findings
            .iter()
            .flat_map(|f| f.publish.iter().map(Record::zone_line))
            .collect();
        assert!(
            publish.contains(&format!(
                "s2025._domainkey.notification.example.fr. IN TXT \"v=DKIM1; k=ed25519; p={}\"",
                base64::engine::general_purpose::STANDARD.encode([7; 32])
            )),
            "{publish:?}"
        );
        assert!(publish.contains(&"_dmarc.example.fr. IN TXT \"v=DMARC1; p=quarantine; rua=mailto:dmarc-reports@example.fr\"".to_owned()), "{publish:?}");
        assert!(
            publish.contains(&"bounces.example.fr. IN MX 10 mail.example.fr.".to_owned()),
            "{publish:?}"
        );
    }

    #[test]
    fn a_dkim_domain_outside_the_from_organisation_is_misaligned() {
        let mut domains = domains();
        domains.keys = vec![key("mailer.example.com")];
        let p = base64::engine::general_purpose::STANDARD.encode([7; 32]);
        let zone = good_zone().txt(
            "s2025._domainkey.mailer.example.com",
            &format!("v=DKIM1; k=ed25519; p={p}"),
        );
        let report = run(&zone, &domains);
        let finding = report
            .findings
            .iter()
            .find(|f| f.check == "alignment" && f.outcome == Outcome::Problem)
            .expect("misaligned");
        assert_eq!(
            finding.publish[0].name,
            "s2025._domainkey.notification.example.fr"
        );
        // Strict DMARC alignment refuses a sibling name that relaxed accepts.
        let zone = good_zone().txt(
            "_dmarc.notification.example.fr",
            "v=DMARC1; p=reject; aspf=s",
        );
        let report = run(&zone, &super::tests::domains());
        assert_eq!(
            problems(&report),
            [("alignment".to_owned(), "bounces.example.fr".to_owned())]
        );
    }

    #[test]
    fn a_servfail_is_a_dns_failure_never_a_missing_record() {
        let mut zone = good_zone();
        zone.failing.push("_dmarc.notification.example.fr".into());
        zone.failing.push("spf.example.fr".into());
        let report = run(&zone, &domains());
        assert!(!report.passed);
        assert_eq!(report.problems, 0, "{}", render_report(&report));
        assert_eq!(report.dns_failures, 2);
        assert!(report.findings.iter().all(|f| f.publish.is_empty()));
    }

    #[test]
    fn spf_without_a_refusing_end_and_a_null_mx_from_are_problems() {
        let mut zone = good_zone();
        zone.txt.insert(
            "bounces.example.fr".into(),
            vec!["v=spf1 a:relay.example.fr ?all".into()],
        );
        zone.mx
            .insert("notification.example.fr".into(), vec![(0, String::new())]);
        let report = run(&zone, &domains());
        let publish: Vec<String> = report
            .findings
            .iter()
            .flat_map(|f| f.publish.iter().map(|r| r.value.clone()))
            .collect();
        assert_eq!(problems(&report).len(), 2, "{}", render_report(&report));
        assert!(
            publish.contains(&"v=spf1 a:relay.example.fr -all".to_owned()),
            "{publish:?}"
        );
    }

    #[test]
    fn long_txt_values_are_split_in_strings_of_255() {
        let record = Record::txt("s._domainkey.example.fr", "x".repeat(400));
        let line = record.zone_line();
        assert!(line.starts_with("s._domainkey.example.fr. IN TXT \""));
        assert_eq!(
            line,
            format!(
                "s._domainkey.example.fr. IN TXT \"{}\" \"{}\"",
                "x".repeat(255),
                "x".repeat(145)
            )
        );
    }
}
