-- Updates accepted from Telegram and not yet handled: written at a stop for what was not
-- drained, and by long polling for a backlog it has confirmed to Telegram. The next start
-- takes them (holding them until `taken_until`, so two instances starting together do not
-- both take one) and deletes each once handled.
CREATE TABLE update_journal (
    update_id   BIGINT PRIMARY KEY,
    payload     TEXT   NOT NULL,
    received_at BIGINT NOT NULL,
    taken_until BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX update_journal_available ON update_journal (taken_until, update_id);
