-- release: queue the scheduled jobs that are due, each with its first message, in one call.
-- KEYS: due, scheduled, queued, events, outbox, counts
-- ARGV: job_prefix, now_ms, now, events_max, ready_keys, count, batch_prefix, ...jobs
-- FIELDS: meta, status, score, updated_at
-- LIB: ready
-- RETURNS: the ids released; an id that went into its connection's ready sets (no message:
--   the dispatcher releases it, worker.dispatch) ends with '+'.
--
-- jobs: count groups of 5: id, message list ('' none), message, outbox entry ('' none), ready
-- ('' none, else 'window|level': as in create.lua, the tenant read from the job's meta; a job
-- whose kind has window jobs queued or running on its connection waits in the ready sets
-- instead of getting its message, so a mass of jobs due at once keeps the connection's order by
-- priority). A job is
-- released only while it is still scheduled and its not_before (its score in due) has come: a
-- job cancelled or deleted meanwhile just leaves the due set, and a second releaser holding the
-- same ids finds them gone, so each job gets one message. A released job moves from the
-- scheduled index to the queued one, appends its job.queued event and gets its message (on the
-- store's own Redis) or its outbox entry (another broker: the caller publishes it); its count
-- moves from scheduled to queued (producers.store.counts), and so does its batch's (batch_prefix:
-- keys.batch's; a batch with a job still scheduled is not complete, so nothing completes here).
local due_key, scheduled_index, queued_index, events_key, outbox = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local counts_key = KEYS[6]
local job_prefix, now_ms, now, events_max, n = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], tonumber(ARGV[6])
local rk = ARGV[5] ~= '' and cjson.decode(ARGV[5]) or nil
local batch_prefix = ARGV[7]
local width, base = 5, 8
local released = {}
for j = 0, n - 1 do
  local a = base + j * width
  local id, list, message, entry, held = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local at = redis.call('ZSCORE', due_key, id)
  if at and tonumber(at) <= now_ms then
    local key = job_prefix .. id
    local found = redis.call('HMGET', key, 'status', 'score', 'meta')
    redis.call('ZREM', due_key, id)
    if found[1] == 'scheduled' then
      local meta = cjson.decode(found[3])
      redis.call('HSET', key, 'status', 'queued', 'updated_at', now)
      redis.call('ZREM', scheduled_index, id)
      redis.call('ZADD', queued_index, found[2] or 0, id)
      local combo = '|' .. meta.kind .. '|' .. meta.connection
      local waits = false
      if held ~= '' and rk then
        local window, level = string.match(held, '^(%d+)|(%d)$')
        local found = redis.call('HMGET', counts_key, 'queued' .. combo, 'running' .. combo)
        if (tonumber(found[1]) or 0) + (tonumber(found[2]) or 0) >= tonumber(window) then
          waits = true
          ready.add(rk, meta.connection, level, meta.tenant or '', id, now_ms, ready.lead(window))
        end
      end
      redis.call('HINCRBY', counts_key, 'scheduled' .. combo, -1)
      redis.call('HINCRBY', counts_key, 'queued' .. combo, 1)
      if meta.batch and redis.call('EXISTS', batch_prefix .. meta.batch) == 1 then
        redis.call('HINCRBY', batch_prefix .. meta.batch, 'n:scheduled', -1)
        redis.call('HINCRBY', batch_prefix .. meta.batch, 'n:queued', 1)
      end
      redis.call('XADD', events_key, 'MAXLEN', '~', events_max, '*', 'type', 'job.queued', 'data', cjson.encode({
        job = id, kind = meta.kind, connection = meta.connection, step = cjson.null, status = 'queued', time = now,
        tenant = meta.tenant}))
      if waits then
        released[#released + 1] = id .. '+'
      else
        if list ~= '' then redis.call('LPUSH', list, message) end
        if entry ~= '' then redis.call('ZADD', outbox, now_ms, entry) end
        released[#released + 1] = id
      end
    end
  end
end
return released
