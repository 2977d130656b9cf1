-- take_slot: one of a connection's in-flight slots, if one is free.
-- KEYS: slots
-- ARGV: capacity, lifetime_ms, token
-- FIELDS:
-- RETURNS: 1 if the token took a slot, else 0.
local slots, capacity, lifetime, token = KEYS[1], tonumber(ARGV[1]), ARGV[2], ARGV[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
if redis.call('ZCARD', slots) >= capacity then return 0 end
redis.call('ZADD', slots, now + tonumber(lifetime), token)
redis.call('PEXPIRE', slots, lifetime)
return 1
