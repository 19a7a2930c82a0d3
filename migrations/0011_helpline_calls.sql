-- The helpline's second part: a last name and postcode found however they are typed (accents,
-- case, spaces, hyphens, apostrophes) by one index probe, the letter as it was sent kept per
-- generation, the paper letters exported, and the access log's "not ours" answers.

-- Search keys, computed by SQLite itself (virtual generated columns: no writer has to fill them,
-- and the import pays only the index). The fold is the same as `store::helpline::search_key`
-- (a unit test checks the two agree): Latin letters with accents to their base letter, then
-- lower case (ASCII), then spaces, hyphens, apostrophes and dots removed. Names in plain ASCII
-- skip the accent table.
ALTER TABLE people ADD COLUMN last_name_key TEXT GENERATED ALWAYS AS (
CASE WHEN last_name GLOB '*[^ -~]*'
        THEN replace(replace(replace(replace(replace(lower(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(last_name,'à','a'),'á','a'),'â','a'),'ã','a'),'ä','a'),'å','a'),'ā','a'),'ă','a'),'ą','a'),'À','a'),'Á','a'),'Â','a'),'Ã','a'),'Ä','a'),'Å','a'),'Ā','a'),'Ă','a'),'Ą','a'),'ç','c'),'ć','c'),'ĉ','c'),'ċ','c'),'č','c'),'Ç','c'),'Ć','c'),'Ĉ','c'),'Ċ','c'),'Č','c'),'ď','d'),'đ','d'),'Ď','d'),'Đ','d'),'è','e'),'é','e'),'ê','e'),'ë','e'),'ē','e'),'ĕ','e'),'ė','e'),'ę','e'),'ě','e'),'È','e'),'É','e'),'Ê','e'),'Ë','e'),'Ē','e'),'Ĕ','e'),'Ė','e'),'Ę','e'),'Ě','e'),'ĝ','g'),'ğ','g'),'ġ','g'),'ģ','g'),'Ĝ','g'),'Ğ','g'),'Ġ','g'),'Ģ','g'),'ĥ','h'),'ħ','h'),'Ĥ','h'),'Ħ','h'),'ì','i'),'í','i'),'î','i'),'ï','i'),'ĩ','i'),'ī','i'),'ĭ','i'),'į','i'),'ı','i'),'Ì','i'),'Í','i'),'Î','i'),'Ï','i'),'Ĩ','i'),'Ī','i'),'Ĭ','i'),'Į','i'),'İ','i'),'ĵ','j'),'Ĵ','j'),'ķ','k'),'Ķ','k'),'ĺ','l'),'ļ','l'),'ľ','l'),'ŀ','l'),'ł','l'),'Ĺ','l'),'Ļ','l'),'Ľ','l'),'Ŀ','l'),'Ł','l'),'ñ','n'),'ń','n'),'ņ','n'),'ň','n'),'Ñ','n'),'Ń','n'),'Ņ','n'),'Ň','n'),'ò','o'),'ó','o'),'ô','o'),'õ','o'),'ö','o'),'ø','o'),'ō','o'),'ŏ','o'),'ő','o'),'Ò','o'),'Ó','o'),'Ô','o'),'Õ','o'),'Ö','o'),'Ø','o'),'Ō','o'),'Ŏ','o'),'Ő','o'),'ŕ','r'),'ŗ','r'),'ř','r'),'Ŕ','r'),'Ŗ','r'),'Ř','r'),'ś','s'),'ŝ','s'),'ş','s'),'š','s'),'Ś','s'),'Ŝ','s'),'Ş','s'),'Š','s'),'ţ','t'),'ť','t'),'ŧ','t'),'Ţ','t'),'Ť','t'),'Ŧ','t'),'ù','u'),'ú','u'),'û','u'),'ü','u'),'ũ','u'),'ū','u'),'ŭ','u'),'ů','u'),'ű','u'),'ų','u'),'Ù','u'),'Ú','u'),'Û','u'),'Ü','u'),'Ũ','u'),'Ū','u'),'Ŭ','u'),'Ů','u'),'Ű','u'),'Ų','u'),'ŵ','w'),'Ŵ','w'),'ý','y'),'ÿ','y'),'ŷ','y'),'Ý','y'),'Ÿ','y'),'Ŷ','y'),'ź','z'),'ż','z'),'ž','z'),'Ź','z'),'Ż','z'),'Ž','z'),'æ','ae'),'Æ','ae'),'œ','oe'),'Œ','oe'),'ß','ss')), ' ', ''), '-', ''), '''', ''), '’', ''), '.', '')
        ELSE replace(replace(replace(replace(replace(lower(last_name), ' ', ''), '-', ''), '''', ''), '’', ''), '.', '') END

) VIRTUAL;
ALTER TABLE people ADD COLUMN first_name_key TEXT GENERATED ALWAYS AS (
CASE WHEN first_name GLOB '*[^ -~]*'
        THEN replace(replace(replace(replace(replace(lower(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(first_name,'à','a'),'á','a'),'â','a'),'ã','a'),'ä','a'),'å','a'),'ā','a'),'ă','a'),'ą','a'),'À','a'),'Á','a'),'Â','a'),'Ã','a'),'Ä','a'),'Å','a'),'Ā','a'),'Ă','a'),'Ą','a'),'ç','c'),'ć','c'),'ĉ','c'),'ċ','c'),'č','c'),'Ç','c'),'Ć','c'),'Ĉ','c'),'Ċ','c'),'Č','c'),'ď','d'),'đ','d'),'Ď','d'),'Đ','d'),'è','e'),'é','e'),'ê','e'),'ë','e'),'ē','e'),'ĕ','e'),'ė','e'),'ę','e'),'ě','e'),'È','e'),'É','e'),'Ê','e'),'Ë','e'),'Ē','e'),'Ĕ','e'),'Ė','e'),'Ę','e'),'Ě','e'),'ĝ','g'),'ğ','g'),'ġ','g'),'ģ','g'),'Ĝ','g'),'Ğ','g'),'Ġ','g'),'Ģ','g'),'ĥ','h'),'ħ','h'),'Ĥ','h'),'Ħ','h'),'ì','i'),'í','i'),'î','i'),'ï','i'),'ĩ','i'),'ī','i'),'ĭ','i'),'į','i'),'ı','i'),'Ì','i'),'Í','i'),'Î','i'),'Ï','i'),'Ĩ','i'),'Ī','i'),'Ĭ','i'),'Į','i'),'İ','i'),'ĵ','j'),'Ĵ','j'),'ķ','k'),'Ķ','k'),'ĺ','l'),'ļ','l'),'ľ','l'),'ŀ','l'),'ł','l'),'Ĺ','l'),'Ļ','l'),'Ľ','l'),'Ŀ','l'),'Ł','l'),'ñ','n'),'ń','n'),'ņ','n'),'ň','n'),'Ñ','n'),'Ń','n'),'Ņ','n'),'Ň','n'),'ò','o'),'ó','o'),'ô','o'),'õ','o'),'ö','o'),'ø','o'),'ō','o'),'ŏ','o'),'ő','o'),'Ò','o'),'Ó','o'),'Ô','o'),'Õ','o'),'Ö','o'),'Ø','o'),'Ō','o'),'Ŏ','o'),'Ő','o'),'ŕ','r'),'ŗ','r'),'ř','r'),'Ŕ','r'),'Ŗ','r'),'Ř','r'),'ś','s'),'ŝ','s'),'ş','s'),'š','s'),'Ś','s'),'Ŝ','s'),'Ş','s'),'Š','s'),'ţ','t'),'ť','t'),'ŧ','t'),'Ţ','t'),'Ť','t'),'Ŧ','t'),'ù','u'),'ú','u'),'û','u'),'ü','u'),'ũ','u'),'ū','u'),'ŭ','u'),'ů','u'),'ű','u'),'ų','u'),'Ù','u'),'Ú','u'),'Û','u'),'Ü','u'),'Ũ','u'),'Ū','u'),'Ŭ','u'),'Ů','u'),'Ű','u'),'Ų','u'),'ŵ','w'),'Ŵ','w'),'ý','y'),'ÿ','y'),'ŷ','y'),'Ý','y'),'Ÿ','y'),'Ŷ','y'),'ź','z'),'ż','z'),'ž','z'),'Ź','z'),'Ż','z'),'Ž','z'),'æ','ae'),'Æ','ae'),'œ','oe'),'Œ','oe'),'ß','ss')), ' ', ''), '-', ''), '''', ''), '’', ''), '.', '')
        ELSE replace(replace(replace(replace(replace(lower(first_name), ' ', ''), '-', ''), '''', ''), '’', ''), '.', '') END

) VIRTUAL;
ALTER TABLE people ADD COLUMN postcode_key TEXT GENERATED ALWAYS AS (
    upper(replace(replace(postcode, ' ', ''), '-', ''))
) VIRTUAL;
-- A miss costs what a hit does: one probe on (postcode, last name), the first name to narrow.
-- It replaces the index on the postcode alone.
DROP INDEX IF EXISTS people_postcode;
CREATE INDEX people_postcode_name ON people(postcode_key, last_name_key, first_name_key)
    WHERE postcode IS NOT NULL;

-- Every generation that went out by e-mail: when, and to which address (masked as the helpline
-- shows it: first character, ***, the domain). Kept by a trigger on the delivery, so that no path
-- that marks a letter sent can forget it; after a corrected address the helpline can still say
-- what the person was sent, beside the next letter.
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
