-- renew_slots: extend the slots still held (XX: a slot that already lapsed is not taken back
-- behind the back of whoever holds it now).
-- KEYS: slots
-- ARGV: lifetime_ms, ...tokens
-- FIELDS:
-- RETURNS: 0
local slots, lifetime = KEYS[1], ARGV[1]
local t = redis.call('TIME')
local expires = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(lifetime)
for i = 2, #ARGV do redis.call('ZADD', slots, 'XX', expires, ARGV[i]) end
redis.call('PEXPIRE', slots, lifetime)
return 0
