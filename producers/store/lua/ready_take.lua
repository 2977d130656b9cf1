-- ready_take: release a connection's next waiting jobs, as many as its window has room for.
-- KEYS: outbox, counts
-- ARGV: ready_keys, connection, queue, window, aging_ms, now_ms, job_prefix, ...fields
-- FIELDS: status, meta, runs
-- LIB: ready
-- RETURNS: the outbox entries written, in release order (the caller publishes each, then
--   deletes it; the reaper publishes what a dead caller left).
--
-- fields: the counts fields ('queued|kind|connection', 'running|kind|connection') of every kind
-- the connection serves. Their sum less the jobs waiting in the ready sets is the connection's
-- run: its jobs in the broker and its jobs started (a step running, or waiting to retry, on
-- the connection's rate limiter too); room is window less that. Each job is taken by lib/ready.lua's pop (aging
-- between levels, tenant turns within one) and released only while it is still queued (a job
-- cancelled or deleted meanwhile just leaves the sets); its message is its latest run's first
-- step, as an outbox entry (OutboxEntry's JSON), so the job and its message exist together.
local outbox, counts_key = KEYS[1], KEYS[2]
local rk = cjson.decode(ARGV[1])
local conn, queue, window, aging_ms = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local now_ms, job_prefix = ARGV[6], ARGV[7]
local run = 0
if #ARGV >= 8 then
  for _, v in ipairs(redis.call('HMGET', counts_key, unpack(ARGV, 8))) do run = run + (tonumber(v) or 0) end
end
local room = window - (run - ready.count(rk, conn))
local out = {}
while room > 0 do
  local id = ready.pop(rk, conn, aging_ms)
  if not id then break end
  local found = redis.call('HMGET', job_prefix .. id, 'status', 'meta', 'runs')
  if found[1] == 'queued' then
    local step
    if found[3] then
      local runs = cjson.decode(found[3])
      step = runs[#runs].from_step
    else
      step = cjson.decode(found[2]).steps[1]
    end
    local entry = '["' .. id .. '","' .. step .. '","' .. queue .. '",null,0]'
    redis.call('ZADD', outbox, now_ms, entry)
    out[#out + 1] = entry
    room = room - 1
  end
end
return out
