-- renew: extend a step's lease, only while it is this holder's.
-- KEYS: job
-- ARGV: token, until_ms
-- FIELDS: lease
-- RETURNS: 1, or 0 when the lease is another holder's (or gone).
local job_key, token, until_ms = KEYS[1], ARGV[1], ARGV[2]
local lease = redis.call('HGET', job_key, 'lease')
if not lease or string.sub(lease, 1, #token + 1) ~= token .. ':' then return 0 end
redis.call('HSET', job_key, 'lease', token .. ':' .. until_ms)
return 1
