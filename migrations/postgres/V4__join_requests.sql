-- Join requests the join gate is deciding (PostgreSQL). One row per (group, requester): a new
-- request after a decided one replaces it. Pending rows are what a restart resumes; decided
-- rows are kept for a day (check on join skips members the gate approved), then purged.
CREATE TABLE join_requests (
    group_id     BIGINT NOT NULL REFERENCES protected_groups (group_id) ON DELETE CASCADE ON UPDATE CASCADE,
    user_id      BIGINT NOT NULL,
    user_chat_id BIGINT NOT NULL,
    requested_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    notice_id    BIGINT,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'declined', 'released')),
    decided_at   BIGINT,
    PRIMARY KEY (group_id, user_id)
);

-- The sweep's query: pending requests whose wait ran out, soonest first.
CREATE INDEX join_requests_due ON join_requests (expires_at) WHERE state = 'pending';
-- The purge of decided rows.
CREATE INDEX join_requests_decided ON join_requests (decided_at) WHERE state <> 'pending';
