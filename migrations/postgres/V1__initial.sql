-- GMBot schema v1 (PostgreSQL). Times are Unix seconds; ids are Telegram's i64 ids.

CREATE TABLE owners (
    user_id         BIGINT PRIMARY KEY,
    username        TEXT,
    display_name    TEXT,
    can_be_messaged BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE protected_groups (
    group_id      BIGINT PRIMARY KEY,
    title         TEXT,
    owner_id      BIGINT REFERENCES owners (user_id) ON DELETE SET NULL,
    state         TEXT NOT NULL CHECK (state IN ('active', 'paused', 'unprotected')),
    paused_reason TEXT,
    settings      JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX protected_groups_owner ON protected_groups (owner_id);

-- A channel may be known by id, by username, or both; username_key is the
-- lower-cased username (Telegram usernames are case-insensitive).
CREATE TABLE enforced_channels (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chat_id      BIGINT UNIQUE,
    username     TEXT,
    username_key TEXT UNIQUE,
    title        TEXT,
    invite_link  TEXT,
    CHECK (chat_id IS NOT NULL OR username_key IS NOT NULL)
);

CREATE TABLE group_channel_links (
    group_id   BIGINT NOT NULL REFERENCES protected_groups (group_id) ON DELETE CASCADE ON UPDATE CASCADE,
    channel_id BIGINT NOT NULL REFERENCES enforced_channels (id) ON DELETE CASCADE,
    position   INTEGER NOT NULL,
    linked_at  BIGINT NOT NULL,
    PRIMARY KEY (group_id, channel_id)
);
CREATE INDEX group_channel_links_channel ON group_channel_links (channel_id);

-- Restrictions are never deleted: lifted rows are the history. No ON DELETE
-- CASCADE, so removing a group cannot silently drop that history.
CREATE TABLE restrictions (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id    BIGINT NOT NULL REFERENCES protected_groups (group_id) ON UPDATE CASCADE,
    user_id     BIGINT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('mute', 'kick')),
    state       TEXT NOT NULL CHECK (state IN ('pending', 'active', 'lifted')),
    reason      TEXT NOT NULL DEFAULT '',
    placed_at   BIGINT NOT NULL,
    until       BIGINT,
    lifted_at   BIGINT,
    lift_reason TEXT
);
CREATE INDEX restrictions_active_member ON restrictions (group_id, user_id) WHERE state <> 'lifted';
CREATE INDEX restrictions_active_user ON restrictions (user_id) WHERE state <> 'lifted';
CREATE INDEX restrictions_active_id ON restrictions (id) WHERE state <> 'lifted';
CREATE INDEX restrictions_group_history ON restrictions (group_id, id);

CREATE TABLE seen_members (
    group_id   BIGINT NOT NULL REFERENCES protected_groups (group_id) ON DELETE CASCADE ON UPDATE CASCADE,
    user_id    BIGINT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
