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

-- The list that follows a script's named arguments (its spec's `trailing`), from ARGV
-- position `from` on. ARGV is passed in so that the header that binds it reads as a header.
local function trailing_list(argv, from)
  local list = {}
  for i = from, #argv do list[i - from + 1] = argv[i] end
  return list
end
