-- Batch audits (`gmbot audit`) and the MTProto session the member listing signs in with.

-- One row per audit run. `cursor` is where the run goes on from (JSON: the directory sweep's
-- query and offset, or the seen-members position); it is written in the same transaction as
-- the page's results, so a killed run resumes after its last finished page.
CREATE TABLE audit_runs (
    id              BIGSERIAL PRIMARY KEY,
    group_id        BIGINT NOT NULL REFERENCES protected_groups (group_id) ON DELETE CASCADE ON UPDATE CASCADE,
    state           TEXT NOT NULL CHECK (state IN ('running', 'finished', 'abandoned')),
    apply           BOOLEAN NOT NULL,
    source          TEXT NOT NULL CHECK (source IN ('directory', 'seen_only')),
    cursor          TEXT NOT NULL,
    pages           BIGINT NOT NULL DEFAULT 0,
    directory_total BIGINT,
    started_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    ended_at        BIGINT
);
-- At most one unfinished run per group.
CREATE UNIQUE INDEX audit_runs_unfinished ON audit_runs (group_id) WHERE state = 'running';

-- What a run found for each member, once per member (a member listed by several search
-- prefixes, or on a page repeated after a resume, keeps its first row).
CREATE TABLE audit_members (
    run_id     BIGINT NOT NULL REFERENCES audit_runs (id) ON DELETE CASCADE,
    user_id    BIGINT NOT NULL,
    outcome    TEXT NOT NULL CHECK (outcome IN ('subscribed', 'not_subscribed', 'unverifiable', 'exempt')),
    restricted BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (run_id, user_id)
);

-- grammers' Session trait on GMBot's own database. `dc_options` holds the authorization keys
-- (JSON, hex): whoever reads them can act as the bot. The lease keeps one session in one
-- connection pool at a time (grammers: a session must not be used by two pools at once).
CREATE TABLE mtproto_sessions (
    name         TEXT PRIMARY KEY,
    home_dc      BIGINT NOT NULL DEFAULT 0,
    dc_options   TEXT NOT NULL DEFAULT '[]',
    updates      TEXT NOT NULL DEFAULT '{}',
    lease_holder TEXT,
    lease_until  BIGINT,
    updated_at   BIGINT NOT NULL
);

CREATE TABLE mtproto_peers (
    session      TEXT NOT NULL REFERENCES mtproto_sessions (name) ON DELETE CASCADE,
    peer_id      BIGINT NOT NULL,
    access_hash  BIGINT,
    is_bot       BOOLEAN,
    is_self      BOOLEAN,
    channel_kind TEXT,
    PRIMARY KEY (session, peer_id)
);
CREATE INDEX mtproto_peers_self ON mtproto_peers (session) WHERE is_self;
