-- Enqueue one chunk of a job's normalized paths, coalescing with what is already pending.
--
-- KEYS[1] pending ZSET   path -> rank (lower is sooner)
-- KEYS[2] waiters HASH   path -> comma-separated job ids waiting on the pending path
-- KEYS[3] job_counts HASH "job:state" -> count
-- KEYS[4] dead HASH      path -> JSON (a path enqueued again leaves the dead-letter set)
-- ARGV[1] job id
-- ARGV[2] rank of this chunk (enqueue time in ms; bulk ranks are offset after interactive)
-- ARGV[3..n] normalized paths
-- Returns {accepted, duplicates}: new pending paths, and paths that were pending already.
local job = ARGV[1]
local rank = ARGV[2]
local accepted, duplicates, joined = 0, 0, 0
local has_dead = redis.call('HLEN', KEYS[4]) > 0

for i = 3, #ARGV do
  local path = ARGV[i]
  if redis.call('ZADD', KEYS[1], 'NX', rank, path) == 1 then
    redis.call('HSET', KEYS[2], path, job)
    if has_dead then redis.call('HDEL', KEYS[4], path) end
    accepted = accepted + 1
  else
    duplicates = duplicates + 1
    -- An interactive request for a path pending as bulk moves it forward, never back.
    redis.call('ZADD', KEYS[1], 'LT', rank, path)
    local waiting = redis.call('HGET', KEYS[2], path)
    if not waiting then
      redis.call('HSET', KEYS[2], path, job)
      joined = joined + 1
    elseif not string.find(',' .. waiting .. ',', ',' .. job .. ',', 1, true) then
      redis.call('HSET', KEYS[2], path, waiting .. ',' .. job)
      joined = joined + 1
    end
  end
end

if accepted + joined > 0 then
  redis.call('HINCRBY', KEYS[3], job .. ':pending', accepted + joined)
end
return {accepted, duplicates}
