//! The audit export's words in the campaign's language: the CSV's column names, its state, event
//! and yes/no cells, how it writes times (the schedule's time zone, UTC without one), and the
//! legend written beside the file, which gives every column and every code its meaning.
//!
//! English keeps the column names and codes the JSONL export uses, so an English CSV and the
//! JSONL read the same; French says each in French. The JSONL export is the machine format and
//! stays as it is in every language.

use chrono::TimeZone as _;

use crate::config::Config;
use crate::domain::{DeliveryState, EventKind};

/// A column's name and what it holds, in one language.
type Column = (&'static str, &'static str);

/// The per-person columns, in `AUDIT_COLUMNS` order.
const PEOPLE_FR: [Column; 24] = [
    ("référence", "la clé de la personne dans le fichier importé"),
    (
        "numéro d'avis",
        "le numéro de sa lettre, que la ligne d'assistance confirme à qui appelle",
    ),
    (
        "adresse électronique",
        "l'adresse à laquelle la lettre a été envoyée (masquée si demandé)",
    ),
    (
        "langue",
        "la langue de la lettre (fr : français, en : anglais)",
    ),
    ("état", "où en est la lettre (voir « États » ci-dessous)"),
    (
        "génération",
        "1 pour le premier envoi, 2 et plus après chaque renvoi (adresse corrigée ou de secours)",
    ),
    (
        "tentatives",
        "le nombre de remises tentées pour cette génération",
    ),
    (
        "première tentative",
        "date et heure de la première tentative",
    ),
    (
        "dernière tentative",
        "date et heure de la dernière tentative",
    ),
    (
        "remise au relais le",
        "date et heure auxquelles le relais a accepté la lettre",
    ),
    (
        "réponse du relais",
        "la réponse du relais, telle que reçue (code SMTP : 2xx accepté, 4xx refus temporaire, 5xx refus définitif)",
    ),
    (
        "identifiant du message",
        "l'en-tête Message-ID de la lettre, pour la retrouver chez le relais",
    ),
    (
        "empreinte des lettres",
        "condensé SHA-256 des modèles de lettre et des faits de l'incident utilisés",
    ),
    (
        "empreinte du message",
        "condensé SHA-256 du message exact remis au relais",
    ),
    (
        "revenue en erreur le",
        "date et heure de l'avis d'erreur reçu après la remise",
    ),
    (
        "statut du retour",
        "le code d'état de l'avis d'erreur (5.x.x : définitif)",
    ),
    (
        "diagnostic du retour",
        "le diagnostic de l'avis d'erreur, tel que reçu",
    ),
    (
        "envoi peut-être en double",
        "« oui » quand le relais n'a pas répondu après la remise, si bien que la personne a pu recevoir la lettre deux fois",
    ),
    (
        "envoi postal",
        "« oui » quand le courriel n'a pas pu atteindre la personne, qui doit recevoir la lettre par la poste",
    ),
    (
        "relais",
        "le relais qui a répondu pour cette lettre (hôte:port)",
    ),
    (
        "avis de remise demandé",
        "« oui » quand le relais a été prié de dire ce que la lettre devenait (avis de remise, RFC 3461)",
    ),
    (
        "acceptée par le fournisseur le",
        "date et heure auxquelles le serveur du fournisseur de la personne a accepté la lettre, selon l'avis du relais (pas la preuve d'une lecture)",
    ),
    (
        "serveur du fournisseur",
        "le serveur du fournisseur qui a accepté la lettre (Remote-MTA)",
    ),
    (
        "réponse du fournisseur",
        "la réponse du serveur du fournisseur, telle que l'avis du relais la cite",
    ),
];

const PEOPLE_EN: [Column; 24] = [
    ("ref", "the person's key in the imported file"),
    (
        "notice_id",
        "the notice number of their letter, which the helpline confirms to a caller",
    ),
    (
        "email",
        "the address the letter went to (masked on request)",
    ),
    (
        "language",
        "the letter's language (fr: French, en: English)",
    ),
    ("state", "where the letter stands (see \"States\" below)"),
    (
        "generation",
        "1 for the first letter, 2 and more after each resend (corrected or alternative address)",
    ),
    (
        "attempts",
        "how many hand-overs were tried for this generation",
    ),
    ("first_attempt_at", "when the first attempt was made"),
    ("last_attempt_at", "when the last attempt was made"),
    ("sent_at", "when the relay accepted the letter"),
    (
        "smtp_reply",
        "the relay's reply as received (SMTP code: 2xx accepted, 4xx temporary refusal, 5xx permanent refusal)",
    ),
    (
        "message_id",
        "the letter's Message-ID header, to find it at the relay",
    ),
    (
        "letters_fingerprint",
        "SHA-256 of the letter templates and incident facts used",
    ),
    (
        "content_sha256",
        "SHA-256 of the exact message handed to the relay",
    ),
    (
        "bounced_at",
        "when the error report received after the hand-over came",
    ),
    (
        "bounce_status",
        "the error report's status code (5.x.x: permanent)",
    ),
    (
        "bounce_diagnostic",
        "the error report's diagnostic, as received",
    ),
    (
        "possible_duplicate",
        "true when the relay did not answer after the hand-over, so the person may have got the letter twice",
    ),
    (
        "postal_fallback",
        "true when e-mail could not reach the person, who is to get the letter by post",
    ),
    (
        "relay",
        "the relay that answered for this letter (host:port)",
    ),
    (
        "delivery_notifications",
        "true when the relay was asked to report what became of the letter (delivery status notifications, RFC 3461)",
    ),
    (
        "delivered_at",
        "when the person's provider's server accepted the letter, as the relay's notification says (not proof that it was read)",
    ),
    (
        "delivered_by",
        "the provider's server that accepted the letter (Remote-MTA)",
    ),
    (
        "delivered_reply",
        "the provider's server's reply, as the relay's notification quotes it",
    ),
];

/// The per-event columns, in `EVENT_COLUMNS` order.
const EVENTS_FR: [Column; 9] = [
    ("référence", "la clé de la personne dans le fichier importé"),
    ("numéro d'avis", "le numéro de sa lettre"),
    ("date et heure", "quand l'événement a été enregistré"),
    (
        "exécution",
        "le numéro de la commande qui l'a enregistré (import, envoi, lecture des retours…)",
    ),
    (
        "événement",
        "ce qui s'est passé (voir « Événements » ci-dessous)",
    ),
    ("état avant", "l'état de la lettre avant l'événement"),
    ("état après", "l'état de la lettre après l'événement"),
    ("génération", "la génération de la lettre concernée"),
    (
        "détail",
        "le détail enregistré, tel quel (réponse du relais, motif)",
    ),
];

const EVENTS_EN: [Column; 9] = [
    ("ref", "the person's key in the imported file"),
    ("notice_id", "the notice number of their letter"),
    ("at", "when the event was recorded"),
    (
        "run_id",
        "the number of the command run that recorded it (import, send, bounces…)",
    ),
    ("kind", "what happened (see \"Events\" below)"),
    ("from_state", "the letter's state before the event"),
    ("to_state", "the letter's state after the event"),
    ("generation", "the generation of the letter concerned"),
    (
        "detail",
        "the recorded detail, as is (relay's reply, reason)",
    ),
];

/// What each delivery state means, in both languages.
fn state_meaning(state: DeliveryState, french: bool) -> &'static str {
    let (fr, en) = match state {
        DeliveryState::Pending => ("la lettre attend son envoi", "the letter waits to be sent"),
        DeliveryState::Sending => (
            "la lettre est en train d'être remise au relais",
            "the letter is being handed to the relay",
        ),
        DeliveryState::Sent => (
            "le relais a accepté la lettre (ce n'est pas encore la preuve que la personne l'a reçue)",
            "the relay accepted the letter (not yet proof that the person received it)",
        ),
        DeliveryState::Deferred => (
            "refus temporaire (code 4xx), la lettre sera envoyée de nouveau",
            "a temporary refusal (code 4xx): the letter will go again",
        ),
        DeliveryState::Failed => (
            "refus définitif à l'envoi (code 5xx), d'où l'envoi postal",
            "a permanent refusal at sending (code 5xx): postal fallback",
        ),
        DeliveryState::Bounced => (
            "un avis d'erreur définitif est revenu après la remise, d'où l'envoi postal",
            "a permanent error report came back after the hand-over: postal fallback",
        ),
        DeliveryState::NoEmail => (
            "aucune adresse électronique utilisable, d'où l'envoi postal",
            "no usable e-mail address: postal fallback",
        ),
        DeliveryState::Delivered => (
            "le serveur du fournisseur de la personne a accepté la lettre, selon l'avis de remise du relais (pas la preuve qu'elle a été lue)",
            "the person's provider's server accepted the letter, as the relay's delivery notification says (not proof that it was read)",
        ),
    };
    if french { fr } else { en }
}

/// An event's name in French and what it means, in both languages.
fn event_words(kind: EventKind) -> (&'static str, &'static str, &'static str) {
    match kind {
        EventKind::Imported => (
            "importée",
            "la personne a été importée",
            "the person was imported",
        ),
        EventKind::Updated => (
            "mise à jour",
            "un import a changé ses données",
            "an import changed their data",
        ),
        EventKind::Claimed => (
            "prise pour envoi",
            "un envoi a pris la lettre",
            "a send run took the letter",
        ),
        EventKind::Sent => (
            "remise au relais",
            "le relais a accepté la lettre",
            "the relay accepted the letter",
        ),
        EventKind::Deferred => (
            "différée",
            "refus temporaire, nouvel essai plus tard",
            "temporary refusal: retried later",
        ),
        EventKind::Failed => (
            "refusée à l'envoi",
            "refus définitif du relais",
            "the relay refused it for good",
        ),
        EventKind::Released => (
            "rendue",
            "un envoi interrompu a rendu la lettre sans l'avoir remise",
            "an interrupted send gave the letter back without handing it over",
        ),
        EventKind::Recovered => (
            "reprise",
            "une lettre laissée par un envoi arrêté a été reprise",
            "a letter left by a stopped send was taken back",
        ),
        EventKind::Bounced => (
            "revenue en erreur",
            "un avis d'erreur définitif est revenu",
            "a permanent error report came back",
        ),
        EventKind::SoftBounce => (
            "erreur temporaire signalée",
            "un avis d'erreur temporaire est revenu (l'état ne change pas)",
            "a temporary error report came back (the state stays)",
        ),
        EventKind::Resend => (
            "renvoi",
            "la lettre part de nouveau (adresse corrigée ou de secours)",
            "the letter goes again (corrected or alternative address)",
        ),
        EventKind::AddressCorrected => (
            "adresse corrigée",
            "un conseiller a enregistré une adresse corrigée",
            "an adviser recorded a corrected address",
        ),
        EventKind::PaperRequested => (
            "courrier papier demandé",
            "la personne a demandé une lettre papier",
            "the person asked for a paper letter",
        ),
        EventKind::CallNote => (
            "note d'appel",
            "un conseiller a noté un appel",
            "an adviser noted a call",
        ),
        EventKind::Delayed => (
            "avis de retard",
            "un avis « toujours en cours » est revenu : la lettre est encore au relais (l'état ne change pas)",
            "a \"still trying\" notice came back: the letter is still at the relay (the state stays)",
        ),
        EventKind::Complained => (
            "plainte",
            "la personne a signalé la lettre comme indésirable",
            "the person marked the letter as spam",
        ),
        EventKind::Delivered => (
            "acceptée par le fournisseur",
            "le relais a signalé que le serveur du fournisseur de la personne a accepté la lettre",
            "the relay reported that the person's provider's server accepted the letter",
        ),
    }
}

/// The audit export's language: French for "fr", English otherwise.
pub struct AuditWords {
    french: bool,
    zone: chrono_tz::Tz,
}

impl AuditWords {
    pub fn new(config: &Config) -> AuditWords {
        AuditWords {
            french: config.campaign.default_language == "fr",
            zone: config
                .schedule
                .as_ref()
                .map_or(chrono_tz::UTC, |s| s.timezone),
        }
    }

    /// The CSV header of the per-person export.
    pub fn people_header(&self) -> Vec<&'static str> {
        self.columns(&PEOPLE_FR, &PEOPLE_EN)
            .iter()
            .map(|c| c.0)
            .collect()
    }

    /// The CSV header of the per-event export.
    pub fn events_header(&self) -> Vec<&'static str> {
        self.columns(&EVENTS_FR, &EVENTS_EN)
            .iter()
            .map(|c| c.0)
            .collect()
    }

    fn columns<'a, const N: usize>(
        &self,
        french: &'a [Column; N],
        english: &'a [Column; N],
    ) -> &'a [Column; N] {
        if self.french { french } else { english }
    }

    /// A state code as a cell: French names it, English keeps the code.
    pub fn state(&self, code: &str) -> String {
        match code.parse::<DeliveryState>() {
            Ok(state) if self.french => crate::report::FRENCH.state_forms(state).0.to_owned(),
            _ => code.to_owned(),
        }
    }

    /// An event code as a cell: French names it, English keeps the code.
    pub fn event(&self, code: &str) -> String {
        match EventKind::ALL.iter().find(|k| k.as_str() == code) {
            Some(kind) if self.french => event_words(*kind).0.to_owned(),
            _ => code.to_owned(),
        }
    }

    pub fn yes_no(&self, value: bool) -> &'static str {
        match (self.french, value) {
            (true, true) => "oui",
            (true, false) => "non",
            (false, true) => "true",
            (false, false) => "false",
        }
    }

    /// A time in the zone: "10/07/2025 09:12:03 CEST" in French, RFC 3339 with the zone's offset
    /// in English ("2025-07-10T07:12:03Z" in UTC).
    pub fn time(&self, ms: i64) -> String {
        let Some(at) = self.zone.timestamp_millis_opt(ms).single() else {
            return String::new();
        };
        if self.french {
            at.format("%d/%m/%Y %H:%M:%S %Z").to_string()
        } else {
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        }
    }

    /// The legend file's name beside the export: `audit.csv` → `audit.legende.txt`.
    pub fn legend_name(&self, export: &std::path::Path) -> std::path::PathBuf {
        let stem = export
            .file_stem()
            .map_or_else(|| "audit".into(), |s| s.to_string_lossy().into_owned());
        let suffix = if self.french { "legende" } else { "legend" };
        export.with_file_name(format!("{stem}.{suffix}.txt"))
    }

    /// The legend: what the file is, the time zone, every column, every code, the reconciliation.
    pub fn legend(&self, export: &str, events: bool, reconciliation: &str) -> String {
        let french = self.french;
        let mut out = String::new();
        let mut line = |text: &str| {
            out.push_str(text);
            out.push('\n');
        };
        let zone = self.zone.name();
        if french {
            line(&format!("Légende de l'export d'audit {export}"));
            line("");
            line(if events {
                "Une ligne par événement enregistré, dans l'ordre où ils l'ont été : la chronologie de chaque lettre."
            } else {
                "Une ligne par personne concernée : ce qui lui a été envoyé, quand, et le résultat."
            });
            line(&format!(
                "Dates et heures : heure locale du fuseau {zone}, au format JJ/MM/AAAA HH:MM:SS suivi de l'abréviation du fuseau (par exemple CEST pour l'heure d'été de Paris, CET pour l'heure d'hiver)."
            ));
            line(
                "Les réponses des relais et les avis d'erreur sont cités tels que reçus, dans la langue de leur expéditeur.",
            );
            line("");
            line("Colonnes :");
        } else {
            line(&format!("Legend of the audit export {export}"));
            line("");
            line(if events {
                "One row per recorded event, in the order they were recorded: each letter's timeline."
            } else {
                "One row per person concerned: what they were sent, when, and the outcome."
            });
            line(&format!(
                "Dates and times: RFC 3339 in the {zone} time zone (the offset from UTC is written; Z is UTC)."
            ));
            line("The relays' replies and the error reports are quoted as received.");
            line("");
            line("Columns:");
        }
        let columns: &[Column] = match (events, french) {
            (false, true) => &PEOPLE_FR,
            (false, false) => &PEOPLE_EN,
            (true, true) => &EVENTS_FR,
            (true, false) => &EVENTS_EN,
        };
        for (name, meaning) in columns {
            line(
                &format!("- {name} : {meaning}")
                    .replace(" : ", if french { "\u{a0}: " } else { ": " }),
            );
        }
        line("");
        line(if french {
            "États (colonnes « état », « état avant », « état après ») :"
        } else {
            "States (columns state, from_state, to_state):"
        });
        for state in DeliveryState::ALL {
            let name = if french {
                crate::report::FRENCH.state_forms(state).0
            } else {
                state.as_str()
            };
            let separator = if french { "\u{a0}: " } else { ": " };
            line(&format!(
                "- {name}{separator}{}",
                state_meaning(state, french)
            ));
        }
        if events {
            line("");
            line(if french {
                "Événements (colonne « événement ») :"
            } else {
                "Events (column kind):"
            });
            for kind in EventKind::ALL {
                let (name_fr, meaning_fr, meaning_en) = event_words(kind);
                if french {
                    line(&format!("- {name_fr}\u{a0}: {meaning_fr}"));
                } else {
                    line(&format!("- {}: {meaning_en}", kind.as_str()));
                }
            }
        }
        line("");
        line(if french {
            "Oui / non : « oui » quand la condition de la colonne est vraie."
        } else {
            "true / false: true when the column's condition holds."
        });
        line("");
        line(reconciliation);
        out
    }
}

impl AuditWords {
    /// The reconciliation at the time of the export, as the legend states it.
    pub fn reconciliation(&self, recon: &crate::status::Reconciliation) -> String {
        if !self.french {
            return recon.line();
        }
        let count = |n: i64, (one, many): (&str, &str)| {
            let word = if n <= 1 { one } else { many };
            format!("{} {word}", crate::render::grouped_number(n, true))
        };
        let terms = [
            (recon.sent, DeliveryState::Sent),
            (recon.bounced, DeliveryState::Bounced),
            (recon.failed, DeliveryState::Failed),
            (recon.no_email, DeliveryState::NoEmail),
            (recon.pending, DeliveryState::Pending),
            (recon.deferred, DeliveryState::Deferred),
            (recon.sending, DeliveryState::Sending),
        ]
        .map(|(n, state)| count(n, crate::report::FRENCH.state_forms(state)))
        .join(" + ");
        format!(
            "Rapprochement au moment de l'export\u{a0}: {}, {} = {terms}",
            if recon.ok { "concordant" } else { "ÉCART" },
            count(recon.people, ("personne", "personnes"))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_and_event_has_words_in_both_languages() {
        for state in DeliveryState::ALL {
            assert!(!state_meaning(state, true).is_empty());
            assert!(!state_meaning(state, false).is_empty());
        }
        for kind in EventKind::ALL {
            let (name, fr, en) = event_words(kind);
            assert!(!name.is_empty() && !fr.is_empty() && !en.is_empty());
        }
        assert_eq!(PEOPLE_EN.map(|c| c.0), super::super::AUDIT_COLUMNS);
        assert_eq!(EVENTS_EN.map(|c| c.0), super::super::EVENT_COLUMNS);
    }
}
