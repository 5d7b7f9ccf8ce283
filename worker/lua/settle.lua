-- Settle some or all paths of a batch in flight: submitted, dead-lettered, or back to pending.
-- Idempotent: paths no longer in the batch (or a batch already gone) are left alone, so a
-- task that runs twice, or a late answer after a lease ran out, changes nothing.
--
-- KEYS[1]  batches HASH        KEYS[2]  leases ZSET        KEYS[3]  pending ZSET
-- KEYS[4]  waiters HASH        KEYS[5]  pathinfo HASH      KEYS[6]  records HASH
-- KEYS[7]  records_by_time     KEYS[8]  dead HASH          KEYS[9]  quota ZSET
-- KEYS[10] quota_total         KEYS[11] job_counts HASH    KEYS[12] job_tasks HASH
-- KEYS[13] auth_failures       KEYS[14] auth_error (both cleared by a submission: the
--                              credentials work again)
-- ARGV[1] batch id
-- ARGV[2] outcome: 'submitted' | 'dead' | 'retry' (counts an attempt; dead-letters at the cap)
--                  | 'requeue' (back to pending without counting an attempt)
-- ARGV[3] now (s; empty: Redis's own clock)
-- ARGV[4] JSON {task_ids, request_id, code, message, return_quota, max_attempts,
--               only_if_lease_expired}
-- ARGV[5..n] the paths to settle; none means every path still in the batch
-- Returns {settled, dead_lettered, highest attempt count among the settled paths}
--
-- A handful of commands per settle, not a few per path: the settled paths are sorted by what
-- happens to them first, then each kind of write is one command over all of its paths (one
-- HMGET of pathinfo, one HSET of records, one ZADD of records_by_time, ...). A record's JSON
-- is encoded once per distinct (attempts, waiters), not once per path: a batch is usually
-- one or a few jobs' paths, all at the same attempt.
local id, outcome, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1e6
end
local info = cjson.decode(ARGV[4])
local raw = redis.call('HGET', KEYS[1], id)
if not raw then return {0, 0, 0} end
if info.only_if_lease_expired then
  local lease = redis.call('ZSCORE', KEYS[2], id)
  if lease and tonumber(lease) > now then return {0, 0, 0} end
end
local batch = cjson.decode(raw)

-- Lua's unpack() and redis.call() take a few thousand values at most: go in slices of
-- SLICE entries of `width` values each. Lengths are passed in: Lua 5.1 finds #t by a search.
local SLICE = 1000
local function in_slices(list, n, width, call)
  local step = SLICE * width
  for first = 1, n, step do
    call(first, math.min(first + step - 1, n))
  end
end

local wanted = nil
if #ARGV > 4 then
  wanted = {}
  for i = 5, #ARGV do wanted[ARGV[i]] = true end
end

local function has(list, item)
  return string.find(',' .. list .. ',', ',' .. item .. ',', 1, true) ~= nil
end

local counts = {}
local function move(jobs, from, to, n)
  for job in string.gmatch(jobs, '[^,]+') do
    counts[job .. ':' .. from] = (counts[job .. ':' .. from] or 0) - n
    if to then counts[job .. ':' .. to] = (counts[job .. ':' .. to] or 0) + n end
  end
end

local task_ids = info.task_ids or {}
local joined_tasks = table.concat(task_ids, ',')

-- Which paths stay in the batch, which are settled.
local keep_paths, keep_ranks, keep_waiters, n_keep = {}, {}, {}, 0
local paths, ranks, jobs_of, n = {}, {}, {}, 0
for i, path in ipairs(batch.paths) do
  if wanted and not wanted[path] then
    n_keep = n_keep + 1
    keep_paths[n_keep] = path
    keep_ranks[n_keep] = batch.ranks[i]
    keep_waiters[n_keep] = batch.waiters[i]
  else
    n = n + 1
    paths[n] = path
    ranks[n] = batch.ranks[i]
    jobs_of[n] = batch.waiters[i]
  end
end

-- Attempts so far: only a path that failed before has pathinfo, so an empty hash (the usual
-- case) needs no HMGET, and only the paths found need an HDEL.
local prior = {}
if n > 0 and redis.call('HLEN', KEYS[5]) > 0 then
  in_slices(paths, n, 1, function(first, last)
    local part = redis.call('HMGET', KEYS[5], unpack(paths, first, last))
    for i = 1, #part do prior[first + i - 1] = part[i] end
  end)
end

local settled, dead, top_attempts = n, 0, 0
local records, n_records, times, n_times = {}, 0, {}, 0
local dead_fields, n_dead_fields = {}, 0
local dead_paths, dead_jobs, dead_attempts, n_dead_paths = {}, {}, {}, 0
local submitted_paths, n_submitted = {}, 0
local forget, n_forget = {}, 0
local retry_paths, retry_ranks, retry_jobs, n_retry = {}, {}, {}, 0
local info_fields, n_info_fields = {}, 0
local moved = {}  -- waiters string -> paths moved out of in_flight, per destination
local encoded = {}  -- attempts .. '|' .. waiters -> JSON of a record or dead letter
local code, message = info.code or '', info.message or ''

local function add_moved(jobs, to)
  local by_jobs = moved[to]
  if not by_jobs then
    by_jobs = {}
    moved[to] = by_jobs
  end
  by_jobs[jobs] = (by_jobs[jobs] or 0) + 1
end

for i = 1, n do
  local path, jobs = paths[i], jobs_of[i]
  local attempts = prior[i] and cjson.decode(prior[i]).attempts or 0
  if outcome ~= 'requeue' then attempts = attempts + 1 end
  if attempts > top_attempts then top_attempts = attempts end
  local gone = false
  if outcome == 'submitted' then
    gone = true
    local memo = attempts .. '|' .. jobs
    local json = encoded[memo]
    if not json then
      json = cjson.encode({
        task_ids = task_ids, request_id = info.request_id or '', submitted_at = now,
        batch = id, attempts = attempts, jobs = jobs,
      })
      encoded[memo] = json
    end
    records[n_records + 1] = path
    records[n_records + 2] = json
    n_records = n_records + 2
    n_submitted = n_submitted + 1
    submitted_paths[n_submitted] = path
    times[n_times + 1] = now
    times[n_times + 2] = path
    n_times = n_times + 2
    add_moved(jobs, 'submitted')
  elseif outcome == 'dead' or (outcome == 'retry' and attempts >= tonumber(info.max_attempts)) then
    n_dead_paths = n_dead_paths + 1
    dead_paths[n_dead_paths] = path
    dead_jobs[n_dead_paths] = jobs
    dead_attempts[n_dead_paths] = attempts
    add_moved(jobs, 'failed')
    dead = dead + 1
    gone = true
  else
    local memo = tostring(attempts)
    local json = encoded[memo]
    if not json then
      json = cjson.encode({
        attempts = attempts, last_error = code, message = message, at = now,
      })
      encoded[memo] = json
    end
    info_fields[n_info_fields + 1] = path
    info_fields[n_info_fields + 2] = json
    n_info_fields = n_info_fields + 2
    n_retry = n_retry + 1
    retry_paths[n_retry] = path
    retry_ranks[n_retry] = ranks[i]
    retry_jobs[n_retry] = jobs
  end
  if gone and prior[i] then
    n_forget = n_forget + 1
    forget[n_forget] = path
  end
end

in_slices(records, n_records, 2, function(first, last)
  redis.call('HSET', KEYS[6], unpack(records, first, last))
end)
in_slices(times, n_times, 2, function(first, last)
  redis.call('ZADD', KEYS[7], unpack(times, first, last))
end)
-- A path dead-lettered again keeps the jobs of its earlier entry, so a replay brings them
-- all back; a path submitted now leaves the dead-letter set (it went through after all).
local has_dead = (n_dead_paths > 0 or n_submitted > 0) and redis.call('HLEN', KEYS[8]) > 0
local earlier = {}
if has_dead and n_dead_paths > 0 then
  in_slices(dead_paths, n_dead_paths, 1, function(first, last)
    local part = redis.call('HMGET', KEYS[8], unpack(dead_paths, first, last))
    for k = 1, #part do earlier[first + k - 1] = part[k] end
  end)
end
for k = 1, n_dead_paths do
  local jobs = dead_jobs[k]
  if earlier[k] then
    for job in string.gmatch(cjson.decode(earlier[k]).jobs or '', '[^,]+') do
      if not has(jobs, job) then jobs = jobs == '' and job or (jobs .. ',' .. job) end
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
  dead_fields[n_dead_fields + 1] = dead_paths[k]
  dead_fields[n_dead_fields + 2] = json
  n_dead_fields = n_dead_fields + 2
end
if has_dead and n_submitted > 0 then
  in_slices(submitted_paths, n_submitted, 1, function(first, last)
    redis.call('HDEL', KEYS[8], unpack(submitted_paths, first, last))
  end)
end
in_slices(dead_fields, n_dead_fields, 2, function(first, last)
  redis.call('HSET', KEYS[8], unpack(dead_fields, first, last))
end)
in_slices(forget, n_forget, 1, function(first, last)
  redis.call('HDEL', KEYS[5], unpack(forget, first, last))
end)
in_slices(info_fields, n_info_fields, 2, function(first, last)
  redis.call('HSET', KEYS[5], unpack(info_fields, first, last))
end)

-- The paths may be pending again already (enqueued while in flight): merge the waiters.
if n_retry > 0 then
  local forward, merged_fields = {}, {}
  for i = 1, n_retry do
    forward[2 * i - 1] = retry_ranks[i]
    forward[2 * i] = retry_paths[i]
  end
  in_slices(forward, 2 * n_retry, 2, function(first, last)
    redis.call('ZADD', KEYS[3], 'LT', unpack(forward, first, last))
  end)
  in_slices(retry_paths, n_retry, 1, function(first, last)
    local waiting = redis.call('HMGET', KEYS[4], unpack(retry_paths, first, last))
    for k = 1, #waiting do
      local i = first + k - 1
      local known = waiting[k] or ''
      local merged = known
      for job in string.gmatch(retry_jobs[i], '[^,]+') do
        if has(known, job) then
          counts[job .. ':in_flight'] = (counts[job .. ':in_flight'] or 0) - 1
        else
          move(job, 'in_flight', 'pending', 1)
          merged = merged == '' and job or (merged .. ',' .. job)
        end
      end
      merged_fields[2 * i - 1] = retry_paths[i]
      merged_fields[2 * i] = merged
    end
  end)
  in_slices(merged_fields, 2 * n_retry, 2, function(first, last)
    redis.call('HSET', KEYS[4], unpack(merged_fields, first, last))
  end)
end

local jobs_seen = {}
for to, by_jobs in pairs(moved) do
  for jobs, count in pairs(by_jobs) do
    move(jobs, 'in_flight', to, count)
    if to == 'submitted' then
      for job in string.gmatch(jobs, '[^,]+') do jobs_seen[job] = true end
    end
  end
end

for key, count in pairs(counts) do
  if count ~= 0 then redis.call('HINCRBY', KEYS[11], key, count) end
end
if n_submitted > 0 then redis.call('DEL', KEYS[13], KEYS[14]) end
if joined_tasks ~= '' then
  for job in pairs(jobs_seen) do
    local known = redis.call('HGET', KEYS[12], job) or ''
    local merged = known
    for _, task in ipairs(task_ids) do
      if not has(merged, task) then merged = merged == '' and task or (merged .. ',' .. task) end
    end
    if merged ~= known then redis.call('HSET', KEYS[12], job, merged) end
  end
end

-- A definite error answer gives the reservation back for the paths it covered.
if info.return_quota and settled > 0 then
  local reserved_at = redis.call('ZSCORE', KEYS[9], batch.reservation)
  if reserved_at then
    local count = tonumber(string.match(batch.reservation, ':(%d+)$'))
    local back = math.min(settled, count)
    redis.call('ZREM', KEYS[9], batch.reservation)
    batch.reservation = id .. ':' .. (count - back)
    if count - back > 0 then redis.call('ZADD', KEYS[9], reserved_at, batch.reservation) end
    redis.call('DECRBY', KEYS[10], back)
  end
end

if n_keep == 0 then
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
else
  batch.paths, batch.ranks, batch.waiters = keep_paths, keep_ranks, keep_waiters
  redis.call('HSET', KEYS[1], id, cjson.encode(batch))
end
return {settled, dead, top_attempts}
