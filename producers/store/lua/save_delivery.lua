-- save_delivery: write a webhook delivery's record into its job (never bringing back a job
-- deleted meanwhile) and, with when ~= '', its place in the due set.
-- KEYS: job, due
-- ARGV: field, record, member, when
-- FIELDS: notify:*
-- RETURNS: 1 when the record was written, 0 when the job is gone.
-- when: '' leaves the due set alone, 'done' takes the member out, else its next attempt (epoch s).
local job_key, due_key, field, record, member, when = KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local written = 0
if redis.call('EXISTS', job_key) == 1 then
  redis.call('HSET', job_key, field, record)
  written = 1
end
if when == 'done' then
  redis.call('ZREM', due_key, member)
elseif when ~= '' then
  redis.call('ZADD', due_key, when, member)
end
return written
