-- One open (pending or active) restriction per (group, member), enforced by the schema so
-- that counts and /status are right even when two updates race to mute the same member.
-- Duplicates an older version may have written are closed first, keeping the newest row
-- (the highest id), so an existing database migrates.
UPDATE restrictions
SET state = 'lifted',
    lifted_at = EXTRACT(EPOCH FROM now())::BIGINT,
    -- The member's restriction is the newest row; the older ones stand for nothing.
    lift_reason = 'not_applied'
WHERE state <> 'lifted'
  AND id NOT IN (
    SELECT MAX(id) FROM restrictions WHERE state <> 'lifted' GROUP BY group_id, user_id
  );

-- The unique index serves the lookups the plain one served.
DROP INDEX restrictions_active_member;
CREATE UNIQUE INDEX restrictions_active_member ON restrictions (group_id, user_id) WHERE state <> 'lifted';
