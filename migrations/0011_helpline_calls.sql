-- The helpline's second part: a last name and postcode found however they are typed (accents,
-- case, spaces, hyphens, apostrophes) by one index probe, the letter as it was sent kept per
-- generation, the paper letters exported, and the access log's "not ours" answers.

-- Search keys: the last name, first name and postcode as the search compares them (accents
-- folded, lower case, spaces, hyphens, apostrophes and dots removed; see
-- `store::helpline::name_key`). Computed by the console (`serve`) before it answers, for every
-- row whose keys are missing; an import or a purge that changes a name or a postcode clears them
-- (trigger below), so a key is never stale when read. The import itself does not pay for them.
ALTER TABLE people ADD COLUMN last_name_key TEXT;
ALTER TABLE people ADD COLUMN first_name_key TEXT;
ALTER TABLE people ADD COLUMN postcode_key TEXT;
CREATE INDEX people_keys_missing ON people(id) WHERE postcode_key IS NULL AND postcode IS NOT NULL;
CREATE TRIGGER people_keys_stale AFTER UPDATE OF last_name, first_name, postcode ON people
    WHEN NEW.postcode_key IS NOT NULL
    BEGIN
        UPDATE people SET postcode_key = NULL, last_name_key = NULL, first_name_key = NULL
         WHERE id = NEW.id;
    END;
-- A miss costs what a hit does: one probe on (postcode, last name), the first name to narrow.
-- It replaces the index on the postcode alone.
DROP INDEX IF EXISTS people_postcode;
CREATE INDEX people_postcode_name ON people(postcode_key, last_name_key, first_name_key)
    WHERE postcode_key IS NOT NULL;

-- Every generation that went out by e-mail: when, and to which address (masked as the helpline
-- shows it: first character, ***, the domain). Kept by a trigger on the delivery, so that no path
-- that marks a letter sent can forget it; after a corrected address the helpline can still say
-- what the person was sent, beside the next letter. A later migration that rebuilds `deliveries`
-- (create, copy, drop, rename) drops the trigger with the old table: it must create it again.
CREATE TABLE letters_sent (
    person_id     INTEGER NOT NULL,
    generation    INTEGER NOT NULL,
    sent_at       INTEGER NOT NULL,
    email_masked  TEXT,
    message_id    TEXT,
    PRIMARY KEY (person_id, generation)
);
INSERT OR IGNORE INTO letters_sent (person_id, generation, sent_at, email_masked, message_id)
    SELECT person_id, generation, sent_at,
           substr(email, 1, 1) || '***@' || substr(email, instr(email, '@') + 1), message_id
      FROM deliveries WHERE sent_at IS NOT NULL AND email IS NOT NULL;
CREATE TRIGGER letters_sent_record AFTER UPDATE OF sent_at ON deliveries
    WHEN NEW.sent_at IS NOT NULL AND NEW.email IS NOT NULL
    BEGIN
        INSERT OR REPLACE INTO letters_sent (person_id, generation, sent_at, email_masked, message_id)
        VALUES (NEW.person_id, NEW.generation, NEW.sent_at,
                substr(NEW.email, 1, 1) || '***@' || substr(NEW.email, instr(NEW.email, '@') + 1),
                NEW.message_id);
    END;

-- People written to a postal export (`export postal`): the first and the latest time.
CREATE TABLE postal_exports (
    person_id   INTEGER PRIMARY KEY,
    first_at    INTEGER NOT NULL,
    last_at     INTEGER NOT NULL
);

-- What a look-up answered: 'not_ours' for a notice number nobody was sent (the first sign of a
-- phishing wave quoting made-up numbers); the supervisor counts them per hour.
ALTER TABLE access_log ADD COLUMN verdict TEXT;
-- Person pages one adviser opened in the last hour (the cap), and the day's figures per adviser.
CREATE INDEX access_log_adviser ON access_log(adviser, action, at);
CREATE INDEX access_log_verdict ON access_log(verdict, at) WHERE verdict IS NOT NULL;
