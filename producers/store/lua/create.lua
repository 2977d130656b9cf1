-- create: store a chunk of new queued (or scheduled) jobs in one call.
-- KEYS: all, queued, events, kind_names, conn_names, counts, batch, batch_jobs, scheduled, due, archived
-- ARGV: job_prefix, idem_prefix, idem_ttl, kind_prefix, conn_prefix, events_max, now, count, ready_keys, ...jobs
-- FIELDS: meta, status, score
-- LIB: ready
-- RETURNS: {position, existing id, ...} of the jobs not written (0-based positions); an error
--   "BATCH ..." when batch is given and is gone or sealed (nothing written). A job that waits in
--   the ready sets comes back as {position, ''}.
--
-- jobs: count groups of 10: id, kind, connection, idempotency key ('' none), meta JSON, message
-- list ('' none), message, not_before in epoch ms ('' none), ready ('' none, else
-- 'window|level'), tenant ('' none: the tenant whose turn it takes, named in its job.queued
-- event). A queued job with a ready part whose kind already has window jobs queued or running
-- on its connection gets no message: it waits in the connection's ready sets
-- (lib/ready.lua, with ready_keys: their key prefixes as JSON) until the dispatcher releases
-- it (ready_take.lua); the caller learns which by the position returned with an empty id. A job with a not_before is stored
-- scheduled: indexed as such and in the due set (scored by it), with no message and a
-- job.scheduled event; the releaser (release.lua) queues it when due. Each job's hash, its idempotency key, its index entries (one ZADD per
-- index for the chunk), its job.queued event and its first message are written together, so a
-- job and its message exist together or not at all. A job whose idempotency key names a job
-- that still exists is not written: the caller decides (the same job: returned; another:
-- refused); so is one whose key names a job moved to the archive meanwhile (archived: the prefix
-- of ``keys.archived``, set while the key lives). Pending steps are not stored (absent reads as pending), nor the first run, nor
-- updated_at, nor the id in meta: bytes in every queued job's hash. kind_names and conn_names
-- ('' = known already, no SADD) collect the names that have an index.
-- batch ('' none): the open batch the jobs join; the tail ends, after the jobs, with their file
-- sizes (one ARGV, comma-separated). Each job written joins batch_jobs and the batch counts it (total,
-- n:queued or n:scheduled, bytes_total) in this call; a job found by its idempotency key is not counted.
local all_index, queued_index, events_key, kind_names, conn_names = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local counts_key = KEYS[6]
local scheduled_index, due_key = KEYS[9], KEYS[10]
local job_prefix, idem_prefix, ttl, kind_prefix, conn_prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local events_max, now, n = ARGV[6], ARGV[7], tonumber(ARGV[8])
local rk = ARGV[9] ~= '' and cjson.decode(ARGV[9]) or nil
local width, base = 10, 10
local batch_key, batch_jobs = KEYS[7], KEYS[8]
local sizes = {}
if batch_key ~= '' then
  local b = redis.call('HMGET', batch_key, 'spec', 'sealed')
  if not b[1] then return redis.error_reply('BATCH no such batch (it expired, or was never opened)') end
  if b[2] then return redis.error_reply('BATCH the batch is sealed: no job may join it') end
  for size in string.gmatch(ARGV[base + n * width], '[^,]+') do sizes[#sizes + 1] = tonumber(size) end
end
local joined, joined_bytes, joined_scheduled = 0, 0, 0
local clash, taken = {}, {}
for j = 0, n - 1 do
  local key = ARGV[base + j * width + 3]
  if key ~= '' then
    local old = redis.call('GET', idem_prefix .. key)
    if old and redis.call('EXISTS', job_prefix .. old, KEYS[11] .. old) > 0 then
      taken[j] = true
      clash[#clash + 1] = j
      clash[#clash + 1] = old
    end
  end
end
if #clash == 2 * n then return clash end
-- How many of each kind are queued or running on each connection before this chunk: a ready
-- part holds a job back once its kind has window of them.
local before = {}
for j = 0, n - 1 do
  local a = base + j * width
  if not taken[j] and ARGV[a + 8] ~= '' and ARGV[a + 7] == '' then
    local combo = '|' .. ARGV[a + 1] .. '|' .. ARGV[a + 2]
    if not before['queued' .. combo] then
      local found = redis.call('HMGET', counts_key, 'queued' .. combo, 'running' .. combo)
      before['queued' .. combo] = (tonumber(found[1]) or 0) + (tonumber(found[2]) or 0)
    end
  end
end
local indexes, order, pushes, porder, quoted, queued = {}, {}, {}, {}, {}, {}
local function add(tbl, names, key, a, b)
  local t = tbl[key]
  if not t then t = {}; tbl[key] = t; names[#names + 1] = key end
  t[#t + 1] = a
  t[#t + 1] = b
end
local function q(s)
  local v = quoted[s]
  if not v then v = cjson.encode(s); quoted[s] = v end
  return v
end
for j = 0, n - 1 do
  if not taken[j] then
    local a = base + j * width
    local id, kind, conn, key = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
    local meta, list, message, not_before, held = ARGV[a + 4], ARGV[a + 5], ARGV[a + 6], ARGV[a + 7], ARGV[a + 8]
    local tenant = ARGV[a + 9]
    local tenant_part = ''
    if tenant ~= '' then tenant_part = ',"tenant":' .. q(tenant) end
    local status = 'queued'
    if not_before ~= '' then status = 'scheduled' end
    local event = redis.call('XADD', events_key, 'MAXLEN', '~', events_max, '*', 'type', 'job.' .. status, 'data',
      '{"job":"' .. id .. '","kind":' .. q(kind) .. ',"connection":' .. q(conn) ..
      ',"step":null,"status":"' .. status .. '","time":"' .. now .. '"' .. tenant_part .. '}')
    -- The score: milliseconds x 1000 plus a counter below 1000, here the job.queued event's
    -- stream id (ms-seq), which grows with every entry: no counter to INCR.
    local ms, seq = string.match(event, '^(%d+)-(%d+)$')
    local score = string.format('%.0f', tonumber(ms) * 1000 + tonumber(seq) % 1000)
    if key ~= '' then redis.call('SET', idem_prefix .. key, id, 'EX', ttl) end
    redis.call('HSET', job_prefix .. id, 'meta', meta, 'status', status, 'score', score)
    add(indexes, order, all_index, score, id)
    if not_before ~= '' then
      add(indexes, order, scheduled_index, score, id)
      add(indexes, order, due_key, not_before, id)
      list = ''
    else
      add(indexes, order, queued_index, score, id)
      if held ~= '' then
        local window, level = string.match(held, '^(%d+)|(%d)$')
        local field = 'queued|' .. kind .. '|' .. conn
        before[field] = before[field] + 1
        if before[field] > tonumber(window) then
          ready.add(rk, conn, level, tenant, id, math.floor(tonumber(score) / 1000), ready.lead(window))
          list = ''
          clash[#clash + 1] = j
          clash[#clash + 1] = ''
        end
      end
    end
    add(indexes, order, kind_prefix .. kind, score, id)
    add(indexes, order, conn_prefix .. conn, score, id)
    if batch_key ~= '' then
      add(indexes, order, batch_jobs, score, id)
      joined = joined + 1
      if not_before ~= '' then joined_scheduled = joined_scheduled + 1 end
      joined_bytes = joined_bytes + (sizes[j + 1] or 0)
    end
    local field = status .. '|' .. kind .. '|' .. conn  -- queued, or scheduled
    queued[field] = (queued[field] or 0) + 1
    if list ~= '' then
      if not pushes[list] then pushes[list] = {}; porder[#porder + 1] = list end
      local p = pushes[list]
      p[#p + 1] = message
    end
  end
end
-- In slices: Lua's unpack is bounded by its stack (~8000 values).
local function each_slice(command, key, values)
  for s = 1, #values, 4000 do
    redis.call(command, key, unpack(values, s, math.min(s + 3999, #values)))
  end
end
for _, index in ipairs(order) do each_slice('ZADD', index, indexes[index]) end
for field, added in pairs(queued) do redis.call('HINCRBY', counts_key, field, added) end
-- LPUSH in submit order: kombu's consumer pops from the other end, so the first job goes first.
for _, list in ipairs(porder) do each_slice('LPUSH', list, pushes[list]) end
if joined > 0 then
  redis.call('HINCRBY', batch_key, 'total', joined)
  redis.call('HINCRBY', batch_key, 'n:queued', joined - joined_scheduled)
  if joined_scheduled > 0 then redis.call('HINCRBY', batch_key, 'n:scheduled', joined_scheduled) end
  redis.call('HINCRBY', batch_key, 'bytes_total', joined_bytes)
end
for offset, set in ipairs({kind_names, conn_names}) do
  if set ~= '' then
    local names = {}
    for j = 0, n - 1 do names[#names + 1] = ARGV[base + j * width + offset] end
    redis.call('SADD', set, unpack(names))
  end
end
return clash
