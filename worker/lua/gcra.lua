-- gcra: one request against a connection's rate (GCRA: a token bucket kept as one timestamp,
-- allowing a burst of burst_ms worth).
-- KEYS: bucket
-- ARGV: interval_ms, burst_ms
-- FIELDS:
-- RETURNS: 0 (go) or the milliseconds to wait.
local bucket, interval, burst = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tat = tonumber(redis.call('GET', bucket) or now)
if tat < now then tat = now end
local wait = tat - burst - now
if wait > 0 then return wait end
local new_tat = tat + interval
redis.call('SET', bucket, new_tat, 'PX', math.max(1, new_tat - now + burst))
return 0
