-- Coverage: the pending paths under each Directory of a batch just claimed ride along with
-- it. They leave pending for the batch's `covered` entries and are settled with their
-- Directory (submit.lua), or go back to pending with it (release.lua): a crash at any point
-- leaves them in one place or the other. Run again until it answers "no more".
local batches = KEYS[1]       -- HASH batch id -> JSON batch in flight
local leases = KEYS[2]        -- ZSET batch id -> lease expiry (s)
local covered = KEYS[3]       -- HASH "batch|directory" -> JSON {files, dirs}
local quota = KEYS[4]         -- ZSET "batch:count" -> reserved at (s)
local quota_total = KEYS[5]
local pending = KEYS[6]       -- the Directories' pending paths (ranks, byte order, waiters)
local pending_lex = KEYS[7]
local waiters = KEYS[8]
local job_counts = KEYS[9]    -- HASH "job:state" -> count
local file_pending = KEYS[10] -- the Files' pending paths
local file_pending_lex = KEYS[11]
local file_waiters = KEYS[12]
-- ARGV[1] batch id   ARGV[2] most paths to cover in this call
-- Returns {files covered, directories covered, directories of the batch that lay under
-- another of the batch (taken out, their unit given back), 1 when more may be left, the
-- batch's new JSON when such Directories were taken out (else empty)}
local id, budget = ARGV[1], tonumber(ARGV[2])
local raw = redis.call('HGET', batches, id)
if not raw then return {0, 0, 0, 0} end
local batch = cjson.decode(raw)
local counts = {}

local function entry_of(directory)
  local found = redis.call('HGET', covered, id .. '|' .. directory)
  if found then return cjson.decode(found) end
  return {files = {paths = {}, ranks = {}, jobs = {}, n = 0},
          dirs = {paths = {}, ranks = {}, jobs = {}, n = 0}}
end
local function add(group, path, rank, jobs)
  group.n = group.n + 1
  group.paths[group.n], group.ranks[group.n], group.jobs[group.n] = path, rank, jobs
end

-- A Directory of the batch under another of the batch costs no unit either.
local in_batch = {}
for _, path in ipairs(batch.paths) do in_batch[path] = true end
local keep = {paths = {}, ranks = {}, waiters = {}, n = 0}
local entries, nested = {}, 0
for i, path in ipairs(batch.paths) do
  local above = nil
  local anc, n_anc = ancestors(path)
  for a = 1, n_anc do
    if in_batch[anc[a]] then above = anc[a] break end
  end
  if above then
    entries[above] = entries[above] or entry_of(above)
    add(entries[above].dirs, path, batch.ranks[i], batch.waiters[i])
    nested = nested + 1
  else
    keep.n = keep.n + 1
    keep.paths[keep.n], keep.ranks[keep.n], keep.waiters[keep.n] = path, batch.ranks[i], batch.waiters[i]
  end
end
if nested > 0 then
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

-- Pending paths under each Directory: Files, then Directories below it.
local n_files, n_dirs, more = 0, 0, 0
-- A File spelled like the Directory itself (its index) is covered too; the Directory is not.
local function take_under(directory, group, pending_key, lex_key, waiters_key, with_itself)
  if budget <= 0 then more = 1 return 0 end
  local lo, hi = under(directory)
  local found = redis.call('ZRANGEBYLEX', lex_key, lo, hi, 'LIMIT', 0, budget + 1)
  local paths, n = {}, 0
  for _, path in ipairs(found) do
    if with_itself or path ~= directory then
      if n < budget then
        n = n + 1
        paths[n] = path
      else
        more = 1
      end
    end
  end
  if n == 0 then return 0 end
  budget = budget - n
  local ranks, jobs = {}, {}
  in_slices(n, 1, function(first, last)
    local part = redis.call('ZMSCORE', pending_key, unpack(paths, first, last))
    local who = redis.call('HMGET', waiters_key, unpack(paths, first, last))
    for k = 1, #part do
      ranks[first + k - 1], jobs[first + k - 1] = part[k], who[k] or ''
    end
  end)
  local took = 0
  for k = 1, n do
    -- Only a path still pending: the index is written with pending, in the same scripts.
    if ranks[k] then
      add(group, paths[k], ranks[k], jobs[k])
      count_move(counts, jobs[k], 'pending', 'in_flight', 1)
      took = took + 1
    end
  end
  from_pending(pending_key, lex_key, paths, n)
  in_slices(n, 1, function(first, last)
    redis.call('HDEL', waiters_key, unpack(paths, first, last))
  end)
  return took
end
for _, directory in ipairs(batch.paths) do
  local entry = entries[directory] or entry_of(directory)
  local files = take_under(directory, entry.files, file_pending, file_pending_lex, file_waiters, true)
  local dirs = take_under(directory, entry.dirs, pending, pending_lex, waiters, false)
  n_files, n_dirs = n_files + files, n_dirs + dirs
  if files + dirs > 0 or entries[directory] then
    redis.call('HSET', covered, id .. '|' .. directory, cjson.encode(entry))
  end
end
write_counts(job_counts, counts)
local saved = ''
if nested > 0 then
  saved = cjson.encode(batch)
  redis.call('HSET', batches, id, saved)
end
return {n_files, n_dirs, nested, more, saved}
