-- Enqueue one chunk of a job's normalized paths, coalescing with what is already pending.
local pending = KEYS[1]     -- ZSET path -> rank (lower is sooner)
local waiters = KEYS[2]     -- HASH path -> comma-separated job ids waiting on the pending path
local job_counts = KEYS[3]  -- HASH "job:state" -> count
local dead = KEYS[4]        -- HASH path -> JSON (a path enqueued again leaves the dead-letter set)
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

-- Counters instead of #t + 1: Lua 5.1 finds a table's length by a search each time.
local scores, n_scores = {}, 0
local n_argv = #ARGV
in_slices(n_argv - 2, 1, function(first, last)
  local part = redis.call('ZMSCORE', pending, unpack(ARGV, first + 2, last + 2))
  for i = 1, #part do scores[n_scores + i] = part[i] end
  n_scores = n_scores + #part
end)

local seen = {}
local new_members, new_waiters, new_paths, n_new = {}, {}, {}, 0
local forward, n_forward, pending_paths, n_pending = {}, 0, {}, 0
for i = 3, n_argv do
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

in_slices(2 * n_new, 2, function(first, last)
  accepted = accepted + redis.call('ZADD', pending, 'NX', unpack(new_members, first, last))
end)
in_slices(2 * n_new, 2, function(first, last)
  redis.call('HSET', waiters, unpack(new_waiters, first, last))
end)
if n_new > 0 and redis.call('HLEN', dead) > 0 then
  in_slices(n_new, 1, function(first, last)
    redis.call('HDEL', dead, unpack(new_paths, first, last))
  end)
end
in_slices(n_forward, 2, function(first, last)
  redis.call('ZADD', pending, 'LT', unpack(forward, first, last))
end)

local updates, n_updates = {}, 0
in_slices(n_pending, 1, function(first, last)
  local waiting = redis.call('HMGET', waiters, unpack(pending_paths, first, last))
  for i = 1, #waiting do
    local path, known = pending_paths[first + i - 1], waiting[i]
    local merged = list_add(known or '', job)
    if merged ~= known then
      updates[n_updates + 1] = path
      updates[n_updates + 2] = merged
      n_updates = n_updates + 2
      joined = joined + 1
    end
  end
end)
in_slices(n_updates, 2, function(first, last)
  redis.call('HSET', waiters, unpack(updates, first, last))
end)

if accepted + joined > 0 then
  redis.call('HINCRBY', job_counts, job .. ':pending', accepted + joined)
end
return {accepted, duplicates}
