-- The relay's reply as columns taken from its type (`smtp_reply::SmtpReply`): its code was
-- already `smtp_code`; its enhanced status code (RFC 3463, `5.1.1`) and the step of the session
-- it answered (`RCPT TO`, `after the message`, as `Step::as_str` names them) join it, so that
-- `status` groups reasons by them and nothing reads them back from the text. `smtp_reply` and
-- `last_error` keep the text for people. Added columns: `deliveries` is not rebuilt, and the
-- trigger `letters_sent_record` (0011, re-created by 0012) stays as it is.
ALTER TABLE deliveries ADD COLUMN smtp_enhanced TEXT;
ALTER TABLE deliveries ADD COLUMN smtp_step TEXT;

-- The letters recorded before: read once, here, from the text they were recorded with
-- ("451 4.7.1 Greylisted (at RCPT TO)", "gave up after 5 attempts: 451 …", "250 2.0.0 Ok: …",
-- the last one the reply after the message).
UPDATE deliveries SET
    smtp_enhanced = CASE
        WHEN r.word GLOB '[245].[0-9]*.[0-9]*' AND r.word NOT GLOB '*[^0-9.]*' THEN r.word
    END,
    smtp_step = CASE
        WHEN r.reply LIKE '% (at greeting)' THEN 'greeting'
        WHEN r.reply LIKE '% (at EHLO)' THEN 'EHLO'
        WHEN r.reply LIKE '% (at STARTTLS)' THEN 'STARTTLS'
        WHEN r.reply LIKE '% (at AUTH)' THEN 'AUTH'
        WHEN r.reply LIKE '% (at MAIL FROM)' THEN 'MAIL FROM'
        WHEN r.reply LIKE '% (at RCPT TO)' THEN 'RCPT TO'
        WHEN r.reply LIKE '% (at DATA)' THEN 'DATA'
        ELSE 'after the message'
    END
FROM (
    SELECT person_id, reply, substr(reply, 5, instr(substr(reply, 5) || ' ', ' ') - 1) AS word
    FROM (
        SELECT person_id,
               CASE WHEN text LIKE 'gave up after % attempts: %'
                    THEN substr(text, instr(text, 'attempts: ') + 10) ELSE text END AS reply
        FROM (SELECT person_id, COALESCE(smtp_reply, last_error) AS text FROM deliveries
              WHERE smtp_code IS NOT NULL)
    )
) AS r
WHERE deliveries.person_id = r.person_id;
