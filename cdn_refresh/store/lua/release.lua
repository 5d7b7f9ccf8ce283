-- Release paths of a batch in flight that did not go through: back to pending, or into the
-- dead-letter set (the one writer of dead letters). Idempotent like submit.lua.
local batches = KEYS[1]      -- HASH batch id -> JSON batch in flight
local leases = KEYS[2]       -- ZSET batch id -> lease expiry (s)
local pending = KEYS[3]      -- ZSET path -> rank
local waiters = KEYS[4]      -- HASH waiter_field(path) -> job ids
local pathinfo = KEYS[5]     -- HASH path -> JSON {attempts, last_error, message, at}
local dead = KEYS[6]         -- HASH path -> JSON dead letter
local quota = KEYS[7]        -- ZSET "batch:count" -> reserved at
local quota_total = KEYS[8]
local job_counts = KEYS[9]   -- HASH "job:state" -> count
local pending_lex = KEYS[10] -- ZSET path -> 0 (pending Directories in byte order)
local cooling = KEYS[11]     -- ZSET path -> cooldown end (a retried path no longer cools)
local cooling_rank = KEYS[12]
local covered = KEYS[13]     -- HASH "batch|directory|step" -> JSON paths it covers
local file_pending = KEYS[14]  -- the other type's keys: the Files a Directory covers
local file_waiters = KEYS[15]
local last_sent = KEYS[16]   -- ZSET path -> last claimed (s): a path that did not go through
                             -- is no reason for a cooldown
local metrics = KEYS[17]     -- HASH counters every worker adds to (store/metrics.py)
local file_cooling = KEYS[18]  -- a covered File that cools again leaves cooling for pending
local file_cooling_rank = KEYS[19]
local covering = KEYS[20]    -- ZSET Directories whose coverage is under way
local digesting = KEYS[21]    -- set while waiters may be keyed by path (prelude_waiters.lua)
local id = ARGV[1]           -- batch id
local now = clock(ARGV[2])   -- s; empty: Redis's clock
local mode = ARGV[3]         -- what happens to the paths (RELEASE, from store/states.py):
--   RETRY    back to pending with an attempt counted; dead-lettered at max_attempts
--   REQUEUE  back to pending, no attempt counted (nothing was wrong with the paths)
--   FAILED   dead-lettered now (the provider refused the path itself)
-- info: {code, message, return_quota, max_attempts, only_if_lease_expired, metrics (field ->
-- increment: the calls this answer ends)}
local info = cjson.decode(ARGV[4])
local paths = trailing_list(ARGV, 5)  -- the paths; none means every path still in the batch
-- Returns {released, dead_lettered, highest attempt count among the released paths}
-- The paths a released Directory covered go back to pending as they were: nothing was wrong
-- with them. The steps are in release_steps.lua.

-- Before any early return: the calls happened even when their batch is settled already.
add_metrics(metrics, info.metrics)
if info.only_if_lease_expired then
  local lease = redis.call('ZSCORE', leases, id)
  if lease and tonumber(lease) > now then return {0, 0, 0} end
end
local batch, taken, save_rest = take_from_batch(batches, leases, id, paths)
if not batch then return {0, 0, 0} end
waiters_mode(digesting)
local n = taken.n
local r = {id = id, now = now, mode = mode, code = info.code or '', message = info.message or '',
  max_attempts = tonumber(info.max_attempts), counts = {}, encoded = {}}
local dead_group, retry, info_fields, forget, top_attempts =
  sort_released(r, taken, prior_attempts(pathinfo, taken.paths, n))
write_dead(r, dead, dead_group, batch)
in_slices(#forget, 1, function(first, last)
  redis.call('HDEL', pathinfo, unpack(forget, first, last))
end)
in_slices(#info_fields, 2, function(first, last)
  redis.call('HSET', pathinfo, unpack(info_fields, first, last))
end)

local own = {pending = pending, lex = coverage_index(batch.object_type, pending_lex),
  waiters = waiters}
requeue(r, retry, own)
stop_cooling(cooling, cooling_rank, retry.paths, retry.n)
if n > 0 and redis.call('ZCARD', last_sent) > 0 then
  in_slices(n, 1, function(first, last)
    redis.call('ZREM', last_sent, unpack(taken.paths, first, last))
  end)
end
local files = {pending = file_pending, lex = nil, waiters = file_waiters}
take_covered(covered, covering, id, batch, taken.paths, function(_, entry)
  requeue(r, entry.files, files)
  stop_cooling(file_cooling, file_cooling_rank, entry.files.paths, entry.files.n)
  requeue(r, entry.dirs, own)
  stop_cooling(cooling, cooling_rank, entry.dirs.paths, entry.dirs.n)
end)
write_counts(job_counts, r.counts)
if info.return_quota and n > 0 then give_back(quota, quota_total, batch, id, n) end
save_rest()
return {n, dead_group.n, top_attempts}
