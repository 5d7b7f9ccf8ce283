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
local metrics = KEYS[11]         -- HASH counters every worker adds to (store/metrics.py)
-- ARGV[1] batch id   ARGV[2] now (s; empty: Redis's clock)
-- ARGV[3] JSON {task_ids, request_id, history (how many submissions a record keeps),
--         metrics (field -> increment: the calls this answer ends), submitted_field}
-- ARGV[4] 'batch': settle paths of the batch in flight;
--         'late': the batch's lease ran out before this answer and its paths went back to
--         pending: only record the task IDs of ARGV[5..n], which may go out again
-- ARGV[5..n] the paths; none means every path still in the batch
-- Returns {settled, highest attempt count among the settled paths}
--
-- A handful of commands per call, not a few per path: each kind of write is one command
-- over all of its paths, and a record's JSON is encoded once per distinct (attempts, jobs)
-- for paths submitted for the first time (the usual case).
local id, now = ARGV[1], clock(ARGV[2])
local info = cjson.decode(ARGV[3])
-- Before any early return: the calls happened even when their batch is settled already.
add_metrics(metrics, info.metrics)
local late = ARGV[4] == 'late'
local task_ids = info.task_ids
local history = tonumber(info.history)

local taken, save_rest
if late then
  taken = {paths = {}, jobs = {}, n = 0}
  for i = 5, #ARGV do
    taken.n = taken.n + 1
    taken.paths[taken.n] = ARGV[i]
    taken.jobs[taken.n] = ''
  end
else
  local batch
  batch, taken, save_rest = take_from_batch(batches, leases, id, 5)
  if not batch then return {0, 0} end
end
local paths, n = taken.paths, taken.n

local prior = {}
if not late then prior = prior_attempts(pathinfo, paths, n) end
-- Earlier submissions of these paths, kept in their records (newest first).
local earlier = {}
if n > 0 and redis.call('HLEN', records) > 0 then
  in_slices(n, 1, function(first, last)
    local part = redis.call('HMGET', records, unpack(paths, first, last))
    for i = 1, #part do
      if part[i] then earlier[first + i - 1] = cjson.decode(part[i]) end
    end
  end)
end

local function record_json(attempts, jobs, before)
  local record = {
    task_ids = task_ids, request_id = info.request_id or '', submitted_at = now,
    batch = id, attempts = attempts, jobs = jobs,
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

local top_attempts = 0
local fields, times, n_fields = {}, {}, 0
local forget, n_forget = {}, 0
local encoded = {}  -- attempts .. '|' .. jobs -> JSON of a first submission
local counts, jobs_seen = {}, {}
local moved = {}  -- jobs -> paths moved from in_flight to submitted
for i = 1, n do
  local path, jobs = paths[i], taken.jobs[i]
  local attempts = (prior[i] or 0) + (late and 0 or 1)
  if attempts > top_attempts then top_attempts = attempts end
  local json
  if earlier[i] and history > 1 then
    json = record_json(attempts, jobs, earlier[i])
  else
    local memo = attempts .. '|' .. jobs
    json = encoded[memo]
    if not json then
      json = record_json(attempts, jobs, nil)
      encoded[memo] = json
    end
  end
  fields[n_fields + 1] = path
  fields[n_fields + 2] = json
  times[n_fields + 1] = now
  times[n_fields + 2] = path
  n_fields = n_fields + 2
  if prior[i] then
    n_forget = n_forget + 1
    forget[n_forget] = path
  end
  moved[jobs] = (moved[jobs] or 0) + 1
end

in_slices(n_fields, 2, function(first, last)
  redis.call('HSET', records, unpack(fields, first, last))
end)
in_slices(n_fields, 2, function(first, last)
  redis.call('ZADD', records_by_time, unpack(times, first, last))
end)
if late then return {n, top_attempts} end

in_slices(n_forget, 1, function(first, last)
  redis.call('HDEL', pathinfo, unpack(forget, first, last))
end)
-- A path submitted now leaves the dead-letter set: it went through after all.
if n > 0 and redis.call('HLEN', dead) > 0 then
  in_slices(n, 1, function(first, last)
    redis.call('HDEL', dead, unpack(paths, first, last))
  end)
end

for jobs, count in pairs(moved) do
  count_move(counts, jobs, 'in_flight', 'submitted', count)
  for job in string.gmatch(jobs, '[^,]+') do jobs_seen[job] = true end
end
write_counts(job_counts, counts)
for job in pairs(jobs_seen) do
  local known = redis.call('HGET', job_tasks, job) or ''
  local merged = known
  for _, task in ipairs(task_ids) do merged = list_add(merged, task) end
  if merged ~= known then redis.call('HSET', job_tasks, job, merged) end
end
if n > 0 then redis.call('DEL', auth_failures, auth_error) end
if n > 0 and info.submitted_field then add_metrics(metrics, {[info.submitted_field] = n}) end

save_rest()
return {n, top_attempts}
