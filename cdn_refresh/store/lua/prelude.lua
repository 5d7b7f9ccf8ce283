-- prelude.lua: helpers every script shares, prepended to each one when it is registered
-- (cdn_refresh/store/scripts.py). It reads no key and takes no argument itself.

-- Lua's unpack() and redis.call() take a few thousand values at most: go in slices of SLICE
-- entries of `width` values each. Lengths are passed in: Lua 5.1 finds #t by a search.
local SLICE = 1000
local function in_slices(n, width, call)
  local step = SLICE * width
  for first = 1, n, step do
    call(first, math.min(first + step - 1, n))
  end
end

-- Redis's clock, not the workers': hosts whose clocks disagree must share one window.
-- An empty argument means "now"; tests pass a time of their own.
local function clock(arg)
  local now = tonumber(arg)
  if now then return now end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1e6
end

-- Comma-separated lists (job ids, task ids): membership and union.
local function list_has(list, item)
  return string.find(',' .. list .. ',', ',' .. item .. ',', 1, true) ~= nil
end

local function list_add(list, item)
  if list == '' then return item end
  if list_has(list, item) then return list end
  return list .. ',' .. item
end

-- A quota reservation is the member "batch:count" of the window's sorted set.
local function reservation_count(member)
  return tonumber(string.match(member, ':(%d+)$'))
end

-- The rolling window every worker's quota runs on: the first worker to claim stores its own;
-- from then on it is the stored one, so that no mix of settings deletes a reservation
-- younger than the window another worker counts on (CDN_REFRESH_QUOTA_WINDOW_S).
local function quota_window(key, proposed)
  local stored = tonumber(redis.call('GET', key))
  if stored then return stored end
  redis.call('SET', key, proposed)
  return tonumber(proposed)
end

-- The limit (paths per window) every worker's quota of one type runs on: stored by the first
-- claim, as the window is, so that workers started with different URL_DAILY_QUOTA values
-- still share one limit and together never spend more than it.
local function quota_limit(key, proposed)
  local stored = tonumber(redis.call('GET', key))
  if stored then return stored end
  redis.call('SET', key, proposed)
  return tonumber(proposed)
end

-- Job counters ("job:state" -> n) gathered in a table, written once per script.
local function count_move(counts, jobs, from, to, n)
  for job in string.gmatch(jobs, '[^,]+') do
    if from then counts[job .. ':' .. from] = (counts[job .. ':' .. from] or 0) - n end
    if to then counts[job .. ':' .. to] = (counts[job .. ':' .. to] or 0) + n end
  end
end

-- A path back to pending with the jobs that waited on it: each job leaves state `from`;
-- one already waiting on the pending path (it asked again meanwhile) is counted there once.
-- Returns the merged waiters.
local function rejoin_waiters(counts, known, jobs, from)
  local merged = known
  for job in string.gmatch(jobs, '[^,]+') do
    if list_has(known, job) then
      count_move(counts, job, from, nil, 1)
    else
      count_move(counts, job, from, STATE.PENDING, 1)
      merged = list_add(merged, job)
    end
  end
  return merged
end

local function write_counts(key, counts)
  for field, n in pairs(counts) do
    if n ~= 0 then redis.call('HINCRBY', key, field, n) end
  end
end

-- Take paths out of a batch in flight. `argv_from` is where the wanted paths start in ARGV
-- (none: every path still in the batch). Returns nil when the batch is gone (settled
-- already: a task that ran twice, an answer after a reclaim), else the batch and the taken
-- paths, their ranks and their waiting jobs, and a function that saves what is left.
local function take_from_batch(batches_key, leases_key, id, argv_from)
  local raw = redis.call('HGET', batches_key, id)
  if not raw then return nil end
  local batch = cjson.decode(raw)
  local wanted = nil
  if #ARGV >= argv_from then
    wanted = {}
    for i = argv_from, #ARGV do wanted[ARGV[i]] = true end
  end
  local taken = {paths = {}, ranks = {}, jobs = {}, n = 0}
  local keep = {paths = {}, ranks = {}, waiters = {}, n = 0}
  for i, path in ipairs(batch.paths) do
    local into = taken
    if wanted and not wanted[path] then into = keep end
    into.n = into.n + 1
    into.paths[into.n] = path
    into.ranks[into.n] = batch.ranks[i]
    if into == taken then into.jobs[into.n] = batch.waiters[i] else into.waiters[into.n] = batch.waiters[i] end
  end
  local function save_rest()
    if keep.n == 0 then
      redis.call('HDEL', batches_key, id)
      redis.call('ZREM', leases_key, id)
    else
      batch.paths, batch.ranks, batch.waiters = keep.paths, keep.ranks, keep.waiters
      redis.call('HSET', batches_key, id, cjson.encode(batch))
    end
  end
  return batch, taken, save_rest
end

-- Attempts so far of each path: only a path that failed before has pathinfo, so an empty
-- hash (the usual case) needs no HMGET.
local function prior_attempts(pathinfo_key, paths, n)
  local prior = {}
  if n > 0 and redis.call('HLEN', pathinfo_key) > 0 then
    in_slices(n, 1, function(first, last)
      local part = redis.call('HMGET', pathinfo_key, unpack(paths, first, last))
      for i = 1, #part do
        if part[i] then prior[first + i - 1] = cjson.decode(part[i]).attempts or 0 end
      end
    end)
  end
  return prior
end

-- Coverage: a Directory covers every path that starts with it (same scheme and host; the
-- directory ends with "/"). The directories above a path, shallowest first and without the
-- path itself, from "scheme://host/" down to the path's own directory; a query is no part of
-- where a path lies ("/a/b?x=/c/" lies in "/a/").
local function ancestors(path)
  local found, n = {}, 0
  local query = string.find(path, '?', 1, true)
  local body = query and string.sub(path, 1, query - 1) or path
  local host_end = string.find(body, '/', (string.find(body, '://', 1, true) or 0) + 3, true)
  local at = host_end
  while at do
    local prefix = string.sub(body, 1, at)
    if prefix ~= path then
      n = n + 1
      found[n] = prefix
    end
    at = string.find(body, '/', at + 1, true)
  end
  return found, n
end

-- The ZRANGEBYLEX bounds of every member that starts with `prefix` (paths are ASCII).
local function under(prefix)
  return '[' .. prefix, '[' .. prefix .. '\255'
end

-- Put paths (with their ranks) back into pending and its lexicographic index; a path that is
-- pending already keeps the sooner rank.
local function to_pending(pending_key, lex_key, paths, ranks, n)
  if n == 0 then return end
  local members, lex = {}, {}
  for i = 1, n do
    members[2 * i - 1], members[2 * i] = ranks[i], paths[i]
    lex[2 * i - 1], lex[2 * i] = 0, paths[i]
  end
  in_slices(2 * n, 2, function(first, last)
    redis.call('ZADD', pending_key, 'LT', unpack(members, first, last))
  end)
  in_slices(2 * n, 2, function(first, last)
    redis.call('ZADD', lex_key, unpack(lex, first, last))
  end)
end

-- Paths leave pending: the rank set and the lexicographic index alike.
local function from_pending(pending_key, lex_key, paths, n)
  in_slices(n, 1, function(first, last)
    redis.call('ZREM', pending_key, unpack(paths, first, last))
    redis.call('ZREM', lex_key, unpack(paths, first, last))
  end)
end

-- A path that goes back to pending is no longer cooling: one waiting entry per path.
local function stop_cooling(cooling_key, rank_key, paths, n)
  if n == 0 or redis.call('ZCARD', cooling_key) == 0 then return end
  in_slices(n, 1, function(first, last)
    redis.call('ZREM', cooling_key, unpack(paths, first, last))
    redis.call('HDEL', rank_key, unpack(paths, first, last))
  end)
end

-- Metrics counters (HASH field -> number; cdn_refresh/store/metrics.py names the fields),
-- added by the script that settles the call they describe: counting costs no round trip.
local function add_metrics(metrics_key, increments)
  for field, by in pairs(increments or {}) do
    redis.call('HINCRBYFLOAT', metrics_key, field, by)
  end
end

-- What the Directories `directories` of batch `id` covered (cover.lua writes one field of
-- `covered_key` per step): each entry is handed to `call(directory, entry)` and taken out.
-- Those Directories leave `covering_key`: their coverage is over, settled or sent back.
local function take_covered(covered_key, covering_key, id, batch, directories, call)
  for _, directory in ipairs(batch.cover and directories or {}) do
    local st = batch.cover[directory]
    for step = 1, st and st.n or 0 do
      local field = id .. '|' .. directory .. '|' .. step
      local raw = redis.call('HGET', covered_key, field)
      if raw then
        call(directory, cjson.decode(raw))
        redis.call('HDEL', covered_key, field)
      end
    end
  end
  if batch.object_type == 'Directory' and #directories > 0 then
    redis.call('ZREM', covering_key, unpack(directories))
  end
end

-- What the provider's own count (a HASH remaining, checked_at) says is left, or nil when it
-- was never read or was read before the provider's last reset (ARGV-given, in s).
local function provider_remaining(key, last_reset)
  local counted = redis.call('HMGET', key, 'remaining', 'checked_at')
  if counted[1] and tonumber(counted[2]) >= last_reset then
    return tonumber(counted[1]), tonumber(counted[2])
  end
  return nil
end
