-- claim_coverage.lua: what waits for a Directory. A File waits when a pending Directory above
-- it can go now (it is settled with that Directory's task, for no unit of its own). An
-- interactive File waits only for an interactive Directory: bulk work never holds it back.
-- Prepended to claim.lua only, after the prelude.

-- A Directory claimed and being covered ranks as IN_FLIGHT: a File under it always waits
-- (the coverage takes it within moments, or, if it was asked for after the claim, leaves it).
local IN_FLIGHT = -1
-- The pending Directories of each host are read once per claim; a host with more than this
-- many is asked per directory instead.
local HOST_DIRS_READ = 1000

-- The Directories' room: what their window and the provider's count have left, and their
-- reserve. -1 when they cannot go now (none pending, a hold, a backoff).
local function directory_room(d, last_reset)
  if redis.call('ZCARD', d.pending) == 0
      or redis.call('PTTL', d.hold) > 0 or redis.call('PTTL', d.backoff) > 0 then
    return -1, 0
  end
  local limit = tonumber(redis.call('GET', d.quota_limit)) or tonumber(d.limit)
  local room = limit - tonumber(redis.call('GET', d.quota_total) or '0')
  local reserve = math.ceil(limit * tonumber(d.reserve_share))
  -- A Directory the provider has no quota left for cannot go before its reset.
  local left = provider_remaining(d.provider_quota, last_reset)
  if left then room = math.min(room, left) end
  return room, reserve
end

-- The pending Directories of `host`: {path -> rank}, false without any, 'many' for a host
-- with very many. `known` keeps each host's answer for the rest of the claim.
local function dirs_of(d, known, host)
  if known[host] ~= nil then return known[host] end
  local lo, hi = under(host)
  local found = redis.call('ZRANGEBYLEX', d.pending_lex, lo, hi, 'LIMIT', 0, HOST_DIRS_READ + 1)
  local going = redis.call('ZRANGEBYLEX', d.covering, lo, hi, 'LIMIT', 0, HOST_DIRS_READ + 1)
  local dirs = false
  if #found > HOST_DIRS_READ or #going > HOST_DIRS_READ then
    dirs = 'many'
  elseif #found + #going > 0 then
    dirs = {}
    if #found > 0 then
      local ranks = redis.call('ZMSCORE', d.pending, unpack(found))
      for i = 1, #found do
        if ranks[i] then dirs[found[i]] = tonumber(ranks[i]) end
      end
    end
    for _, path in ipairs(going) do dirs[path] = IN_FLIGHT end
  end
  known[host] = dirs
  return dirs
end

-- The soonest rank among the Directories `anc[1..n]`, or false.
local function soonest_rank(d, dirs, anc, n)
  local best = false
  if dirs == 'many' then
    local scores = redis.call('ZMSCORE', d.pending, unpack(anc, 1, n))
    local going = redis.call('ZMSCORE', d.covering, unpack(anc, 1, n))
    for i = 1, n do
      local rank = going[i] and IN_FLIGHT or tonumber(scores[i])
      if rank and (not best or rank < best) then best = rank end
    end
  elseif dirs then
    for i = 1, n do
      local rank = dirs[anc[i]]
      if rank and (not best or rank < best) then best = rank end
    end
  end
  return best
end

-- The test a File claim asks of each path: whether it waits for a Directory that the next
-- Directory claims will take within what is left of the Directory window (one far back in
-- a long queue could keep it for days). nil when no File can wait this claim. `d` holds
-- the Directories' keys (pending, pending_lex, covering, hold, backoff, quota_total,
-- quota_limit, provider_quota) and their limit and reserve share as given to the claim.
local function directory_wait(d, bulk_floor, last_reset)
  local room, reserve = directory_room(d, last_reset)
  if room <= 0 and redis.call('ZCARD', d.covering) == 0 then return nil end
  local host_dirs, parent_cover, place = {}, {}, {}
  -- The soonest rank among the Directories above `path` (or equal to it: a Directory refresh
  -- of /a/ refreshes the File /a/ too). Files of one directory share the answer, so most
  -- Files cost one match here.
  local function covering_rank(path)
    local query = string.find(path, '?', 1, true)
    local parent = string.match(query and string.sub(path, 1, query - 1) or path, '^(.*/)')
    if not parent then return false end
    if parent_cover[parent] ~= nil then return parent_cover[parent] end
    local anc, n = ancestors(parent)
    n = n + 1
    anc[n] = parent
    parent_cover[parent] = soonest_rank(d, dirs_of(d, host_dirs, anc[1]), anc, n)
    return parent_cover[parent]
  end
  return function(path, rank)
    local dir_rank = covering_rank(path)
    if not dir_rank then return false end
    if dir_rank == IN_FLIGHT then return true end
    local dir_bulk = dir_rank >= bulk_floor
    if dir_bulk and rank < bulk_floor then return false end
    local left = room - (dir_bulk and reserve or 0)
    if left <= 0 then return false end
    if place[dir_rank] == nil then
      place[dir_rank] = redis.call('ZCOUNT', d.pending, '-inf', dir_rank)
    end
    return place[dir_rank] <= left
  end
end
