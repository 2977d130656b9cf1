-- archive_drop: take a job the archive holds a confirmed copy of out of Redis, unless it changed since.
-- KEYS: job, all, status_index, kind_index, conn_index, batch_jobs, counts, idem, marker
-- ARGV: job_id, status, updated_at, deliveries, count_field
-- FIELDS: status, updated_at, notify:*
-- RETURNS: 1 when the job left Redis, 0 when it changed after its copy (a replay, a redelivery) or is gone.
--
-- The copy is the version the mover read: same status, same updated_at ('' none), the same number
-- of webhook deliveries. Its index entries and its count ("status|kind|connection") leave in this
-- call, so the counts stay exact; batch_jobs '' for a job of no batch, idem '' for one with no key.
-- While the job's idempotency key still names it, marker keeps answering for it (create.lua).
local job_key = KEYS[1]
local job_id, status, updated, deliveries, count_field = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local found = redis.call('HMGET', job_key, 'status', 'updated_at')
if found[1] ~= status or (found[2] or '') ~= updated then return 0 end
local n = 0
for _, field in ipairs(redis.call('HKEYS', job_key)) do
  if string.sub(field, 1, 7) == 'notify:' then n = n + 1 end
end
if n ~= tonumber(deliveries) then return 0 end
if KEYS[8] ~= '' and redis.call('GET', KEYS[8]) == job_id then
  local ttl = redis.call('PTTL', KEYS[8])
  if ttl > 0 then redis.call('SET', KEYS[9], '1', 'PX', ttl) end
end
redis.call('DEL', job_key)
for i = 2, 5 do redis.call('ZREM', KEYS[i], job_id) end
if KEYS[6] ~= '' then redis.call('ZREM', KEYS[6], job_id) end
redis.call('HINCRBY', KEYS[7], count_field, -1)
return 1
