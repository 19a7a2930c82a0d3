//! `render`: turns a person into their letter (subject, text body, HTML body), strictly.
//!
//! The templates are read once, at start, from the campaign's `letters/` folder: one folder per
//! language holding `subject.hbs`, `body.txt.hbs` and `body.html.hbs`, and `partials/*.hbs` shared
//! by every language. Two handlebars registries hold them: the text one never escapes (subject and
//! plain-text body), the HTML one escapes every value. Both are strict, so a name that does not
//! resolve fails that person's letter instead of leaving a hole in a legally required notice. The
//! helpers only compute values (labels, dates, numbers) and return them, so the HTML registry
//! escapes what they produce too; nothing a template does can read a file or run a program.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use handlebars::{
    Context, Handlebars, Helper, HelperDef, RenderContext, RenderErrorReason, ScopedJson,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::exit::UsageError;
use crate::person::Person;

mod variants;

use variants::{Rendered, VariantCache};

/// The three templates every language folder holds.
const SUBJECT: &str = "subject.hbs";
const TEXT_BODY: &str = "body.txt.hbs";
const HTML_BODY: &str = "body.html.hbs";
const PARTS: [&str; 3] = [SUBJECT, TEXT_BODY, HTML_BODY];

/// RFC 5322 caps a header line at 998 bytes; a longer subject could not go out unfolded.
const MAX_SUBJECT_BYTES: usize = 998;

/// One person's letter, rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letter {
    /// The language actually used: the person's when letters exist for it, else the default.
    pub language: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Why one person's letter could not be made: the template (or header) at fault and the reason,
/// e.g. `letters/fr/body.txt.hbs: Variable "incident.helpline_phone" not found in strict mode`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{template}: {reason}")]
pub struct RenderError {
    pub template: String,
    pub reason: String,
}

impl RenderError {
    pub fn new(template: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            template: template.into(),
            reason: reason.into(),
        }
    }
}

/// The campaign's letters, compiled once and shared by every thread that renders.
pub struct Letters {
    text: Handlebars<'static>,
    html: Handlebars<'static>,
    languages: BTreeSet<String>,
    default_language: String,
    /// Template name → the file it came from, for error messages.
    files: HashMap<String, String>,
    incident: Value,
    sender: Value,
    fingerprint: String,
    /// The HTML registry again, with an escape function that marks escaped placeholders.
    variant_html: Handlebars<'static>,
    /// `None` when the letters use a person's value in a way no variant key captures.
    variants: Option<VariantCache>,
}

impl Letters {
    /// Reads and compiles every letter and partial; a syntax error names the file.
    pub fn load(config: &Config) -> anyhow::Result<Letters> {
        let root = &config.campaign.letters;
        let shown = |path: &Path| -> String {
            path.strip_prefix(&config.dir)
                .unwrap_or(path)
                .display()
                .to_string()
        };
        let mut text = strict_registry(false);
        let mut html = strict_registry(true);
        let mut files = HashMap::new();
        let mut hashed: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut languages = BTreeSet::new();
        // Every template's source, to check its partial calls once all partials are known.
        let mut sources: Vec<(String, String)> = Vec::new();
        let mut partials = BTreeSet::new();

        let entries = std::fs::read_dir(root).map_err(|e| {
            UsageError::new(format!(
                "campaign.letters: cannot read the letters folder {}: {e}",
                root.display()
            ))
        })?;
        let mut folders: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        folders.sort();
        for folder in folders {
            let Some(name) = folder
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_owned)
            else {
                continue;
            };
            if name == "partials" {
                for partial in hbs_files(&folder)? {
                    let Some(stem) = partial
                        .file_stem()
                        .and_then(|s| s.to_str())
                        .map(str::to_owned)
                    else {
                        continue;
                    };
                    let source = read_template(&partial, &shown(&partial), &mut hashed)?;
                    register_partial(&mut text, &stem, &source, &shown(&partial))?;
                    register_partial(&mut html, &stem, &source, &shown(&partial))?;
                    files.insert(stem.clone(), shown(&partial));
                    partials.insert(stem);
                    sources.push((shown(&partial), source));
                }
                continue;
            }
            let present: Vec<&str> = PARTS
                .into_iter()
                .filter(|part| folder.join(part).is_file())
                .collect();
            if present.is_empty() {
                continue;
            }
            if present.len() != PARTS.len() {
                let missing: Vec<&str> =
                    PARTS.into_iter().filter(|p| !present.contains(p)).collect();
                return Err(UsageError::new(format!(
                    "{}: the letters for {name:?} lack {}",
                    shown(&folder),
                    missing.join(", ")
                ))
                .into());
            }
            for part in PARTS {
                let path = folder.join(part);
                let source = read_template(&path, &shown(&path), &mut hashed)?;
                let template = template_name(&name, part);
                let registry = if part == HTML_BODY {
                    &mut html
                } else {
                    &mut text
                };
                registry
                    .register_template_string(&template, &source)
                    .map_err(|e| {
                        UsageError::new(format!("{}: template syntax error: {e}", shown(&path)))
                    })?;
                files.insert(template, shown(&path));
                sources.push((shown(&path), source));
            }
            languages.insert(name);
        }
        for (shown, source) in &sources {
            check_partial_calls(shown, source, &partials)?;
        }
        let default_language = config.campaign.default_language.clone();
        if !languages.contains(&default_language) {
            return Err(UsageError::new(format!(
                "campaign.default_language is {default_language:?} but {} has no letters for it (need {}/{default_language}/{{{}}})",
                root.display(),
                shown(root),
                PARTS.join(",")
            ))
            .into());
        }
        let incident = Value::Object(config.incident.clone());
        let sender = sender_view(config);
        let fingerprint = fingerprint_of(&hashed, &incident, &sender);
        let mut variant_html = html.clone();
        variant_html.register_escape_fn(variants::marking_escape);
        let variants = plan_variants(&text, &html, &languages, &hashed, &incident, &sender)
            .inspect_err(|reason| {
                tracing::debug!(
                    "letters are rendered person by person, without the variant cache: {reason}"
                )
            })
            .ok();
        Ok(Letters {
            text,
            html,
            languages,
            default_language,
            files,
            incident,
            sender,
            fingerprint,
            variant_html,
            variants,
        })
    }

    /// SHA-256 (hex) of every template file (by path, then bytes) and of the incident facts and
    /// sender, so the audit can prove which letters each person was sent.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The languages that have letters, sorted.
    pub fn languages(&self) -> impl Iterator<Item = &str> {
        self.languages.iter().map(String::as_str)
    }

    /// The language of people whose own language has no letters.
    pub fn default_language(&self) -> &str {
        &self.default_language
    }

    /// The language a person's letter is written in.
    pub fn language_for<'a>(&'a self, person: &'a Person) -> &'a str {
        if self.languages.contains(&person.language) {
            &person.language
        } else {
            &self.default_language
        }
    }

    /// Renders one person's letter, strictly: from their variant when the letters allow it
    /// (see `variants`), the same bytes as `render_directly` at a fraction of the cost.
    pub fn render(&self, person: &Person) -> Result<Letter, RenderError> {
        let language = self.language_for(person);
        if let Some(filled) = self
            .variants
            .as_ref()
            .and_then(|cache| cache.fill(self, person, language))
        {
            return self.finish(
                language.to_owned(),
                filled.subject,
                filled.text,
                filled.html,
            );
        }
        self.render_directly(person)
    }

    /// Renders one person's letter with handlebars, without the variant cache.
    pub fn render_directly(&self, person: &Person) -> Result<Letter, RenderError> {
        let language = self.language_for(person).to_owned();
        let context = Context::wraps(self.context_for(person, &language)).map_err(|e| {
            RenderError::new(
                person.person_ref.to_string(),
                format!("cannot build context: {e}"),
            )
        })?;
        let subject = self.render_one(&self.text, &language, SUBJECT, &context)?;
        let text = self.render_one(&self.text, &language, TEXT_BODY, &context)?;
        let html = self.render_one(&self.html, &language, HTML_BODY, &context)?;
        self.finish(language, subject, text, html)
    }

    /// Whether letters are made from cached variants (for tests).
    pub fn uses_variants(&self) -> bool {
        self.variants.is_some()
    }

    /// The variant's three parts for this context, `None` if any fails to render.
    fn render_variant(
        &self,
        person: Value,
        extra: serde_json::Map<String, Value>,
        language: &str,
    ) -> Option<Rendered> {
        let context = Context::wraps(self.context_with(person, extra, language)).ok()?;
        let render = |registry: &Handlebars<'static>, part: &str| {
            registry
                .render_with_context(&template_name(language, part), &context)
                .ok()
        };
        Some(Rendered {
            subject: render(&self.text, SUBJECT)?,
            text: render(&self.text, TEXT_BODY)?,
            html: render(&self.variant_html, HTML_BODY)?,
        })
    }

    /// The checks every letter passes, however it was made.
    fn finish(
        &self,
        language: String,
        subject: String,
        text: String,
        html: String,
    ) -> Result<Letter, RenderError> {
        let subject = subject.trim().to_owned();
        let subject_file = self.file_of(&template_name(&language, SUBJECT));
        if let Some(c) = subject.chars().find(|c| c.is_control()) {
            return Err(RenderError::new(
                subject_file,
                format!(
                    "the subject contains the control character U+{:04X}",
                    c as u32
                ),
            ));
        }
        if subject.len() > MAX_SUBJECT_BYTES {
            return Err(RenderError::new(
                subject_file,
                format!(
                    "the subject is {} bytes long, over the {MAX_SUBJECT_BYTES} a header line may hold",
                    subject.len()
                ),
            ));
        }
        if subject.is_empty() {
            return Err(RenderError::new(subject_file, "the subject is empty"));
        }
        if text.trim().is_empty() {
            return Err(RenderError::new(
                self.file_of(&template_name(&language, TEXT_BODY)),
                "the text body is empty",
            ));
        }
        Ok(Letter {
            language,
            subject,
            text,
            html,
        })
    }

    fn render_one(
        &self,
        registry: &Handlebars<'static>,
        language: &str,
        part: &str,
        context: &Context,
    ) -> Result<String, RenderError> {
        let name = template_name(language, part);
        registry
            .render_with_context(&name, context)
            .map_err(|e| self.describe(&name, &e))
    }

    fn file_of(&self, template: &str) -> String {
        self.files
            .get(template)
            .cloned()
            .unwrap_or_else(|| template.to_owned())
    }

    /// Handlebars' own messages print `Some("x")`; the operator wants the name and the place.
    fn describe(&self, template: &str, error: &handlebars::RenderError) -> RenderError {
        let file = self.file_of(error.template_name.as_deref().unwrap_or(template));
        let reason = match error.reason() {
            RenderErrorReason::MissingVariable(Some(path)) => {
                format!("Variable {path:?} not found in strict mode")
            }
            RenderErrorReason::MissingVariable(None) => {
                "a variable was not found in strict mode".to_owned()
            }
            other => other.to_string(),
        };
        let place = match (error.line_no, error.column_no) {
            (Some(line), Some(column)) => format!(" (line {line}, column {column})"),
            _ => String::new(),
        };
        RenderError::new(file, format!("{reason}{place}"))
    }

    /// The context the letters see. Every key is present (null when unknown), because strict
    /// mode refuses a missing key even where a template only tests it.
    fn context_for(&self, person: &Person, language: &str) -> Value {
        self.context_with(
            self.person_view(person, language),
            person.extra.clone(),
            language,
        )
    }

    fn context_with(
        &self,
        person: Value,
        extra: serde_json::Map<String, Value>,
        language: &str,
    ) -> Value {
        json!({
            "person": person,
            "extra": extra,
            "incident": self.incident,
            "sender": self.sender,
            "letter": { "language": language },
        })
    }

    /// `person` as the letters see it.
    fn person_view(&self, person: &Person, language: &str) -> Value {
        let exposed: Vec<&str> = person.exposed.iter().map(|c| c.code()).collect();
        json!({
                "ref": person.person_ref,
                "notice_id": person.notice_id,
                "civility": person.civility,
                "first_name": person.first_name,
                "last_name": person.last_name,
                "display_name": person.display_name(),
                "email": person.email,
                "language": language,
                "address_line1": person.address_line1,
                "address_line2": person.address_line2,
                "postcode": person.postcode,
                "city": person.city,
                "country": person.country,
                "identifier_masked": person.identifier_masked,
                "phone_masked": person.phone_masked,
                "exposed": exposed,
        })
    }
}

/// The variant cache for these letters, or why there can be none.
fn plan_variants(
    text: &Handlebars<'static>,
    html: &Handlebars<'static>,
    languages: &BTreeSet<String>,
    files: &BTreeMap<String, Vec<u8>>,
    incident: &Value,
    sender: &Value,
) -> Result<VariantCache, String> {
    // The placeholders are private-use characters: letters that hold them would be misread.
    for (path, bytes) in files {
        if variants::has_marker(&String::from_utf8_lossy(bytes)) {
            return Err(format!("{path} holds a character U+E000 to U+E003"));
        }
    }
    if variants::has_marker(&incident.to_string()) || variants::has_marker(&sender.to_string()) {
        return Err("the incident facts hold a character U+E000 to U+E003".to_owned());
    }
    let mut roots = Vec::new();
    for language in languages {
        roots.push((text, template_name(language, SUBJECT)));
        roots.push((text, template_name(language, TEXT_BODY)));
        roots.push((html, template_name(language, HTML_BODY)));
    }
    VariantCache::plan(&roots)
}

fn template_name(language: &str, part: &str) -> String {
    format!("{language}/{part}")
}

fn strict_registry(escape_html: bool) -> Handlebars<'static> {
    let mut registry = Handlebars::new();
    registry.set_strict_mode(true);
    if !escape_html {
        registry.register_escape_fn(handlebars::no_escape);
    }
    registry.register_helper("category_label", Box::new(CategoryLabel));
    registry.register_helper("date", Box::new(LongDate));
    registry.register_helper("number", Box::new(GroupedNumber));
    registry.register_helper("exposed", Box::new(IsExposed));
    registry.register_helper("not_exposed", Box::new(IsNotExposed));
    registry.register_helper("phone", Box::new(PhoneNumber));
    registry.register_helper("hours", Box::new(OpeningHours));
    registry
}

fn register_partial(
    registry: &mut Handlebars<'static>,
    name: &str,
    source: &str,
    shown: &str,
) -> anyhow::Result<()> {
    registry
        .register_partial(name, source)
        .map_err(|e| UsageError::new(format!("{shown}: template syntax error: {e}")).into())
}

/// A template may only call the partials of `letters/partials/` (or its own inline ones), by a
/// plain name. Handlebars would not read `{{> /etc/passwd}}` from disk anyway (no file-loading
/// feature is built in), but refusing such a name at load says so to the operator at once
/// rather than as a render failure for every person later.
fn check_partial_calls(
    shown: &str,
    source: &str,
    partials: &BTreeSet<String>,
) -> Result<(), UsageError> {
    let inline = inline_partials(source);
    for name in partial_calls(source) {
        let plain = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !plain {
            return Err(UsageError::new(format!(
                "{shown}: the partial {name:?} is not a plain name: a template may only use the partials in letters/partials/ by name (letters never read other files)"
            )));
        }
        if !partials.contains(&name) && !inline.contains(&name) {
            return Err(UsageError::new(format!(
                "{shown}: the partial {name:?} does not exist (known: {})",
                partials.iter().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    Ok(())
}

/// The names after `{{>` and `{{#>` (with `~` and spaces tolerated), as written.
fn partial_calls(source: &str) -> Vec<String> {
    source
        .split("{{")
        .skip(1)
        .filter_map(|tag| {
            let tag = tag.trim_start_matches('~').trim_start();
            let tag = tag
                .strip_prefix("#>")
                .or_else(|| tag.strip_prefix('>'))?
                .trim_start();
            let end = tag
                .find(|c: char| c.is_whitespace() || c == '}' || c == '~')
                .unwrap_or(tag.len());
            Some(tag[..end].to_owned())
        })
        .collect()
}

/// The names defined by `{{#*inline "NAME"}}` in this template.
fn inline_partials(source: &str) -> BTreeSet<String> {
    source
        .split("{{")
        .skip(1)
        .filter_map(|tag| {
            let tag = tag.trim_start_matches('~').trim_start();
            let rest = tag.strip_prefix("#*inline")?.trim_start();
            let rest = rest.strip_prefix('"')?;
            rest.split_once('"').map(|(name, _)| name.to_owned())
        })
        .collect()
}

fn hbs_files(folder: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .with_context(|| format!("while reading {}", folder.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "hbs"))
        .collect();
    files.sort();
    Ok(files)
}

fn read_template(
    path: &Path,
    shown: &str,
    hashed: &mut BTreeMap<String, Vec<u8>>,
) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).map_err(|e| UsageError::new(format!("{shown}: {e}")))?;
    let source = String::from_utf8(bytes.clone())
        .map_err(|_| UsageError::new(format!("{shown}: not UTF-8")))?;
    hashed.insert(shown.to_owned(), bytes);
    Ok(source)
}

fn sender_view(config: &Config) -> Value {
    json!({
        "address": config.sender.from.email.to_string(),
        "name": config.sender.from.name,
        "reply_to": config.sender.reply_to.as_ref().map(|m| m.email.to_string()),
    })
}

fn fingerprint_of(files: &BTreeMap<String, Vec<u8>>, incident: &Value, sender: &Value) -> String {
    let mut hash = Sha256::new();
    for (path, bytes) in files {
        hash.update(b"file\0");
        hash.update(path.as_bytes());
        hash.update(b"\0");
        hash.update((bytes.len() as u64).to_be_bytes());
        hash.update(bytes);
    }
    hash.update(b"incident\0");
    hash.update(canonical_json(incident).as_bytes());
    hash.update(b"\0sender\0");
    hash.update(canonical_json(sender).as_bytes());
    hex::encode(hash.finalize())
}

/// JSON with object keys sorted at every depth, so the same facts always hash the same,
/// whatever order the configuration file listed them in.
pub fn canonical_json(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let ordered: BTreeMap<&String, Value> =
                    map.iter().map(|(k, v)| (k, sorted(v))).collect();
                Value::Object(ordered.into_iter().map(|(k, v)| (k.clone(), v)).collect())
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

// Helpers. Each returns a value (never writes), so the HTML registry escapes the result.

/// The letter's language, from the root context (`letter.language`).
fn letter_language(ctx: &Context) -> &str {
    ctx.data()
        .get("letter")
        .and_then(|l| l.get("language"))
        .and_then(Value::as_str)
        .unwrap_or("en")
}

fn is_french(ctx: &Context) -> bool {
    letter_language(ctx) == "fr"
}

fn param<'a>(
    h: &'a Helper<'_>,
    helper: &'static str,
) -> Result<&'a Value, handlebars::RenderError> {
    let param = h
        .param(0)
        .ok_or(RenderErrorReason::ParamNotFoundForIndex(helper, 0))?;
    if param.is_value_missing() {
        let path = param.relative_path().cloned();
        return Err(RenderErrorReason::MissingVariable(path).into());
    }
    Ok(param.value())
}

fn helper_error(message: String) -> handlebars::RenderError {
    RenderErrorReason::Other(message).into()
}

/// `{{category_label code}}`: "votre numéro de téléphone" / "the phone number on your file".
struct CategoryLabel;

impl HelperDef for CategoryLabel {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, handlebars::RenderError> {
        let code = param(h, "category_label")?;
        let code = code.as_str().ok_or_else(|| {
            helper_error(format!("category_label: {code} is not a category code"))
        })?;
        let label = category_label(code, is_french(ctx))
            .ok_or_else(|| helper_error(format!("category_label: unknown category {code:?}")))?;
        Ok(ScopedJson::Derived(Value::String(label.to_owned())))
    }
}

pub fn category_label(code: &str, french: bool) -> Option<&'static str> {
    let (fr, en) = match code {
        // The English labels say where the value is kept: a list of bare field names ("your
        // name", "your email address", ...) reads to spam filters as a form asking for them
        // (SpamAssassin's FILL_THIS_FORM rules).
        "name" => ("vos nom et prénom", "the name on your file"),
        "email" => (
            "votre adresse électronique",
            "the email address we write to",
        ),
        "postal" => ("votre adresse postale", "the postal address on your file"),
        "phone" => ("votre numéro de téléphone", "the phone number on your file"),
        "identifier" => ("votre identifiant personnel", "the identifier of your file"),
        "status" => ("votre situation d'inscription", "your registration status"),
        "birthdate" => ("votre date de naissance", "the date of birth on your file"),
        _ => return None,
    };
    Some(if french { fr } else { en })
}

/// `{{date "2025-07-11"}}`: "11 juillet 2025" / "11 July 2025".
struct LongDate;

impl HelperDef for LongDate {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, handlebars::RenderError> {
        let value = param(h, "date")?;
        let text = value
            .as_str()
            .and_then(|iso| long_date(iso, is_french(ctx)));
        let text = text.ok_or_else(|| {
            helper_error(format!("date: {value} is not a date written YYYY-MM-DD"))
        })?;
        Ok(ScopedJson::Derived(Value::String(text)))
    }
}

const MONTHS_FR: [&str; 12] = [
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
];
const MONTHS_EN: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

pub fn long_date(iso: &str, french: bool) -> Option<String> {
    let date = chrono::NaiveDate::parse_from_str(iso.trim(), "%Y-%m-%d").ok()?;
    use chrono::Datelike;
    let month = date.month0() as usize;
    let day = date.day();
    Some(if french {
        let day = if day == 1 {
            "1er".to_owned()
        } else {
            day.to_string()
        };
        format!("{day} {} {}", MONTHS_FR[month], date.year())
    } else {
        format!("{day} {} {}", MONTHS_EN[month], date.year())
    })
}

/// `{{number 340000}}`: "340 000" (narrow no-break space) / "340,000".
struct GroupedNumber;

impl HelperDef for GroupedNumber {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, handlebars::RenderError> {
        let value = param(h, "number")?;
        let whole = match value {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        let whole =
            whole.ok_or_else(|| helper_error(format!("number: {value} is not a whole number")))?;
        Ok(ScopedJson::Derived(Value::String(grouped_number(
            whole,
            is_french(ctx),
        ))))
    }
}

pub fn grouped_number(value: i64, french: bool) -> String {
    let separator = if french { '\u{202F}' } else { ',' };
    let digits = value.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 * 3 + 1);
    if value < 0 {
        out.push('-');
    }
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(separator);
        }
        out.push(digit);
    }
    out
}

/// `{{#if (exposed "phone")}}`: whether this person's phone number may be among the exposed data:
/// it is in their categories, or their categories are unknown (none given), when the letter
/// must warn of every misuse rather than of none.
struct IsExposed;

impl HelperDef for IsExposed {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, handlebars::RenderError> {
        let code = param(h, "exposed")?;
        let code = code
            .as_str()
            .ok_or_else(|| helper_error(format!("exposed: {code} is not a category code")))?;
        if category_label(code, false).is_none() {
            return Err(helper_error(format!("exposed: unknown category {code:?}")));
        }
        let exposed = ctx
            .data()
            .get("person")
            .and_then(|p| p.get("exposed"))
            .and_then(Value::as_array)
            .is_none_or(|list| list.is_empty() || list.iter().any(|c| c.as_str() == Some(code)));
        Ok(ScopedJson::Derived(Value::Bool(exposed)))
    }
}

/// `{{#unless (not_exposed "password")}}`: whether the incident facts state that this kind of data
/// was not involved (`incident.not_exposed` lists its code), so advice about it would contradict
/// the letter.
struct IsNotExposed;

impl HelperDef for IsNotExposed {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, handlebars::RenderError> {
        let code = param(h, "not_exposed")?;
        let code = code
            .as_str()
            .ok_or_else(|| helper_error(format!("not_exposed: {code} is not a code")))?;
        let listed = ctx
            .data()
            .get("incident")
            .and_then(|i| i.get("not_exposed"))
            .and_then(Value::as_array)
            .is_some_and(|list| list.iter().any(|c| c.as_str() == Some(code)));
        Ok(ScopedJson::Derived(Value::Bool(listed)))
    }
}

/// `{{phone incident.helpline_phone}}`: a French number as the reader dials it, its groups
/// held together by no-break spaces so a line never ends inside it: "09 70 00 00 00" as is in
/// French, "+33 9 70 00 00 00" in English (dialled from abroad). Anything else as written.
struct PhoneNumber;

impl HelperDef for PhoneNumber {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, handlebars::RenderError> {
        let value = param(h, "phone")?;
        let number = value
            .as_str()
            .ok_or_else(|| helper_error(format!("phone: {value} is not text")))?;
        Ok(ScopedJson::Derived(Value::String(phone_number(
            number,
            is_french(ctx),
        ))))
    }
}

pub fn phone_number(number: &str, french: bool) -> String {
    let digits: Vec<char> = number.chars().filter(|c| !c.is_whitespace()).collect();
    let national =
        digits.len() == 10 && digits[0] == '0' && digits.iter().all(char::is_ascii_digit);
    let shown = if national && !french {
        format!("+33 {}", number.trim().trim_start_matches('0'))
    } else {
        number.trim().to_owned()
    };
    shown.split_whitespace().collect::<Vec<_>>().join("\u{a0}")
}

/// `{{hours incident.helpline_hours}}`: "08:30–17:00" as "de 8 h 30 à 17 h" / "from 8:30 am to
/// 5 pm"; anything that is not two 24-hour times is shown as written.
struct OpeningHours;

impl HelperDef for OpeningHours {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, handlebars::RenderError> {
        let value = param(h, "hours")?;
        let hours = value
            .as_str()
            .ok_or_else(|| helper_error(format!("hours: {value} is not text")))?;
        let text = opening_hours(hours, is_french(ctx)).unwrap_or_else(|| hours.to_owned());
        Ok(ScopedJson::Derived(Value::String(text)))
    }
}

pub fn opening_hours(hours: &str, french: bool) -> Option<String> {
    let (open, close) = hours.split_once(['–', '-'])?;
    let time = |t: &str| -> Option<(u32, u32)> {
        let (h, m) = t.trim().split_once([':', 'h'])?;
        let (h, m) = (h.trim().parse().ok()?, m.trim().parse().ok()?);
        (h < 24 && m < 60).then_some((h, m))
    };
    let (open, close) = (time(open)?, time(close)?);
    let french_time = |(h, m): (u32, u32)| match m {
        0 => format!("{h}\u{a0}h"),
        m => format!("{h}\u{a0}h\u{a0}{m:02}"),
    };
    let english_time = |(h, m): (u32, u32)| {
        let (twelve, half) = match h {
            0 => (12, "am"),
            1..=11 => (h, "am"),
            12 => (12, "pm"),
            _ => (h - 12, "pm"),
        };
        match m {
            0 => format!("{twelve}\u{a0}{half}"),
            m => format!("{twelve}:{m:02}\u{a0}{half}"),
        }
    };
    Some(if french {
        format!("de {} à {}", french_time(open), french_time(close))
    } else {
        format!("from {} to {}", english_time(open), english_time(close))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phone_number_never_breaks_and_is_dialled_from_abroad_in_english() {
        assert_eq!(
            phone_number("09 70 00 00 00", true),
            "09\u{a0}70\u{a0}00\u{a0}00\u{a0}00"
        );
        assert_eq!(
            phone_number("09 70 00 00 00", false),
            "+33\u{a0}9\u{a0}70\u{a0}00\u{a0}00\u{a0}00"
        );
        assert_eq!(phone_number("33700", false), "33700");
        assert_eq!(
            phone_number("+44 20 7946 0000", true),
            "+44\u{a0}20\u{a0}7946\u{a0}0000"
        );
    }

    #[test]
    fn opening_hours_are_written_out() {
        assert_eq!(
            opening_hours("08:30–17:00", true).as_deref(),
            Some("de 8\u{a0}h\u{a0}30 à 17\u{a0}h")
        );
        assert_eq!(
            opening_hours("08:30-17:00", false).as_deref(),
            Some("from 8:30\u{a0}am to 5\u{a0}pm")
        );
        assert_eq!(opening_hours("on weekdays", true), None);
    }

    #[test]
    fn dates_read_as_people_write_them() {
        assert_eq!(long_date("2025-07-11", true).unwrap(), "11 juillet 2025");
        assert_eq!(long_date("2025-08-01", true).unwrap(), "1er août 2025");
        assert_eq!(long_date("2025-07-11", false).unwrap(), "11 July 2025");
        assert_eq!(long_date("2025-08-01", false).unwrap(), "1 August 2025");
        assert!(long_date("11/07/2025", true).is_none());
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped_number(340_000, true), "340\u{202F}000");
        assert_eq!(grouped_number(340_000, false), "340,000");
        assert_eq!(grouped_number(43_000_000, false), "43,000,000");
        assert_eq!(grouped_number(999, true), "999");
        assert_eq!(grouped_number(-1234, false), "-1,234");
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"d":2,"c":3}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":{"c":3,"d":2},"b":1}"#).unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(canonical_json(&a), r#"{"a":{"c":3,"d":2},"b":1}"#);
    }
}

/// The variant cache against handlebars itself: every letter filled in from a variant must be
/// byte for byte the letter rendered directly.
#[cfg(test)]
mod variant_tests {
    use super::*;
    use crate::domain::{Category, Email, NoticeId, PersonRef};

    fn project_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    /// The default configuration and example incident, with the letters of `dir/letters`.
    fn config_in(dir: &Path) -> Config {
        let incident = std::fs::read_to_string(project_dir().join("letters/incident.example.toml"))
            .expect("example incident");
        let text = format!("{}\n{incident}", include_str!("breachmail.toml.in"));
        Config::from_toml(&text, dir, &[]).expect("valid config")
    }

    /// A copy of the project's letters in a temporary folder, `edit` applied to one file.
    fn edited_letters(file: &str, edit: impl Fn(&str) -> String) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for folder in ["fr", "en", "partials"] {
            let from = project_dir().join("letters").join(folder);
            let to = dir.path().join("letters").join(folder);
            std::fs::create_dir_all(&to).expect("letters folder");
            for entry in std::fs::read_dir(&from).expect("letters") {
                let path = entry.expect("entry").path();
                std::fs::copy(&path, to.join(path.file_name().expect("name"))).expect("copy");
            }
        }
        let path = dir.path().join("letters").join(file);
        let source = std::fs::read_to_string(&path).expect("template");
        std::fs::write(&path, edit(&source)).expect("edited template");
        dir
    }

    #[test]
    fn person_value_reads_what_the_view_holds() {
        use variants::{Looked, person_value};
        let letters = Letters::load(&config_in(&project_dir())).expect("letters");
        let mut bare = person();
        bare.first_name = None;
        bare.last_name = Some(String::new());
        bare.civility = None;
        bare.email = None;
        for person in [person(), bare] {
            let view = letters.person_view(&person, "en");
            let display_name = person.display_name();
            let mut names: Vec<String> = view.as_object().expect("a map").keys().cloned().collect();
            names.extend(["nope".to_owned(), "extra".to_owned()]);
            for name in names {
                let expected = match view.get(&name) {
                    None => Looked::Missing,
                    Some(Value::Null) => Looked::Null,
                    Some(Value::String(s)) => Looked::Text(s),
                    Some(_) => Looked::Other,
                };
                assert_eq!(
                    person_value(&person, &name, "en", &display_name),
                    expected,
                    "person.{name}"
                );
            }
        }
    }

    fn person() -> Person {
        Person {
            id: 7,
            person_ref: PersonRef::parse("V-1").expect("a ref"),
            notice_id: NoticeId::parse("K7QF-3MZ9-P2XA").expect("a notice id"),
            email: Some(Email::parse("marie.dupont@exemple.fr").expect("an address")),
            civility: Some("ms".into()),
            first_name: Some("Marie".into()),
            last_name: Some("Dupont".into()),
            language: "fr".into(),
            address_line1: Some("12 rue Pasteur".into()),
            address_line2: None,
            postcode: Some("69003".into()),
            city: Some("Lyon".into()),
            country: Some("France".into()),
            phone_masked: Some("•• •• •• •• 78".into()),
            identifier_masked: Some("…4821".into()),
            exposed: Category::ALL.to_vec(),
            extra: serde_json::Map::new(),
            generation: 1,
        }
    }

    /// People that differ in every way the letters can tell apart, and some they cannot.
    fn varied_people() -> Vec<Person> {
        let mut people = Vec::new();
        for language in ["fr", "en", "de", ""] {
            // Every set of exposed categories.
            for mask in 0u32..(1 << Category::ALL.len()) {
                let mut p = person();
                p.language = language.into();
                p.exposed = Category::ALL
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, c)| c)
                    .collect();
                p.notice_id = NoticeId::in_bucket(mask as i64);
                people.push(p);
            }
            let civilities = [Some("ms"), Some("mr"), None, Some(""), Some("Dr")];
            let names = [
                (Some("Marie"), Some("Dupont")),
                (None, None),
                (Some(""), Some("")),
                (Some("Théo"), Some("N'Diaye")),
                (Some("Jean-Éloi"), None),
                (None, Some("O'Brien & <b>\"Fils\"</b> `x`=1")),
                (Some("  Anne  "), Some("Lefèvre ")),
            ];
            for civility in civilities {
                for (first, last) in names {
                    for (identifier, phone, email) in [
                        (Some("…4821"), Some("•• 78"), Some("a@b.fr")),
                        (None, None, Some("x&y's@b.fr")),
                        (Some(""), Some("&amp;"), None),
                    ] {
                        let mut p = person();
                        p.language = language.into();
                        p.civility = civility.map(str::to_owned);
                        p.first_name = first.map(str::to_owned);
                        p.last_name = last.map(str::to_owned);
                        p.identifier_masked = identifier.map(str::to_owned);
                        p.phone_masked = phone.map(str::to_owned);
                        p.email = email.map(|e| Email::parse(e).expect("a valid address"));
                        p.exposed = Category::parse_list("name;email;phone;identifier")
                            .expect("categories");
                        people.push(p);
                    }
                }
            }
        }
        people
    }

    #[test]
    fn letters_from_variants_are_the_letters_handlebars_renders() {
        let letters = Letters::load(&config_in(&project_dir())).expect("letters load");
        assert!(letters.uses_variants());
        let people = varied_people();
        for p in &people {
            assert_eq!(letters.render(p), letters.render_directly(p), "{p:?}");
        }
        // And again, now that every variant is cached.
        for p in &people {
            assert_eq!(letters.render(p), letters.render_directly(p), "{p:?}");
        }
        let variants = letters.variants.as_ref().expect("cache").ready();
        assert!(
            variants > 100 && variants < people.len(),
            "{variants} variants"
        );
    }

    #[test]
    fn values_made_of_marker_characters_are_rendered_directly() {
        let letters = Letters::load(&config_in(&project_dir())).expect("letters load");
        for name in [
            "\u{E000}0\u{E001}",
            "\u{E002}\u{E000}1\u{E001}\u{E003}",
            "a\u{E001}",
        ] {
            let mut p = person();
            p.last_name = Some(name.into());
            let letter = letters.render(&p).expect("renders");
            assert_eq!(Ok(letter.clone()), letters.render_directly(&p));
            assert!(letter.text.contains(name));
        }
        assert_eq!(letters.variants.as_ref().expect("cache").ready(), 0);
    }

    #[test]
    fn a_missing_value_fails_as_it_would_without_the_cache() {
        let dir = edited_letters("fr/body.txt.hbs", |s| format!("{s}{{{{extra.agency}}}}\n"));
        let letters = Letters::load(&config_in(dir.path())).expect("letters load");
        assert!(letters.uses_variants());
        let p = person();
        let error = letters.render(&p).expect_err("extra.agency is missing");
        assert_eq!(Err(error.clone()), letters.render_directly(&p));
        assert!(error.reason.contains("extra.agency"), "{error}");
    }

    #[test]
    fn extra_values_are_pasted_escaped_or_raw_as_the_template_says() {
        let dir = edited_letters("fr/body.html.hbs", |s| {
            s.replace(
                "</body>",
                "<p>{{extra.agency}} / {{{extra.agency}}}{{#if extra.note}} {{extra.note}}{{/if}}</p>\n</body>",
            )
        });
        let letters = Letters::load(&config_in(dir.path())).expect("letters load");
        assert!(letters.uses_variants());
        for (agency, note) in [
            ("Lyon <Part-Dieu> & \"Co\"", "x"),
            ("Agence", ""),
            ("A'b", "=`"),
        ] {
            let mut p = person();
            p.extra
                .insert("agency".into(), Value::String(agency.into()));
            p.extra.insert("note".into(), Value::String(note.into()));
            let letter = letters.render(&p).expect("renders");
            assert_eq!(Ok(letter.clone()), letters.render_directly(&p));
            assert!(
                letter
                    .html
                    .contains(&format!("{} / {agency}", handlebars::html_escape(agency)))
            );
        }
        // A value that is not text (a number) is rendered directly.
        let mut p = person();
        p.extra.insert("agency".into(), json!(42));
        p.extra.insert("note".into(), json!(null));
        assert_eq!(letters.render(&p), letters.render_directly(&p));
    }

    #[test]
    fn a_value_compared_in_a_template_means_no_cache_and_still_the_right_letter() {
        let dir = edited_letters("fr/body.txt.hbs", |s| {
            format!("{s}{{{{#if (eq person.city \"Paris\")}}}}Vous habitez Paris.{{{{/if}}}}\n")
        });
        let letters = Letters::load(&config_in(dir.path())).expect("letters load");
        assert!(!letters.uses_variants());
        let mut p = person();
        p.city = Some("Paris".into());
        assert!(
            letters
                .render(&p)
                .expect("renders")
                .text
                .contains("Vous habitez Paris.")
        );
        p.city = Some("Lyon".into());
        assert!(
            !letters
                .render(&p)
                .expect("renders")
                .text
                .contains("Vous habitez Paris.")
        );
    }
}
