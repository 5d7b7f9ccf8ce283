-- Enqueue one chunk of a job's normalized paths, coalescing with what is already pending.
local pending = KEYS[1]      -- ZSET path -> rank (lower is sooner)
local pending_lex = KEYS[2]  -- ZSET path -> 0 (the same paths in byte order)
local waiters = KEYS[3]      -- HASH path -> comma-separated job ids waiting on the path
local cooling = KEYS[4]      -- ZSET path -> cooldown end (a cooling path coalesces too)
local cooling_rank = KEYS[5] -- HASH path -> rank it goes back to pending with
local job_counts = KEYS[6]   -- HASH "job:state" -> count
local dead = KEYS[7]         -- HASH path -> JSON (a path enqueued again leaves the dead-letter set)
local records_by_time = KEYS[8]  -- ZSET path -> last submitted at (s)
local last_sent = KEYS[9]    -- ZSET path -> last claimed for a call (s), with a cooldown
local jobs_open = KEYS[10]   -- ZSET job id -> when its enqueue must have ended (s)
local quota_window = KEYS[11]  -- the stored quota window (s; see the prelude)
-- ARGV[1] job id (empty: no job waits, as for a Directory the workers promote)
-- ARGV[2] rank of this chunk (enqueue time in ms; bulk ranks are offset after interactive)
-- ARGV[3] this process's configured quota window (s), when none is stored: a submission
-- that recent makes a path a repeat, and a repeat ranks one window later
-- ARGV[4..n] normalized paths
-- Returns {accepted, duplicates}: new pending paths, and paths that were pending (or cooling)
-- already, or came earlier in the chunk. An error when the job is no longer open: its
-- deadline passed and it was declared incomplete, which is final.
--
-- A handful of commands per chunk, not a few per path: one ZMSCORE sorts the chunk into new
-- and pending paths, then one ZADD NX and one HSET take every new path, one HMGET reads the
-- waiters of the pending ones and one HSET adds this job where it is missing.
local job = ARGV[1]
local rank = ARGV[2]
local rank_number = tonumber(rank)
local accepted, duplicates, joined = 0, 0, 0
local FIRST = 4  -- ARGV index of the first path
local now = clock('')
if job ~= '' then
  local open_until = tonumber(redis.call('ZSCORE', jobs_open, job))
  if not open_until or open_until <= now then
    return redis.error_reply('JOBENDED job ' .. job .. ' is no longer open (its enqueue went ' ..
      'too long without a sign of life, and the job ended): nothing of this chunk went in')
  end
end

-- Counters instead of #t + 1: Lua 5.1 finds a table's length by a search each time.
local scores, n_scores = {}, 0
local n_argv = #ARGV
in_slices(n_argv - FIRST + 1, 1, function(first, last)
  local part = redis.call('ZMSCORE', pending, unpack(ARGV, first + FIRST - 1, last + FIRST - 1))
  for i = 1, #part do scores[n_scores + i] = part[i] end
  n_scores = n_scores + #part
end)

-- A path that cools (submitted too recently, docs/behaviour.md "Getting more out of the quota") waits
-- too: a request for it joins it, as one for a pending path does.
local cool_rank = {}
if redis.call('ZCARD', cooling) > 0 then
  local absent, n_absent = {}, 0
  for i = 1, n_scores do
    if not scores[i] then
      n_absent = n_absent + 1
      absent[n_absent] = ARGV[i + FIRST - 1]
    end
  end
  in_slices(n_absent, 1, function(first, last)
    local part = redis.call('HMGET', cooling_rank, unpack(absent, first, last))
    for i = 1, #part do
      if part[i] then cool_rank[absent[first + i - 1]] = part[i] end
    end
  end)
end

local seen = {}
local cool_forward, n_cool_forward = {}, 0
local new_members, new_waiters, new_paths, n_new = {}, {}, {}, 0
local forward, n_forward, pending_paths, n_pending = {}, 0, {}, 0
local waiting_ranks, waits_cooling = {}, {}
for i = FIRST, n_argv do
  local path = ARGV[i]
  if seen[path] then
    duplicates = duplicates + 1
  else
    seen[path] = true
    local cooling_at = cool_rank[path]
    local waiting_at = cooling_at or scores[i - FIRST + 1]
    if waiting_at then
      duplicates = duplicates + 1
      n_pending = n_pending + 1
      pending_paths[n_pending] = path
      waiting_ranks[n_pending] = tonumber(waiting_at)
      waits_cooling[n_pending] = cooling_at ~= nil
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

-- A repeat (a path submitted, or claimed, within the quota window) ranks as a first request
-- made one window later: under quota pressure it never takes a unit a first refresh of the
-- last window waits for, and it still goes within a window of first refreshes
-- (docs/behaviour.md "Getting more out of the quota"). Which of `paths` (1..n) are repeats:
local function repeats_among(paths, n, since)
  local found = {}
  for _, times_key in ipairs({records_by_time, last_sent}) do
    if n > 0 and redis.call('ZCARD', times_key) > 0 then
      in_slices(n, 1, function(first, last)
        local part = redis.call('ZMSCORE', times_key, unpack(paths, first, last))
        for i = 1, #part do
          if part[i] and tonumber(part[i]) > since then found[first + i - 1] = true end
        end
      end)
    end
  end
  return found
end
local window = tonumber(redis.call('GET', quota_window))
-- nan or inf (stored by hand): no worker runs on it, and no rank can be made of it.
if not window or window ~= window or window == math.huge then window = tonumber(ARGV[3]) end
local repeat_rank = tostring(rank_number + math.floor(window * 1000))
local new_repeats = repeats_among(new_paths, n_new, now - window)
for i = 1, n_new do
  if new_repeats[i] then new_members[2 * i - 1] = repeat_rank end
end
-- A request for a path that waits moves it forward to this request's own rank (a repeat's,
-- if it is one), never back: an interactive request for a bulk path, say, but a repeat asked
-- for again keeps its repeat rank.
local pending_repeats = repeats_among(pending_paths, n_pending, now - window)
for i = 1, n_pending do
  local wanted = pending_repeats[i] and repeat_rank or rank
  if waiting_ranks[i] > tonumber(wanted) then
    if waits_cooling[i] then
      cool_forward[n_cool_forward + 1] = pending_paths[i]
      cool_forward[n_cool_forward + 2] = wanted
      n_cool_forward = n_cool_forward + 2
    else
      forward[n_forward + 1] = wanted
      forward[n_forward + 2] = pending_paths[i]
      n_forward = n_forward + 2
    end
  end
end

in_slices(2 * n_new, 2, function(first, last)
  accepted = accepted + redis.call('ZADD', pending, 'NX', unpack(new_members, first, last))
  -- The index needs no rank: it has one score, so its members sort by their bytes.
  for k = first, last, 2 do new_members[k] = 0 end
  redis.call('ZADD', pending_lex, unpack(new_members, first, last))
end)
if job ~= '' then
  in_slices(2 * n_new, 2, function(first, last)
    redis.call('HSET', waiters, unpack(new_waiters, first, last))
  end)
end
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

-- Every job count moves by count_move (a test checks each move against store/states.py).
local counts = {}
count_move(counts, job, nil, STATE.PENDING, accepted + joined)
write_counts(job_counts, counts)
return {accepted, duplicates}
