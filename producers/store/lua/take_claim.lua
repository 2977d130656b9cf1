-- take_claim: a claimed delivery's attempt starts while its claim still stands (its score is
-- the claim's token); the claim becomes the attempt's lease.
-- KEYS: due
-- ARGV: member, token, until
-- FIELDS:
-- RETURNS: 1 or 2 when taken, 0 when the claim is stale.
local due_key, member, token, until_ = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local score = redis.call('ZSCORE', due_key, member)
if score and tonumber(score) == tonumber(token) then return redis.call('ZADD', due_key, until_, member) + 1 end
return 0
