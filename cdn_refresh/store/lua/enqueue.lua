-- Enqueue one chunk of a job's normalized paths, coalescing with what is already pending.
local pending = KEYS[1]      -- ZSET path -> rank (lower is sooner)
local pending_lex = KEYS[2]  -- ZSET path -> 0 (the Directories in byte order; Files keep none)
local waiters = KEYS[3]      -- HASH waiter_field(path) -> comma-separated job ids waiting
local cooling = KEYS[4]      -- ZSET path -> cooldown end (a cooling path coalesces too)
local cooling_rank = KEYS[5] -- HASH path -> rank it goes back to pending with
local job_counts = KEYS[6]   -- HASH "job:state" -> count
local dead = KEYS[7]         -- HASH path -> JSON (a path enqueued again leaves the dead-letter set)
local records_by_time = KEYS[8]  -- ZSET path -> last submitted at (s)
local last_sent = KEYS[9]    -- ZSET path -> last claimed for a call (s), with a cooldown
local jobs_open = KEYS[10]   -- ZSET job id -> when its enqueue must have ended (s)
local quota_window = KEYS[11]  -- the stored quota window (s; see the prelude)
local digesting = KEYS[12]    -- set while waiters may be keyed by path (prelude_waiters.lua)
local job = ARGV[1]          -- job id (empty: no job waits, as for a Directory promoted)
local rank = ARGV[2]         -- rank of this chunk (enqueue time in ms; bulk ranks after)
local window_s = ARGV[3]     -- this process's quota window (s), when none is stored: a
-- submission that recent makes a path a repeat, and a repeat ranks one window later
local object_type = ARGV[4]  -- 'File' or 'Directory' (only Directories keep an index)
local paths = trailing_list(ARGV, 5)  -- normalized paths
-- Returns {accepted, duplicates}: new pending paths, and paths that were pending (or cooling)
-- already, or came earlier in the chunk. An error when the job is no longer open: its
-- deadline passed and it was declared incomplete, which is final.
--
-- A handful of commands per chunk, not a few per path: one ZMSCORE sorts the chunk into new
-- and pending paths, then one ZADD NX and one HSET take every new path, one HMGET reads the
-- waiters of the pending ones and one HSET adds this job where it is missing.
local now = clock('')
if job ~= '' then
  local open_until = tonumber(redis.call('ZSCORE', jobs_open, job))
  if not open_until or open_until <= now then
    return redis.error_reply('JOBENDED job ' .. job .. ' is no longer open (its enqueue went ' ..
      'too long without a sign of life, and the job ended): nothing of this chunk went in')
  end
end
waiters_mode(digesting)
local lex = coverage_index(object_type, pending_lex)
local n_paths = #paths
local scores = scores_in(pending, paths, n_paths)
local cool_rank = cooling_ranks(cooling, cooling_rank, paths, scores, n_paths)

-- Counters instead of #t + 1: Lua 5.1 finds a table's length by a search each time.
local seen, duplicates = {}, 0
local new_members, new_paths, n_new = {}, {}, 0
local w = {paths = {}, ranks = {}, cooling = {}, n = 0}  -- the paths that wait already
for i = 1, n_paths do
  local path = paths[i]
  if seen[path] then
    duplicates = duplicates + 1
  else
    seen[path] = true
    local cooling_at = cool_rank[path]
    local waiting_at = cooling_at or scores[i]
    if waiting_at then
      duplicates = duplicates + 1
      w.n = w.n + 1
      w.paths[w.n], w.ranks[w.n], w.cooling[w.n] = path, tonumber(waiting_at), cooling_at ~= nil
    else
      new_members[2 * n_new + 1], new_members[2 * n_new + 2] = rank, path
      n_new = n_new + 1
      new_paths[n_new] = path
    end
  end
end

local window = repeat_window(quota_window, window_s)
local repeat_rank = tostring(tonumber(rank) + math.floor(window * 1000))
local times = {records_by_time, last_sent}
local new_repeats = repeats_among(times, new_paths, n_new, now - window)
for i = 1, n_new do
  if new_repeats[i] then new_members[2 * i - 1] = repeat_rank end
end
local forward, n_forward, cool_forward, n_cool_forward =
  moves_forward(w, repeats_among(times, w.paths, w.n, now - window), rank, repeat_rank)

local accepted = 0
in_slices(2 * n_new, 2, function(first, last)
  accepted = accepted + redis.call('ZADD', pending, 'NX', unpack(new_members, first, last))
  if lex then
    -- The index needs no rank: it has one score, so its members sort by their bytes.
    for k = first, last, 2 do new_members[k] = 0 end
    redis.call('ZADD', lex, unpack(new_members, first, last))
  end
end)
if n_new > 0 and redis.call('HLEN', dead) > 0 then
  in_slices(n_new, 1, function(first, last)
    redis.call('HDEL', dead, unpack(new_paths, first, last))
  end)
end
in_slices(n_forward, 2, function(first, last)
  redis.call('ZADD', pending, 'LT', unpack(forward, first, last))
end)
in_slices(n_cool_forward, 2, function(first, last)
  redis.call('HSET', cooling_rank, unpack(cool_forward, first, last))
end)
if job == '' then return {accepted, duplicates} end

-- This job waits on every new path, and joins those that waited already where it is missing.
local lists = {}
for i = 1, n_new do lists[i] = job end
waiters_set(waiters, new_paths, lists, n_new, true)
local known = waiters_get(waiters, w.paths, w.n)
local joined, updated, lists_of, n_updated = 0, {}, {}, 0
for i = 1, w.n do
  local merged = list_add(known[i], job)
  if merged ~= known[i] then joined = joined + 1 end
  -- Under the old form (an upgrade under way), a list moves to the new one even unchanged.
  if merged ~= known[i] or legacy_waiters then
    n_updated = n_updated + 1
    updated[n_updated], lists_of[n_updated] = w.paths[i], merged
  end
end
waiters_set(waiters, updated, lists_of, n_updated)

-- Every job count moves by count_move (a test checks each move against store/states.py).
local counts = {}
count_move(counts, job, nil, STATE.PENDING, accepted + joined)
write_counts(job_counts, counts)
return {accepted, duplicates}
