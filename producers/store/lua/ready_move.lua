-- ready_move: a waiting job changes priority level, or leaves the ready sets (cancelled).
-- KEYS: job
-- ARGV: ready_keys, id, level_from, level_to
-- FIELDS: meta
-- LIB: ready
-- RETURNS: 1 when the job was in the ready sets, else 0.
--
-- The job's meta names its connection and tenant. level_to '' takes the job out; else it joins
-- level_to at its tenant's next turn there and keeps the time it became ready (its age counts
-- on at its new level).
local rk = cjson.decode(ARGV[1])
local id, from, to = ARGV[2], ARGV[3], ARGV[4]
local raw = redis.call('HGET', KEYS[1], 'meta')
if not raw then return 0 end
local meta = cjson.decode(raw)
local at = ready.remove(rk, meta.connection, from, id)
if not at then return 0 end
if to ~= '' then ready.add(rk, meta.connection, to, meta.tenant or '', id, at, 0) end
return 1
