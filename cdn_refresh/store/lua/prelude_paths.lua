-- prelude_paths.lua: the prelude's second half, prepended after prelude.lua: what scripts that
-- move paths share (a batch's paths, attempts, coverage, pending, cooling, metrics, counts).

-- Take paths out of a batch in flight. `wanted_paths` is the list of wanted paths (empty:
-- every path still in the batch); a number is where they start in ARGV (submit.lua's form).
-- Returns nil when the batch is gone (settled already: a task that ran twice, an answer
-- after a reclaim), else the batch and the taken paths, their ranks and their waiting jobs,
-- and a function that saves what is left.
local function take_from_batch(batches_key, leases_key, id, wanted_paths)
  local raw = redis.call('HGET', batches_key, id)
  if not raw then return nil end
  local batch = cjson.decode(raw)
  local listed = wanted_paths
  if type(wanted_paths) == 'number' then
    listed = {}
    for i = wanted_paths, #ARGV do listed[i - wanted_paths + 1] = ARGV[i] end
  end
  local wanted = nil
  if #listed > 0 then
    wanted = {}
    for _, path in ipairs(listed) do wanted[path] = true end
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

-- Put paths (with their ranks) back into pending, and into its coverage index when the type
-- keeps one (`lex_key`; nil for Files); a path that is pending already keeps the sooner rank.
local function to_pending(pending_key, lex_key, paths, ranks, n)
  if n == 0 then return end
  local members, lex = {}, {}
  for i = 1, n do
    members[2 * i - 1], members[2 * i] = ranks[i], paths[i]
    lex[2 * i - 1], lex[2 * i] = 0, paths[i]
  end
  in_slices(2 * n, 2, function(first, last)
    redis.call('ZADD', pending_key, 'LT', unpack(members, first, last))
    if lex_key then redis.call('ZADD', lex_key, unpack(lex, first, last)) end
  end)
end

-- Paths leave pending: the rank set and the coverage index (nil for Files) alike.
local function from_pending(pending_key, lex_key, paths, n)
  in_slices(n, 1, function(first, last)
    redis.call('ZREM', pending_key, unpack(paths, first, last))
    if lex_key then redis.call('ZREM', lex_key, unpack(paths, first, last)) end
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

-- What the provider's own count (a HASH remaining, checked_at) says is left, or nil when it
-- was never read or was read before the provider's last reset (ARGV-given, in s).
local function provider_remaining(key, last_reset)
  local counted = redis.call('HMGET', key, 'remaining', 'checked_at')
  if counted[1] and tonumber(counted[2]) >= last_reset then
    return tonumber(counted[1]), tonumber(counted[2])
  end
  return nil
end
