-- lib ready: a connection's waiting jobs that have no message yet, by priority and tenant turn.
-- Prepended to every script whose header says "LIB: ready" (producers.store.loader); defines the
-- local table `ready` and nothing else.
--
-- Per connection and level (0 high, 1 normal, 2 low): rk.ready .. conn .. ':' .. level, the
-- job ids scored by their tenant's turn, and rk.at .. conn .. ':' .. level, the same ids scored
-- by when they became ready (epoch ms; the level's oldest decides its aging). rk.turns .. conn
-- is a hash: 'V|level' the level's turn now (the turn of the job it last released), and
-- 'level|tenant' the turn after that tenant's last waiting job. A job takes the turn
-- max(now - lead, its tenant's next), so a tenant with a long backlog holds turns far ahead,
-- and a tenant arriving later (or again after a pause) starts lead turns back: its first lead
-- jobs go before the backlog's next ones, then the tenants alternate (start-time fair queueing,
-- one job per turn, with a head start). lead is ready.lead(window): the connection's window
-- (the jobs now in its run were released at those turns) but at least HEAD_START, so a tenant's
-- handful of jobs behind another's backlog waits only for the run, not for turns of the backlog;
-- a tenant that keeps asking for less than its share keeps the head start (its next stays behind
-- now - lead), one that asks for more soon holds turns ahead and alternates.
-- rk is the JSON the caller builds (producers.store.ready).
local ready = {}
local HEAD_START = 32

-- How many turns back a tenant with no turns ahead starts, on a connection with this window.
function ready.lead(window)
  return math.max(tonumber(window), HEAD_START)
end

function ready.keys(rk, conn, level)
  return rk.ready .. conn .. ':' .. level, rk.at .. conn .. ':' .. level, rk.turns .. conn
end

-- Put job id (tenant: '' none) into level's sets, ready since at_ms (keeps its age when it
-- changes level), lead turns back at most (the connection's window). Returns its turn.
function ready.add(rk, conn, level, tenant, id, at_ms, lead)
  local by_turn, by_time, turns = ready.keys(rk, conn, level)
  local v = redis.call('HMGET', turns, 'V|' .. level, level .. '|' .. tenant)
  -- A tenant with no turn of its own yet starts lead turns before now (not at a fixed -lead:
  -- now is below 0 while a level's first backlog runs, which would put it after that backlog)
  local turn = math.max((tonumber(v[1]) or 0) - lead, tonumber(v[2]) or -math.huge)
  redis.call('HSET', turns, level .. '|' .. tenant, turn + 1)
  redis.call('ZADD', by_turn, turn, id)
  redis.call('ZADD', by_time, at_ms, id)
  return turn
end

-- Take job id out of level's sets; returns when it became ready (nil: it was not there).
function ready.remove(rk, conn, level, id)
  local by_turn, by_time = ready.keys(rk, conn, level)
  local at = redis.call('ZSCORE', by_time, id)
  if not at then return nil end
  redis.call('ZREM', by_turn, id)
  redis.call('ZREM', by_time, id)
  return tonumber(at)
end

-- How many of the connection's jobs wait in its ready sets.
function ready.count(rk, conn)
  local n = 0
  for level = 0, 2 do
    local by_turn = ready.keys(rk, conn, level)
    n = n + redis.call('ZCARD', by_turn)
  end
  return n
end

-- The next job to release: the level whose oldest job ranks first (its ready time + aging_ms
-- x the level: every aging_ms waited is worth one level), then that level's next turn. Taken
-- out of the sets; nil when none waits.
function ready.pop(rk, conn, aging_ms)
  local best, best_rank = nil, nil
  for level = 0, 2 do
    local _, by_time = ready.keys(rk, conn, level)
    local oldest = redis.call('ZRANGE', by_time, 0, 0, 'WITHSCORES')
    if oldest[2] then
      local rank = tonumber(oldest[2]) + aging_ms * level
      if not best_rank or rank < best_rank then best, best_rank = level, rank end
    end
  end
  if not best then return nil end
  local by_turn, by_time, turns = ready.keys(rk, conn, best)
  local head = redis.call('ZPOPMIN', by_turn)
  redis.call('ZREM', by_time, head[1])
  -- now only moves forward (a newcomer's head start is below it); unset until the level's
  -- first release, whose turn may be below 0 (lead turns back)
  local now = tonumber(redis.call('HGET', turns, 'V|' .. best))
  if not now or tonumber(head[2]) > now then redis.call('HSET', turns, 'V|' .. best, head[2]) end
  return head[1]
end
