-- The whole campaign state. Times are Unix milliseconds (UTC) in INTEGER columns: cheap to compare
-- in the claim query, rendered as RFC 3339 by the exports.

-- One row per affected person, as imported. Only masked forms of the identifier and phone are kept.
CREATE TABLE people (
    id                INTEGER PRIMARY KEY,
    ref               TEXT NOT NULL UNIQUE,          -- the source system's key
    notice_id         TEXT NOT NULL UNIQUE,          -- public, unguessable, quoted to the helpline
    email             TEXT,                          -- NULL: no usable address (state no_email)
    email_domain      TEXT,                          -- lowercased domain of email, for rates and stats
    alt_email         TEXT,                          -- second address, used after a hard bounce
    civility          TEXT,                          -- 'mr' | 'ms' | NULL
    first_name        TEXT,
    last_name         TEXT,
    language          TEXT NOT NULL,
    address_line1     TEXT,
    address_line2     TEXT,
    postcode          TEXT,
    city              TEXT,
    country           TEXT,
    phone_masked      TEXT,
    identifier_masked TEXT,
    exposed           TEXT NOT NULL,                 -- canonical categories joined by ';'
    extra             TEXT NOT NULL DEFAULT '{}',    -- other CSV columns, a JSON object
    row_hash          TEXT NOT NULL,                 -- hash of the imported fields: re-import detects changes
    import_run        INTEGER NOT NULL,              -- the import that last wrote this row
    imported_at       INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    purged_at         INTEGER
);

-- One delivery per person: its state machine. A resend starts a new generation of the same row;
-- the events table keeps every earlier step.
CREATE TABLE deliveries (
    person_id           INTEGER PRIMARY KEY REFERENCES people(id),
    state               TEXT NOT NULL CHECK (state IN
                          ('pending','sending','sent','deferred','failed','bounced','no_email')),
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
CREATE INDEX deliveries_due ON deliveries(state, next_attempt_at);
CREATE INDEX deliveries_message_id ON deliveries(message_id) WHERE message_id IS NOT NULL;

-- Append-only: every state change with its time. The regulator's evidence.
CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    person_id   INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    run_id      INTEGER,
    kind        TEXT NOT NULL,
    from_state  TEXT,
    to_state    TEXT,
    generation  INTEGER,
    detail      TEXT
);
CREATE INDEX events_person ON events(person_id, id);
-- Only `purge` may rewrite a detail (to erase an address quoted in a relay's reply).
CREATE TRIGGER events_append_only_update
    BEFORE UPDATE OF id, person_id, at, run_id, kind, from_state, to_state, generation ON events
    BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;

-- Every command that changes state (import, send, bounces, resend, purge) is a run.
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    command     TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    host        TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    sent        INTEGER NOT NULL DEFAULT 0,
    deferred    INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0,
    duplicates  INTEGER NOT NULL DEFAULT 0,
    outcome     TEXT,
    detail      TEXT
);

-- The one-sender lock: at most one row, held by a live send run.
CREATE TABLE lease (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    run_id       INTEGER NOT NULL,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);

-- Every bounce message read, once (keyed by a hash of its bytes), with what it said.
CREATE TABLE bounces (
    id            INTEGER PRIMARY KEY,
    fingerprint   TEXT NOT NULL,
    recipient     TEXT,
    person_id     INTEGER,
    generation    INTEGER,
    kind          TEXT NOT NULL,      -- hard | soft | forged | unmatched | ignored
    status        TEXT,
    diagnostic    TEXT,
    matched_by    TEXT,               -- token | message_id | notice_id | recipient
    source        TEXT,
    read_at       INTEGER NOT NULL,
    UNIQUE (fingerprint, recipient)
);
CREATE INDEX bounces_person ON bounces(person_id);

-- Campaign-wide values: the VERP and Message-ID signing key, created with the database.
CREATE TABLE campaign (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
