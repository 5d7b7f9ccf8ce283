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
local id = ARGV[1]                   -- the batch
local now = clock(ARGV[2])           -- s; empty: Redis's clock
local info = cjson.decode(ARGV[3])   -- see below
local mode = ARGV[4]                 -- 'batch' or 'late', below
local paths = trailing_list(ARGV, 5)  -- the paths; none: every path still in the batch
-- info: {task_ids, request_id, history (how many submissions a record keeps),
--        metrics (field -> increment: the calls this answer ends),
--        submitted_fields {own, File} (the counters of submitted paths: of the batch's type,
--        and of Files, for the Files a Directory covers),
--        track_after (s; absent: the call is not tracked to completion)}
-- mode: 'batch' settles paths of the batch in flight; 'late': the batch's lease ran out
--       before this answer and its paths went back to pending: only record the task IDs of
--       `paths`, which may go out again
-- Returns {settled, highest attempt count among the settled paths, paths covered}
-- The sections, in this order, are in submit_paths.lua, submit_records.lua and
-- submit_after.lua.

-- Before any early return: the calls happened even when their batch is settled already.
add_metrics(metrics, info.metrics)
local sub = {
  id = id, now = now, task_ids = info.task_ids, request_id = info.request_id or '',
  history = tonumber(info.history), late = mode == 'late', moved = {},
}
local own = {pathinfo = pathinfo, records = records, times = records_by_time, dead = dead}
if sub.late then
  local taken = late_taken(paths)
  return {taken.n, settle_paths(sub, taken.paths, taken.jobs, taken.n, own, nil), 0}
end

local batch, taken, save_rest = take_listed(batches, leases, id, paths)
if not batch then return {0, 0, 0} end
local top_attempts = settle_paths(sub, taken.paths, taken.jobs, taken.n, own, nil)
-- What the call carried, kept until the provider says how its tasks ended: the paths of a
-- Failed task go back to pending.
local track = {
  task_ids = sub.task_ids, object_type = batch.object_type, at = now, batch = id, checks = 0,
  paths = taken.paths, ranks = taken.ranks, jobs = taken.jobs, covered = {},
}
local files = {
  pathinfo = file_pathinfo, records = file_records, times = file_records_by_time, dead = file_dead,
}
local n_covered, covered_files = settle_covered(sub,
  {covered = covered, covering = covering, own = own, files = files}, batch, taken.paths, track)
move_jobs(job_counts, job_tasks, sub.moved, sub.task_ids)
if taken.n > 0 then redis.call('DEL', auth_failures, auth_error) end
if info.track_after and taken.n > 0 and #sub.task_ids > 0 then
  start_tracking(tracks, tracking, sub, track, info.track_after)
end
if info.submitted_fields and taken.n > 0 then
  count_submitted(metrics, info.submitted_fields, taken.n, n_covered, covered_files)
end
save_rest()
return {taken.n, top_attempts, n_covered}
