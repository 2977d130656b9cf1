-- gcra: one request against a connection's rate (GCRA: a token bucket kept as one timestamp,
-- allowing a burst of burst_ms worth), with its place reserved when the wait is short.
-- KEYS: bucket
-- ARGV: interval_ms, burst_ms, max_wait_ms
-- FIELDS:
-- RETURNS: {1, ms to wait} when the request has its place (go after that wait: 0 now), or
--   {0, ms} when its place is more than max_wait_ms away (nothing reserved: park the step).
--
-- Reserving makes the waiting requests go in the order they asked (first come, first served),
-- not whichever wakes first: a request that asks behind a few waiting ones waits for those few,
-- and Ferry's dispatcher, which decides who asks next, decides who goes next.
local bucket, interval, burst, max_wait = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tat = tonumber(redis.call('GET', bucket) or now)
if tat < now then tat = now end
local wait = tat - burst - now
if wait > max_wait then return {0, wait} end
local new_tat = tat + interval
redis.call('SET', bucket, new_tat, 'PX', math.max(1, new_tat - now + burst))
return {1, math.max(0, wait)}
