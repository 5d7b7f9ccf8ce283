-- submit_after.lua: what follows from an answer's records (submit.lua calls these after
-- settle_paths): the paths its Directories covered, its jobs, its tracking, its counters.
-- Prepended to submit.lua only, after submit_records.lua; `sub` is the submission there.

-- The paths the Directories of the batch covered are settled with them, in this same step,
-- under their task IDs: covered Files in the Files' keys, covered Directories in `own`. Each
-- coverage entry is kept in the call's `track` (a failed Directory sends them back). Returns
-- how many paths were covered, and how many of them Files.
local function settle_covered(sub, k, batch, directories, track)
  local n_covered, covered_files = 0, 0
  take_covered(k.covered, k.covering, sub.id, batch, directories, function(directory, entry)
    local kept = track.covered[directory] or {}
    kept[#kept + 1] = entry
    track.covered[directory] = kept
    settle_paths(sub, entry.files.paths, entry.files.jobs, entry.files.n, k.files, directory)
    settle_paths(sub, entry.dirs.paths, entry.dirs.jobs, entry.dirs.n, k.own, directory)
    n_covered = n_covered + entry.files.n + entry.dirs.n
    covered_files = covered_files + entry.files.n
  end)
  return n_covered, covered_files
end

-- The jobs whose paths moved: their counters (in_flight -> submitted), and the task IDs
-- each job's paths went out under.
local function move_jobs(job_counts, job_tasks, moved, task_ids)
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
end

-- Keep what the call carried until the provider says how its tasks ended (store/tracking.py,
-- lua/track.lua): one entry per request, as the halves of a split batch may share a merged
-- task ID, never a RequestId.
local function start_tracking(tracks, tracking, sub, track, after_s)
  local request = sub.request_id
  local call = sub.id .. '@' .. (request ~= '' and request or sub.task_ids[1])
  redis.call('HSET', tracks, call, cjson.encode(track))
  redis.call('ZADD', tracking, sub.now + tonumber(after_s), call)
end

-- The submitted-paths counters: covered Files count as Files, the rest (the batch's own
-- paths and the Directories it covered) as the batch's type.
local function count_submitted(metrics, fields, n_own, n_covered, covered_files)
  local increments = {[fields.own] = n_own + n_covered - covered_files}
  if covered_files > 0 then increments[fields.File] = covered_files end
  add_metrics(metrics, increments)
end
