-- Release paths of a batch in flight that did not go through: back to pending, or into the
-- dead-letter set (the one writer of dead letters). Idempotent like submit.lua.
local batches = KEYS[1]      -- HASH batch id -> JSON batch in flight
local leases = KEYS[2]       -- ZSET batch id -> lease expiry (s)
local pending = KEYS[3]      -- ZSET path -> rank
local waiters = KEYS[4]      -- HASH path -> job ids
local pathinfo = KEYS[5]     -- HASH path -> JSON {attempts, last_error, message, at}
local dead = KEYS[6]         -- HASH path -> JSON dead letter
local quota = KEYS[7]        -- ZSET "batch:count" -> reserved at
local quota_total = KEYS[8]
local job_counts = KEYS[9]   -- HASH "job:state" -> count
local pending_lex = KEYS[10] -- ZSET path -> 0 (pending in byte order)
local cooling = KEYS[11]     -- ZSET path -> cooldown end (a retried path no longer cools)
local cooling_rank = KEYS[12]
local covered = KEYS[13]     -- HASH "batch|directory|step" -> JSON paths it covers
local file_pending = KEYS[14]  -- the other type's keys: the Files a Directory covers
local file_pending_lex = KEYS[15]
local file_waiters = KEYS[16]
local last_sent = KEYS[17]   -- ZSET path -> last claimed (s): a path that did not go through
                             -- is no reason for a cooldown
local metrics = KEYS[18]     -- HASH counters every worker adds to (store/metrics.py)
local file_cooling = KEYS[19]  -- a covered File that cools again leaves cooling for pending
local file_cooling_rank = KEYS[20]
local covering = KEYS[21]    -- ZSET Directories whose coverage is under way
-- ARGV[1] batch id   ARGV[2] now (s; empty: Redis's clock)
-- ARGV[3] what happens to the paths (RELEASE, from store/states.py):
--   RETRY    back to pending with an attempt counted; dead-lettered at max_attempts
--   REQUEUE  back to pending, no attempt counted (nothing was wrong with the paths)
--   FAILED   dead-lettered now (the provider refused the path itself)
-- ARGV[4] JSON {code, message, return_quota, max_attempts, only_if_lease_expired,
--         metrics (field -> increment: the calls this answer ends)}
-- ARGV[5..n] the paths; none means every path still in the batch
-- Returns {released, dead_lettered, highest attempt count among the released paths}
-- The paths a released Directory covered go back to pending as they were: nothing was wrong
-- with them.
local id, now, mode = ARGV[1], clock(ARGV[2]), ARGV[3]
local info = cjson.decode(ARGV[4])
-- Before any early return: the calls happened even when their batch is settled already.
add_metrics(metrics, info.metrics)
if info.only_if_lease_expired then
  local lease = redis.call('ZSCORE', leases, id)
  if lease and tonumber(lease) > now then return {0, 0, 0} end
end
local batch, taken, save_rest = take_from_batch(batches, leases, id, 5)
if not batch then return {0, 0, 0} end
local paths, n = taken.paths, taken.n
local prior = prior_attempts(pathinfo, paths, n)
local code, message = info.code or '', info.message or ''
local max_attempts = tonumber(info.max_attempts)

local counts = {}
local top_attempts = 0
local dead_paths, dead_jobs, dead_attempts, n_dead = {}, {}, {}, 0
local retry_paths, retry_ranks, retry_jobs, n_retry = {}, {}, {}, 0
local info_fields, n_info = {}, 0
local forget, n_forget = {}, 0
local encoded = {}  -- attempts -> JSON pathinfo
for i = 1, n do
  local attempts = prior[i] or 0
  if mode ~= RELEASE.REQUEUE then attempts = attempts + 1 end
  if attempts > top_attempts then top_attempts = attempts end
  if mode == RELEASE.FAILED or (mode == RELEASE.RETRY and attempts >= max_attempts) then
    n_dead = n_dead + 1
    dead_paths[n_dead], dead_jobs[n_dead], dead_attempts[n_dead] = paths[i], taken.jobs[i], attempts
    count_move(counts, taken.jobs[i], STATE.IN_FLIGHT, STATE.FAILED, 1)
    if prior[i] then
      n_forget = n_forget + 1
      forget[n_forget] = paths[i]
    end
  else
    local json = encoded[attempts]
    if not json then
      json = cjson.encode({attempts = attempts, last_error = code, message = message, at = now})
      encoded[attempts] = json
    end
    info_fields[n_info + 1] = paths[i]
    info_fields[n_info + 2] = json
    n_info = n_info + 2
    n_retry = n_retry + 1
    retry_paths[n_retry], retry_ranks[n_retry], retry_jobs[n_retry] = paths[i], taken.ranks[i], taken.jobs[i]
  end
end

-- Dead letters. A path dead-lettered again keeps the jobs of its earlier entry, so that a
-- replay brings them all back.
local earlier = {}
if n_dead > 0 and redis.call('HLEN', dead) > 0 then
  in_slices(n_dead, 1, function(first, last)
    local part = redis.call('HMGET', dead, unpack(dead_paths, first, last))
    for k = 1, #part do earlier[first + k - 1] = part[k] end
  end)
end
local dead_fields = {}
for k = 1, n_dead do
  local jobs = dead_jobs[k]
  if earlier[k] then
    for job in string.gmatch(cjson.decode(earlier[k]).jobs or '', '[^,]+') do
      jobs = list_add(jobs, job)
    end
  end
  local memo = dead_attempts[k] .. '|' .. jobs
  local json = encoded[memo]
  if not json then
    json = cjson.encode({
      code = code, message = message, attempts = dead_attempts[k], at = now,
      jobs = jobs, batch = id, object_type = batch.object_type,
    })
    encoded[memo] = json
  end
  dead_fields[2 * k - 1] = dead_paths[k]
  dead_fields[2 * k] = json
end
in_slices(2 * n_dead, 2, function(first, last)
  redis.call('HSET', dead, unpack(dead_fields, first, last))
end)
in_slices(n_forget, 1, function(first, last)
  redis.call('HDEL', pathinfo, unpack(forget, first, last))
end)
in_slices(n_info, 2, function(first, last)
  redis.call('HSET', pathinfo, unpack(info_fields, first, last))
end)

-- Back to pending. The paths may be pending again already (enqueued while in flight): keep
-- the sooner rank and merge the waiters.
local function requeue(paths, ranks, jobs_of, n, pending_key, lex_key, waiters_key)
  if n == 0 then return end
  to_pending(pending_key, lex_key, paths, ranks, n)
  local merged_fields = {}
  in_slices(n, 1, function(first, last)
    local waiting = redis.call('HMGET', waiters_key, unpack(paths, first, last))
    for k = 1, #waiting do
      local i = first + k - 1
      merged_fields[2 * i - 1] = paths[i]
      merged_fields[2 * i] = rejoin_waiters(counts, waiting[k] or '', jobs_of[i], STATE.IN_FLIGHT)
    end
  end)
  in_slices(2 * n, 2, function(first, last)
    redis.call('HSET', waiters_key, unpack(merged_fields, first, last))
  end)
end
requeue(retry_paths, retry_ranks, retry_jobs, n_retry, pending, pending_lex, waiters)
stop_cooling(cooling, cooling_rank, retry_paths, n_retry)
if n > 0 and redis.call('ZCARD', last_sent) > 0 then
  in_slices(n, 1, function(first, last)
    redis.call('ZREM', last_sent, unpack(paths, first, last))
  end)
end

take_covered(covered, covering, id, batch, paths, function(_, entry)
  local f, d = entry.files, entry.dirs
  requeue(f.paths, f.ranks, f.jobs, f.n, file_pending, file_pending_lex, file_waiters)
  stop_cooling(file_cooling, file_cooling_rank, f.paths, f.n)
  requeue(d.paths, d.ranks, d.jobs, d.n, pending, pending_lex, waiters)
  stop_cooling(cooling, cooling_rank, d.paths, d.n)
end)
write_counts(job_counts, counts)

-- A definite error answer gives the reservation back for the paths it covered.
if info.return_quota and n > 0 then
  local reserved_at = redis.call('ZSCORE', quota, batch.reservation)
  if reserved_at then
    local count = reservation_count(batch.reservation)
    local back = math.min(n, count)
    redis.call('ZREM', quota, batch.reservation)
    batch.reservation = id .. ':' .. (count - back)
    if count - back > 0 then redis.call('ZADD', quota, reserved_at, batch.reservation) end
    redis.call('DECRBY', quota_total, back)
  end
end

save_rest()
return {n, n_dead, top_attempts}
