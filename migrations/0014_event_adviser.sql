-- The adviser who acted, as a column of the event: the helpline's counters of the day and its
-- calls of the day group and show events by it, and nothing reads it back from the detail text
-- (which purge may erase). Set when the event is written (`store::ledger::note_adviser`).
ALTER TABLE events ADD COLUMN adviser TEXT;

-- The adviser events recorded before: read once, here, from the text they were written with
-- ("adviser marie: corrected address m***@e***.fr").
UPDATE events SET adviser = substr(detail, 9, instr(detail, ':') - 9)
 WHERE adviser IS NULL AND kind IN ('address_corrected', 'paper_requested', 'call_note')
   AND detail LIKE 'adviser %:%';

-- Append-only as the rest of the event: who acted, once recorded, is never rewritten.
CREATE TRIGGER events_adviser_append_only
    BEFORE UPDATE OF adviser ON events WHEN OLD.adviser IS NOT NULL
    BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
