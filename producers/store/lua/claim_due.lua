-- claim_due: the webhook deliveries due now, each rescheduled to its claim's end, so exactly
-- one caller claims each.
-- KEYS: due
-- ARGV: now, until, limit
-- FIELDS:
-- RETURNS: the members claimed ("job_id delivery_id").
local due_key, now, until_, limit = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local due = redis.call('ZRANGEBYSCORE', due_key, '-inf', now, 'LIMIT', 0, limit)
for _, member in ipairs(due) do redis.call('ZADD', due_key, until_, member) end
return due
