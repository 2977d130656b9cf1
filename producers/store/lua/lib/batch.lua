-- lib batch: a job's batch, moved with the job's status. Prepended to every script whose header
-- says "LIB: batch" (producers.store.loader); defines the local table `batch` and nothing else.
--
-- A batch is the hash ctx.key (codec BATCH_*: spec, total, n:{status}, bytes_done, sealed,
-- completed, completions, purged, notify:*) and its jobs' sorted set ctx.members. ctx is the JSON the
-- caller builds (producers.store.batches.batch_context): key, members, id, now (ISO), now_s
-- (epoch s), events, events_max, due, member (the due member's prefix), delivery (a fresh
-- delivery id), retention (s). Every move is O(1): a few HINCRBYs, never a scan.
local batch = {}

-- A job in this status is still to run (the batch is not complete while it has one).
function batch.waits(status)
  return status == 'queued' or status == 'running' or status == 'scheduled'
end

-- Completion: sealed, not completed yet, and no job left scheduled, queued or running. Writes the time,
-- the batch.completed event, the webhook delivery (with a callback URL) and the expiry: with its
-- last job (the retention) when every job succeeded, else kept like a failed job.
function batch.complete(ctx)
  local key = ctx.key
  local v = redis.call('HMGET', key, 'sealed', 'completed', 'n:queued', 'n:running', 'n:succeeded',
    'n:failed', 'n:cancelled', 'spec', 'total', 'n:scheduled')
  if not v[1] or v[2] then return 0 end
  if (tonumber(v[3]) or 0) + (tonumber(v[4]) or 0) + (tonumber(v[10]) or 0) > 0 then return 0 end
  local run = redis.call('HINCRBY', key, 'completions', 1)
  redis.call('HSET', key, 'completed', ctx.now)
  local succeeded, failed, cancelled = tonumber(v[5]) or 0, tonumber(v[6]) or 0, tonumber(v[7]) or 0
  local spec = cjson.decode(v[8])
  local status = 'succeeded'
  if failed + cancelled > 0 then status = 'failed' end
  redis.call('XADD', ctx.events, 'MAXLEN', '~', ctx.events_max, '*', 'type', 'batch.completed', 'data',
    cjson.encode({batch = ctx.id, name = spec.name or cjson.null, status = status, time = ctx.now, run = run,
                  total = tonumber(v[9]) or 0, succeeded = succeeded, failed = failed, cancelled = cancelled}))
  if spec.callback_url then
    redis.call('HSET', key, 'notify:' .. ctx.delivery, cjson.encode({
      id = ctx.delivery, event = 'batch.completed', run = run, trigger = 'end', created_at = ctx.now,
      status = 'pending', attempts = 0, next_attempt_at = ctx.now}))
    redis.call('ZADD', ctx.due, ctx.now_s, ctx.member .. ctx.delivery)
  end
  if status == 'succeeded' and ctx.retention > 0 then
    redis.call('EXPIRE', key, ctx.retention)
    redis.call('EXPIRE', ctx.members, ctx.retention)
  else
    redis.call('PERSIST', key)
    redis.call('PERSIST', ctx.members)
  end
  return 1
end

-- A job of the batch went from status `from` to `to` (its file `size` bytes; `job` its hash):
-- move the counts, a job that runs again re-opens a completed batch, one that ends may complete it.
-- bytes_done: what the job's uploads sent (batch.sent, from progress.lua) while it runs; when it
-- succeeds, its whole file (the rest is added); when it fails or is cancelled, nothing (what its
-- uploads sent is taken back: a replay sends the file again and counts it again). The job's hash
-- keeps what it added (batch_bytes), so a retried upload never counts twice.
function batch.move(ctx, from, to, size, job)
  if from == to or redis.call('EXISTS', ctx.key) == 0 then return end
  redis.call('HINCRBY', ctx.key, 'n:' .. from, -1)
  redis.call('HINCRBY', ctx.key, 'n:' .. to, 1)
  if size > 0 then
    local counted = tonumber(redis.call('HGET', job, 'batch_bytes')) or 0
    if from == 'succeeded' and counted == 0 then counted = size end  -- succeeded before batch_bytes existed
    local keep = 0
    if to == 'succeeded' then keep = size elseif batch.waits(to) then keep = counted end
    if from == 'succeeded' and to ~= 'succeeded' then keep = 0 end
    if keep ~= counted then
      redis.call('HINCRBY', ctx.key, 'bytes_done', keep - counted)
      redis.call('HSET', job, 'batch_bytes', keep)
    end
  end
  if batch.waits(to) then
    if redis.call('HDEL', ctx.key, 'completed') == 1 then
      redis.call('PERSIST', ctx.key)
      redis.call('PERSIST', ctx.members)
    end
  else
    batch.complete(ctx)
  end
end

-- An upload of a job of the batch (its hash `job`) has sent `sent` bytes: bytes_done grows by
-- what it sent beyond the most the job counted so far (a retried upload starts again from 0 and
-- adds nothing until it passes that).
function batch.sent(key, job, sent)
  local counted = tonumber(redis.call('HGET', job, 'batch_bytes')) or 0
  if sent <= counted or redis.call('EXISTS', key) == 0 then return end
  redis.call('HINCRBY', key, 'bytes_done', sent - counted)
  redis.call('HSET', job, 'batch_bytes', sent)
end

-- A job of the batch is gone (purged: its hash is deleted already), counted `status` until now:
-- it leaves the batch as if never submitted (total, its status's count, its bytes: the whole
-- file when it had succeeded, as batch.move counted it), and `purged` counts it. Once per job:
-- only while it is still among ctx.members.
function batch.forget(ctx, job_id, status, size)
  if redis.call('ZREM', ctx.members, job_id) == 0 or redis.call('EXISTS', ctx.key) == 0 then return end
  redis.call('HINCRBY', ctx.key, 'total', -1)
  redis.call('HINCRBY', ctx.key, 'n:' .. status, -1)
  redis.call('HINCRBY', ctx.key, 'purged', 1)
  if size > 0 then
    redis.call('HINCRBY', ctx.key, 'bytes_total', -size)
    if status == 'succeeded' then redis.call('HINCRBY', ctx.key, 'bytes_done', -size) end
  end
end
