-- begin: take the job's lease and mark one of its steps running, in one call.
-- KEYS: job, events, counts
-- ARGV: step_field, token, now_ms, lease_ms, now, status_prefix, history_kept, job_id, throttle_prefix, throttle_suffix, paused_prefix, parked_prefix, step, events_max, batch
-- FIELDS: meta, status, score, runs, lease, cancel_requested, updated_at, step:*
-- LIB: batch
-- RETURNS: {outcome, the job's hash as read (flat), the step's new JSON, the 429 pause}; outcome
--   is missing (no job or step: {'missing', {}}), done (the step succeeded or was reused),
--   ended (the job ended), cancel (a cancel was requested), parked (the connection is paused:
--   the step joins its parked set), busy (another worker holds the lease) or started.
--
-- token '' takes no lease. Outcomes other than started change nothing else, so neither spends
-- an attempt. The step's record is edited as StepRecord.begin_attempt would: compact (no nulls),
-- so cjson's one ambiguity, an empty array read back as {}, cannot arise: a running step has no
-- result, and its history is never empty. The 429 pause key is throttle_prefix .. connection ..
-- throttle_suffix, the operator's pause paused_prefix .. connection (the connection is known
-- only once the job is read). A step that starts appends its step.started event. batch: the
-- batch context (lib/batch.lua) with key and members as prefixes; a job of a batch moves its
-- counts from its status to running.
local job_key, events_key, counts_key = KEYS[1], KEYS[2], KEYS[3]
local step_field, token, now_ms, lease_ms, now = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local status_prefix, history_kept, job_id = ARGV[6], tonumber(ARGV[7]), ARGV[8]
local throttle_prefix, throttle_suffix, paused_prefix, parked_prefix = ARGV[9], ARGV[10], ARGV[11], ARGV[12]
local step_name, events_max, batch_ctx = ARGV[13], ARGV[14], ARGV[15]

local flat = redis.call('HGETALL', job_key)
if #flat == 0 then return {'missing', {}} end
local f = {}
for i = 1, #flat, 2 do f[flat[i]] = flat[i + 1] end
local meta = cjson.decode(f.meta)
local raw = f[step_field]
local step
if raw then
  step = cjson.decode(raw)
else
  -- Not stored: pending, if the job declares it.
  for _, name in ipairs(meta.steps or {}) do
    if name == step_name then step = {name = name} end
  end
  if not step then return {'missing', {}} end
end
local function given(x) if x == cjson.null then return nil end return x end
local was = given(step.status) or 'pending'
if was == 'succeeded' or was == 'reused' then return {'done', flat} end
if f.status == 'succeeded' or f.status == 'failed' or f.status == 'cancelled' then return {'ended', flat} end
if f.cancel_requested then return {'cancel', flat} end
-- The operator's pause and the destination's 429 pause, in one read.
local gate = redis.call('MGET', paused_prefix .. meta.connection, throttle_prefix .. meta.connection .. throttle_suffix)
if gate[1] then
  redis.call('SADD', parked_prefix .. meta.connection, job_id .. ' ' .. step_name)
  return {'parked', flat}
end
if token ~= '' and f.lease and f.lease ~= '' then
  local holder, untl = string.match(f.lease, '^(.*):(%d+)$')
  if holder ~= token and tonumber(untl) > now_ms then return {'busy', flat} end
end
local runs = cjson.decode(f.runs or '[]')
step.status = 'running'
step.attempts = (given(step.attempts) or 0) + 1
step.started_at = given(step.started_at) or now
step.next_attempt_at = nil
step.error = nil
local history = given(step.history) or {}
local last = history[#history]
if last and (given(last.status) or 'running') == 'running' then
  last.status = 'lost'
  last.finished_at = nil
  last.retry_delay = nil
end
history[#history + 1] = {run = math.max(#runs, 1), number = step.attempts, started_at = now}
while #history > history_kept do table.remove(history, 1) end
step.history = history
local json = cjson.encode(step)
local write = {job_key, step_field, json, 'updated_at', now, 'status', 'running'}
if token ~= '' then
  write[#write + 1] = 'lease'
  write[#write + 1] = token .. ':' .. (now_ms + lease_ms)
end
redis.call('HSET', unpack(write))
if f.status ~= 'running' then
  local before = status_prefix .. (f.status or 'queued')
  local score = f.score or redis.call('ZSCORE', before, job_id) or 0
  redis.call('ZREM', before, job_id)
  redis.call('ZADD', status_prefix .. 'running', score, job_id)
  local tail = '|' .. meta.kind .. '|' .. meta.connection
  redis.call('HINCRBY', counts_key, (f.status or 'queued') .. tail, -1)
  redis.call('HINCRBY', counts_key, 'running' .. tail, 1)
  if meta.batch then
    local ctx = cjson.decode(batch_ctx)
    ctx.key, ctx.members, ctx.id = ctx.key .. meta.batch, ctx.members .. meta.batch, meta.batch
    batch.move(ctx, f.status or 'queued', 'running', 0, KEYS[1])
  end
end
redis.call('XADD', events_key, 'MAXLEN', '~', events_max, '*', 'type', 'step.started', 'data', cjson.encode({
  job = job_id, kind = meta.kind, connection = meta.connection, step = step_name, status = 'running',
  time = now, attempt = step.attempts, tenant = meta.tenant}))
return {'started', flat, json, gate[2]}
