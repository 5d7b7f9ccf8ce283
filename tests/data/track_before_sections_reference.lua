-- Reference only: track.lua as it was before it became a short main over named sections
-- (commit e9f4817). tests/test_settle_equivalence.py runs it beside the current track.lua.
-- One later change is applied here too, because it changed what is stored, not how the script
-- is cut: a path sent back keeps its waiters under their digest, and a File no index.
-- How a tracked call ended, as the provider's tasks say (store/tracking.py decides which of
-- four things happens; this script does it, for every path of the call at once):
--   'settle'  every task ended: the paths of Complete tasks are complete; those of Failed
--             tasks go back to pending with an attempt counted (dead-lettered at
--             max_attempts), and with them what a failed Directory covered
--   'wait'    a task still runs: ask again after `next_s`
--   'give_up' the provider no longer knows a task, or it ran past the timeout: left as
--             submitted (never re-sent in a loop), the reason kept in task_status
-- Idempotent: a call no longer tracked is left alone.
local tracking = KEYS[1]        -- ZSET call -> when to ask next (s)
local tracks = KEYS[2]          -- HASH call -> JSON task ids and paths (written by submit.lua)
local task_status = KEYS[3]     -- HASH task id -> JSON {status, at}
local task_status_by_time = KEYS[4]  -- ZSET task id -> at, for retention
local job_counts = KEYS[5]      -- HASH "job:state" -> count
local records = KEYS[6]         -- the call's own type: records, pending, index, waiters,
local pending = KEYS[7]         -- attempts, dead letters
local pending_lex = KEYS[8]
local waiters = KEYS[9]
local pathinfo = KEYS[10]
local dead = KEYS[11]
local file_pending = KEYS[12]   -- the Files a Directory covered
local file_pending_lex = KEYS[13]
local file_waiters = KEYS[14]
local file_pathinfo = KEYS[15]
local file_dead = KEYS[16]
local file_records = KEYS[17]
local digesting = KEYS[18]
local call = ARGV[1]
local now = clock(ARGV[2])             -- s; empty: Redis's clock
local answer = cjson.decode(ARGV[3])   -- {outcome, statuses {task id -> status}, task_of
                                       -- {path -> its own task id}, next_s, reason, max_attempts}
-- Returns {complete, back to pending, dead-lettered}
local raw = redis.call('HGET', tracks, call)
if not raw then return {0, 0, 0} end
local track = cjson.decode(raw)

local function mark_tasks(status_of)
  for _, task in ipairs(track.task_ids) do
    local status = status_of(task)
    redis.call('HSET', task_status, task, cjson.encode({status = status, at = now}))
    redis.call('ZADD', task_status_by_time, now, task)
  end
end
local function untrack()
  redis.call('ZREM', tracking, call)
  redis.call('HDEL', tracks, call)
end

if answer.outcome == 'wait' then
  track.checks = track.checks + 1
  redis.call('HSET', tracks, call, cjson.encode(track))
  redis.call('ZADD', tracking, now + tonumber(answer.next_s), call)
  return {0, 0, 0}
end
if answer.outcome == 'give_up' then
  mark_tasks(function() return answer.reason end)
  untrack()
  return {0, 0, 0}
end

local statuses, task_of = answer.statuses, answer.task_of
mark_tasks(function(task) return statuses[task] or 'Complete' end)
-- Only Complete ended well: Failed (and a Timeout or Canceled the provider may show) did not.
local failed_task, any_failed = {}, false
for task, status in pairs(statuses) do
  if status ~= 'Complete' then failed_task[task], any_failed = true, true end
end
-- A path the answer does not name as sent (the provider may spell it otherwise): the call's
-- only task, else the task of another path of its domain, else none.
local domain_task = {}
for path, task in pairs(task_of) do
  domain_task[string.match(path, '^%a+://([^/]+)') or ''] = task
end
local function own_task(path)
  if task_of[path] then return task_of[path] end
  if #track.task_ids == 1 then return track.task_ids[1] end
  return domain_task[string.match(path, '^%a+://([^/]+)') or '']
end
local counts = {}
local n_complete, n_back, n_dead = 0, 0, 0
local max_attempts = tonumber(answer.max_attempts)
local code, message = 'TaskFailed', 'the provider ended its refresh task Failed'

-- One group of paths (own, or covered Files/Directories) of a failed task: back to pending,
-- or dead-lettered when out of attempts. `attempts_of` is each path's submissions so far.
local function send_back(group, k, attempts_of)
  for i, path in ipairs(group.paths) do
    local jobs = group.jobs[i] or ''
    local attempts = attempts_of[i] or 1
    if attempts >= max_attempts then
      local entry = {code = code, message = message, attempts = attempts, at = now,
                     jobs = jobs, batch = track.batch, object_type = k.object_type}
      redis.call('HSET', k.dead, path, cjson.encode(entry))
      count_move(counts, jobs, STATE.SUBMITTED, STATE.FAILED, 1)
      n_dead = n_dead + 1
    else
      redis.call('HSET', k.pathinfo, path,
        cjson.encode({attempts = attempts, last_error = code, message = message, at = now}))
      to_pending(k.pending, k.lex, {path}, {group.ranks[i]}, 1)
      local known = waiters_get(k.waiters, {path}, 1)[1]
      local merged = rejoin_waiters(counts, known, jobs, STATE.SUBMITTED)
      waiters_set(k.waiters, {path}, {merged}, 1)
      n_back = n_back + 1
    end
  end
end
local function attempts_from(records_key, paths)
  local found = {}
  if #paths == 0 then return found end
  local part = redis.call('HMGET', records_key, unpack(paths))
  for i = 1, #part do
    if part[i] then found[i] = cjson.decode(part[i]).attempts end
  end
  return found
end

waiters_mode(digesting)
local own = {pending = pending, lex = coverage_index(track.object_type, pending_lex), waiters = waiters, pathinfo = pathinfo,
             dead = dead, object_type = track.object_type}
local files = {pending = file_pending, lex = coverage_index('File', file_pending_lex), waiters = file_waiters,
               pathinfo = file_pathinfo, dead = file_dead, object_type = 'File'}

-- The call's own paths: each names its own task from now on.
local failed = {paths = {}, ranks = {}, jobs = {}}
local own_records = {}
if #track.paths > 0 then
  local part = redis.call('HMGET', records, unpack(track.paths))
  for i = 1, #part do own_records[i] = part[i] end
end
local attempts_own = {}
for i, path in ipairs(track.paths) do
  local task = own_task(path)
  local record = own_records[i] and cjson.decode(own_records[i])
  -- Sent again since (a newer call): that call's record and outcome are the path's now.
  local superseded = record and record.submitted_at > track.at
  if record and not superseded and task then
    record.task_id = task
    redis.call('HSET', records, path, cjson.encode(record))
  end
  local failed_here = (task and failed_task[task]) or (not task and any_failed)
  if failed_here and not superseded then
    local n = #failed.paths + 1
    failed.paths[n], failed.ranks[n], failed.jobs[n] = path, track.ranks[i], track.jobs[i]
    attempts_own[n] = record and record.attempts or 1
  else
    count_move(counts, track.jobs[i] or '', STATE.SUBMITTED, STATE.COMPLETE, 1)
    n_complete = n_complete + 1
  end
end
send_back(failed, own, attempts_own)

-- What each Directory covered goes with it: complete, or back to pending.
for directory, entries in pairs(track.covered) do
  local task = own_task(directory)
  local gone = (task and failed_task[task]) or (not task and any_failed) or false
  for _, entry in ipairs(entries) do
    for _, pair in ipairs({{entry.files, files, file_records}, {entry.dirs, own, records}}) do
      local group, k, records_key = pair[1], pair[2], pair[3]
      if gone then
        send_back(group, k, attempts_from(records_key, group.paths))
      else
        for i = 1, group.n do count_move(counts, group.jobs[i] or '', STATE.SUBMITTED, STATE.COMPLETE, 1) end
        n_complete = n_complete + group.n
      end
    end
  end
end
write_counts(job_counts, counts)
untrack()
return {n_complete, n_back, n_dead}
