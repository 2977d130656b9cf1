-- rebuild_counts: count the jobs by status, kind and connection from the indexes, once.
-- KEYS: counts, kind_names, conn_names, scratch
-- ARGV: status_prefix, kind_prefix, conn_prefix, ...statuses
-- FIELDS:
-- RETURNS: 1 when it counted, 0 when the counts were there already.
--
-- For a store written before the counts existed (or whose counts hash was lost): one atomic
-- pass, so no transition can slip between the counting and the counts. It costs what the
-- intersections cost once; every read after it is one field.
local counts_key, kind_names, conn_names, scratch = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local status_prefix, kind_prefix, conn_prefix = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HEXISTS', counts_key, 'built') == 1 then return 0 end
redis.call('DEL', counts_key)
local kinds, conns = redis.call('SMEMBERS', kind_names), redis.call('SMEMBERS', conn_names)
for i = 4, #ARGV do
  for _, kind in ipairs(kinds) do
    for _, conn in ipairs(conns) do
      local n = redis.call('ZINTERSTORE', scratch, 3, status_prefix .. ARGV[i], kind_prefix .. kind,
                           conn_prefix .. conn)
      if n > 0 then redis.call('HSET', counts_key, ARGV[i] .. '|' .. kind .. '|' .. conn, n) end
    end
  end
end
redis.call('DEL', scratch)
redis.call('HSET', counts_key, 'built', 1)
return 1
