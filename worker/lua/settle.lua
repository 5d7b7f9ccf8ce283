-- Settle some or all paths of a batch in flight: submitted, dead-lettered, or back to pending.
-- Idempotent: paths no longer in the batch (or a batch already gone) are left alone, so a
-- task that runs twice, or a late answer after a lease ran out, changes nothing.
--
-- KEYS[1]  batches HASH        KEYS[2]  leases ZSET        KEYS[3]  pending ZSET
-- KEYS[4]  waiters HASH        KEYS[5]  pathinfo HASH      KEYS[6]  records HASH
-- KEYS[7]  records_by_time     KEYS[8]  dead HASH          KEYS[9]  quota ZSET
-- KEYS[10] quota_total         KEYS[11] job_counts HASH    KEYS[12] job_tasks HASH
-- ARGV[1] batch id
-- ARGV[2] outcome: 'submitted' | 'dead' | 'retry' (counts an attempt; dead-letters at the cap)
--                  | 'requeue' (back to pending without counting an attempt)
-- ARGV[3] now (s)
-- ARGV[4] JSON {task_ids, request_id, code, message, return_quota, max_attempts,
--               only_if_lease_expired}
-- ARGV[5..n] the paths to settle; none means every path still in the batch
-- Returns {settled, dead_lettered, highest attempt count among the settled paths}
local id, outcome, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local info = cjson.decode(ARGV[4])
local raw = redis.call('HGET', KEYS[1], id)
if not raw then return {0, 0, 0} end
if info.only_if_lease_expired then
  local lease = redis.call('ZSCORE', KEYS[2], id)
  if lease and tonumber(lease) > now then return {0, 0, 0} end
end
local batch = cjson.decode(raw)

local wanted = nil
if #ARGV > 4 then
  wanted = {}
  for i = 5, #ARGV do wanted[ARGV[i]] = true end
end

local function has(list, item)
  return string.find(',' .. list .. ',', ',' .. item .. ',', 1, true) ~= nil
end

local counts = {}
local function move(jobs, from, to)
  for job in string.gmatch(jobs, '[^,]+') do
    counts[job .. ':' .. from] = (counts[job .. ':' .. from] or 0) - 1
    if to then counts[job .. ':' .. to] = (counts[job .. ':' .. to] or 0) + 1 end
  end
end

local task_ids = info.task_ids or {}
local joined_tasks = table.concat(task_ids, ',')
local keep_paths, keep_ranks, keep_waiters = {}, {}, {}
local settled, dead, top_attempts = 0, 0, 0
local jobs_seen = {}

local function dead_letter(path, jobs, attempts)
  redis.call('HSET', KEYS[8], path, cjson.encode({
    code = info.code or '', message = info.message or '', attempts = attempts, at = now,
    jobs = jobs, batch = id, object_type = batch.object_type,
  }))
  redis.call('HDEL', KEYS[5], path)
  move(jobs, 'in_flight', 'failed')
  dead = dead + 1
end

for i, path in ipairs(batch.paths) do
  local jobs = batch.waiters[i]
  if wanted and not wanted[path] then
    keep_paths[#keep_paths + 1] = path
    keep_ranks[#keep_ranks + 1] = batch.ranks[i]
    keep_waiters[#keep_waiters + 1] = jobs
  else
    settled = settled + 1
    local prior = redis.call('HGET', KEYS[5], path)
    local attempts = prior and cjson.decode(prior).attempts or 0
    if outcome ~= 'requeue' then attempts = attempts + 1 end
    if attempts > top_attempts then top_attempts = attempts end
    if outcome == 'submitted' then
      redis.call('HSET', KEYS[6], path, cjson.encode({
        task_ids = task_ids, request_id = info.request_id or '', submitted_at = now,
        batch = id, attempts = attempts, jobs = jobs,
      }))
      redis.call('ZADD', KEYS[7], now, path)
      redis.call('HDEL', KEYS[5], path)
      move(jobs, 'in_flight', 'submitted')
      for job in string.gmatch(jobs, '[^,]+') do jobs_seen[job] = true end
    elseif outcome == 'dead' or (outcome == 'retry' and attempts >= tonumber(info.max_attempts)) then
      dead_letter(path, jobs, attempts)
    else
      redis.call('HSET', KEYS[5], path, cjson.encode({
        attempts = attempts, last_error = info.code or '', message = info.message or '', at = now,
      }))
      -- The path may be pending again already (enqueued while in flight): merge the waiters.
      redis.call('ZADD', KEYS[3], 'LT', batch.ranks[i], path)
      local waiting = redis.call('HGET', KEYS[4], path) or ''
      local merged = waiting
      for job in string.gmatch(jobs, '[^,]+') do
        if has(waiting, job) then
          counts[job .. ':in_flight'] = (counts[job .. ':in_flight'] or 0) - 1
        else
          move(job, 'in_flight', 'pending')
          merged = merged == '' and job or (merged .. ',' .. job)
        end
      end
      redis.call('HSET', KEYS[4], path, merged)
    end
  end
end

for key, n in pairs(counts) do
  if n ~= 0 then redis.call('HINCRBY', KEYS[11], key, n) end
end
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

if #keep_paths == 0 then
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
else
  batch.paths, batch.ranks, batch.waiters = keep_paths, keep_ranks, keep_waiters
  redis.call('HSET', KEYS[1], id, cjson.encode(batch))
end
return {settled, dead, top_attempts}
