-- Move dead-lettered paths of one type back to pending, with the jobs that waited on them.
local dead = KEYS[1]        -- HASH path -> JSON dead letter
local pending = KEYS[2]     -- ZSET path -> rank
local waiters = KEYS[3]     -- HASH path -> job ids
local pathinfo = KEYS[4]    -- HASH path -> JSON attempts so far
local job_counts = KEYS[5]  -- HASH "job:state" -> count
local pending_lex = KEYS[6] -- ZSET path -> 0 (pending in byte order)
local cooling = KEYS[7]     -- ZSET path -> cooldown end: a replayed path goes now
local cooling_rank = KEYS[8]
-- ARGV[1] rank for the replayed paths; ARGV[2..n] paths (normalized)
-- Returns the number of paths replayed.
local rank = ARGV[1]
local replayed = 0
local counts = {}
for i = 2, #ARGV do
  local path = ARGV[i]
  local raw = redis.call('HGET', dead, path)
  if raw then
    local entry = cjson.decode(raw)
    redis.call('HDEL', dead, path)
    redis.call('HDEL', pathinfo, path)
    redis.call('ZADD', pending, 'NX', rank, path)
    redis.call('ZADD', pending_lex, 0, path)
    redis.call('ZREM', cooling, path)
    redis.call('HDEL', cooling_rank, path)
    local waiting = redis.call('HGET', waiters, path) or ''
    local merged = rejoin_waiters(counts, waiting, entry.jobs or '', STATE.FAILED)
    if merged ~= '' then redis.call('HSET', waiters, path, merged) end
    replayed = replayed + 1
  end
end
write_counts(job_counts, counts)
return replayed
