//! What the helpline says, in French and in English: the verdicts and the script an adviser reads
//! under each, the letter's states in an adviser's words, the console's labels, and times in the
//! campaign's time zone with the zone named. `lookup` and the console use the same sentences.
//!
//! The language is `console.language`, else `campaign.default_language`; French for `fr`,
//! English for anything else.

use chrono_tz::Tz;
use serde::Serialize;

use crate::config::Config;

/// The answer for a notice id nobody was sent, word for word wherever it is given.
pub const NOT_OURS: &str = "no notice with this number was sent: the message is not ours";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Fr,
    En,
}

impl Language {
    pub fn for_config(config: &Config) -> Language {
        let code = config
            .console
            .language
            .as_deref()
            .unwrap_or(&config.campaign.default_language);
        if code.eq_ignore_ascii_case("fr") {
            Language::Fr
        } else {
            Language::En
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Language::Fr => "fr",
            Language::En => "en",
        }
    }
}

/// How the helpline speaks: a language and a time zone.
#[derive(Debug, Clone, Copy)]
pub struct Voice {
    pub language: Language,
    pub zone: Tz,
}

impl Voice {
    /// The console's language, and the schedule's time zone (UTC without a `[schedule]`).
    pub fn for_config(config: &Config) -> Voice {
        Voice {
            language: Language::for_config(config),
            zone: config
                .schedule
                .as_ref()
                .map_or(chrono_tz::UTC, |schedule| schedule.timezone),
        }
    }

    fn fr(&self) -> bool {
        self.language == Language::Fr
    }

    /// `06/12/2026 07:22 (Europe/Paris)`: local time, the zone named.
    pub fn time(&self, ms: i64) -> String {
        let Some(at) = chrono::DateTime::from_timestamp_millis(ms) else {
            return String::new();
        };
        let local = at.with_timezone(&self.zone);
        let format = if self.fr() {
            "%d/%m/%Y %H:%M"
        } else {
            "%Y-%m-%d %H:%M"
        };
        format!("{} ({})", local.format(format), self.zone.name())
    }

    /// The day only, for the supervisor's page.
    pub fn day(&self, ms: i64) -> String {
        let Some(at) = chrono::DateTime::from_timestamp_millis(ms) else {
            return String::new();
        };
        let format = if self.fr() { "%d/%m/%Y" } else { "%Y-%m-%d" };
        at.with_timezone(&self.zone).format(format).to_string()
    }

    /// An hour of the day (`14:00`), for the supervisor's look-ups per hour.
    pub fn hour(&self, ms: i64) -> String {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|at| at.with_timezone(&self.zone).format("%H:00").to_string())
            .unwrap_or_default()
    }

    /// A delivery state (`sent`, `no_email`, …) as an adviser says it.
    pub fn state(&self, state: &str) -> String {
        let (fr, en) = match state {
            "pending" => ("en attente d'envoi", "waiting to be sent"),
            "sending" => ("en cours d'envoi", "being sent now"),
            "sent" => (
                "envoyé par courriel (accepté par notre serveur d'envoi)",
                "sent by e-mail (accepted by our mail server)",
            ),
            "delivered" => (
                "envoyé par courriel, remis à la messagerie de la personne",
                "sent by e-mail, accepted by the person's provider",
            ),
            "deferred" => ("retardé, nouvel essai prévu", "delayed, will be retried"),
            "failed" => (
                "refusé par le serveur de messagerie : pas de courriel",
                "refused by the mail server: no e-mail",
            ),
            "bounced" => ("revenu non distribué", "came back undelivered"),
            "no_email" => ("pas d'adresse électronique", "no e-mail address"),
            other => return other.to_owned(),
        };
        if self.fr() { fr } else { en }.to_owned()
    }

    /// A step of the timeline (`claimed`, `address_corrected`, …) as an adviser says it.
    pub fn event(&self, kind: &str) -> String {
        let (fr, en) = match kind {
            "imported" => ("importé", "imported"),
            "updated" => ("mis à jour à l'import", "updated by an import"),
            "claimed" => ("pris pour envoi", "taken for sending"),
            "sent" => ("envoyé par courriel", "sent by e-mail"),
            "delivered" => ("remis à la messagerie", "accepted by the provider"),
            "deferred" => ("retardé", "delayed"),
            "failed" => ("refusé", "refused"),
            "released" => ("rendu (envoi interrompu)", "given back (sending stopped)"),
            "recovered" => ("repris après un arrêt", "recovered after a stop"),
            "bounced" => ("revenu non distribué", "came back undelivered"),
            "soft_bounce" => ("retour temporaire", "temporary bounce"),
            "resend" => ("nouvel envoi prévu", "to be sent again"),
            "address_corrected" => ("adresse corrigée", "address corrected"),
            "paper_requested" => ("courrier papier demandé", "paper letter asked for"),
            "call_note" => ("appel noté", "call noted"),
            "delayed" => ("avis de retard", "delay notice"),
            "complained" => ("signalé comme indésirable", "marked as spam"),
            other => return other.to_owned(),
        };
        if self.fr() { fr } else { en }.to_owned()
    }

    /// The answer for a notice number nobody was sent.
    pub fn not_ours(&self) -> &'static str {
        if self.fr() {
            "pas de chez nous : aucun avis portant ce numéro n'a été envoyé"
        } else {
            NOT_OURS
        }
    }

    pub fn not_ours_script(&self) -> &'static str {
        if self.fr() {
            "Dites à la personne que ce message ne vient pas de nous : qu'elle ne clique sur aucun lien, ne réponde pas, ne donne aucun code ni coordonnée bancaire, et le supprime. Notez l'appel."
        } else {
            "Tell the caller this message is not from us: do not click any link, do not answer it, give no code or bank details, delete it. Note the call."
        }
    }

    /// Something shaped like a notice number that cannot be one.
    pub fn malformed_notice(&self) -> String {
        if self.fr() {
            format!(
                "ce n'est pas un de nos numéros d'avis (les nôtres ont 12 lettres et chiffres, XXXX-XXXX-XXXX, sans I, L, O ni U) : {}",
                self.not_ours()
            )
        } else {
            format!(
                "this is not one of our notice numbers (ours are 12 letters and digits, XXXX-XXXX-XXXX, without I, L, O or U): {}",
                self.not_ours()
            )
        }
    }

    pub fn genuine_email(&self, at: &str, to: &str) -> String {
        if self.fr() {
            format!("authentique : envoyé par courriel le {at} à {to}")
        } else {
            format!("genuine: sent by e-mail on {at} to {to}")
        }
    }

    pub fn genuine_script(&self, at: &str, to: &str) -> String {
        if self.fr() {
            format!(
                "Confirmez que le message est bien de nous : envoyé le {at} à l'adresse {to}. Vérifiez avec la personne que son adresse commence ainsi. Rappelez-lui que nous ne demandons jamais de mot de passe ni de coordonnées bancaires."
            )
        } else {
            format!(
                "Confirm the message is ours: sent on {at} to the address {to}. Check with the caller that their address starts like this. Remind them we never ask for a password or bank details."
            )
        }
    }

    pub fn came_back(&self) -> &'static str {
        if self.fr() {
            " ; il est revenu non distribué"
        } else {
            "; it came back undelivered"
        }
    }

    pub fn delivered(&self) -> &'static str {
        if self.fr() {
            " ; remis à la messagerie de la personne"
        } else {
            "; accepted by the person's provider"
        }
    }

    /// Why no e-mail went out: the state in a few words.
    pub fn why_no_email(&self, state: &str) -> &'static str {
        match (self.fr(), state) {
            (true, "no_email") => "pas d'adresse",
            (false, "no_email") => "no address",
            (true, "failed") => "refusé par le serveur de messagerie",
            (false, "failed") => "refused by the mail server",
            (true, _) => "pas encore envoyé",
            (false, _) => "not sent yet",
        }
    }

    /// "this number is ours but no e-mail was sent …: an e-mail quoting it is not ours".
    pub fn ours_no_email(&self, why: &str, paper_at: Option<&str>) -> String {
        match (self.fr(), paper_at) {
            (true, Some(at)) => format!(
                "ce numéro d'avis est bien le nôtre, mais aucun courriel n'a été envoyé à cette personne ({why}) ; courrier papier exporté le {at} : un courriel qui le cite n'est pas de nous"
            ),
            (true, None) => format!(
                "ce numéro d'avis est bien le nôtre, mais aucun courriel n'a été envoyé à cette personne ({why}) ; courrier papier pas encore exporté : un courriel qui le cite n'est pas de nous"
            ),
            (false, Some(at)) => format!(
                "this number is ours but no e-mail was sent to this person ({why}); paper letter exported on {at}: an e-mail quoting it is not ours"
            ),
            (false, None) => format!(
                "this number is ours but no e-mail was sent to this person ({why}); paper letter not exported yet: an e-mail quoting it is not ours"
            ),
        }
    }

    pub fn ours_no_email_script(&self) -> &'static str {
        if self.fr() {
            "Si la personne a reçu un courriel avec ce numéro d'avis, c'est un faux : qu'elle ne clique sur rien, ne réponde pas et le supprime. Un courrier papier avec ce numéro est bien de nous. Proposez le courrier papier s'il n'est pas encore parti, ou une adresse électronique."
        } else {
            "If the caller received an e-mail with this number, it is a fake: do not click anything, do not answer, delete it. A paper letter with this number is ours. Offer the paper letter if it has not gone yet, or take an e-mail address."
        }
    }

    pub fn being_sent(&self, to: &str) -> String {
        if self.fr() {
            format!(
                "ce numéro d'avis est bien le nôtre : son courriel est en cours d'envoi à {to} ; un courriel reçu dans les dernières minutes est de nous"
            )
        } else {
            format!(
                "this number is ours: its e-mail is being sent right now to {to}; an e-mail received in the last minutes is ours"
            )
        }
    }

    pub fn being_sent_script(&self) -> &'static str {
        if self.fr() {
            "Le message part en ce moment : s'il vient d'arriver à l'adresse indiquée, il est de nous. Sinon, proposez de rappeler dans une heure."
        } else {
            "The letter is going out right now: if it just arrived at the address shown, it is ours. Otherwise offer to call back in an hour."
        }
    }

    pub fn found(&self, count: usize) -> String {
        match (self.fr(), count) {
            (true, 1) => "une personne trouvée".to_owned(),
            (false, 1) => "one person found".to_owned(),
            (true, n) => format!("{n} personnes trouvées"),
            (false, n) => format!("{n} people found"),
        }
    }

    pub fn no_ref(&self) -> &'static str {
        if self.fr() {
            "personne avec cette référence"
        } else {
            "no person with this ref"
        }
    }

    pub fn no_email_match(&self) -> &'static str {
        if self.fr() {
            "personne avec cette adresse électronique"
        } else {
            "no person with this e-mail address"
        }
    }

    pub fn check_spelling_script(&self) -> &'static str {
        if self.fr() {
            "Faites épeler le nom et redonner le code postal, ou demandez le numéro d'avis (« Votre numéro d'avis », en haut du message)."
        } else {
            "Ask the caller to spell the name and give the postcode again, or to read out the notice number (at the top of the message)."
        }
    }

    /// The verdict of a last name + postcode search: the true count, the postcode as typed.
    pub fn name_postcode(&self, count: i64, shown: usize, postcode: &str) -> String {
        let count_text = thousands(count, if self.fr() { '\u{a0}' } else { ',' });
        match (self.fr(), count, count as usize > shown) {
            (true, 0, _) => format!(
                "personne avec ce nom au code postal {postcode} (accents, majuscules et espaces ne comptent pas)"
            ),
            (false, 0, _) => format!(
                "no person with this last name at postcode {postcode} (accents, case and spaces do not matter)"
            ),
            (true, 1, _) => format!("une personne avec ce nom au code postal {postcode}"),
            (false, 1, _) => format!("one person with this last name at postcode {postcode}"),
            (true, _, false) => {
                format!("{count_text} personnes avec ce nom au code postal {postcode}")
            }
            (false, _, false) => {
                format!("{count_text} people with this last name at postcode {postcode}")
            }
            (true, _, true) => format!(
                "{count_text} personnes avec ce nom au code postal {postcode} ; les {shown} premières ci-dessous : ajoutez le prénom pour affiner"
            ),
            (false, _, true) => format!(
                "{count_text} people with this last name at postcode {postcode}; the first {shown} below: add the first name to narrow"
            ),
        }
    }

    /// The console's labels, for the templates.
    pub fn labels(&self) -> &'static Labels {
        if self.fr() { &FR } else { &EN }
    }
}

/// `1592` → `1,592` (English) or `1 592` (French): the count an adviser reads at a glance.
fn thousands(n: i64, separator: char) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(separator);
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// Every fixed word of the console's pages.
#[derive(Debug, Serialize)]
pub struct Labels {
    pub lang: &'static str,
    pub helpline: &'static str,
    pub search: &'static str,
    pub supervisor: &'static str,
    pub adviser: &'static str,
    pub adviser_heading: &'static str,
    pub log_out: &'static str,
    pub log_in: &'static str,
    pub login: &'static str,
    pub password: &'static str,
    pub console_title: &'static str,
    pub find_caller: &'static str,
    pub query_label: &'static str,
    pub last_name: &'static str,
    pub postcode: &'static str,
    pub first_name: &'static str,
    pub optional: &'static str,
    pub notice: &'static str,
    pub reference: &'static str,
    pub name: &'static str,
    pub email: &'static str,
    pub alt_email: &'static str,
    pub city: &'static str,
    pub postal: &'static str,
    pub letter: &'static str,
    pub what_to_say: &'static str,
    pub letter_as_sent: &'static str,
    pub next_letter: &'static str,
    pub next_letter_note: &'static str,
    pub nothing_sent: &'static str,
    pub generation: &'static str,
    pub sent_on: &'static str,
    pub to: &'static str,
    pub by_email: &'static str,
    pub paper_letter: &'static str,
    pub paper_exported: &'static str,
    pub paper_not_exported: &'static str,
    pub paper_asked: &'static str,
    pub paper_not_asked: &'static str,
    pub see_letter: &'static str,
    pub letter_text: &'static str,
    pub letter_masked: &'static str,
    pub reveal: &'static str,
    pub revealed: &'static str,
    pub subject: &'static str,
    pub attempts: &'static str,
    pub when: &'static str,
    pub outcome: &'static str,
    pub relay_reply: &'static str,
    pub bounces: &'static str,
    pub read: &'static str,
    pub kind: &'static str,
    pub status: &'static str,
    pub diagnostic: &'static str,
    pub timeline: &'static str,
    pub event: &'static str,
    pub detail: &'static str,
    pub actions: &'static str,
    pub new_address: &'static str,
    pub address: &'static str,
    pub corrected: &'static str,
    pub alternative: &'static str,
    pub record_and_send: &'static str,
    pub ask_paper: &'static str,
    pub call_note: &'static str,
    pub add_note: &'static str,
    pub erased: &'static str,
    pub who_looked: &'static str,
    pub what: &'static str,
    pub back: &'static str,
    pub today: &'static str,
    pub in_all: &'static str,
    pub todays_figures: &'static str,
    pub since: &'static str,
    pub calls_noted: &'static str,
    pub corrections: &'static str,
    pub paper_requests: &'static str,
    pub searches: &'static str,
    pub per_adviser: &'static str,
    pub person_views: &'static str,
    pub views_worst_hour: &'static str,
    pub views_refused: &'static str,
    pub over_cap: &'static str,
    pub todays_calls: &'static str,
    pub no_calls: &'static str,
    pub not_ours_per_hour: &'static str,
    pub hour: &'static str,
    pub not_ours_lookups: &'static str,
    pub not_ours_alert: &'static str,
    pub bounces_today: &'static str,
    pub hard: &'static str,
    pub soft: &'static str,
    pub at_relay: &'static str,
    pub being_sent_now: &'static str,
    pub delayed_retry: &'static str,
    pub still_to_send: &'static str,
    pub letters: &'static str,
}

pub static EN: Labels = Labels {
    lang: "en",
    helpline: "Helpline",
    search: "Search",
    supervisor: "Supervisor",
    adviser: "adviser",
    adviser_heading: "Adviser",
    log_out: "Log out",
    log_in: "Log in",
    login: "Login",
    password: "Password",
    console_title: "Helpline console",
    find_caller: "Find the caller",
    query_label: "Notice number, e-mail or ref",
    last_name: "Last name",
    postcode: "Postcode",
    first_name: "First name",
    optional: "optional",
    notice: "Notice number",
    reference: "Ref",
    name: "Name",
    email: "E-mail",
    alt_email: "Alternative e-mail",
    city: "City",
    postal: "Postal address",
    letter: "Letter",
    what_to_say: "What to tell the caller",
    letter_as_sent: "The letter as sent",
    next_letter: "The next letter (not sent yet)",
    next_letter_note: "A new letter is waiting to go out; the caller has not received it yet.",
    nothing_sent: "No e-mail has been sent to this person.",
    generation: "Generation",
    sent_on: "Sent on",
    to: "To",
    by_email: "by e-mail",
    paper_letter: "Paper letter",
    paper_exported: "exported for printing on",
    paper_not_exported: "not exported yet",
    paper_asked: "asked for on",
    paper_not_asked: "not asked for",
    see_letter: "Read the letter",
    letter_text: "Text of the letter",
    letter_masked: "Personal data are masked, the letter included, as in the table.",
    reveal: "Show the letter unmasked (logged)",
    revealed: "Unmasked at your request: this look is logged.",
    subject: "Subject",
    attempts: "Attempts",
    when: "When",
    outcome: "Outcome",
    relay_reply: "Mail server's reply",
    bounces: "Bounces",
    read: "Read",
    kind: "Kind",
    status: "Status",
    diagnostic: "Diagnostic",
    timeline: "Timeline",
    event: "Event",
    detail: "Detail",
    actions: "Actions",
    new_address: "A corrected or alternative e-mail address (the letter goes out again to it)",
    address: "Address",
    corrected: "corrected address",
    alternative: "alternative address",
    record_and_send: "Record and send again",
    ask_paper: "The caller asks for a paper letter",
    call_note: "Call note",
    add_note: "Add the note",
    erased: "(erased)",
    who_looked: "Who looked at this person",
    what: "What",
    back: "Back to the search",
    today: "Today",
    in_all: "In all",
    todays_figures: "Helpline: today's figures",
    since: "Since",
    calls_noted: "Calls noted",
    corrections: "Corrected or alternative addresses",
    paper_requests: "Paper letters asked for",
    searches: "Searches",
    per_adviser: "Per adviser, today",
    person_views: "Person pages opened",
    views_worst_hour: "Most in one hour",
    views_refused: "Refused over the cap",
    over_cap: "over the cap",
    todays_calls: "Today's calls",
    no_calls: "No call noted today.",
    not_ours_per_hour: "\"Not ours\" look-ups per hour",
    hour: "Hour",
    not_ours_lookups: "Not ours",
    not_ours_alert: "More \"not ours\" look-ups than usual: a phishing wave may be quoting made-up notice numbers.",
    bounces_today: "Bounces today",
    hard: "undelivered (hard)",
    soft: "temporary (soft)",
    at_relay: "Letters still at the mail server",
    being_sent_now: "being sent now",
    delayed_retry: "delayed, will be retried",
    still_to_send: "Letters still to go out",
    letters: "Letters",
};

pub static FR: Labels = Labels {
    lang: "fr",
    helpline: "Assistance",
    search: "Recherche",
    supervisor: "Supervision",
    adviser: "conseiller",
    adviser_heading: "Conseiller",
    log_out: "Se déconnecter",
    log_in: "Se connecter",
    login: "Identifiant",
    password: "Mot de passe",
    console_title: "Console d'assistance",
    find_caller: "Retrouver l'appelant",
    query_label: "Numéro d'avis, courriel ou référence",
    last_name: "Nom",
    postcode: "Code postal",
    first_name: "Prénom",
    optional: "facultatif",
    notice: "Numéro d'avis",
    reference: "Référence",
    name: "Nom",
    email: "Courriel",
    alt_email: "Courriel de secours",
    city: "Ville",
    postal: "Adresse postale",
    letter: "Courrier",
    what_to_say: "Ce qu'il faut dire",
    letter_as_sent: "Le message tel qu'il a été envoyé",
    next_letter: "Le prochain message (pas encore envoyé)",
    next_letter_note: "Un nouveau message attend son envoi ; la personne ne l'a pas encore reçu.",
    nothing_sent: "Aucun courriel n'a été envoyé à cette personne.",
    generation: "Génération",
    sent_on: "Envoyé le",
    to: "À",
    by_email: "par courriel",
    paper_letter: "Courrier papier",
    paper_exported: "exporté pour impression le",
    paper_not_exported: "pas encore exporté",
    paper_asked: "demandé le",
    paper_not_asked: "non demandé",
    see_letter: "Lire le message",
    letter_text: "Texte du message",
    letter_masked: "Les données personnelles sont masquées, message compris, comme dans le tableau.",
    reveal: "Afficher le message en clair (consultation enregistrée)",
    revealed: "Affiché en clair à votre demande : cette consultation est enregistrée.",
    subject: "Objet",
    attempts: "Tentatives",
    when: "Quand",
    outcome: "Résultat",
    relay_reply: "Réponse du serveur de messagerie",
    bounces: "Retours",
    read: "Lu le",
    kind: "Type",
    status: "Statut",
    diagnostic: "Diagnostic",
    timeline: "Historique",
    event: "Étape",
    detail: "Détail",
    actions: "Actions",
    new_address: "Une adresse électronique corrigée ou de secours (le message repart vers elle)",
    address: "Adresse",
    corrected: "adresse corrigée",
    alternative: "adresse de secours",
    record_and_send: "Enregistrer et renvoyer",
    ask_paper: "La personne demande un courrier papier",
    call_note: "Note d'appel",
    add_note: "Ajouter la note",
    erased: "(effacée)",
    who_looked: "Qui a consulté cette personne",
    what: "Quoi",
    back: "Retour à la recherche",
    today: "Aujourd'hui",
    in_all: "En tout",
    todays_figures: "Assistance : les chiffres du jour",
    since: "Depuis le",
    calls_noted: "Appels notés",
    corrections: "Adresses corrigées ou de secours",
    paper_requests: "Courriers papier demandés",
    searches: "Recherches",
    per_adviser: "Par conseiller, aujourd'hui",
    person_views: "Fiches ouvertes",
    views_worst_hour: "Maximum en une heure",
    views_refused: "Refusées au-delà du plafond",
    over_cap: "au-delà du plafond",
    todays_calls: "Les appels du jour",
    no_calls: "Aucun appel noté aujourd'hui.",
    not_ours_per_hour: "Recherches « pas de chez nous » par heure",
    hour: "Heure",
    not_ours_lookups: "Pas de chez nous",
    not_ours_alert: "Plus de recherches « pas de chez nous » que d'habitude : une vague d'hameçonnage cite peut-être des numéros d'avis inventés.",
    bounces_today: "Retours aujourd'hui",
    hard: "non distribués (définitifs)",
    soft: "temporaires",
    at_relay: "Messages encore au serveur d'envoi",
    being_sent_now: "en cours d'envoi",
    delayed_retry: "retardés, nouvel essai prévu",
    still_to_send: "Messages encore à envoyer",
    letters: "Messages",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_local_with_the_zone_named() {
        let voice = Voice {
            language: Language::Fr,
            zone: chrono_tz::Europe::Paris,
        };
        // 2026-12-06T05:22:29Z is 06:22 in Paris (winter time).
        assert_eq!(
            voice.time(1_796_534_549_000),
            "06/12/2026 06:22 (Europe/Paris)"
        );
        let english = Voice {
            language: Language::En,
            zone: chrono_tz::UTC,
        };
        assert_eq!(english.time(1_796_534_549_000), "2026-12-06 05:22 (UTC)");
    }

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(thousands(1592, ','), "1,592");
        assert_eq!(thousands(340_006, '\u{a0}'), "340\u{a0}006");
        assert_eq!(thousands(12, ','), "12");
    }
}
