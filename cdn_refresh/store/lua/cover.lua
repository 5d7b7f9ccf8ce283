-- Coverage: the pending paths under each Directory of a batch just claimed ride along with
-- it. They leave pending for the batch's `covered` entries and are settled with their
-- Directory (submit.lua), or go back to pending with it (release.lua): a crash at any point
-- leaves them in one place or the other. Each run takes one bounded step and keeps a cursor
-- per Directory in the batch, so that runs repeat until it answers "no more", and no path is
-- read twice.
local batches = KEYS[1]       -- HASH batch id -> JSON batch in flight
local leases = KEYS[2]        -- ZSET batch id -> lease expiry (s)
local covered = KEYS[3]       -- HASH "batch|directory|step" -> JSON {files, dirs} it covers
local quota = KEYS[4]         -- ZSET "batch:count" -> reserved at (s)
local quota_total = KEYS[5]
local pending = KEYS[6]       -- the Directories' pending paths (ranks, byte order, waiters)
local pending_lex = KEYS[7]
local waiters = KEYS[8]
local job_counts = KEYS[9]    -- HASH "job:state" -> count
local covering = KEYS[10]     -- ZSET directory -> 0: Directories whose coverage is under way
local file_pending = KEYS[11] -- the Files' pending paths
local file_pending_lex = KEYS[12]
local file_waiters = KEYS[13]
local id = ARGV[1]                       -- batch id
local budget = tonumber(ARGV[2])         -- most index entries to read in this run
local cap = tonumber(ARGV[3])            -- most paths one batch covers
local bulk_floor = tonumber(ARGV[4])     -- lowest bulk rank
local repeat_offset = tonumber(ARGV[5])  -- the rank offset of a repeat made by earlier
-- releases (today's repeat ranks one window later, and reads as asked for then: covered only
-- when that is before the claim)
-- Returns {'gone'} when the batch is settled or reclaimed already, else {files covered,
-- directories covered, directories of the batch under another of it (taken out, their unit
-- given back), 1 when more may be left, the batch's new JSON when its paths changed}
local raw = redis.call('HGET', batches, id)
if not raw then return {'gone'} end
local batch = cjson.decode(raw)
-- Only what was enqueued before the batch was claimed is covered: a rank is its enqueue
-- time in ms (bulk ranks offset by bulk_floor, a repeat's by repeat_offset), and a later
-- request may be for newer content.
local claimed_ms = batch.claimed_at * 1000
local function before_claim(rank)
  local at = tonumber(rank)
  if at >= bulk_floor then at = at - bulk_floor end
  if at >= repeat_offset then at = at - repeat_offset end
  return at <= claimed_ms
end
local counts = {}
local steps = {}  -- directory -> this run's entry
local function entry(directory)
  if not steps[directory] then
    steps[directory] = {files = {paths = {}, ranks = {}, jobs = {}, n = 0},
                        dirs = {paths = {}, ranks = {}, jobs = {}, n = 0}}
  end
  return steps[directory]
end
local function add(group, path, rank, jobs)
  group.n = group.n + 1
  group.paths[group.n], group.ranks[group.n], group.jobs[group.n] = path, rank, jobs
end

-- First run: a Directory of the batch under another of the batch costs no unit either.
local nested, changed = 0, false
if not batch.cover then
  batch.cover, batch.covered_total = {}, 0
  local in_batch = {}
  for _, path in ipairs(batch.paths) do in_batch[path] = true end
  local keep = {paths = {}, ranks = {}, waiters = {}, n = 0}
  for i, path in ipairs(batch.paths) do
    local above = nil
    local anc, n_anc = ancestors(path)
    for a = 1, n_anc do
      if in_batch[anc[a]] then above = anc[a] break end
    end
    if above then
      add(entry(above).dirs, path, batch.ranks[i], batch.waiters[i])
      nested = nested + 1
    else
      keep.n = keep.n + 1
      keep.paths[keep.n], keep.ranks[keep.n], keep.waiters[keep.n] = path, batch.ranks[i], batch.waiters[i]
    end
  end
  if nested > 0 then
    changed = true
    batch.paths, batch.ranks, batch.waiters = keep.paths, keep.ranks, keep.waiters
    local reserved_at = redis.call('ZSCORE', quota, batch.reservation)
    local count = reservation_count(batch.reservation)
    redis.call('ZREM', quota, batch.reservation)
    batch.reservation = id .. ':' .. (count - nested)
    if reserved_at then
      if count - nested > 0 then redis.call('ZADD', quota, reserved_at, batch.reservation) end
      redis.call('DECRBY', quota_total, math.min(nested, count))
    end
  end
end

-- Read the next index entries under `directory` after `cursor`; take those still pending
-- and enqueued before the claim. Returns how many were taken, the new cursor, and whether
-- the range is done.
local function take_under(directory, cursor, group, pending_key, lex_key, waiters_key, with_itself)
  local lo = cursor and ('(' .. cursor) or ('[' .. directory)
  local found = redis.call('ZRANGEBYLEX', lex_key, lo, '[' .. directory .. '\255', 'LIMIT', 0, budget)
  local n = #found
  if n == 0 then return 0, cursor, true end
  budget = budget - n
  local ranks, took, stale = {}, {}, {}
  in_slices(n, 1, function(first, last)
    local part = redis.call('ZMSCORE', pending_key, unpack(found, first, last))
    for k = 1, #part do ranks[first + k - 1] = part[k] end
  end)
  for k = 1, n do
    local path = found[k]
    if not ranks[k] then
      stale[#stale + 1] = path  -- in the index but no longer pending: drop it there
    elseif (with_itself or path ~= directory) and before_claim(ranks[k]) then
      took[#took + 1] = k
    end
  end
  if #stale > 0 then redis.call('ZREM', lex_key, unpack(stale)) end
  if #took > 0 then
    local paths = {}
    for t = 1, #took do paths[t] = found[took[t]] end
    local jobs = {}
    in_slices(#paths, 1, function(first, last)
      local part = redis.call('HMGET', waiters_key, unpack(paths, first, last))
      for k = 1, #part do jobs[first + k - 1] = part[k] or '' end
    end)
    for t = 1, #paths do
      add(group, paths[t], ranks[took[t]], jobs[t])
      count_move(counts, jobs[t], STATE.PENDING, STATE.IN_FLIGHT, 1)
    end
    from_pending(pending_key, lex_key, paths, #paths)
    in_slices(#paths, 1, function(first, last)
      redis.call('HDEL', waiters_key, unpack(paths, first, last))
    end)
  end
  -- Fewer entries than asked for: the range is done.
  return #took, found[n], budget > 0
end

-- Files under each Directory, then Directories below it, while this run's budget lasts.
local n_files, n_dirs, more = 0, 0, 0
for _, directory in ipairs(batch.paths) do
  local st = batch.cover[directory] or {n = 0}
  batch.cover[directory] = st
  if batch.covered_total >= cap then st.fd, st.dd = true, true end
  if not st.fd and budget > 0 then
    local took, cursor, done = take_under(directory, st.fc, entry(directory).files,
      file_pending, file_pending_lex, file_waiters, true)
    n_files, st.fc, st.fd = n_files + took, cursor, done
    batch.covered_total = batch.covered_total + took
  end
  if not st.dd and budget > 0 then
    local took, cursor, done = take_under(directory, st.dc, entry(directory).dirs,
      pending, pending_lex, waiters, false)
    n_dirs, st.dc, st.dd = n_dirs + took, cursor, done
    batch.covered_total = batch.covered_total + took
  end
  local e = steps[directory]
  if e and e.files.n + e.dirs.n > 0 then
    st.n = st.n + 1
    redis.call('HSET', covered, id .. '|' .. directory .. '|' .. st.n, cjson.encode(e))
  end
  if not (st.fd and st.dd) then more = 1 end
end
write_counts(job_counts, counts)
if more == 0 then
  -- Coverage is done: the File claims need no longer wait for these Directories.
  redis.call('ZREM', covering, unpack(batch.paths))
end
local saved = cjson.encode(batch)
redis.call('HSET', batches, id, saved)
return {n_files, n_dirs, nested, more, changed and saved or ''}
