-- The same deliveries table, with its state check written as comparisons. SQLite evaluates
-- `state IN ('pending', ...)` in a CHECK by building a small table for every row written: that
-- doubled the cost of inserting deliveries at import and of every state change while sending.
-- SQLite cannot change a CHECK in place, so the table is rebuilt (its documented procedure).

CREATE TABLE deliveries_new (
    person_id           INTEGER PRIMARY KEY REFERENCES people(id),
    state               TEXT NOT NULL CHECK (state = 'pending' OR state = 'sending' OR state = 'sent'
                          OR state = 'deferred' OR state = 'failed' OR state = 'bounced'
                          OR state = 'no_email'),
    generation          INTEGER NOT NULL DEFAULT 1,
    attempts            INTEGER NOT NULL DEFAULT 0,  -- attempts in this generation
    generation_started_at INTEGER NOT NULL,
    email               TEXT,                        -- the address this generation goes to
    email_domain        TEXT,
    next_attempt_at     INTEGER,                     -- deferred: not before this time
    first_attempt_at    INTEGER,
    last_attempt_at     INTEGER,
    sent_at             INTEGER,
    claimed_by          INTEGER,                     -- run id while 'sending'
    claimed_from        TEXT,                        -- the state it was claimed from, to give it back
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
    failed_email        TEXT,                        -- the address that failed or bounced last
    updated_at          INTEGER NOT NULL
);
INSERT INTO deliveries_new SELECT * FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_new RENAME TO deliveries;
CREATE INDEX deliveries_due ON deliveries(state, next_attempt_at);
CREATE INDEX deliveries_message_id ON deliveries(message_id) WHERE message_id IS NOT NULL;
