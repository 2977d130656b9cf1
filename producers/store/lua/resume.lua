-- resume: lift a connection's pause and take its parked steps, in one atomic step, so a
-- worker parks a step either before it (handed back here) or not at all.
-- KEYS: paused, parked
-- ARGV:
-- FIELDS:
-- RETURNS: {1 if it was paused else 0, the parked members "job_id step"}
local was = redis.call('DEL', KEYS[1])
local parked = redis.call('SMEMBERS', KEYS[2])
redis.call('DEL', KEYS[2])
return {was, parked}
