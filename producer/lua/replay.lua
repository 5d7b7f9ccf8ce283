-- Move dead-lettered paths of one type back to pending, with the jobs that waited on them.
--
-- KEYS[1] dead HASH   KEYS[2] pending ZSET   KEYS[3] waiters HASH   KEYS[4] pathinfo HASH
-- KEYS[5] job_counts HASH
-- ARGV[1] rank for the replayed paths; ARGV[2..n] paths (normalized)
-- Returns the number of paths replayed.
local rank = ARGV[1]
local replayed = 0
for i = 2, #ARGV do
  local path = ARGV[i]
  local raw = redis.call('HGET', KEYS[1], path)
  if raw then
    local entry = cjson.decode(raw)
    local jobs = entry.jobs or ''
    redis.call('HDEL', KEYS[1], path)
    redis.call('HDEL', KEYS[4], path)
    redis.call('ZADD', KEYS[2], 'NX', rank, path)
    local waiting = redis.call('HGET', KEYS[3], path) or ''
    local merged = waiting
    for job in string.gmatch(jobs, '[^,]+') do
      redis.call('HINCRBY', KEYS[5], job .. ':failed', -1)
      if string.find(',' .. waiting .. ',', ',' .. job .. ',', 1, true) == nil then
        redis.call('HINCRBY', KEYS[5], job .. ':pending', 1)
        merged = merged == '' and job or (merged .. ',' .. job)
      end
    end
    if merged ~= '' then redis.call('HSET', KEYS[3], path, merged) end
    replayed = replayed + 1
  end
end
return replayed
