-- seal: close a batch to new jobs; it completes now if none of its jobs is left to run.
-- KEYS: batch
-- ARGV: context
-- FIELDS:
-- LIB: batch
-- RETURNS: 1 sealed now, 0 sealed already, -1 no such batch.
--
-- context: lib/batch.lua's. Completion is lib/batch.lua's batch.complete: the same as when the
-- last job of a sealed batch ends.
local ctx = cjson.decode(ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HSETNX', KEYS[1], 'sealed', ctx.now) == 0 then return 0 end
batch.complete(ctx)
return 1
