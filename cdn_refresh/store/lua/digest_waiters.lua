-- Move waiters keyed by their path (schema 2 and before) to the field of the path's digest
-- (prelude_waiters.lua), one page of fields at a time: each path's jobs are under one form
-- or the other at every point, and none is lost (store/digesting.py).
local waiters = KEYS[1]      -- HASH path or waiter_field(path) -> job ids
local job_counts = KEYS[2]   -- HASH "job:state" -> count
local paths = trailing_list(ARGV, 1)  -- fields found that are paths
-- Returns how many fields moved.
local moved = 0
for _, path in ipairs(paths) do
  local old = redis.call('HGET', waiters, path)
  if old then
    local field = waiter_field(path)
    local merged = redis.call('HGET', waiters, field) or ''
    for job in string.gmatch(old, '[^,]+') do
      -- A job under both forms was counted pending twice for one path: once now (no move
      -- between states, a count mended, as store/respelling.py does).
      if list_has(merged, job) then
        redis.call('HINCRBY', job_counts, job .. ':' .. STATE.PENDING, -1)
      end
      merged = list_add(merged, job)
    end
    if merged ~= '' then redis.call('HSET', waiters, field, merged) end
    redis.call('HDEL', waiters, path)
    moved = moved + 1
  end
end
return moved
