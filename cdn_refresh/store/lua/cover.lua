-- Coverage: the pending paths under each Directory of a batch just claimed ride along with
-- it. They leave pending for the batch's `covered` entries and are settled with their
-- Directory (submit.lua), or go back to pending with it (release.lua): a crash at any point
-- leaves them in one place or the other. Each run takes one bounded step and keeps its
-- cursors in the batch (one per Directory for the Directories below it, one for the scan of
-- the Files), so that runs repeat until it answers "no more". The steps are in cover_steps.lua.
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
local file_pending = KEYS[11] -- the Files' pending paths and their waiters (no index)
local file_waiters = KEYS[12]
local digesting = KEYS[13]     -- set while waiters may be keyed by path (prelude_waiters.lua)
local id = ARGV[1]                       -- batch id
local budget = tonumber(ARGV[2])         -- most entries to read in this run
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
waiters_mode(digesting)
local c = {id = id, budget = budget, counts = {}, steps = {},
  before = claimed_before(batch, bulk_floor, repeat_offset),
  dirs = {pending = pending, lex = pending_lex, waiters = waiters},
  files = {pending = file_pending, lex = nil, waiters = file_waiters}}
local nested = 0
if not batch.cover then nested = nest_directories(c, batch, quota, quota_total) end

-- The Directories below each one of the batch, then the Files under any of them, while this
-- run's budget lasts.
local n_files, n_dirs = 0, 0
for _, directory in ipairs(batch.paths) do
  local st = batch.cover[directory] or {n = 0}
  batch.cover[directory] = st
  if batch.covered_total >= cap then st.dd = true end
  if not st.dd and c.budget > 0 then
    local took
    took, st.dc, st.dd = dirs_under(c, directory, st.dc)
    n_dirs, batch.covered_total = n_dirs + took, batch.covered_total + took
  end
end
if batch.covered_total >= cap then batch.files_done = true end
if not batch.files_done and c.budget > 0 then
  n_files = files_under(c, batch)
  batch.covered_total = batch.covered_total + n_files
end

local more = batch.files_done and 0 or 1
for _, directory in ipairs(batch.paths) do
  local st = batch.cover[directory]
  local e = c.steps[directory]
  if e and e.files.n + e.dirs.n > 0 then
    st.n = st.n + 1
    redis.call('HSET', covered, id .. '|' .. directory .. '|' .. st.n, cjson.encode(e))
  end
  if not st.dd then more = 1 end
end
write_counts(job_counts, c.counts)
if more == 0 then
  -- Coverage is done: the File claims need no longer wait for these Directories.
  redis.call('ZREM', covering, unpack(batch.paths))
end
local saved = cjson.encode(batch)
redis.call('HSET', batches, id, saved)
return {n_files, n_dirs, nested, more, nested > 0 and saved or ''}
