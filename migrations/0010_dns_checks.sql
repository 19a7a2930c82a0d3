-- Each `check --dns` run: when, whether everything passed, and the whole report (JSON), so that
-- `status` can show the last result and `send` can warn when it failed or never ran.
CREATE TABLE dns_checks (
    id          INTEGER PRIMARY KEY,
    checked_at  TEXT NOT NULL,
    passed      INTEGER NOT NULL CHECK (passed IN (0, 1)),
    problems    INTEGER NOT NULL,
    dns_failures INTEGER NOT NULL,
    report      TEXT NOT NULL
);
