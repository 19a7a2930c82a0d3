-- Past the relay: delivery status notifications (RFC 3461). A letter whose relay was asked for
-- them (NOTIFY=SUCCESS,FAILURE,DELAY) and that reported it relayed or delivered to the person's
-- provider is `delivered`: accepted by the provider, not read by the person.
--
-- The state check gains 'delivered'. SQLite cannot change a CHECK in place, so the table is
-- rebuilt (its documented procedure, as in 0002), with the columns added since and the new ones.
CREATE TABLE deliveries_new (
    person_id           INTEGER PRIMARY KEY REFERENCES people(id),
    state               TEXT NOT NULL CHECK (state = 'pending' OR state = 'sending' OR state = 'sent'
                          OR state = 'deferred' OR state = 'failed' OR state = 'bounced'
                          OR state = 'no_email' OR state = 'delivered'),
    generation          INTEGER NOT NULL DEFAULT 1,
    attempts            INTEGER NOT NULL DEFAULT 0,
    generation_started_at INTEGER NOT NULL,
    email               TEXT,
    email_domain        TEXT,
    next_attempt_at     INTEGER,
    first_attempt_at    INTEGER,
    last_attempt_at     INTEGER,
    sent_at             INTEGER,
    claimed_by          INTEGER,
    claimed_from        TEXT,
    last_error          TEXT,
    smtp_code           INTEGER,
    smtp_reply          TEXT,
    message_id          TEXT,
    letters_fingerprint TEXT,
    content_sha256      TEXT,
    possible_duplicate  INTEGER NOT NULL DEFAULT 0,
    bounced_at          INTEGER,
    bounce_status       TEXT,
    bounce_diagnostic   TEXT,
    failed_email        TEXT,
    updated_at          INTEGER NOT NULL,
    handed_over_at      INTEGER,
    claim_day           TEXT,
    claim_rank          INTEGER NOT NULL DEFAULT 0,
    relay               TEXT,
    -- 1: the relay was asked to report this generation's fate (it offered DSN and the setting
    -- was on); 0: it was not, and `sent` is all that will ever be known.
    notify_requested    INTEGER NOT NULL DEFAULT 0,
    -- When the relay reports the provider accepted the letter, who (Remote-MTA) and what it said.
    delivered_at        INTEGER,
    delivered_by        TEXT,
    delivered_reply     TEXT
);
INSERT INTO deliveries_new (person_id, state, generation, attempts, generation_started_at, email,
    email_domain, next_attempt_at, first_attempt_at, last_attempt_at, sent_at, claimed_by,
    claimed_from, last_error, smtp_code, smtp_reply, message_id, letters_fingerprint,
    content_sha256, possible_duplicate, bounced_at, bounce_status, bounce_diagnostic,
    failed_email, updated_at, handed_over_at, claim_day, claim_rank, relay)
SELECT person_id, state, generation, attempts, generation_started_at, email,
    email_domain, next_attempt_at, first_attempt_at, last_attempt_at, sent_at, claimed_by,
    claimed_from, last_error, smtp_code, smtp_reply, message_id, letters_fingerprint,
    content_sha256, possible_duplicate, bounced_at, bounce_status, bounce_diagnostic,
    failed_email, updated_at, handed_over_at, claim_day, claim_rank, relay
FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_new RENAME TO deliveries;
CREATE INDEX deliveries_due ON deliveries(state, next_attempt_at);
CREATE INDEX deliveries_message_id ON deliveries(message_id) WHERE message_id IS NOT NULL;
CREATE INDEX deliveries_claim_order ON deliveries(state, generation, claim_rank);
-- 0011's trigger went with the old table: the same again.
CREATE TRIGGER letters_sent_record AFTER UPDATE OF sent_at ON deliveries
    WHEN NEW.sent_at IS NOT NULL AND NEW.email IS NOT NULL
    BEGIN
        INSERT OR REPLACE INTO letters_sent (person_id, generation, sent_at, email_masked, message_id)
        VALUES (NEW.person_id, NEW.generation, NEW.sent_at,
                substr(NEW.email, 1, 1) || '***@' || substr(NEW.email, instr(NEW.email, '@') + 1),
                NEW.message_id);
    END;

-- Whether each relay a send run used offered delivery status notifications (EHLO DSN), and
-- whether they were asked for (the setting may turn them off): `status` says which relays do
-- not confirm delivery.
CREATE TABLE run_relay_notifications (
    run_id      INTEGER NOT NULL,
    relay       TEXT NOT NULL,      -- host:port
    offered     INTEGER NOT NULL,   -- 1: its EHLO listed DSN
    requested   INTEGER NOT NULL,   -- 1: offered and the setting on: NOTIFY went with each letter
    PRIMARY KEY (run_id, relay)
);
