-- Reference only: submit.lua as it was before it became a short main over named sections
-- (commit e9f4817). tests/test_settle_equivalence.py runs it beside the current submit.lua.
-- Record paths as submitted under the provider's task IDs: the one writer of submission
-- records. Idempotent: paths no longer in the batch (or a batch already gone) are left alone,
-- so a task that runs twice changes nothing.
local batches = KEYS[1]          -- HASH batch id -> JSON batch in flight
local leases = KEYS[2]           -- ZSET batch id -> lease expiry
local pathinfo = KEYS[3]         -- HASH path -> attempts so far (forgotten once submitted)
local records = KEYS[4]          -- HASH path -> JSON submission record
local records_by_time = KEYS[5]  -- ZSET path -> submitted_at
local dead = KEYS[6]             -- HASH path -> dead letter (a submission supersedes it)
local job_counts = KEYS[7]       -- HASH "job:state" -> count
local job_tasks = KEYS[8]        -- HASH job id -> task ids
local auth_failures = KEYS[9]    -- both cleared by a submission: the credentials work again
local auth_error = KEYS[10]
local covered = KEYS[11]         -- HASH "batch|directory|step" -> JSON paths it covers
local file_pathinfo = KEYS[12]   -- the other type's keys: the Files a Directory covers
local file_records = KEYS[13]
local file_records_by_time = KEYS[14]
local file_dead = KEYS[15]
local metrics = KEYS[16]         -- HASH counters every worker adds to (store/metrics.py)
local covering = KEYS[17]        -- ZSET Directories whose coverage is under way
local tracking = KEYS[18]        -- ZSET call -> when to ask the provider how it went (s)
local tracks = KEYS[19]          -- HASH call -> JSON task IDs and paths (store/tracking.py)
-- ARGV[1] batch id   ARGV[2] now (s; empty: Redis's clock)
-- ARGV[3] JSON {task_ids, request_id, history (how many submissions a record keeps),
--         metrics (field -> increment: the calls this answer ends),
--         submitted_fields {own, File} (the counters of submitted paths: of the batch's type,
--         and of Files, for the Files a Directory covers),
--         track_after (s; absent: the call is not tracked to completion)}
-- ARGV[4] 'batch': settle paths of the batch in flight;
--         'late': the batch's lease ran out before this answer and its paths went back to
--         pending: only record the task IDs of ARGV[5..n], which may go out again
-- ARGV[5..n] the paths; none means every path still in the batch
-- Returns {settled, highest attempt count among the settled paths, paths covered}
--
-- A handful of commands per call, not a few per path: each kind of write is one command
-- over all of its paths, and a record's JSON is encoded once per distinct (attempts, jobs)
-- for paths submitted for the first time (the usual case). The paths a settled Directory
-- covers are settled with it, in this same step, under its task IDs.
local id, now = ARGV[1], clock(ARGV[2])
local info = cjson.decode(ARGV[3])
-- Before any early return: the calls happened even when their batch is settled already.
add_metrics(metrics, info.metrics)
local late = ARGV[4] == 'late'
local task_ids = info.task_ids
local history = tonumber(info.history)

local batch, taken, save_rest
if late then
  taken = {paths = {}, jobs = {}, n = 0}
  for i = 5, #ARGV do
    taken.n = taken.n + 1
    taken.paths[taken.n] = ARGV[i]
    taken.jobs[taken.n] = ''
  end
else
  batch, taken, save_rest = take_from_batch(batches, leases, id, 5)
  if not batch then return {0, 0, 0} end
end

local function record_json(attempts, jobs, before, covered_by)
  local record = {
    task_ids = task_ids, request_id = info.request_id or '', submitted_at = now,
    batch = id, attempts = attempts, jobs = jobs, covered_by = covered_by,
  }
  if late then record.late = true end
  if before then
    local kept = {{task_ids = before.task_ids, submitted_at = before.submitted_at}}
    for _, older in ipairs(before.earlier or {}) do
      if #kept >= history - 1 then break end
      kept[#kept + 1] = older
    end
    record.earlier = kept
  end
  return cjson.encode(record)
end

local moved = {}  -- jobs -> paths moved from in_flight to submitted
-- Write the records of `paths` (each with the jobs in `jobs`) into one type's keys `k`;
-- returns the highest attempt count.
local function settle(paths, jobs_of, n, k, covered_by)
  local prior = {}
  if not late then prior = prior_attempts(k.pathinfo, paths, n) end
  -- Earlier submissions of these paths, kept in their records (newest first).
  local earlier = {}
  if n > 0 and redis.call('HLEN', k.records) > 0 then
    in_slices(n, 1, function(first, last)
      local part = redis.call('HMGET', k.records, unpack(paths, first, last))
      for i = 1, #part do
        if part[i] then earlier[first + i - 1] = cjson.decode(part[i]) end
      end
    end)
  end
  local top_attempts = 0
  local fields, times, n_fields = {}, {}, 0
  local forget, n_forget = {}, 0
  local encoded = {}  -- attempts .. '|' .. jobs -> JSON of a first submission
  for i = 1, n do
    local path, jobs = paths[i], jobs_of[i]
    local attempts = (prior[i] or 0) + (late and 0 or 1)
    if attempts > top_attempts then top_attempts = attempts end
    local json
    if earlier[i] and history > 1 then
      json = record_json(attempts, jobs, earlier[i], covered_by)
    else
      local memo = attempts .. '|' .. jobs
      json = encoded[memo]
      if not json then
        json = record_json(attempts, jobs, nil, covered_by)
        encoded[memo] = json
      end
    end
    fields[n_fields + 1], fields[n_fields + 2] = path, json
    times[n_fields + 1], times[n_fields + 2] = now, path
    n_fields = n_fields + 2
    if prior[i] then
      n_forget = n_forget + 1
      forget[n_forget] = path
    end
    moved[jobs] = (moved[jobs] or 0) + 1
  end
  in_slices(n_fields, 2, function(first, last)
    redis.call('HSET', k.records, unpack(fields, first, last))
    redis.call('ZADD', k.times, unpack(times, first, last))
  end)
  if late then return top_attempts end
  in_slices(n_forget, 1, function(first, last)
    redis.call('HDEL', k.pathinfo, unpack(forget, first, last))
  end)
  -- A path submitted now leaves the dead-letter set: it went through after all.
  if n > 0 and redis.call('HLEN', k.dead) > 0 then
    in_slices(n, 1, function(first, last)
      redis.call('HDEL', k.dead, unpack(paths, first, last))
    end)
  end
  return top_attempts
end

local own = {pathinfo = pathinfo, records = records, times = records_by_time, dead = dead}
local files = {
  pathinfo = file_pathinfo, records = file_records, times = file_records_by_time, dead = file_dead,
}
local top_attempts = settle(taken.paths, taken.jobs, taken.n, own, nil)
if late then return {taken.n, top_attempts, 0} end

-- What the call carried, kept until the provider says how its tasks ended: the paths of a
-- Failed task go back to pending (store/tracking.py, lua/track.lua).
local track = {
  task_ids = task_ids, object_type = batch.object_type, at = now, batch = id, checks = 0,
  paths = taken.paths, ranks = taken.ranks, jobs = taken.jobs, covered = {},
}
local n_covered, covered_files = 0, 0
take_covered(covered, covering, id, batch, taken.paths, function(directory, entry)
  local kept = track.covered[directory] or {}
  kept[#kept + 1] = entry
  track.covered[directory] = kept
  settle(entry.files.paths, entry.files.jobs, entry.files.n, files, directory)
  settle(entry.dirs.paths, entry.dirs.jobs, entry.dirs.n, own, directory)
  n_covered = n_covered + entry.files.n + entry.dirs.n
  covered_files = covered_files + entry.files.n
end)

local counts, jobs_seen = {}, {}
for jobs, count in pairs(moved) do
  count_move(counts, jobs, STATE.IN_FLIGHT, STATE.SUBMITTED, count)
  for job in string.gmatch(jobs, '[^,]+') do jobs_seen[job] = true end
end
write_counts(job_counts, counts)
for job in pairs(jobs_seen) do
  local known = redis.call('HGET', job_tasks, job) or ''
  local merged = known
  for _, task in ipairs(task_ids) do merged = list_add(merged, task) end
  if merged ~= known then redis.call('HSET', job_tasks, job, merged) end
end
if taken.n > 0 then redis.call('DEL', auth_failures, auth_error) end
if info.track_after and taken.n > 0 and #task_ids > 0 then
  -- One entry per request: the halves of a split batch may share a merged task ID, never a
  -- RequestId.
  local request = info.request_id or ''
  local call = id .. '@' .. (request ~= '' and request or task_ids[1])
  redis.call('HSET', tracks, call, cjson.encode(track))
  redis.call('ZADD', tracking, now + tonumber(info.track_after), call)
end
-- Covered paths are submitted too: covered Files count as Files, the rest as the batch's type.
local fields = info.submitted_fields
if fields and taken.n > 0 then
  local increments = {[fields.own] = taken.n + n_covered - covered_files}
  if covered_files > 0 then increments[fields.File] = covered_files end
  add_metrics(metrics, increments)
end

save_rest()
return {taken.n, top_attempts, n_covered}
