-- cover_nest.lua: cover.lua's first sections: the claim time, this run's entries, and the
-- Directories of the batch nested under another. Prepended to cover.lua only, after the prelude.

-- Only what was enqueued before the batch was claimed is covered: a rank is its enqueue time
-- in ms (bulk ranks offset by bulk_floor, a repeat's by repeat_offset), and a later request
-- may be for newer content.
local function claimed_before(batch, bulk_floor, repeat_offset)
  local claimed_ms = batch.claimed_at * 1000
  return function(rank)
    local at = tonumber(rank)
    if at >= bulk_floor then at = at - bulk_floor end
    if at >= repeat_offset then at = at - repeat_offset end
    return at <= claimed_ms
  end
end

-- This run's entry of `directory`: the Files and the Directories it took under it.
local function step_of(c, directory)
  if not c.steps[directory] then
    c.steps[directory] = {files = {paths = {}, ranks = {}, jobs = {}, n = 0},
                          dirs = {paths = {}, ranks = {}, jobs = {}, n = 0}}
  end
  return c.steps[directory]
end

local function add(group, path, rank, jobs)
  group.n = group.n + 1
  group.paths[group.n], group.ranks[group.n], group.jobs[group.n] = path, rank, jobs
end

-- First run: a Directory of the batch under another of the batch costs no unit either: it
-- moves to the covered entries of the one above it, and its unit goes back. Returns how
-- many moved.
local function nest_directories(c, batch, quota, quota_total)
  batch.cover, batch.covered_total = {}, 0
  local in_batch = {}
  for _, path in ipairs(batch.paths) do in_batch[path] = true end
  local keep = {paths = {}, ranks = {}, waiters = {}, n = 0}
  local nested = 0
  for i, path in ipairs(batch.paths) do
    local above = nil
    local anc, n_anc = ancestors(path)
    for a = 1, n_anc do
      if in_batch[anc[a]] then above = anc[a] break end
    end
    if above then
      add(step_of(c, above).dirs, path, batch.ranks[i], batch.waiters[i])
      nested = nested + 1
    else
      keep.n = keep.n + 1
      keep.paths[keep.n], keep.ranks[keep.n], keep.waiters[keep.n] = path, batch.ranks[i], batch.waiters[i]
    end
  end
  if nested == 0 then return 0 end
  batch.paths, batch.ranks, batch.waiters = keep.paths, keep.ranks, keep.waiters
  local reserved_at = redis.call('ZSCORE', quota, batch.reservation)
  local count = reservation_count(batch.reservation)
  redis.call('ZREM', quota, batch.reservation)
  batch.reservation = c.id .. ':' .. (count - nested)
  if reserved_at then
    if count - nested > 0 then redis.call('ZADD', quota, reserved_at, batch.reservation) end
    redis.call('DECRBY', quota_total, math.min(nested, count))
  end
  return nested
end

