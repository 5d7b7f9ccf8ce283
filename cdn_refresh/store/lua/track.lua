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
local digesting = KEYS[18]      -- STRING while the waiters' upgrade runs (prelude_waiters.lua)
local call = ARGV[1]
local now = clock(ARGV[2])             -- s; empty: Redis's clock
local answer = cjson.decode(ARGV[3])   -- {outcome, statuses {task id -> status}, task_of
                                       -- {path -> its own task id}, next_s, reason, max_attempts}
-- Returns {complete, back to pending, dead-lettered}
-- The sections are in track_settle.lua.
local raw = redis.call('HGET', tracks, call)
if not raw then return {0, 0, 0} end
local track = cjson.decode(raw)

if answer.outcome == 'wait' then
  track.checks = track.checks + 1
  redis.call('HSET', tracks, call, cjson.encode(track))
  redis.call('ZADD', tracking, now + tonumber(answer.next_s), call)
  return {0, 0, 0}
end
if answer.outcome == 'give_up' then
  mark_tasks(task_status, task_status_by_time, track.task_ids, now,
    function() return answer.reason end)
  untrack(tracking, tracks, call)
  return {0, 0, 0}
end

local statuses = answer.statuses
mark_tasks(task_status, task_status_by_time, track.task_ids, now,
  function(task) return statuses[task] or 'Complete' end)
local ending = {now = now, max_attempts = tonumber(answer.max_attempts), batch = track.batch,
  own_task = task_finder(answer.task_of, track.task_ids),
  counts = {}, n_complete = 0, n_back = 0, n_dead = 0}
ending.failed_task, ending.any_failed = failed_tasks(statuses)
waiters_mode(digesting)
local own = {pending = pending, lex = coverage_index(track.object_type, pending_lex),
             waiters = waiters, pathinfo = pathinfo,
             dead = dead, records = records, object_type = track.object_type}
local files = {pending = file_pending, lex = coverage_index('File', file_pending_lex),
               waiters = file_waiters,
               pathinfo = file_pathinfo, dead = file_dead, records = file_records,
               object_type = 'File'}
settle_own(ending, track, records, own)
settle_covered(ending, track, files, own)
write_counts(job_counts, ending.counts)
untrack(tracking, tracks, call)
return {ending.n_complete, ending.n_back, ending.n_dead}
