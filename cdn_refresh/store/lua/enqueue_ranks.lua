-- enqueue_ranks.lua: enqueue.lua's sections that find where each path of a chunk waits and
-- at which rank. Prepended to enqueue.lua only, after the prelude.

-- The ranks of `paths` (1..n) in `key` (a ZSET), nil where absent.
local function scores_in(key, paths, n)
  local scores = {}
  in_slices(n, 1, function(first, last)
    local part = redis.call('ZMSCORE', key, unpack(paths, first, last))
    for i = 1, #part do scores[first + i - 1] = part[i] end
  end)
  return scores
end

-- A path that cools (submitted too recently, docs/behaviour.md "Getting more out of the
-- quota") waits too: a request for it joins it, as one for a pending path does. The rank
-- each cooling path of `paths` (those with no pending score) goes back with, by path.
local function cooling_ranks(cooling, cooling_rank, paths, scores, n)
  local cool_rank = {}
  if redis.call('ZCARD', cooling) == 0 then return cool_rank end
  local absent, n_absent = {}, 0
  for i = 1, n do
    if not scores[i] then
      n_absent = n_absent + 1
      absent[n_absent] = paths[i]
    end
  end
  in_slices(n_absent, 1, function(first, last)
    local part = redis.call('HMGET', cooling_rank, unpack(absent, first, last))
    for i = 1, #part do
      if part[i] then cool_rank[absent[first + i - 1]] = part[i] end
    end
  end)
  return cool_rank
end

-- A repeat (a path submitted, or claimed, within the quota window) ranks as a first request
-- made one window later: under quota pressure it never takes a unit a first refresh of the
-- last window waits for, and it still goes within a window of first refreshes
-- (docs/behaviour.md "Getting more out of the quota"). Which of `paths` (1..n) are repeats:
local function repeats_among(times_keys, paths, n, since)
  local found = {}
  for _, times_key in ipairs(times_keys) do
    if n > 0 and redis.call('ZCARD', times_key) > 0 then
      in_slices(n, 1, function(first, last)
        local part = redis.call('ZMSCORE', times_key, unpack(paths, first, last))
        for i = 1, #part do
          if part[i] and tonumber(part[i]) > since then found[first + i - 1] = true end
        end
      end)
    end
  end
  return found
end

-- The window a repeat ranks later by: the stored one, else this process's (nan or inf,
-- stored by hand: no worker runs on it, and no rank can be made of it).
local function repeat_window(quota_window_key, configured)
  local window = tonumber(redis.call('GET', quota_window_key))
  if not window or window ~= window or window == math.huge then window = tonumber(configured) end
  return window
end

-- A request for a path that waits moves it forward to this request's own rank (a repeat's,
-- if it is one), never back: an interactive request for a bulk path, say, but a repeat asked
-- for again keeps its repeat rank. Returns ZADD LT members for pending paths and HSET pairs
-- for cooling ones.
local function moves_forward(w, repeats, rank, repeat_rank)
  local forward, n_forward, cool_forward, n_cool = {}, 0, {}, 0
  for i = 1, w.n do
    local wanted = repeats[i] and repeat_rank or rank
    if w.ranks[i] > tonumber(wanted) then
      if w.cooling[i] then
        cool_forward[n_cool + 1], cool_forward[n_cool + 2] = w.paths[i], wanted
        n_cool = n_cool + 2
      else
        forward[n_forward + 1], forward[n_forward + 2] = wanted, w.paths[i]
        n_forward = n_forward + 2
      end
    end
  end
  return forward, n_forward, cool_forward, n_cool
end
