//! Letters rendered once per *variant* and filled in per person.
//!
//! People's letters differ only through a few values: their language, civility and exposed
//! categories choose what the letter says, and names, notice id, masked identifier and the like
//! are pasted in. Rendering the handlebars templates costs far more than pasting, so at load the
//! templates are read once to find how each `person.*` and `extra.*` value is used:
//!
//! - printed as is (`{{person.last_name}}`, `{{{extra.x}}}`): the value is substituted;
//! - only tested (`#if`, `#unless`, `and`, `or`, `not`): only whether it is missing, null,
//!   empty or a non-empty text matters, and that goes into the variant key;
//! - compared or iterated: allowed for `person.civility`, `person.language`, `person.exposed`
//!   and `letter.*`, which are part of the key; for any other value the letters are rendered
//!   person by person, as before, since no key could tell two such people apart.
//!
//! For each new key the three templates are rendered once, with every non-empty text value
//! replaced by a placeholder made of private-use characters (HTML escaping leaves them alone);
//! the HTML registry's escape function wraps the escaped ones in two more markers, so the filling
//! knows which to escape. The result is cut into literal and placeholder pieces; a person's letter
//! is then those pieces with their values, byte for byte what handlebars would have written.
//!
//! Anything unusual falls back to rendering that person directly: a value holding a control or
//! marker character (a newline would be indented inside a partial), a non-text value, a variant
//! whose rendering fails (so the error is the person's own), a full cache.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, RwLock};

use handlebars::template::{Parameter, TemplateElement};
use handlebars::{Handlebars, Path, Template};
use serde_json::Value;

use super::Letters;
use crate::person::Person;

/// Starts a placeholder: U+E000, the value's index in decimal, U+E001.
const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';
/// Around a placeholder the HTML registry escaped: U+E002 … U+E003.
const ESCAPED_OPEN: char = '\u{E002}';
const ESCAPED_CLOSE: char = '\u{E003}';

/// Beyond this many variants, new ones are rendered person by person rather than kept.
const MAX_VARIANTS: usize = 10_000;

fn is_marker(c: char) -> bool {
    matches!(c, OPEN | CLOSE | ESCAPED_OPEN | ESCAPED_CLOSE)
}

/// Whether a text holds a character the placeholders are made of.
pub(super) fn has_marker(text: &str) -> bool {
    text.chars().any(is_marker)
}

/// The escape function of the registry that renders variants: handlebars' own, plus markers
/// around any escaped placeholder.
pub(super) fn marking_escape(text: &str) -> String {
    let escaped = handlebars::html_escape(text);
    if text.contains(OPEN) {
        format!("{ESCAPED_OPEN}{escaped}{ESCAPED_CLOSE}")
    } else {
        escaped
    }
}

/// A value of `person.*` or `extra.*` as the templates would see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Looked<'a> {
    Missing,
    Null,
    Text(&'a str),
    /// Not text (the list of exposed categories): such a letter is rendered directly.
    Other,
}

/// What `Letters::person_view(person, language).get(name)` holds, read from the person without
/// building the view (a map of sixteen values a person was a twentieth of check's time). The
/// test `person_value_reads_what_the_view_holds` keeps the two in step.
pub(super) fn person_value<'a>(
    person: &'a Person,
    name: &str,
    language: &'a str,
    display_name: &'a Option<String>,
) -> Looked<'a> {
    let optional = |value: &'a Option<String>| match value {
        Some(text) => Looked::Text(text),
        None => Looked::Null,
    };
    match name {
        "ref" => Looked::Text(person.person_ref.as_str()),
        "notice_id" => Looked::Text(person.notice_id.as_str()),
        "civility" => optional(&person.civility),
        "first_name" => optional(&person.first_name),
        "last_name" => optional(&person.last_name),
        "display_name" => optional(display_name),
        "email" => person
            .email
            .as_ref()
            .map_or(Looked::Null, |email| Looked::Text(email.as_str())),
        "language" => Looked::Text(language),
        "address_line1" => optional(&person.address_line1),
        "address_line2" => optional(&person.address_line2),
        "postcode" => optional(&person.postcode),
        "city" => optional(&person.city),
        "country" => optional(&person.country),
        "identifier_masked" => optional(&person.identifier_masked),
        "phone_masked" => optional(&person.phone_masked),
        "exposed" => Looked::Other,
        _ => Looked::Missing,
    }
}

/// A person or extra value the letters print or test: `person.first_name`, `extra.agency`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Field {
    Person(String),
    Extra(String),
}

/// What a person's value of a field is, as far as the letters can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Class {
    Missing,
    Null,
    Empty,
    /// Non-empty text: a placeholder in the variant, the value in the letter.
    Text,
}

/// What sets two people's letters apart, apart from the values pasted in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct VariantKey {
    language: String,
    civility: Option<String>,
    exposed: Vec<crate::domain::Category>,
    classes: Vec<Class>,
}

/// One piece of a rendered variant.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    /// The value of field `index`, as is.
    Raw(usize),
    /// The value of field `index`, HTML-escaped.
    Escaped(usize),
}

#[derive(Debug)]
struct Pieces {
    pieces: Vec<Piece>,
    literal_len: usize,
}

#[derive(Debug)]
enum Variant {
    Ready {
        subject: Pieces,
        text: Pieces,
        html: Pieces,
        /// Which fields appear HTML-escaped, so each person's value is escaped once.
        escaped_fields: Vec<bool>,
    },
    /// The variant does not render (or not into clean pieces): render its people directly.
    Direct,
}

/// The three raw outputs of a variant, before they are cut into pieces.
pub(super) struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The fields the letters use, and the variants seen so far.
pub(super) struct VariantCache {
    fields: Vec<Field>,
    variants: RwLock<HashMap<VariantKey, Arc<Variant>>>,
}

/// A person's letter filled in from a variant: subject (untrimmed), text and HTML.
pub(super) struct Filled {
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl VariantCache {
    /// Reads the templates each language's letter starts from (`roots`: registry and name) and
    /// every partial they include; `Err` says why these letters cannot be cached.
    pub(super) fn plan(roots: &[(&Handlebars<'static>, String)]) -> Result<VariantCache, String> {
        let mut fields = BTreeSet::new();
        for (registry, name) in roots {
            let template = registry
                .get_template(name)
                .ok_or_else(|| format!("{name} is not registered"))?;
            let mut walk = Walk {
                registry,
                fields: &mut fields,
                visited: HashSet::new(),
            };
            walk.template(template, Scope::Root)
                .map_err(|reason| format!("{name}: {reason}"))?;
        }
        Ok(VariantCache {
            fields: fields.into_iter().collect(),
            variants: RwLock::new(HashMap::new()),
        })
    }

    /// The person's letter from their variant, rendering the variant first if it is new.
    /// `None`: render this person directly.
    pub(super) fn fill(
        &self,
        letters: &Letters,
        person: &Person,
        language: &str,
    ) -> Option<Filled> {
        if has_marker(language) || person.civility.as_deref().is_some_and(has_marker) {
            return None;
        }
        let display_name = person.display_name();
        let mut classes = Vec::with_capacity(self.fields.len());
        let mut values: Vec<&str> = Vec::with_capacity(self.fields.len());
        for field in &self.fields {
            let value = match field {
                Field::Person(name) => person_value(person, name, language, &display_name),
                Field::Extra(name) => match person.extra.get(name) {
                    None => Looked::Missing,
                    Some(Value::Null) => Looked::Null,
                    Some(Value::String(s)) => Looked::Text(s),
                    Some(_) => Looked::Other,
                },
            };
            let (class, text) = match value {
                Looked::Missing => (Class::Missing, ""),
                Looked::Null => (Class::Null, ""),
                Looked::Text("") => (Class::Empty, ""),
                Looked::Text(s) => {
                    if s.chars().any(|c| c.is_control() || is_marker(c)) {
                        return None;
                    }
                    (Class::Text, s)
                }
                Looked::Other => return None,
            };
            classes.push(class);
            values.push(text);
        }
        let key = VariantKey {
            language: language.to_owned(),
            civility: person.civility.clone(),
            exposed: person.exposed.clone(),
            classes,
        };
        let variant = self.variant(letters, person, language, key)?;
        let Variant::Ready {
            subject,
            text,
            html,
            escaped_fields,
        } = variant.as_ref()
        else {
            return None;
        };
        let escaped: Vec<Option<String>> = values
            .iter()
            .zip(escaped_fields)
            .map(|(value, escaped)| escaped.then(|| handlebars::html_escape(value)))
            .collect();
        Some(Filled {
            subject: subject.fill(&values, &escaped),
            text: text.fill(&values, &escaped),
            html: html.fill(&values, &escaped),
        })
    }

    /// The variant of this key, rendered now if it is new; `None` when the cache is full.
    fn variant(
        &self,
        letters: &Letters,
        person: &Person,
        language: &str,
        key: VariantKey,
    ) -> Option<Arc<Variant>> {
        if let Some(known) = self.variants.read().ok()?.get(&key) {
            return Some(Arc::clone(known));
        }
        if self.variants.read().ok()?.len() >= MAX_VARIANTS {
            return None;
        }
        let view = letters.person_view(person, language);
        let variant = Arc::new(self.make_variant(letters, person, &view, &key));
        self.variants
            .write()
            .ok()?
            .insert(key, Arc::clone(&variant));
        Some(variant)
    }

    fn make_variant(
        &self,
        letters: &Letters,
        person: &Person,
        view: &Value,
        key: &VariantKey,
    ) -> Variant {
        let mut view = view.clone();
        let mut extra = person.extra.clone();
        for (index, (field, class)) in self.fields.iter().zip(&key.classes).enumerate() {
            if *class != Class::Text {
                continue;
            }
            let placeholder = Value::String(format!("{OPEN}{index}{CLOSE}"));
            let slot = match field {
                Field::Person(name) => view.get_mut(name),
                Field::Extra(name) => extra.get_mut(name),
            };
            if let Some(slot) = slot {
                *slot = placeholder;
            }
        }
        let Some(rendered) = letters.render_variant(view, extra, &key.language) else {
            return Variant::Direct;
        };
        let is_text = |index: usize| key.classes.get(index) == Some(&Class::Text);
        match (
            Pieces::cut(&rendered.subject, false, is_text),
            Pieces::cut(&rendered.text, false, is_text),
            Pieces::cut(&rendered.html, true, is_text),
        ) {
            (Some(subject), Some(text), Some(html)) => {
                let escaped_fields = (0..self.fields.len())
                    .map(|index| html.pieces.contains(&Piece::Escaped(index)))
                    .collect();
                Variant::Ready {
                    subject,
                    text,
                    html,
                    escaped_fields,
                }
            }
            _ => Variant::Direct,
        }
    }

    /// How many variants are kept ready to fill in (for tests).
    #[cfg(test)]
    pub(super) fn ready(&self) -> usize {
        self.variants.read().map_or(0, |variants| {
            variants
                .values()
                .filter(|v| matches!(v.as_ref(), Variant::Ready { .. }))
                .count()
        })
    }
}

impl Pieces {
    /// Cuts a rendered variant at its placeholders; `None` if they are not well formed.
    fn cut(rendered: &str, html: bool, is_text: impl Fn(usize) -> bool) -> Option<Pieces> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut literal_len = 0;
        let mut chars = rendered.chars().peekable();
        let mut flush = |literal: &mut String, pieces: &mut Vec<Piece>| {
            if !literal.is_empty() {
                literal_len += literal.len();
                pieces.push(Piece::Literal(std::mem::take(literal)));
            }
        };
        let read_index = |chars: &mut std::iter::Peekable<std::str::Chars>| -> Option<usize> {
            let mut digits = String::new();
            loop {
                match chars.next()? {
                    CLOSE => break,
                    c if c.is_ascii_digit() => digits.push(c),
                    _ => return None,
                }
            }
            let index = digits.parse().ok()?;
            is_text(index).then_some(index)
        };
        while let Some(c) = chars.next() {
            match c {
                OPEN => {
                    flush(&mut literal, &mut pieces);
                    pieces.push(Piece::Raw(read_index(&mut chars)?));
                }
                ESCAPED_OPEN if html => {
                    flush(&mut literal, &mut pieces);
                    if chars.next()? != OPEN {
                        return None;
                    }
                    let index = read_index(&mut chars)?;
                    if chars.next()? != ESCAPED_CLOSE {
                        return None;
                    }
                    pieces.push(Piece::Escaped(index));
                }
                c if is_marker(c) => return None,
                c => literal.push(c),
            }
        }
        flush(&mut literal, &mut pieces);
        Some(Pieces {
            pieces,
            literal_len,
        })
    }

    fn fill(&self, values: &[&str], escaped: &[Option<String>]) -> String {
        let mut out = String::with_capacity(self.literal_len + 256);
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Raw(index) => out.push_str(values[*index]),
                Piece::Escaped(index) => {
                    out.push_str(escaped[*index].as_deref().unwrap_or_default())
                }
            }
        }
        out
    }
}

/// Where a template is rendered: at the root of the context, or inside an `#each`/`#with` (or a
/// partial given a context), where `this` is an item that is not a person value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Scope {
    Root,
    Item,
}

/// How a template uses a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    Output,
    /// Only its truthiness: `#if`, `#unless`, `and`, `or`, `not`.
    Truthiness,
    /// Anything else: compared, iterated, given to a helper.
    Other,
}

/// What a path in a template names.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// Incident facts, sender, the current item of a loop over them, local variables.
    Constant,
    /// A value in the variant key: `person.civility`, `person.language`, `person.exposed`,
    /// `letter.*`.
    Key,
    /// The whole context, the whole person or extra, or something below a field.
    Whole(String),
    Field(Field),
}

fn target(raw: &str, scope: Scope) -> Target {
    let mut rest = raw.trim();
    let mut rooted = false;
    if let Some(after) = rest.strip_prefix("@root") {
        rooted = true;
        rest = after.trim_start_matches(['.', '/']);
    } else if rest.starts_with('@') {
        // @index, @key, @first, @last: positions in a loop.
        return Target::Constant;
    }
    loop {
        if let Some(after) = rest.strip_prefix("..") {
            rooted = true;
            rest = after.trim_start_matches('/');
        } else if let Some(after) = rest.strip_prefix("./") {
            rest = after;
        } else if let Some(after) = rest.strip_prefix("this.").or(rest.strip_prefix("this/")) {
            rest = after;
        } else {
            break;
        }
    }
    if rest.is_empty() || rest == "this" || rest == "." {
        return if rooted || scope == Scope::Root {
            Target::Whole(raw.to_owned())
        } else {
            Target::Constant
        };
    }
    let segments: Vec<&str> = rest
        .split(['.', '/'])
        .map(|s| s.trim_start_matches('[').trim_end_matches(']'))
        .collect();
    match segments.as_slice() {
        ["person"] | ["extra"] => Target::Whole(raw.to_owned()),
        ["person", "civility" | "language" | "exposed", ..] | ["letter", ..] => Target::Key,
        ["person", name] => Target::Field(Field::Person((*name).to_owned())),
        ["extra", name] => Target::Field(Field::Extra((*name).to_owned())),
        ["person" | "extra", ..] => Target::Whole(raw.to_owned()),
        _ => Target::Constant,
    }
}

fn path_raw(path: &Path) -> &str {
    match path {
        Path::Relative((_, raw)) | Path::Local((_, _, raw)) => raw,
    }
}

/// The walk over templates and the partials they include, collecting the fields used.
struct Walk<'a> {
    registry: &'a Handlebars<'static>,
    fields: &'a mut BTreeSet<Field>,
    visited: HashSet<(String, Scope)>,
}

impl Walk<'_> {
    fn template(&mut self, template: &Template, scope: Scope) -> Result<(), String> {
        template
            .elements
            .iter()
            .try_for_each(|element| self.element(element, scope))
    }

    fn element(&mut self, element: &TemplateElement, scope: Scope) -> Result<(), String> {
        match element {
            TemplateElement::RawString(_) | TemplateElement::Comment(_) => Ok(()),
            TemplateElement::Expression(ht) | TemplateElement::HtmlExpression(ht) => {
                if ht.params.is_empty() && ht.hash.is_empty() && !ht.block {
                    return self.parameter(&ht.name, Use::Output, scope);
                }
                let helper = ht.name.as_name().unwrap_or_default().to_owned();
                self.helper_arguments(&helper, &ht.params, ht.hash.values(), scope)
            }
            TemplateElement::HelperBlock(ht) => {
                let helper = ht.name.as_name().unwrap_or_default().to_owned();
                self.helper_arguments(&helper, &ht.params, ht.hash.values(), scope)?;
                if ht.block_param.is_some() {
                    return Err(format!("{{{{#{helper} … as |…|}}}} is not supported"));
                }
                let inner = if matches!(helper.as_str(), "each" | "with") {
                    Scope::Item
                } else {
                    scope
                };
                if let Some(template) = &ht.template {
                    self.template(template, inner)?;
                }
                if let Some(inverse) = &ht.inverse {
                    self.template(inverse, scope)?;
                }
                Ok(())
            }
            TemplateElement::PartialExpression(dt) => {
                let name = match &dt.name {
                    Parameter::Name(name) => name.as_str(),
                    Parameter::Path(path) => path_raw(path),
                    _ => return Err("a partial with a computed name".to_owned()),
                };
                if name.starts_with('@') {
                    return Err(format!("the partial {name}"));
                }
                let mut inner = scope;
                for param in &dt.params {
                    self.parameter(param, Use::Other, scope)?;
                    inner = Scope::Item;
                }
                for value in dt.hash.values() {
                    self.parameter(value, Use::Other, scope)?;
                }
                if !self.visited.insert((name.to_owned(), inner)) {
                    return Ok(());
                }
                let partial = self.registry.get_template(name).ok_or_else(|| {
                    format!("the partial {name} is not a file of letters/partials")
                })?;
                self.template(partial, inner)
                    .map_err(|reason| format!("partial {name}: {reason}"))
            }
            TemplateElement::PartialBlock(_) => Err("a partial block {{#> …}}".to_owned()),
            TemplateElement::DecoratorExpression(_) | TemplateElement::DecoratorBlock(_) => {
                Err("a decorator {{* …}}".to_owned())
            }
            _ => Err("a template element this version does not know".to_owned()),
        }
    }

    fn helper_arguments<'p>(
        &mut self,
        helper: &str,
        params: &[Parameter],
        hash: impl Iterator<Item = &'p Parameter>,
        scope: Scope,
    ) -> Result<(), String> {
        let used = match helper {
            "if" | "unless" | "and" | "or" | "not" => Use::Truthiness,
            _ => Use::Other,
        };
        for param in params {
            self.parameter(param, used, scope)
                .map_err(|reason| format!("{reason} (given to {helper})"))?;
        }
        for value in hash {
            self.parameter(value, Use::Other, scope)
                .map_err(|reason| format!("{reason} (given to {helper})"))?;
        }
        Ok(())
    }

    fn parameter(&mut self, param: &Parameter, used: Use, scope: Scope) -> Result<(), String> {
        match param {
            Parameter::Literal(_) => Ok(()),
            Parameter::Name(name) => self.path(name, used, scope),
            Parameter::Path(path) => self.path(path_raw(path), used, scope),
            Parameter::Subexpression(sub) => match sub.as_element() {
                TemplateElement::Expression(ht) if sub.is_helper() => {
                    // A helper's result depends only on its arguments, each checked here.
                    let helper = ht.name.as_name().unwrap_or_default().to_owned();
                    self.helper_arguments(&helper, &ht.params, ht.hash.values(), scope)
                }
                TemplateElement::Expression(ht) => self.parameter(&ht.name, used, scope),
                _ => Err("an unusual subexpression".to_owned()),
            },
            _ => Err("a parameter this version does not know".to_owned()),
        }
    }

    fn path(&mut self, raw: &str, used: Use, scope: Scope) -> Result<(), String> {
        match target(raw, scope) {
            Target::Constant | Target::Key => Ok(()),
            Target::Whole(raw) => Err(format!("{raw} is used as a whole")),
            Target::Field(field) => {
                if used == Use::Other {
                    return Err(format!("{raw} is not only printed or tested"));
                }
                self.fields.insert(field);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_read_as_handlebars_reads_them() {
        let person = |n: &str| Target::Field(Field::Person(n.to_owned()));
        assert_eq!(target("person.last_name", Scope::Root), person("last_name"));
        assert_eq!(target("@root.person.email", Scope::Item), person("email"));
        assert_eq!(target("../person.email", Scope::Item), person("email"));
        assert_eq!(target("this.person.email", Scope::Root), person("email"));
        assert_eq!(target("person/[email]", Scope::Root), person("email"));
        assert_eq!(
            target("extra.agency", Scope::Root),
            Target::Field(Field::Extra("agency".into()))
        );
        assert_eq!(target("person.civility", Scope::Root), Target::Key);
        assert_eq!(target("person.exposed.length", Scope::Root), Target::Key);
        assert_eq!(target("letter.language", Scope::Root), Target::Key);
        assert_eq!(target("incident.ref", Scope::Root), Target::Constant);
        assert_eq!(target("this", Scope::Item), Target::Constant);
        assert_eq!(target("@index", Scope::Item), Target::Constant);
        assert!(matches!(target("this", Scope::Root), Target::Whole(_)));
        assert!(matches!(target("@root", Scope::Item), Target::Whole(_)));
        assert!(matches!(target("person", Scope::Root), Target::Whole(_)));
        assert!(matches!(target("extra", Scope::Root), Target::Whole(_)));
        assert!(matches!(
            target("person.first_name.length", Scope::Root),
            Target::Whole(_)
        ));
    }

    #[test]
    fn pieces_need_well_formed_placeholders() {
        let any = |_: usize| true;
        let cut = Pieces::cut(
            "a\u{E000}0\u{E001}b\u{E002}\u{E000}1\u{E001}\u{E003}",
            true,
            any,
        )
        .expect("well formed");
        assert_eq!(
            cut.pieces,
            vec![
                Piece::Literal("a".into()),
                Piece::Raw(0),
                Piece::Literal("b".into()),
                Piece::Escaped(1)
            ]
        );
        assert_eq!(
            cut.fill(&["<x>", "<y>"], &[None, Some("&lt;y&gt;".into())]),
            "a<x>b&lt;y&gt;"
        );
        assert!(Pieces::cut("a\u{E000}x\u{E001}", true, any).is_none());
        assert!(Pieces::cut("a\u{E001}", true, any).is_none());
        assert!(Pieces::cut("\u{E002}\u{E000}0\u{E001}\u{E003}", false, any).is_none());
        assert!(Pieces::cut("\u{E000}0\u{E001}", false, |_| false).is_none());
    }
}
