-- track_settle.lua: the sections of a tracked call's end (track.lua calls them). Prepended to
-- track.lua only, after the prelude. `ending` is what a settle carries and counts: {now,
-- max_attempts, batch, failed_task, any_failed, own_task, counts, n_complete, n_back, n_dead}.

-- Why a path of a failed task went back (its pathinfo) or into the dead-letter set.
local FAILED_CODE, FAILED_MESSAGE = 'TaskFailed', 'the provider ended its refresh task Failed'

-- Each task of the call gets its end (`status_of(task)`), kept for lookups and retention.
local function mark_tasks(task_status, task_status_by_time, task_ids, now, status_of)
  for _, task in ipairs(task_ids) do
    local status = status_of(task)
    redis.call('HSET', task_status, task, cjson.encode({status = status, at = now}))
    redis.call('ZADD', task_status_by_time, now, task)
  end
end

local function untrack(tracking, tracks, call)
  redis.call('ZREM', tracking, call)
  redis.call('HDEL', tracks, call)
end

-- Only Complete ended well: Failed (and a Timeout or Canceled the provider may show) did not.
-- Returns the set of tasks that did not, and whether there is any.
local function failed_tasks(statuses)
  local failed_task, any_failed = {}, false
  for task, status in pairs(statuses) do
    if status ~= 'Complete' then failed_task[task], any_failed = true, true end
  end
  return failed_task, any_failed
end

-- Each path's own task. A path the answer does not name as sent (the provider may spell it
-- otherwise): the call's only task, else the task of another path of its domain, else none.
local function task_finder(task_of, task_ids)
  local domain_task = {}
  for path, task in pairs(task_of) do
    domain_task[string.match(path, '^%a+://([^/]+)') or ''] = task
  end
  return function(path)
    if task_of[path] then return task_of[path] end
    if #task_ids == 1 then return task_ids[1] end
    return domain_task[string.match(path, '^%a+://([^/]+)') or '']
  end
end

-- Whether the paths of `task` failed: a path with no task known fails with any failed task.
local function task_failed(ending, task)
  return (task and ending.failed_task[task]) or (not task and ending.any_failed)
end

local function complete(ending, jobs)
  count_move(ending.counts, jobs, STATE.SUBMITTED, STATE.COMPLETE, 1)
  ending.n_complete = ending.n_complete + 1
end

-- One group of paths (own, or covered Files/Directories) of a failed task into one type's
-- keys `k`: back to pending, or dead-lettered when out of attempts. `attempts_of` is each
-- path's submissions so far.
local function send_back(ending, group, k, attempts_of)
  local now = ending.now
  for i, path in ipairs(group.paths) do
    local jobs = group.jobs[i] or ''
    local attempts = attempts_of[i] or 1
    if attempts >= ending.max_attempts then
      local entry = {code = FAILED_CODE, message = FAILED_MESSAGE, attempts = attempts, at = now,
                     jobs = jobs, batch = ending.batch, object_type = k.object_type}
      redis.call('HSET', k.dead, path, cjson.encode(entry))
      count_move(ending.counts, jobs, STATE.SUBMITTED, STATE.FAILED, 1)
      ending.n_dead = ending.n_dead + 1
    else
      redis.call('HSET', k.pathinfo, path, cjson.encode(
        {attempts = attempts, last_error = FAILED_CODE, message = FAILED_MESSAGE, at = now}))
      to_pending(k.pending, k.lex, {path}, {group.ranks[i]}, 1)
      local known = waiters_get(k.waiters, {path}, 1)[1]
      local merged = rejoin_waiters(ending.counts, known, jobs, STATE.SUBMITTED)
      waiters_set(k.waiters, {path}, {merged}, 1)
      ending.n_back = ending.n_back + 1
    end
  end
end

-- Each path's submissions so far, from its record (by position; none without a record).
local function attempts_from(records_key, paths)
  local found = {}
  if #paths == 0 then return found end
  local part = redis.call('HMGET', records_key, unpack(paths))
  for i = 1, #part do
    if part[i] then found[i] = cjson.decode(part[i]).attempts end
  end
  return found
end

-- The call's own paths: each record names its own task from now on; the paths of a failed
-- task go back, the others are complete.
local function settle_own(ending, track, records, own)
  local failed, attempts_own = {paths = {}, ranks = {}, jobs = {}}, {}
  local own_records = {}
  if #track.paths > 0 then
    local part = redis.call('HMGET', records, unpack(track.paths))
    for i = 1, #part do own_records[i] = part[i] end
  end
  for i, path in ipairs(track.paths) do
    local task = ending.own_task(path)
    local record = own_records[i] and cjson.decode(own_records[i])
    -- Sent again since (a newer call): that call's record and outcome are the path's now.
    local superseded = record and record.submitted_at > track.at
    if record and not superseded and task then
      record.task_id = task
      redis.call('HSET', records, path, cjson.encode(record))
    end
    if task_failed(ending, task) and not superseded then
      local n = #failed.paths + 1
      failed.paths[n], failed.ranks[n], failed.jobs[n] = path, track.ranks[i], track.jobs[i]
      attempts_own[n] = record and record.attempts or 1
    else
      complete(ending, track.jobs[i] or '')
    end
  end
  send_back(ending, failed, own, attempts_own)
end

-- What each Directory covered goes with it: complete, or back to pending. Covered Files go
-- into the Files' keys `files`, covered Directories into the call's own keys `own`.
local function settle_covered(ending, track, files, own)
  for directory, entries in pairs(track.covered) do
    local gone = task_failed(ending, ending.own_task(directory)) or false
    for _, entry in ipairs(entries) do
      for _, pair in ipairs({{entry.files, files}, {entry.dirs, own}}) do
        local group, k = pair[1], pair[2]
        if gone then
          send_back(ending, group, k, attempts_from(k.records, group.paths))
        else
          for i = 1, group.n do complete(ending, group.jobs[i] or '') end
        end
      end
    end
  end
end
