-- prelude_waiters.lua: the jobs waiting on pending paths, prepended after prelude.lua. A waiters
-- hash is keyed by a digest of the path, not by the path: 16 bytes instead of about 60 for
-- each pending path (store/keys.py `waiter_field` is the same function, and says the odds of
-- two paths sharing one). Releases of schema 2 and before keyed it by the path itself: while
-- the upgrade (store/digesting.py) runs, a script reads both forms and writes the new one, so
-- that a path's jobs are under one form or the other, and never lost. Before it starts (no
-- worker of this release yet) a script reads the new form alone, and writes it beside the
-- old: the upgrade merges the two.

local function waiter_field(path)
  return string.sub(redis.sha1hex(path), 1, 16)
end

-- Whether waiters may be keyed by their path: set once per script by waiters_mode, from the
-- key the upgrade sets while it runs.
local legacy_waiters = false
local function waiters_mode(digesting_key)
  legacy_waiters = redis.call('EXISTS', digesting_key) == 1
end

-- The jobs waiting on each of `paths` (1..n), '' where none: a list of n strings.
local function waiters_get(key, paths, n)
  local jobs, fields = {}, {}
  for i = 1, n do fields[i] = waiter_field(paths[i]) end
  in_slices(n, 1, function(first, last)
    local part = redis.call('HMGET', key, unpack(fields, first, last))
    for k = 1, last - first + 1 do jobs[first + k - 1] = part[k] or '' end
  end)
  if legacy_waiters and n > 0 then
    in_slices(n, 1, function(first, last)
      local part = redis.call('HMGET', key, unpack(paths, first, last))
      for k = 1, last - first + 1 do
        local i = first + k - 1
        for job in string.gmatch(part[k] or '', '[^,]+') do jobs[i] = list_add(jobs[i], job) end
      end
    end)
  end
  return jobs
end

-- Forget the waiters of `paths` (1..n), under either form.
local function waiters_drop(key, paths, n)
  local fields = {}
  for i = 1, n do fields[i] = waiter_field(paths[i]) end
  in_slices(n, 1, function(first, last)
    redis.call('HDEL', key, unpack(fields, first, last))
    if legacy_waiters then redis.call('HDEL', key, unpack(paths, first, last)) end
  end)
end

-- Set the waiters of `paths` (1..n) to `lists` (comma-separated job ids; '' sets none), under
-- the new form; a field under the old form goes, as its jobs are in `lists` (waiters_get),
-- unless `none_before` says the paths had no waiters (paths newly pending).
local function waiters_set(key, paths, lists, n, none_before)
  local pairs_, n_pairs = {}, 0
  for i = 1, n do
    if lists[i] ~= '' then
      pairs_[n_pairs + 1], pairs_[n_pairs + 2] = waiter_field(paths[i]), lists[i]
      n_pairs = n_pairs + 2
    end
  end
  in_slices(n_pairs, 2, function(first, last)
    redis.call('HSET', key, unpack(pairs_, first, last))
  end)
  if legacy_waiters and n > 0 and not none_before then
    in_slices(n, 1, function(first, last)
      redis.call('HDEL', key, unpack(paths, first, last))
    end)
  end
end
