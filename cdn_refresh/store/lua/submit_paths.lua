-- submit_paths.lua: which paths an answer settles (submit.lua's first section). Prepended to
-- submit.lua only, after the prelude.

-- The list that follows a script's named arguments (its spec's `trailing`), from ARGV
-- position `from` on. ARGV is passed in so that the header that binds it reads as a header.
local function trailing_list(argv, from)
  local list = {}
  for i = from, #argv do list[i - from + 1] = argv[i] end
  return list
end

-- A late answer's paths: its batch is gone (reclaimed, the paths pending again), so they
-- carry no rank and no waiting job; each is taken as given, a repeat as often as it comes.
local function late_taken(paths)
  local taken = {paths = {}, jobs = {}, n = 0}
  for _, path in ipairs(paths) do
    taken.n = taken.n + 1
    taken.paths[taken.n] = path
    taken.jobs[taken.n] = ''
  end
  return taken
end

-- Take `paths` (none: every path still in the batch) out of batch `id` in flight. Returns nil
-- when the batch is gone (settled already: a task that ran twice, an answer after a reclaim),
-- else the batch, the taken paths with their ranks and waiting jobs, and a function that
-- saves what is left. The prelude's take_from_batch does the same from ARGV positions; this
-- one takes the list the header bound by name.
local function take_listed(batches_key, leases_key, id, paths)
  local raw = redis.call('HGET', batches_key, id)
  if not raw then return nil end
  local batch = cjson.decode(raw)
  local wanted = nil
  if #paths > 0 then
    wanted = {}
    for _, path in ipairs(paths) do wanted[path] = true end
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
