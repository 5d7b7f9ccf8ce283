-- release_steps.lua: release.lua's sections: which paths are retried and which are dead-
-- lettered, the dead letters, the way back to pending, the units given back. Prepended to
-- release.lua only, after the prelude.

-- Sort the `taken` paths (attempts so far in `prior`): dead-lettered (FAILED, or RETRY at
-- max_attempts), else retried with an attempt counted (none for REQUEUE). Returns the two
-- groups, the pathinfo HSET pairs of the retried paths, the paths whose pathinfo goes, and
-- the highest attempt count.
local function sort_released(r, taken, prior)
  local dead = {paths = {}, jobs = {}, attempts = {}, n = 0}
  local retry = {paths = {}, ranks = {}, jobs = {}, n = 0}
  local info_fields, n_info, forget, top = {}, 0, {}, 0
  for i = 1, taken.n do
    local path, attempts = taken.paths[i], prior[i] or 0
    if r.mode ~= RELEASE.REQUEUE then attempts = attempts + 1 end
    if attempts > top then top = attempts end
    if r.mode == RELEASE.FAILED or (r.mode == RELEASE.RETRY and attempts >= r.max_attempts) then
      dead.n = dead.n + 1
      dead.paths[dead.n], dead.jobs[dead.n], dead.attempts[dead.n] = path, taken.jobs[i], attempts
      count_move(r.counts, taken.jobs[i], STATE.IN_FLIGHT, STATE.FAILED, 1)
      if prior[i] then forget[#forget + 1] = path end
    else
      local json = r.encoded[attempts]
      if not json then
        json = cjson.encode({attempts = attempts, last_error = r.code, message = r.message, at = r.now})
        r.encoded[attempts] = json
      end
      info_fields[n_info + 1], info_fields[n_info + 2] = path, json
      n_info = n_info + 2
      retry.n = retry.n + 1
      retry.paths[retry.n], retry.ranks[retry.n], retry.jobs[retry.n] = path, taken.ranks[i], taken.jobs[i]
    end
  end
  return dead, retry, info_fields, forget, top
end

-- Dead letters. A path dead-lettered again keeps the jobs of its earlier entry, so that a
-- replay brings them all back.
local function write_dead(r, dead_key, dead, batch)
  local earlier = {}
  if dead.n > 0 and redis.call('HLEN', dead_key) > 0 then
    in_slices(dead.n, 1, function(first, last)
      local part = redis.call('HMGET', dead_key, unpack(dead.paths, first, last))
      for k = 1, #part do earlier[first + k - 1] = part[k] end
    end)
  end
  local fields = {}
  for k = 1, dead.n do
    local jobs = dead.jobs[k]
    if earlier[k] then
      for job in string.gmatch(cjson.decode(earlier[k]).jobs or '', '[^,]+') do
        jobs = list_add(jobs, job)
      end
    end
    local memo = dead.attempts[k] .. '|' .. jobs
    local json = r.encoded[memo]
    if not json then
      json = cjson.encode({
        code = r.code, message = r.message, attempts = dead.attempts[k], at = r.now,
        jobs = jobs, batch = r.id, object_type = batch.object_type,
      })
      r.encoded[memo] = json
    end
    fields[2 * k - 1], fields[2 * k] = dead.paths[k], json
  end
  in_slices(2 * dead.n, 2, function(first, last)
    redis.call('HSET', dead_key, unpack(fields, first, last))
  end)
end

-- Back to pending. The paths may be pending again already (enqueued while in flight): keep
-- the sooner rank and merge the waiters. `keys` are the type's pending, lex (nil for Files)
-- and waiters.
local function requeue(r, group, keys)
  if group.n == 0 then return end
  to_pending(keys.pending, keys.lex, group.paths, group.ranks, group.n)
  local known = waiters_get(keys.waiters, group.paths, group.n)
  local merged = {}
  for i = 1, group.n do
    merged[i] = rejoin_waiters(r.counts, known[i], group.jobs[i], STATE.IN_FLIGHT)
  end
  waiters_set(keys.waiters, group.paths, merged, group.n)
end

-- A definite error answer gives the reservation back for the `n` paths it covered.
local function give_back(quota, quota_total, batch, id, n)
  local reserved_at = redis.call('ZSCORE', quota, batch.reservation)
  if not reserved_at then return end
  local count = reservation_count(batch.reservation)
  local back = math.min(n, count)
  redis.call('ZREM', quota, batch.reservation)
  batch.reservation = id .. ':' .. (count - back)
  if count - back > 0 then redis.call('ZADD', quota, reserved_at, batch.reservation) end
  redis.call('DECRBY', quota_total, back)
end
