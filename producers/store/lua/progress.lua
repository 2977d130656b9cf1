-- progress: record an upload step's figures and tell the event stream, while the step is this holder's.
-- KEYS: job, events, progress_ids, batch
-- ARGV: token, until_ms, progress_field, progress, event_data, kept
-- FIELDS: lease, progress:*
-- LIB: batch
-- RETURNS: 1, or 0 when the job is gone or its lease is another holder's (nothing written).
--
-- The write proves the holder alive, so it extends the lease too. The step.progress event goes
-- into the one event stream without MAXLEN; its id joins progress_ids, and past kept entries the
-- oldest progress events are deleted from the stream (XDEL). State changes trim the stream to
-- their own max length plus kept, so progress events never push a state change out of it.
-- batch ('' none): the job's batch, whose bytes_done grows by what the upload sent beyond the
-- most the job counted so far (lib/batch.lua's batch.sent: a retried upload counts once).
local job_key, events_key, ids_key, batch_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local token, until_ms, field, progress, data, kept = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local lease = redis.call('HGET', job_key, 'lease')
if not lease or string.sub(lease, 1, #token + 1) ~= token .. ':' then return 0 end
redis.call('HSET', job_key, 'lease', token .. ':' .. until_ms, field, progress)
if batch_key ~= '' then
  local figures = cjson.decode(progress)
  batch.sent(batch_key, job_key, math.min(tonumber(figures.bytes_sent) or 0, tonumber(figures.bytes_total) or 0))
end
local id = redis.call('XADD', events_key, '*', 'type', 'step.progress', 'data', data)
redis.call('RPUSH', ids_key, id)
local excess = redis.call('LLEN', ids_key) - kept
if excess > 0 then
  local old = redis.call('LPOP', ids_key, excess)
  redis.call('XDEL', events_key, unpack(old))
end
return 1
