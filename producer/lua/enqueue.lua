-- Enqueue one chunk of a job's normalized paths, coalescing with what is already pending.
--
-- KEYS[1] pending ZSET   path -> rank (lower is sooner)
-- KEYS[2] waiters HASH   path -> comma-separated job ids waiting on the pending path
-- KEYS[3] job_counts HASH "job:state" -> count
-- KEYS[4] dead HASH      path -> JSON (a path enqueued again leaves the dead-letter set)
-- ARGV[1] job id
-- ARGV[2] rank of this chunk (enqueue time in ms; bulk ranks are offset after interactive)
-- ARGV[3..n] normalized paths
-- Returns {accepted, duplicates}: new pending paths, and paths that were pending already
-- (or came earlier in the chunk).
--
-- A handful of commands per chunk, not a few per path: one ZMSCORE sorts the chunk into new
-- and pending paths, then one ZADD NX and one HSET take every new path, one HMGET reads the
-- waiters of the pending ones and one HSET adds this job where it is missing.
local job = ARGV[1]
local rank = ARGV[2]
local rank_number = tonumber(rank)
local accepted, duplicates, joined = 0, 0, 0

-- Lua's unpack() and redis.call() take a few thousand values at most: go in slices.
local SLICE = 1000
local function in_slices(list, width, call)
  local step = SLICE * width
  for first = 1, #list, step do
    call(first, math.min(first + step - 1, #list))
  end
end

-- Counters instead of #t + 1: Lua 5.1 finds a table's length by a search each time.
local scores, n_scores = {}, 0
in_slices(ARGV, 1, function(first, last)
  if last < 3 then return end
  if first < 3 then first = 3 end
  local part = redis.call('ZMSCORE', KEYS[1], unpack(ARGV, first, last))
  for i = 1, #part do scores[n_scores + i] = part[i] end
  n_scores = n_scores + #part
end)

local seen = {}
local new_members, new_waiters, new_paths, n_new = {}, {}, {}, 0
local forward, n_forward, pending_paths, n_pending = {}, 0, {}, 0
for i = 3, #ARGV do
  local path = ARGV[i]
  if seen[path] then
    duplicates = duplicates + 1
  else
    seen[path] = true
    local score = scores[i - 2]
    if score then
      duplicates = duplicates + 1
      n_pending = n_pending + 1
      pending_paths[n_pending] = path
      -- An interactive request for a path pending as bulk moves it forward, never back.
      if tonumber(score) > rank_number then
        forward[n_forward + 1] = rank
        forward[n_forward + 2] = path
        n_forward = n_forward + 2
      end
    else
      new_members[2 * n_new + 1] = rank
      new_members[2 * n_new + 2] = path
      new_waiters[2 * n_new + 1] = path
      new_waiters[2 * n_new + 2] = job
      n_new = n_new + 1
      new_paths[n_new] = path
    end
  end
end

in_slices(new_members, 2, function(first, last)
  accepted = accepted + redis.call('ZADD', KEYS[1], 'NX', unpack(new_members, first, last))
end)
in_slices(new_waiters, 2, function(first, last)
  redis.call('HSET', KEYS[2], unpack(new_waiters, first, last))
end)
if n_new > 0 and redis.call('HLEN', KEYS[4]) > 0 then
  in_slices(new_paths, 1, function(first, last)
    redis.call('HDEL', KEYS[4], unpack(new_paths, first, last))
  end)
end
in_slices(forward, 2, function(first, last)
  redis.call('ZADD', KEYS[1], 'LT', unpack(forward, first, last))
end)

local updates, n_updates = {}, 0
in_slices(pending_paths, 1, function(first, last)
  local waiting = redis.call('HMGET', KEYS[2], unpack(pending_paths, first, last))
  for i = 1, #waiting do
    local path, known = pending_paths[first + i - 1], waiting[i]
    local merged = nil
    if not known then
      merged = job
    elseif not string.find(',' .. known .. ',', ',' .. job .. ',', 1, true) then
      merged = known .. ',' .. job
    end
    if merged then
      updates[n_updates + 1] = path
      updates[n_updates + 2] = merged
      n_updates = n_updates + 2
      joined = joined + 1
    end
  end
end)
in_slices(updates, 2, function(first, last)
  redis.call('HSET', KEYS[2], unpack(updates, first, last))
end)

if accepted + joined > 0 then
  redis.call('HINCRBY', KEYS[3], job .. ':pending', accepted + joined)
end
return {accepted, duplicates}
