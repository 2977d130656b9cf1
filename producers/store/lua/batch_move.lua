-- batch_move: move a job's batch counts to the status the caller is about to write (replay, cancel).
-- KEYS: job
-- ARGV: batch
-- FIELDS: status
-- LIB: batch
-- RETURNS: 1.
--
-- Runs in the caller's MULTI just before it writes the job's new status: the counts move from
-- the status the job has now (read here) to batch.to (lib/batch.lua's context).
local ctx = cjson.decode(ARGV[1])
batch.move(ctx, redis.call('HGET', KEYS[1], 'status') or 'queued', ctx.to, ctx.size, KEYS[1])
return 1
