//! The console's pages: Handlebars templates compiled once, with HTML escaping of every
//! `{{value}}` (the engine's default). No page holds a script; styles are inline. Every fixed
//! word comes from `helpline_text::Labels` (`t.…` in the templates), in the campaign's language;
//! the sentences of refusals and of the actions' outcomes are in [`words`].

use handlebars::Handlebars;
use serde_json::{Value, json};

use super::session::Signed;
use super::supervisor::Figures;
use super::{Found, LetterShown, Typed};
use crate::helpline_text::{Language, Voice};
use crate::lookup::{PersonReport, VerdictKind};
use crate::store::helpline::{AccessRow, CallNote};

const LAYOUT: &str = r#"<!doctype html>
<html lang="{{t.lang}}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{title}} · {{t.helpline}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:0;color:#1d1d1d;background:#f6f7f9}
header{background:#1f3a5f;color:#fff;padding:.6em 1.2em;display:flex;gap:1.5em;align-items:center}
header a{color:#fff}header form{margin-left:auto}
nav.find{background:#e3e9f2;padding:.5em 1.2em;display:flex;flex-wrap:wrap;gap:1.2em;align-items:center}
nav.find input{padding:.25em}
main{padding:1em 1.5em;max-width:74em}
table{border-collapse:collapse;background:#fff;margin:.5em 0 1.2em}
td,th{border:1px solid #ccd;padding:.3em .6em;text-align:left;vertical-align:top;font-size:.92em}
.verdict{font-size:1.35em;font-weight:bold;padding:.7em 1em;border-left:.6em solid #888;background:#fff;margin:.6em 0 .3em}
.genuine{background:#e5f3e5;border-color:#2a7d2a;color:#17501a}
.forged{background:#fbe6e6;border-color:#b02020;color:#8c1616}
.caution{background:#fff1d0;border-color:#b07a00;color:#5e4000}
.script{background:#fff;border:1px solid #ccd;padding:.6em 1em;margin:0 0 1em;font-size:1.05em}
.boxes{display:flex;flex-wrap:wrap;gap:1em;margin:.5em 0 1em}
.box{background:#fff;border:1px solid #ccd;padding:.4em 1em;flex:1 1 24em}
.box h2{font-size:1.1em;margin:.4em 0}
.box.next{border:2px dashed #b07a00}
.flash{background:#e8f4e8;padding:.5em .8em}.problem{background:#fbe9e9;padding:.5em .8em}
.warning{background:#fff4d6;padding:.5em .8em}
.alert{background:#b02020;color:#fff;font-weight:bold;padding:.6em 1em}
.over{color:#b02020;font-weight:bold}
pre.letter{background:#fff;border:1px solid #ccd;padding:1em;white-space:pre-wrap;max-width:48em}
fieldset{background:#fff;border:1px solid #ccd;margin:.6em 0}
label{display:inline-block;min-width:9em}
</style></head><body>
{{#if adviser}}<header><strong>{{t.helpline}}</strong><a href="/">{{t.search}}</a>{{#if supervisor}}<a href="/supervisor">{{t.supervisor}}</a>{{/if}}
<span>{{t.adviser}} {{adviser}}</span>
<form method="post" action="/logout"><input type="hidden" name="csrf" value="{{csrf}}"><button type="submit">{{t.log_out}}</button></form></header>
<nav class="find">
<form method="get" action="/search"><label for="q">{{t.query_label}}</label> <input id="q" name="q" size="30" value="{{typed.q}}"> <button type="submit" id="search">{{t.search}}</button></form>
<form method="get" action="/search"><input id="last_name" name="last_name" placeholder="{{t.last_name}}" aria-label="{{t.last_name}}" value="{{typed.last_name}}">
<input id="postcode" name="postcode" size="8" placeholder="{{t.postcode}}" aria-label="{{t.postcode}}" value="{{typed.postcode}}">
<input id="first_name" name="first_name" size="12" placeholder="{{t.first_name}} ({{t.optional}})" aria-label="{{t.first_name}}" value="{{typed.first_name}}">
<button type="submit" id="search-name">{{t.search}}</button></form></nav>{{/if}}
<main>{{{body}}}</main></body></html>"#;

const LOGIN: &str = r#"<h1>{{t.console_title}}</h1>
{{#if notice}}<p class="problem" id="notice">{{notice}}</p>{{/if}}
{{#if password_login}}<form method="post" action="/login">
<p><label for="login">{{t.login}}</label> <input id="login" name="login" autocomplete="username" value="{{login}}" required></p>
<p><label for="password">{{t.password}}</label> <input id="password" name="password" type="password" autocomplete="current-password" required{{#if login}} autofocus{{/if}}></p>
<p><button type="submit" id="log-in">{{t.log_in}}</button></p>
</form>{{/if}}"#;

const MESSAGE: &str =
    r#"<h1>{{title}}</h1><p id="message">{{message}}</p><p><a href="/">{{t.back}}</a></p>"#;

const SEARCH: &str = r#"<h1>{{t.find_caller}}</h1>
{{#if found}}
<div class="verdict {{verdict_class}}" id="verdict">{{verdict}}</div>
{{#if script}}<div class="script" id="script"><strong>{{t.what_to_say}}</strong><br>{{script}}</div>{{/if}}
{{#if rows}}<table id="results"><tr><th>{{t.notice}}</th><th>{{t.name}}</th><th>{{t.email}}</th><th>{{t.postcode}}</th><th>{{t.city}}</th><th>{{t.letter}}</th>{{#if with_sent}}<th>{{t.what_to_say}}</th>{{/if}}</tr>
{{#each rows}}<tr><td><a href="/person/{{id}}{{../back}}">{{notice_id}}</a></td><td>{{name}}</td><td>{{email}}</td><td>{{postcode}}</td><td>{{city}}</td><td>{{state}}</td>{{#if ../with_sent}}<td>{{sent}}</td>{{/if}}</tr>
{{/each}}</table>{{/if}}
{{/if}}"#;

const PERSON: &str = r#"<h1>{{t.notice}} {{report.notice_id}}</h1>
{{#if flash}}<p class="flash" id="flash">{{flash}}</p>{{/if}}
{{#if problem}}<p class="problem" id="problem">{{problem}}</p>{{/if}}
<div class="verdict {{verdict_class}}" id="verdict">{{report.verdict.text}}</div>
<div class="script" id="script"><strong>{{t.what_to_say}}</strong><br>{{report.verdict.script}}</div>
<div class="boxes">
<section class="box" id="as-sent"><h2>{{t.letter_as_sent}}</h2>
{{#if report.letter_as_sent}}<p id="as-sent-summary">{{t.generation}} {{report.letter_as_sent.generation}} · {{t.by_email}} · {{t.sent_on}} {{report.letter_as_sent.at_local}} · {{t.to}} {{report.letter_as_sent.to}}</p>
{{#with as_sent}}<details id="as-sent-letter"><summary>{{../t.see_letter}}</summary>
{{#if warning}}<p class="warning">{{warning}}</p>{{/if}}
<p><strong>{{../t.subject}}</strong> — {{subject}}</p><pre class="letter" id="letter">{{text}}</pre></details>{{/with}}
{{else}}<p id="as-sent-summary">{{t.nothing_sent}}</p>{{/if}}
<p>{{t.paper_letter}} — {{#if report.paper_exported_local}}{{t.paper_exported}} {{report.paper_exported_local}}{{else}}{{t.paper_not_exported}}{{/if}}{{#if report.paper_requested}} · {{t.paper_asked}} {{paper_at}} ({{report.paper_requested.adviser}}){{/if}}</p>
{{#unless report.next_letter}}{{#with next}}<details id="paper-letter"><summary>{{../t.letter_text}}</summary>
{{#if warning}}<p class="warning">{{warning}}</p>{{/if}}<pre class="letter" id="letter">{{text}}</pre></details>{{/with}}{{/unless}}
</section>
{{#if report.next_letter}}<section class="box next" id="next-letter"><h2>{{t.next_letter}}</h2>
<p>{{t.next_letter_note}}</p>
<p id="next-summary">{{t.generation}} {{report.next_letter.generation}} · {{t.to}} {{report.next_letter.to}} · {{report.next_letter.state_words}}</p>
{{#with next}}<details id="next-letter-text"><summary>{{../t.see_letter}}</summary>
{{#if warning}}<p class="warning">{{warning}}</p>{{/if}}
<p><strong>{{../t.subject}}</strong> — {{subject}}</p><pre class="letter" id="next-letter-body">{{text}}</pre></details>{{/with}}
</section>{{/if}}
</div>
<p>{{#if revealed}}<strong id="revealed">{{t.revealed}}</strong>{{else}}{{t.letter_masked}} <a id="reveal" href="/person/{{id}}?reveal=1{{#if back_amp}}&amp;{{back_amp}}{{/if}}">{{t.reveal}}</a>{{/if}}</p>
<table id="who">
<tr><th>{{t.reference}}</th><td>{{report.person_ref}}</td></tr>
<tr><th>{{t.name}}</th><td>{{report.name}}</td></tr>
<tr><th>{{t.email}}</th><td>{{report.email}}</td></tr>
<tr><th>{{t.alt_email}}</th><td>{{report.alt_email}}</td></tr>
<tr><th>{{t.postal}}</th><td>{{report.postal}}</td></tr>
<tr><th>{{t.letter}}</th><td id="state">{{report.state_words}} ({{t.generation}} {{report.generation}})</td></tr>
</table>
<h2>{{t.actions}}</h2>
<fieldset><legend>{{t.new_address}}</legend>
<form method="post" action="/person/{{id}}/address"><input type="hidden" name="csrf" value="{{csrf}}">
<label for="email">{{t.address}}</label> <input id="email" name="email" type="email" size="36" required>
<select name="kind" id="kind"><option value="corrected">{{t.corrected}}</option><option value="alternative">{{t.alternative}}</option></select>
<button type="submit" id="record-address">{{t.record_and_send}}</button></form></fieldset>
<fieldset><legend>{{t.paper_letter}}</legend>
<form method="post" action="/person/{{id}}/paper"><input type="hidden" name="csrf" value="{{csrf}}">
<button type="submit" id="record-paper">{{t.ask_paper}}</button></form></fieldset>
<fieldset><legend>{{t.call_note}}</legend>
<form method="post" action="/person/{{id}}/note"><input type="hidden" name="csrf" value="{{csrf}}">
<textarea name="note" id="note" rows="3" cols="70" maxlength="2000" required></textarea><br>
<button type="submit" id="record-note">{{t.add_note}}</button></form>
{{#if notes}}<table id="notes"><tr><th>{{t.when}}</th><th>{{t.adviser_heading}}</th><th>{{t.call_note}}</th></tr>
{{#each notes}}<tr><td>{{at}}</td><td>{{adviser}}</td><td>{{#if note}}{{note}}{{else}}{{../t.erased}}{{/if}}</td></tr>
{{/each}}</table>{{/if}}</fieldset>
<h2>{{t.attempts}}</h2>
<table id="attempts"><tr><th>{{t.when}}</th><th>{{t.generation}}</th><th>{{t.outcome}}</th><th>{{t.relay_reply}}</th><th>Message-ID</th></tr>
{{#each attempts}}<tr><td>{{at}}</td><td>{{generation}}</td><td>{{outcome}}</td><td>{{reply}}</td><td>{{message_id}}</td></tr>
{{/each}}</table>
{{#if bounces}}<h2>{{t.bounces}}</h2>
<table id="bounces"><tr><th>{{t.read}}</th><th>{{t.generation}}</th><th>{{t.kind}}</th><th>{{t.status}}</th><th>{{t.diagnostic}}</th></tr>
{{#each bounces}}<tr><td>{{read_at}}</td><td>{{generation}}</td><td>{{kind}}</td><td>{{status}}</td><td>{{diagnostic}}</td></tr>
{{/each}}</table>{{/if}}
<h2>{{t.timeline}}</h2>
<table id="timeline"><tr><th>{{t.when}}</th><th>{{t.event}}</th><th>{{t.generation}}</th><th>{{t.detail}}</th></tr>
{{#each timeline}}<tr><td>{{at}}</td><td>{{kind}}</td><td>{{generation}}</td><td>{{detail}}</td></tr>
{{/each}}</table>
<h2>{{t.who_looked}}</h2>
<table id="accesses"><tr><th>{{t.when}}</th><th>{{t.adviser_heading}}</th><th>{{t.what}}</th></tr>
{{#each accesses}}<tr><td>{{at}}</td><td>{{adviser}}</td><td>{{action}}</td></tr>
{{/each}}</table>"#;

const SUPERVISOR: &str = r#"<h1>{{t.todays_figures}}</h1>
<p>{{t.since}} {{figures.since}}.</p>
{{#if figures.not_ours_alert}}<p class="alert" id="not-ours-alert">{{t.not_ours_alert}}</p>{{/if}}
<table id="counters"><tr><th></th><th>{{t.today}}</th><th>{{t.in_all}}</th></tr>
<tr><th>{{t.calls_noted}}</th><td id="calls-today">{{figures.counters.calls_today}}</td><td>{{figures.counters.calls}}</td></tr>
<tr><th>{{t.corrections}}</th><td id="corrections-today">{{figures.counters.corrections_today}}</td><td>{{figures.counters.corrections}}</td></tr>
<tr><th>{{t.paper_requests}}</th><td id="paper-today">{{figures.counters.paper_requests_today}}</td><td>{{figures.counters.paper_requests}}</td></tr>
<tr><th>{{t.searches}}</th><td>{{figures.counters.lookups_today}}</td><td></td></tr>
</table>
<h2>{{t.per_adviser}}</h2>
<table id="advisers"><tr><th>{{t.adviser_heading}}</th><th>{{t.calls_noted}}</th><th>{{t.corrections}}</th><th>{{t.paper_requests}}</th><th>{{t.person_views}}</th><th>{{t.views_worst_hour}} (max {{cap}})</th><th>{{t.views_refused}}</th></tr>
{{#each figures.advisers}}<tr id="adviser-{{adviser}}"{{#if over_cap}} class="over"{{/if}}><td>{{adviser}}</td><td>{{calls}}</td><td>{{corrections}}</td><td>{{paper_requests}}</td><td>{{views}}</td><td>{{views_worst_hour}}</td><td>{{views_refused}}{{#if over_cap}} ({{../t.over_cap}}){{/if}}</td></tr>
{{/each}}</table>
<h2>{{t.not_ours_per_hour}}</h2>
<table id="not-ours"><tr><th>{{t.hour}}</th><th>{{t.not_ours_lookups}}</th></tr>
{{#each figures.not_ours}}<tr><td>{{hour}}</td><td>{{count}}</td></tr>
{{/each}}</table>
<h2>{{t.bounces_today}}</h2>
<table id="bounces-today"><tr><th>{{t.hard}}</th><td id="bounces-hard">{{figures.bounces_hard}}</td></tr>
<tr><th>{{t.soft}}</th><td id="bounces-soft">{{figures.bounces_soft}}</td></tr></table>
<h2>{{t.at_relay}}</h2>
<table id="at-relay"><tr><th>{{t.being_sent_now}}</th><td id="being-sent">{{figures.being_sent}}</td></tr>
<tr><th>{{t.delayed_retry}}</th><td id="deferred">{{figures.deferred}}</td></tr></table>
<h2>{{t.todays_calls}}</h2>
{{#if figures.calls}}<table id="calls"><tr><th>{{t.when}}</th><th>{{t.adviser_heading}}</th><th>{{t.what}}</th><th>{{t.notice}}</th></tr>
{{#each figures.calls}}<tr><td>{{at}}</td><td>{{adviser}}</td><td>{{what}}</td><td><a href="/person/{{person_id}}">{{notice_id}}</a></td></tr>
{{/each}}</table>{{else}}<p id="calls">{{t.no_calls}}</p>{{/if}}
<h2>{{t.still_to_send}} — {{figures.still_to_send}}</h2>
<table id="plan"><tr><th>{{t.when}}</th><th>{{t.what}}</th><th>{{t.letters}}</th></tr>
{{#each figures.plan}}<tr><td>{{when}}</td><td>{{what}}</td><td>{{letters}}</td></tr>
{{/each}}</table>"#;

/// The compiled templates.
pub struct Pages {
    registry: Handlebars<'static>,
}

/// What the page says after an action.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flash<'a> {
    pub done: Option<&'a str>,
    pub problem: Option<&'a str>,
}

/// Everything the person's page shows besides the adviser's session.
pub struct PersonView<'a> {
    pub report: &'a PersonReport,
    pub notes: &'a [CallNote],
    pub accesses: &'a [AccessRow],
    /// The letter as sent, rendered again; None when no e-mail went out.
    pub as_sent: Option<&'a LetterShown>,
    /// The next letter (or, when none is pending and none was sent, the letter as it would be
    /// printed).
    pub next: Option<&'a LetterShown>,
    pub revealed: bool,
    pub typed: &'a Typed,
}

/// A refusal's title and message, or an action's outcome (title empty), in the language.
pub fn words(language: Language, key: &str) -> (&'static str, &'static str) {
    let fr = language == Language::Fr;
    let pick = |fr_words: (&'static str, &'static str), en_words: (&'static str, &'static str)| {
        if fr { fr_words } else { en_words }
    };
    match key {
        "bad_request" => pick(
            (
                "Demande incomprise",
                "Cette adresse ou ce formulaire n'est pas l'une des pages de la console : revenez à la recherche.",
            ),
            (
                "Not understood",
                "This address or form is not one of the console's pages: go back to the search.",
            ),
        ),
        "internal" => pick(
            (
                "Un problème est survenu",
                "La console n'a pas pu répondre ; l'erreur est dans son journal. Réessayez, ou prévenez l'opérateur.",
            ),
            (
                "Something went wrong",
                "The console could not answer; the error is in its log. Try again, or tell the operator.",
            ),
        ),
        "not_found" => pick(
            ("Introuvable", "Cette page n'existe pas."),
            ("Not found", "No such page."),
        ),
        "no_such_person" => pick(
            ("Introuvable", "Cette personne n'existe pas."),
            ("Not found", "No such person."),
        ),
        "too_many_searches" => pick(
            (
                "Trop de recherches",
                "Vous avez fait beaucoup de recherches en peu de temps : attendez une minute avant la suivante.",
            ),
            (
                "Too many searches",
                "You have made many searches in a short time: wait a minute before the next one.",
            ),
        ),
        "too_many_views" => pick(
            (
                "Trop de fiches ouvertes",
                "Vous avez ouvert le nombre maximal de fiches de personnes pour une heure. Cette limite protège les données de tous ; votre superviseur la voit. Terminez l'appel en cours avec ce que vous avez déjà, ou attendez un peu.",
            ),
            (
                "Too many person pages",
                "You have opened the most person pages allowed in an hour. The limit protects everyone's data; your supervisor sees it. Finish the call with what you already have, or wait a little.",
            ),
        ),
        "supervisors_only" => pick(
            (
                "Réservé aux superviseurs",
                "Cette page est pour les superviseurs de l'assistance.",
            ),
            (
                "Supervisors only",
                "This page is for the helpline's supervisors.",
            ),
        ),
        "csrf" => pick(
            (
                "Refusé",
                "Ce formulaire ne vient pas de cette console, ou il est trop ancien : revenez en arrière, rechargez la page et réessayez.",
            ),
            (
                "Refused",
                "This form did not come from this console, or it is too old: go back, reload the page and try again.",
            ),
        ),
        "unknown_adviser" => pick(
            (
                "Conseiller inconnu",
                "Le proxy désigne un conseiller sans compte actif ici : demandez à l'opérateur.",
            ),
            (
                "Unknown adviser",
                "The proxy names an adviser who has no enabled account here: ask the operator.",
            ),
        ),
        "search_hint" => pick(
            (
                "",
                "tapez un numéro d'avis, une adresse électronique ou une référence ; ou un nom et un code postal",
            ),
            (
                "",
                "type a notice number, an e-mail address or a ref; or a last name and a postcode",
            ),
        ),
        "expired" => pick(
            ("", "Votre session a expiré : reconnectez-vous."),
            ("", "Your session has expired: log in again."),
        ),
        "wrong_password" => pick(
            ("", "Identifiant ou mot de passe incorrect."),
            ("", "Wrong login or password."),
        ),
        "slow_down" => pick(
            (
                "",
                "Trop de mots de passe erronés pour cet identifiant ou depuis ce poste : attendez quelques secondes (30 au plus) et réessayez.",
            ),
            (
                "",
                "Too many wrong passwords for this login or from this computer: wait a few seconds (30 at most) and try again.",
            ),
        ),
        "no_password_login" => pick(
            (
                "",
                "La connexion par mot de passe est fermée : la console est jointe par le réseau sans HTTPS. Passez par le portail d'authentification de votre organisation.",
            ),
            (
                "",
                "Password login is off: the console is reached over the network without HTTPS. Go through your organisation's sign-in portal.",
            ),
        ),
        "letters_missing" => pick(
            (
                "",
                "Les modèles de messages ne se chargent pas, le message ne peut être affiché",
            ),
            (
                "",
                "The letters cannot be loaded, so the letter cannot be shown",
            ),
        ),
        "letters_changed" => pick(
            (
                "",
                "Les modèles ont changé depuis cet envoi : le texte ci-dessous est la formulation d'aujourd'hui, pas forcément celle reçue",
            ),
            (
                "",
                "The letters were changed after this one was sent: the text below is today's wording, not necessarily what the person received",
            ),
        ),
        "letter_fails" => pick(
            ("", "Le message ne peut pas être produit"),
            ("", "The letter cannot be rendered"),
        ),
        "address" => pick(
            (
                "",
                "L'adresse est enregistrée ; le message repartira vers elle (nouvelle génération).",
            ),
            (
                "",
                "The address is recorded; the letter will go out again to it as a new generation.",
            ),
        ),
        "paper" => pick(
            (
                "",
                "La demande de courrier papier est enregistrée : la personne sera dans le prochain export postal.",
            ),
            (
                "",
                "The paper letter request is recorded: the person is in the next postal export.",
            ),
        ),
        "note" => pick(
            ("", "La note d'appel est enregistrée."),
            ("", "The call note is recorded."),
        ),
        "invalid_address" => pick(
            (
                "",
                "Ce n'est pas une adresse électronique à laquelle envoyer un message : rien n'a été enregistré.",
            ),
            (
                "",
                "This is not an e-mail address a letter can go to: nothing was recorded.",
            ),
        ),
        "busy" => pick(
            (
                "",
                "Le message est en cours d'envoi (ou les données de la personne ont été effacées) : rien n'a été enregistré ; réessayez dans une minute.",
            ),
            (
                "",
                "The letter is being sent right now (or this person's data were erased): nothing was recorded; try again in a minute.",
            ),
        ),
        "already_paper" => pick(
            ("", "Cette personne avait déjà demandé un courrier papier."),
            ("", "This person had already asked for a paper letter."),
        ),
        "invalid_note" => pick(
            (
                "",
                "Une note doit avoir de 1 à 2 000 caractères, sans caractère de contrôle : rien n'a été enregistré.",
            ),
            (
                "",
                "A note must have 1 to 2,000 characters, without control characters: nothing was recorded.",
            ),
        ),
        _ => ("", ""),
    }
}

/// The colour of a verdict: as prominent for genuine as for not ours.
fn verdict_class(kind: Option<VerdictKind>) -> &'static str {
    match kind {
        Some(VerdictKind::Genuine | VerdictKind::BeingSent) => "genuine",
        Some(VerdictKind::NotOurs) => "forged",
        Some(VerdictKind::OursNoEmail | VerdictKind::NotFound) => "caution",
        Some(VerdictKind::Found) | None => "",
    }
}

fn known(language: Language, key: Option<&str>) -> Option<&'static str> {
    key.map(|key| words(language, key).1)
        .filter(|m| !m.is_empty())
}

impl Pages {
    pub fn new() -> anyhow::Result<Pages> {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(false);
        for (name, source) in [
            ("layout", LAYOUT),
            ("login", LOGIN),
            ("message", MESSAGE),
            ("search", SEARCH),
            ("person", PERSON),
            ("supervisor", SUPERVISOR),
        ] {
            registry
                .register_template_string(name, source)
                .map_err(|e| anyhow::anyhow!("while compiling the console's {name} page: {e}"))?;
        }
        Ok(Pages { registry })
    }

    fn page(
        &self,
        voice: &Voice,
        template: &str,
        title: &str,
        signed: Option<(&Signed, &Typed)>,
        data: &Value,
    ) -> String {
        let mut data = data.clone();
        if let Value::Object(map) = &mut data {
            map.insert("t".to_owned(), json!(voice.labels()));
        }
        let body = match self.registry.render(template, &data) {
            Ok(body) => body,
            Err(error) => {
                tracing::error!("console: the {template} page does not render: {error}");
                "<p>This page cannot be shown; the error is in the console's log.</p>".to_owned()
            }
        };
        let layout = json!({
            "t": voice.labels(),
            "title": title,
            "body": body,
            "adviser": signed.map(|(s, _)| s.adviser.login.as_str()),
            "supervisor": signed.is_some_and(|(s, _)| s.adviser.supervisor),
            "csrf": signed.map(|(s, _)| s.csrf_token.as_str()),
            "typed": signed.map(|(_, typed)| typed),
        });
        self.registry
            .render("layout", &layout)
            .unwrap_or_else(|error| {
                tracing::error!("console: the layout does not render: {error}");
                String::from("<!doctype html><p>This page cannot be shown.</p>")
            })
    }

    /// The login page; `login` is what was typed, kept after a wrong password.
    pub fn login(
        &self,
        voice: &Voice,
        notice: Option<&str>,
        login: &str,
        password_login: bool,
    ) -> String {
        self.page(
            voice,
            "login",
            voice.labels().log_in,
            None,
            &json!({
                "notice": known(voice.language, notice),
                "login": login,
                "password_login": password_login,
            }),
        )
    }

    pub fn message(&self, voice: &Voice, title: &str, message: &str) -> String {
        self.page(
            voice,
            "message",
            title,
            None,
            &json!({ "title": title, "message": message }),
        )
    }

    pub fn search(
        &self,
        voice: &Voice,
        signed: &Signed,
        typed: &Typed,
        found: Option<&Found>,
    ) -> String {
        let back = typed.query_string();
        let data = match found {
            None => json!({ "found": false }),
            Some(found) => json!({
                "found": true,
                "verdict": found.verdict,
                "script": found.script,
                "verdict_class": verdict_class(found.kind),
                "rows": found.rows,
                "with_sent": found.rows.iter().any(|r| r.sent.is_some()) && found.rows.len() > 1,
                "back": if back.is_empty() { String::new() } else { format!("?{back}") },
            }),
        };
        self.page(
            voice,
            "search",
            voice.labels().search,
            Some((signed, typed)),
            &data,
        )
    }

    pub fn person(
        &self,
        voice: &Voice,
        signed: &Signed,
        view: &PersonView<'_>,
        flash: Flash<'_>,
    ) -> String {
        let report = view.report;
        let bounces: Vec<Value> = report
            .bounces
            .iter()
            .map(|b| {
                json!({
                    "read_at": voice.time(b.read_at),
                    "generation": b.generation,
                    "kind": b.kind,
                    "status": b.status,
                    "diagnostic": b.diagnostic,
                })
            })
            .collect();
        let notes: Vec<Value> = view
            .notes
            .iter()
            .map(|n| json!({ "at": voice.time(n.at), "adviser": n.adviser, "note": n.note }))
            .collect();
        let accesses: Vec<Value> = view
            .accesses
            .iter()
            .map(|a| json!({ "at": voice.time(a.at), "adviser": a.adviser, "action": a.action }))
            .collect();
        let attempts: Vec<Value> = report
            .attempts
            .iter()
            .map(|a| {
                json!({
                    "at": voice.time(a.at_ms),
                    "generation": a.generation,
                    "outcome": voice.event(&a.outcome),
                    "reply": a.reply,
                    "message_id": a.message_id,
                })
            })
            .collect();
        let timeline: Vec<Value> = report
            .timeline
            .iter()
            .map(|step| {
                json!({
                    "at": voice.time(step.at_ms),
                    "kind": voice.event(&step.kind),
                    "generation": step.generation,
                    "detail": step.detail,
                })
            })
            .collect();
        let letter = |shown: Option<&LetterShown>| {
            shown.map(|l| json!({ "subject": l.subject, "text": l.text, "warning": l.warning }))
        };
        let data = json!({
            "id": report.person_id,
            "csrf": signed.csrf_token,
            "report": report,
            "verdict_class": verdict_class(Some(report.verdict.kind)),
            "paper_at": report.paper_requested.as_ref().map(|p| voice.time(p.at)),
            "attempts": attempts,
            "timeline": timeline,
            "bounces": bounces,
            "notes": notes,
            "accesses": accesses,
            "as_sent": letter(view.as_sent),
            "next": letter(view.next),
            "revealed": view.revealed,
            "back_amp": view.typed.query_string(),
            "flash": known(voice.language, flash.done),
            "problem": known(voice.language, flash.problem),
        });
        self.page(
            voice,
            "person",
            &format!("{} {}", voice.labels().notice, report.notice_id),
            Some((signed, view.typed)),
            &data,
        )
    }

    pub fn supervisor(
        &self,
        voice: &Voice,
        signed: &Signed,
        figures: &Figures,
        cap: u32,
    ) -> String {
        self.page(
            voice,
            "supervisor",
            voice.labels().supervisor,
            Some((signed, &Typed::default())),
            &json!({ "figures": figures, "cap": cap }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_is_escaped() {
        let pages = Pages::new().unwrap();
        let voice = Voice {
            language: Language::En,
            zone: chrono_tz::UTC,
        };
        let page = pages.message(&voice, "<b>t</b>", "<script>alert(1)</script>");
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;"), "{page}");
    }
}
