-- settle: write a step's end (or any transition) in one call.
-- KEYS: job, status_from, status_to, throughput, outbox
-- ARGV: job_id, token, score, expire, outbox_entry, now_ms, commands, batch, field_count, ...fields
-- FIELDS: lease, status
-- LIB: batch
-- RETURNS: 1, or 0 (nothing written) when the lease is another holder's.
--
-- The fields (field_count name/value pairs, from codec) are written, and the lease released when token is
-- not ''; status_to '' keeps the status, else the job's index entry moves from status_from;
-- throughput '' counts nothing, else the finished-jobs counter of the minute goes up; expire in
-- seconds (> 0 expire, -1 persist, 0 keep); outbox_entry '' writes none; commands is a JSON
-- list of further commands (the next step's message, the transition's events and delivery).
-- batch ('' none): the job's batch context (lib/batch.lua) with `to` (the new status) and `size`:
-- the batch's counts move from the status the job has (read here, not assumed) to `to`.
local job_key, status_from, status_to, throughput, outbox = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local job_id, token, score, expire = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local outbox_entry, now_ms, commands, batch_ctx, field_count = ARGV[5], ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[9])
local first = 10

if token ~= '' then
  local lease = redis.call('HGET', job_key, 'lease')
  if not lease or string.sub(lease, 1, #token + 1) ~= token .. ':' then return 0 end
end
local was = ''
if batch_ctx ~= '' then was = redis.call('HGET', job_key, 'status') or 'queued' end
local write = {}
for i = first, first - 1 + 2 * field_count do write[#write + 1] = ARGV[i] end
if token ~= '' then
  write[#write + 1] = 'lease'
  write[#write + 1] = ''
end
redis.call('HSET', job_key, unpack(write))
if status_to ~= '' then
  redis.call('ZREM', status_from, job_id)
  redis.call('ZADD', status_to, score, job_id)
end
if throughput ~= '' and redis.call('INCR', throughput) == 1 then redis.call('EXPIRE', throughput, 7200) end
if expire > 0 then redis.call('EXPIRE', job_key, expire) elseif expire < 0 then redis.call('PERSIST', job_key) end
if outbox_entry ~= '' then redis.call('ZADD', outbox, now_ms, outbox_entry) end
for _, command in ipairs(cjson.decode(commands)) do redis.call(unpack(command)) end
if batch_ctx ~= '' then
  local ctx = cjson.decode(batch_ctx)
  batch.move(ctx, was, ctx.to, ctx.size, job_key)
end
return 1
