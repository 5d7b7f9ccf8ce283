-- cover_steps.lua: cover.lua's sections that find what lies under the Directories of a batch
-- and take it out of pending. Prepended to cover.lua only, after cover_nest.lua.

-- Take `paths` (1..n, with their ranks) out of pending into the entries of the Directories
-- `under` names (group `kind`: 'files' or 'dirs'), with the jobs that wait on them.
local function take(c, paths, ranks, under, n, kind, keys)
  if n == 0 then return end
  local jobs = waiters_get(keys.waiters, paths, n)
  for i = 1, n do
    add(step_of(c, under[i])[kind], paths[i], ranks[i], jobs[i])
    count_move(c.counts, jobs[i], STATE.PENDING, STATE.IN_FLIGHT, 1)
  end
  from_pending(keys.pending, keys.lex, paths, n)
  waiters_drop(keys.waiters, paths, n)
end

-- The Directories below `directory` after `cursor` in their index, still pending and
-- enqueued before the claim. Returns how many were taken, the new cursor, and whether the
-- range is done.
local function dirs_under(c, directory, cursor)
  local lo = cursor and ('(' .. cursor) or ('[' .. directory)
  local found = redis.call('ZRANGEBYLEX', c.dirs.lex, lo, '[' .. directory .. '\255', 'LIMIT', 0, c.budget)
  local n = #found
  if n == 0 then return 0, cursor, true end
  c.budget = c.budget - n
  local ranks = {}
  in_slices(n, 1, function(first, last)
    local part = redis.call('ZMSCORE', c.dirs.pending, unpack(found, first, last))
    for k = 1, #part do ranks[first + k - 1] = part[k] end
  end)
  local paths, took_ranks, under, took, stale = {}, {}, {}, 0, {}
  for k = 1, n do
    if not ranks[k] then
      stale[#stale + 1] = found[k]  -- in the index but no longer pending: drop it there
    elseif found[k] ~= directory and c.before(ranks[k]) then
      took = took + 1
      paths[took], took_ranks[took], under[took] = found[k], ranks[k], directory
    end
  end
  if #stale > 0 then redis.call('ZREM', c.dirs.lex, unpack(stale)) end
  take(c, paths, took_ranks, under, took, 'dirs', c.dirs)
  -- Fewer entries than asked for: the range is done.
  return took, found[n], c.budget > 0
end

-- The longest prefix all of `paths` share.
local function common_prefix(paths)
  local prefix = paths[1] or ''
  for i = 2, #paths do
    local p, len = paths[i], 0
    while len < #prefix and string.byte(prefix, len + 1) == string.byte(p, len + 1) do len = len + 1 end
    prefix = string.sub(prefix, 1, len)
  end
  return prefix
end

-- The Directory of `in_batch` a File starts with (or is: "with itself"), or nil: as the index
-- range read it, by text, a query and all (each Directory ends with "/", so it is one of the
-- path's prefixes that end with "/").
local function covering_of(path, in_batch)
  local at = string.find(path, '/', 1, true)
  while at do
    local prefix = string.sub(path, 1, at)
    if in_batch[prefix] then return prefix end
    at = string.find(path, '/', at + 1, true)
  end
  return nil
end

-- The Files under the batch's Directories: the Files keep no coverage index, so a run reads
-- one bounded ZSCAN step of their pending set, the cursor kept in the batch, matching the
-- Directories' common prefix. A ZSCAN may return a path twice or one added after the scan
-- began: only a path still pending (it was just read) and enqueued before the claim is taken,
-- once. Returns how many were taken; `batch.files_done` once the scan is through.
local function files_under(c, batch)
  local pattern = glob_escaped(common_prefix(batch.paths)) .. '*'
  local reply = redis.call('ZSCAN', c.files.pending, batch.file_cursor or '0',
    'MATCH', pattern, 'COUNT', c.budget)
  c.budget = 0  -- a step reads about COUNT entries, whatever it returns
  batch.file_cursor = reply[1]
  batch.files_done = reply[1] == '0'
  local in_batch, seen = {}, {}
  for _, directory in ipairs(batch.paths) do in_batch[directory] = true end
  local found = reply[2]
  local paths, ranks, under, took = {}, {}, {}, 0
  for k = 1, #found, 2 do
    local path, rank = found[k], found[k + 1]
    local directory = not seen[path] and c.before(rank) and covering_of(path, in_batch)
    seen[path] = true
    if directory then
      took = took + 1
      paths[took], ranks[took], under[took] = path, rank, directory
    end
  end
  take(c, paths, ranks, under, took, 'files', c.files)
  return took
end
