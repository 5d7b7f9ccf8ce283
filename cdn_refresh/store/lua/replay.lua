-- Move dead-lettered paths of one type back to pending, with the jobs that waited on them.
local dead = KEYS[1]        -- HASH path -> JSON dead letter
local pending = KEYS[2]     -- ZSET path -> rank
local waiters = KEYS[3]     -- HASH waiter_field(path) -> job ids
local pathinfo = KEYS[4]    -- HASH path -> JSON attempts so far
local job_counts = KEYS[5]  -- HASH "job:state" -> count
local pending_lex = KEYS[6] -- ZSET path -> 0 (pending Directories in byte order)
local cooling = KEYS[7]     -- ZSET path -> cooldown end: a replayed path goes now
local cooling_rank = KEYS[8]
local digesting = KEYS[9]    -- set while waiters may be keyed by path (prelude_waiters.lua)
local rank = ARGV[1]        -- rank for the replayed paths
local object_type = ARGV[2] -- 'File' or 'Directory' (only Directories keep an index)
local paths = trailing_list(ARGV, 3)  -- normalized paths
-- Returns the number of paths replayed.
waiters_mode(digesting)
local lex = coverage_index(object_type, pending_lex)
local replayed = 0
local counts = {}
for _, path in ipairs(paths) do
  local raw = redis.call('HGET', dead, path)
  if raw then
    local entry = cjson.decode(raw)
    redis.call('HDEL', dead, path)
    redis.call('HDEL', pathinfo, path)
    redis.call('ZADD', pending, 'NX', rank, path)
    if lex then redis.call('ZADD', lex, 0, path) end
    redis.call('ZREM', cooling, path)
    redis.call('HDEL', cooling_rank, path)
    local known = waiters_get(waiters, {path}, 1)
    local merged = rejoin_waiters(counts, known[1], entry.jobs or '', STATE.FAILED)
    waiters_set(waiters, {path}, {merged}, 1)
    replayed = replayed + 1
  end
end
write_counts(job_counts, counts)
return replayed
