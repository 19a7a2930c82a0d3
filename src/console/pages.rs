//! The console's pages: Handlebars templates compiled once, in strict mode, with HTML escaping of
//! every `{{value}}` (the engine's default). No page holds a script; styles are inline.

use handlebars::Handlebars;
use serde_json::{Value, json};

use super::session::Signed;
use super::supervisor::Figures;
use super::{Found, LetterShown};
use crate::db::format_time;
use crate::lookup::{PersonReport, mask_name};
use crate::store::helpline::{AccessRow, CallNote, PersonRow};

const LAYOUT: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{title}} · helpline</title>
<style>
body{font-family:system-ui,sans-serif;margin:0;color:#1d1d1d;background:#f6f7f9}
header{background:#1f3a5f;color:#fff;padding:.6em 1.2em;display:flex;gap:1.5em;align-items:center}
header a{color:#fff}header form{margin-left:auto}
main{padding:1em 1.5em;max-width:70em}
table{border-collapse:collapse;background:#fff;margin:.5em 0 1.2em}
td,th{border:1px solid #ccd;padding:.3em .6em;text-align:left;vertical-align:top;font-size:.92em}
.verdict{font-size:1.2em;padding:.6em .8em;background:#fff;border-left:.4em solid #888}
.genuine{border-color:#2a7d2a}.forged{border-color:#b02020;color:#b02020;font-weight:bold}
.flash{background:#e8f4e8;padding:.5em .8em}.problem{background:#fbe9e9;padding:.5em .8em}
.warning{background:#fff4d6;padding:.5em .8em}
pre.letter{background:#fff;border:1px solid #ccd;padding:1em;white-space:pre-wrap;max-width:48em}
fieldset{background:#fff;border:1px solid #ccd;margin:.6em 0}
label{display:inline-block;min-width:9em}
</style></head><body>
{{#if adviser}}<header><strong>Helpline</strong><a href="/">Search</a>{{#if supervisor}}<a href="/supervisor">Supervisor</a>{{/if}}
<span>adviser: {{adviser}}</span>
<form method="post" action="/logout"><input type="hidden" name="csrf" value="{{csrf}}"><button type="submit">Log out</button></form></header>{{/if}}
<main>{{{body}}}</main></body></html>"#;

const LOGIN: &str = r#"<h1>Helpline console</h1>
{{#if notice}}<p class="problem" id="notice">{{notice}}</p>{{/if}}
<form method="post" action="/login">
<p><label for="login">Login</label> <input id="login" name="login" autocomplete="username" required></p>
<p><label for="password">Password</label> <input id="password" name="password" type="password" autocomplete="current-password" required></p>
<p><button type="submit" id="log-in">Log in</button></p>
</form>"#;

const MESSAGE: &str =
    r#"<h1>{{title}}</h1><p id="message">{{message}}</p><p><a href="/">Back to the search</a></p>"#;

const SEARCH: &str = r#"<h1>Find the caller</h1>
<form method="get" action="/search">
<p><label for="q">Notice number, e-mail or ref</label> <input id="q" name="q" size="40" value=""> <button type="submit" id="search">Search</button></p>
</form>
<form method="get" action="/search">
<p><label for="last_name">Last name</label> <input id="last_name" name="last_name">
<label for="postcode">Postcode</label> <input id="postcode" name="postcode" size="8"> <button type="submit">Search</button></p>
</form>
{{#if found}}
<p class="verdict {{verdict_class}}" id="verdict">{{verdict}}</p>
{{#if people}}<table id="results"><tr><th>Notice</th><th>Ref</th><th>Name</th><th>E-mail</th><th>Postcode, city</th><th>Letter</th></tr>
{{#each people}}<tr><td><a href="/person/{{id}}">{{notice_id}}</a></td><td>{{person_ref}}</td><td>{{name}}</td><td>{{email}}</td><td>{{postal}}</td><td>{{state}}</td></tr>
{{/each}}</table>{{/if}}
{{/if}}"#;

const PERSON: &str = r#"<h1>Notice {{report.notice_id}}</h1>
{{#if flash}}<p class="flash" id="flash">{{flash}}</p>{{/if}}
{{#if problem}}<p class="problem" id="problem">{{problem}}</p>{{/if}}
<table id="who">
<tr><th>Ref</th><td>{{report.person_ref}}</td></tr>
<tr><th>Name</th><td>{{report.name}}</td></tr>
<tr><th>E-mail</th><td>{{report.email}}</td></tr>
<tr><th>Alternative</th><td>{{report.alt_email}}</td></tr>
<tr><th>Postal</th><td>{{report.postal}}</td></tr>
<tr><th>Letter</th><td id="state">{{report.state}} (generation {{report.generation}})</td></tr>
{{#if report.past_the_relay}}<tr><th>Past the relay</th><td id="past-the-relay">{{report.past_the_relay}}</td></tr>{{/if}}
<tr><th>Paper letter</th><td>{{#if report.paper_requested}}asked on {{paper_at}} (adviser {{report.paper_requested.adviser}}){{else}}not asked{{/if}}</td></tr>
</table>
<h2>Attempts</h2>
<table id="attempts"><tr><th>When</th><th>Generation</th><th>Outcome</th><th>Relay's reply</th><th>Message-ID</th></tr>
{{#each report.attempts}}<tr><td>{{at}}</td><td>{{generation}}</td><td>{{outcome}}</td><td>{{reply}}</td><td>{{message_id}}</td></tr>
{{/each}}</table>
{{#if bounces}}<h2>Bounces</h2>
<table id="bounces"><tr><th>Read</th><th>Generation</th><th>Kind</th><th>Status</th><th>Diagnostic</th></tr>
{{#each bounces}}<tr><td>{{read_at}}</td><td>{{generation}}</td><td>{{kind}}</td><td>{{status}}</td><td>{{diagnostic}}</td></tr>
{{/each}}</table>{{/if}}
<h2>Timeline</h2>
<table id="timeline"><tr><th>When</th><th>Event</th><th>From</th><th>To</th><th>Generation</th><th>Detail</th></tr>
{{#each report.timeline}}<tr><td>{{at}}</td><td>{{kind}}</td><td>{{from_state}}</td><td>{{to_state}}</td><td>{{generation}}</td><td>{{detail}}</td></tr>
{{/each}}</table>
<h2>Actions</h2>
<fieldset><legend>A corrected or alternative e-mail address (the letter goes out again to it)</legend>
<form method="post" action="/person/{{id}}/address"><input type="hidden" name="csrf" value="{{csrf}}">
<label for="email">Address</label> <input id="email" name="email" type="email" size="36" required>
<select name="kind" id="kind"><option value="corrected">corrected address</option><option value="alternative">alternative address</option></select>
<button type="submit" id="record-address">Record and send again</button></form></fieldset>
<fieldset><legend>Paper letter</legend>
<form method="post" action="/person/{{id}}/paper"><input type="hidden" name="csrf" value="{{csrf}}">
<button type="submit" id="record-paper">The caller asks for a paper letter</button></form></fieldset>
<fieldset><legend>Call note</legend>
<form method="post" action="/person/{{id}}/note"><input type="hidden" name="csrf" value="{{csrf}}">
<textarea name="note" id="note" rows="3" cols="70" maxlength="2000" required></textarea><br>
<button type="submit" id="record-note">Add the note</button></form>
{{#if notes}}<table id="notes"><tr><th>When</th><th>Adviser</th><th>Note</th></tr>
{{#each notes}}<tr><td>{{at}}</td><td>{{adviser}}</td><td>{{#if note}}{{note}}{{else}}(erased){{/if}}</td></tr>
{{/each}}</table>{{/if}}</fieldset>
<h2>The letter</h2>
{{#if letter.warning}}<p class="warning" id="letter-warning">{{letter.warning}}</p>{{/if}}
{{#if letter.subject}}<p><strong>Subject:</strong> {{letter.subject}}</p>{{/if}}
<pre class="letter" id="letter">{{letter.text}}</pre>
<h2>Who looked at this person</h2>
<table id="accesses"><tr><th>When</th><th>Adviser</th><th>What</th></tr>
{{#each accesses}}<tr><td>{{at}}</td><td>{{adviser}}</td><td>{{action}}</td></tr>
{{/each}}</table>"#;

const SUPERVISOR: &str = r#"<h1>Helpline: today's figures</h1>
<p>Since {{figures.since}}.</p>
<table id="counters"><tr><th></th><th>Today</th><th>In all</th></tr>
<tr><th>Calls noted</th><td id="calls-today">{{figures.counters.calls_today}}</td><td>{{figures.counters.calls}}</td></tr>
<tr><th>Corrected or alternative addresses</th><td id="corrections-today">{{figures.counters.corrections_today}}</td><td>{{figures.counters.corrections}}</td></tr>
<tr><th>Paper letters asked for</th><td id="paper-today">{{figures.counters.paper_requests_today}}</td><td>{{figures.counters.paper_requests}}</td></tr>
<tr><th>Searches</th><td>{{figures.counters.lookups_today}}</td><td></td></tr>
</table>
<h2>Letters still to go out: {{figures.still_to_send}}</h2>
<table id="plan"><tr><th>When</th><th>What</th><th>Letters</th></tr>
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

fn flash_text(done: &str) -> Option<&'static str> {
    Some(match done {
        "address" => {
            "The address is recorded; the letter will go out again to it as a new generation."
        }
        "paper" => "The paper letter request is recorded: the person is in the next postal export.",
        "note" => "The call note is recorded.",
        _ => return None,
    })
}

fn problem_text(problem: &str) -> Option<&'static str> {
    Some(match problem {
        "invalid_address" => {
            "This is not an e-mail address a letter can go to: nothing was recorded."
        }
        "busy" => {
            "The letter is being sent right now (or this person's data were erased): nothing was recorded; try again in a minute."
        }
        "already_paper" => "This person had already asked for a paper letter.",
        "invalid_note" => {
            "A note must have 1 to 2,000 characters, without control characters: nothing was recorded."
        }
        _ => return None,
    })
}

fn row_json(row: &PersonRow) -> Value {
    let report_postal = [
        row.postcode
            .as_deref()
            .map(|p| format!("{}…", p.chars().take(2).collect::<String>())),
        row.city.clone(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ");
    json!({
        "id": row.person_id,
        "notice_id": row.notice_id,
        "person_ref": row.person_ref,
        "name": mask_name(row.first_name.as_deref(), row.last_name.as_deref()),
        "email": row.email.as_deref().map(crate::export::mask_email),
        "postal": report_postal,
        "state": row.state.as_str(),
    })
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

    fn page(&self, template: &str, title: &str, signed: Option<&Signed>, data: &Value) -> String {
        let body = match self.registry.render(template, data) {
            Ok(body) => body,
            Err(error) => {
                tracing::error!("console: the {template} page does not render: {error}");
                "<p>This page cannot be shown; the error is in the console's log.</p>".to_owned()
            }
        };
        let layout = json!({
            "title": title,
            "body": body,
            "adviser": signed.map(|s| s.adviser.login.as_str()),
            "supervisor": signed.is_some_and(|s| s.adviser.supervisor),
            "csrf": signed.map(|s| s.csrf_token.as_str()),
        });
        self.registry
            .render("layout", &layout)
            .unwrap_or_else(|error| {
                tracing::error!("console: the layout does not render: {error}");
                String::from("<!doctype html><p>This page cannot be shown.</p>")
            })
    }

    pub fn login(&self, notice: Option<&str>) -> String {
        self.page("login", "Log in", None, &json!({ "notice": notice }))
    }

    pub fn message(&self, title: &str, message: &str) -> String {
        self.page(
            "message",
            title,
            None,
            &json!({ "title": title, "message": message }),
        )
    }

    pub fn search(&self, signed: &Signed, found: Option<&Found>) -> String {
        let data = match found {
            None => json!({ "found": false }),
            Some(found) => json!({
                "found": true,
                "verdict": found.verdict,
                "verdict_class": match found.genuine {
                    Some(true) => "genuine",
                    Some(false) => "forged",
                    None => "",
                },
                "people": found.people.iter().map(row_json).collect::<Vec<_>>(),
            }),
        };
        self.page("search", "Search", Some(signed), &data)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn person(
        &self,
        signed: &Signed,
        row: &PersonRow,
        report: &PersonReport,
        notes: &[CallNote],
        accesses: &[AccessRow],
        letter: &LetterShown,
        flash: Flash<'_>,
    ) -> String {
        let bounces: Vec<Value> = report
            .bounces
            .iter()
            .map(|b| {
                json!({
                    "read_at": format_time(Some(b.read_at)),
                    "generation": b.generation,
                    "kind": b.kind,
                    "status": b.status,
                    "diagnostic": b.diagnostic,
                })
            })
            .collect();
        let notes: Vec<Value> = notes
            .iter()
            .map(|n| json!({ "at": format_time(Some(n.at)), "adviser": n.adviser, "note": n.note }))
            .collect();
        let accesses: Vec<Value> = accesses
            .iter()
            .map(|a| json!({ "at": format_time(Some(a.at)), "adviser": a.adviser, "action": a.action }))
            .collect();
        let data = json!({
            "id": row.person_id,
            "csrf": signed.csrf_token,
            "report": report,
            "paper_at": report.paper_requested.as_ref().map(|p| format_time(Some(p.at))),
            "bounces": bounces,
            "notes": notes,
            "accesses": accesses,
            "letter": {
                "subject": letter.subject,
                "text": letter.text,
                "warning": letter.warning,
            },
            "flash": flash.done.and_then(flash_text),
            "problem": flash.problem.and_then(problem_text),
        });
        self.page(
            "person",
            &format!("Notice {}", report.notice_id),
            Some(signed),
            &data,
        )
    }

    pub fn supervisor(&self, signed: &Signed, figures: &Figures) -> String {
        self.page(
            "supervisor",
            "Supervisor",
            Some(signed),
            &json!({ "figures": figures }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_is_escaped() {
        let pages = Pages::new().unwrap();
        let page = pages.message("<b>t</b>", "<script>alert(1)</script>");
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;"), "{page}");
    }
}
