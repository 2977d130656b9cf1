-- forget: take a job that is gone (purged, or its record expired) out of every index and the counts.
-- KEYS: all, kind_names, conn_names, counts
-- ARGV: job_id, status_prefix, kind_prefix, conn_prefix, batch, ...statuses
-- FIELDS:
-- LIB: batch
-- RETURNS: 1 when the job was counted and is no longer, else 0.
--
-- Where the job stood is read from the indexes it leaves (its record may have expired): the one
-- status, kind and connection index that held it. Atomic, so two sweeps never both count it out.
-- batch ('' none: a record that expired, whose batch nobody knows any more): the batch context
-- (lib/batch.lua) of a purged job, with its file's `size`: the job leaves the batch's counts too.
local all_index, kind_names, conn_names, counts_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local job_id, status_prefix, kind_prefix, conn_prefix, batch_ctx = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
redis.call('ZREM', all_index, job_id)
local function left(prefix, names)
  local found = nil
  for _, name in ipairs(names) do
    if redis.call('ZREM', prefix .. name, job_id) == 1 then found = name end
  end
  return found
end
local statuses = {}
for i = 6, #ARGV do statuses[#statuses + 1] = ARGV[i] end
local status = left(status_prefix, statuses)
if status and batch_ctx ~= '' then
  local ctx = cjson.decode(batch_ctx)
  batch.forget(ctx, job_id, status, ctx.size)
end
local kind = left(kind_prefix, redis.call('SMEMBERS', kind_names))
local conn = left(conn_prefix, redis.call('SMEMBERS', conn_names))
if status and kind and conn then
  redis.call('HINCRBY', counts_key, status .. '|' .. kind .. '|' .. conn, -1)
  return 1
end
return 0
