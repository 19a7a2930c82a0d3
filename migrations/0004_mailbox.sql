-- Where each bounce mailbox folder read over IMAP was read up to. A UID means something only
-- within one UIDVALIDITY, so both are kept; a new UIDVALIDITY reads the folder again from the
-- start (the bounces table's fingerprints keep a message read twice from counting twice).
-- The position is saved in the transaction that records the messages read, so a run killed
-- half-way neither reads a message twice into the ledger nor skips one.
CREATE TABLE mailbox_cursors (
    mailbox     TEXT PRIMARY KEY,   -- imaps://user@host:port/folder (never a password)
    uidvalidity INTEGER NOT NULL,
    last_uid    INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
