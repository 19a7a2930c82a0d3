-- The helpline's side: advisers and their sessions, who looked at whom, call notes and paper
-- letter requests, and the indexes an adviser's searches need at 340,000 people.

-- An adviser of the helpline console. The password is an Argon2id PHC string; an adviser who
-- logs in through an authenticating reverse proxy may have none.
CREATE TABLE advisers (
    id            INTEGER PRIMARY KEY,
    login         TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    supervisor    INTEGER NOT NULL DEFAULT 0,    -- 1: may see the supervisor's counters
    created_at    INTEGER NOT NULL,
    disabled_at   INTEGER
);

-- A logged-in browser. Only the SHA-256 of the cookie's token is kept, so a copy of the database
-- opens no session; the CSRF token is the session's own, checked on every action.
CREATE TABLE console_sessions (
    token_sha256  TEXT PRIMARY KEY,
    adviser_id    INTEGER NOT NULL REFERENCES advisers(id),
    csrf_token    TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
);

-- Access to personal data must be traceable: every search and every person's page opened, with
-- the adviser, the kind of query (never its text: it may be an address) and whom it showed.
CREATE TABLE access_log (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    adviser     TEXT NOT NULL,
    action      TEXT NOT NULL,                  -- search | view | lookup
    query_kind  TEXT,                           -- notice_id | email | ref | name_postcode
    person_id   INTEGER,                        -- NULL: nobody found
    results     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX access_log_person ON access_log(person_id);
CREATE INDEX access_log_at ON access_log(at);

-- What a caller said. Erased by `purge` (the row stays, so the counts do).
CREATE TABLE call_notes (
    id          INTEGER PRIMARY KEY,
    person_id   INTEGER NOT NULL REFERENCES people(id),
    at          INTEGER NOT NULL,
    adviser     TEXT NOT NULL,
    note        TEXT,
    erased_at   INTEGER
);
CREATE INDEX call_notes_person ON call_notes(person_id, id);
CREATE INDEX call_notes_at ON call_notes(at);

-- People who asked for a paper letter: `export postal` includes them whatever their state.
CREATE TABLE paper_requests (
    person_id   INTEGER PRIMARY KEY REFERENCES people(id),
    at          INTEGER NOT NULL,
    adviser     TEXT NOT NULL
);

-- The adviser's searches: by address (the imported one or the alternative) and by postcode (the
-- last name is then compared among a few hundred people at most).
CREATE INDEX people_email ON people(email COLLATE NOCASE) WHERE email IS NOT NULL;
CREATE INDEX people_alt_email ON people(alt_email COLLATE NOCASE) WHERE alt_email IS NOT NULL;
CREATE INDEX people_postcode ON people(postcode) WHERE postcode IS NOT NULL;
-- The supervisor's counters of the day read the events by kind and time.
CREATE INDEX events_kind_at ON events(kind, at);
