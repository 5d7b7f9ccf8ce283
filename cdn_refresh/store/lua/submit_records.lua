-- submit_records.lua: the submission records an answer writes, one type's keys at a time
-- (submit.lua calls settle_paths). Prepended to submit.lua only, after submit_paths.lua.
-- `sub` is the submission: {id, now, task_ids, request_id, history, late, moved}; `moved`
-- gathers jobs -> paths moved from in_flight to submitted, for the job counters.

local function record_json(sub, attempts, jobs, before, covered_by)
  local record = {
    task_ids = sub.task_ids, request_id = sub.request_id, submitted_at = sub.now,
    batch = sub.id, attempts = attempts, jobs = jobs, covered_by = covered_by,
  }
  if sub.late then record.late = true end
  if before then
    -- A record keeps the `history` newest submissions of its path, this one first.
    local kept = {{task_ids = before.task_ids, submitted_at = before.submitted_at}}
    for _, older in ipairs(before.earlier or {}) do
      if #kept >= sub.history - 1 then break end
      kept[#kept + 1] = older
    end
    record.earlier = kept
  end
  return cjson.encode(record)
end

-- Earlier submissions of these paths (decoded records by position): an empty hash, the
-- usual case before any path is sent twice, needs no HMGET.
local function earlier_records(records_key, paths, n)
  local earlier = {}
  if n > 0 and redis.call('HLEN', records_key) > 0 then
    in_slices(n, 1, function(first, last)
      local part = redis.call('HMGET', records_key, unpack(paths, first, last))
      for i = 1, #part do
        if part[i] then earlier[first + i - 1] = cjson.decode(part[i]) end
      end
    end)
  end
  return earlier
end

-- A submitted path is done with failing: its attempts (pathinfo) are forgotten, and it
-- leaves the dead-letter set, as it went through after all.
local function forget_failures(k, paths, n, forget, n_forget)
  in_slices(n_forget, 1, function(first, last)
    redis.call('HDEL', k.pathinfo, unpack(forget, first, last))
  end)
  if n > 0 and redis.call('HLEN', k.dead) > 0 then
    in_slices(n, 1, function(first, last)
      redis.call('HDEL', k.dead, unpack(paths, first, last))
    end)
  end
end

-- Write the records of `paths` (path i waited on by the jobs `jobs_of[i]`) into one type's
-- keys `k`; returns the highest attempt count. One command per kind of write over all the
-- paths, not a few per path, and a first submission's JSON (the usual case) is encoded once
-- per distinct (attempts, jobs).
local function settle_paths(sub, paths, jobs_of, n, k, covered_by)
  local prior = {}
  if not sub.late then prior = prior_attempts(k.pathinfo, paths, n) end
  local earlier = earlier_records(k.records, paths, n)
  local top_attempts = 0
  local fields, times, n_fields = {}, {}, 0
  local forget, n_forget = {}, 0
  local encoded = {}  -- attempts .. '|' .. jobs -> JSON of a first submission
  for i = 1, n do
    local path, jobs = paths[i], jobs_of[i]
    -- A late answer's paths are pending again: this is no attempt of theirs.
    local attempts = (prior[i] or 0) + (sub.late and 0 or 1)
    if attempts > top_attempts then top_attempts = attempts end
    local json
    if earlier[i] and sub.history > 1 then
      json = record_json(sub, attempts, jobs, earlier[i], covered_by)
    else
      local memo = attempts .. '|' .. jobs
      json = encoded[memo]
      if not json then
        json = record_json(sub, attempts, jobs, nil, covered_by)
        encoded[memo] = json
      end
    end
    fields[n_fields + 1], fields[n_fields + 2] = path, json
    times[n_fields + 1], times[n_fields + 2] = sub.now, path
    n_fields = n_fields + 2
    if prior[i] then
      n_forget = n_forget + 1
      forget[n_forget] = path
    end
    sub.moved[jobs] = (sub.moved[jobs] or 0) + 1
  end
  in_slices(n_fields, 2, function(first, last)
    redis.call('HSET', k.records, unpack(fields, first, last))
    redis.call('ZADD', k.times, unpack(times, first, last))
  end)
  if not sub.late then forget_failures(k, paths, n, forget, n_forget) end
  return top_attempts
end
