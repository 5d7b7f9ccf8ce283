-- Reference only: claim.lua as it was before it became a short main over named sections
-- (commit 0503bd2). tests/test_claim_equivalence.py runs it beside the current claim.lua.
-- Claim the next batch of one object type and reserve its quota, in one atomic step, so
-- that no interleaving of workers on any host can spend more than the window allows.
local pending = KEYS[1]        -- ZSET path -> rank
local pending_lex = KEYS[2]    -- ZSET path -> 0 (the same paths in byte order)
local waiters = KEYS[3]        -- HASH path -> job ids
local cooling = KEYS[4]        -- ZSET path -> when its cooldown ends (s)
local cooling_rank = KEYS[5]   -- HASH path -> rank it goes back to pending with
local records_by_time = KEYS[6]  -- ZSET path -> last submitted at (s)
local last_sent = KEYS[7]      -- ZSET path -> last claimed for a call (s), with a cooldown
local batches = KEYS[8]        -- HASH batch id -> JSON
local leases = KEYS[9]         -- ZSET batch id -> lease expiry (s)
local quota = KEYS[10]          -- ZSET "batch:count" -> reserved at (s)
local quota_total = KEYS[11]   -- sum of the counts in `quota`
local quota_window_key = KEYS[12]  -- the window every worker runs on (see the prelude)
local hold = KEYS[13]          -- set while the provider says its own quota is spent
local auth_hold = KEYS[14]     -- set while credentials are failing
local backoff = KEYS[15]       -- set while backing off after a transient error
local job_counts = KEYS[16]    -- HASH "job:state" -> count
local batch_seq = KEYS[17]
local dir_pending = KEYS[18]   -- the other type's keys: for a File claim, the Directories
local dir_pending_lex = KEYS[19]       -- that may cover its paths
local dir_quota_total = KEYS[20]
local dir_hold = KEYS[21]
local dir_backoff = KEYS[22]
local covering = KEYS[23]      -- ZSET Directories claimed whose coverage is under way
local dir_covering = KEYS[24]  -- the same for a File claim: Files under them wait too
local provider_quota = KEYS[25]  -- HASH remaining, limit, checked_at: the provider's count
local batch_owners = KEYS[26]  -- HASH batch id -> the worker process that claimed it
local claim_token = KEYS[27]   -- STRING: the batch this claim attempt took (a retried claim)
local dir_provider_quota = KEYS[28]  -- for a File claim: what the provider has left of Directories
local quota_limit_key = KEYS[29]  -- the limit every worker runs on (see the prelude)
local dir_quota_limit = KEYS[30]  -- for a File claim: the Directories' stored limit
-- ARGV[1] now (s; empty: Redis's clock)   ARGV[2] window (s) this worker was configured with
-- ARGV[3] limit (paths per window)        ARGV[4] reserve: the share of the (stored) limit
--                                          bulk work must leave unspent
-- ARGV[5] max paths per call              ARGV[6] max domains per call
-- ARGV[7] lease (s)                       ARGV[8] lowest bulk rank
-- ARGV[9] object type                     ARGV[10] most pending paths to scan for a batch
-- ARGV[11] cooldown (s; 0: none)          ARGV[12] '1': a File waits for a pending
--                                          Directory that covers it and can go now
-- ARGV[13] Directory limit                ARGV[14] Directory reserve (a share, as ARGV[4])
-- ARGV[15] the provider's last reset (s)  ARGV[16] how recent a reservation may be and still
--                                          be missing from the provider's count (s)
-- ARGV[17] owner (worker process; empty: none, the lease alone reclaims the batch)
-- Returns {'batch', id, json} | {'wait', reason, seconds} | {'empty'}
local now = clock(ARGV[1])
local max_paths = tonumber(ARGV[5])
local max_domains = tonumber(ARGV[6])
local lease = tonumber(ARGV[7])
local bulk_floor = tonumber(ARGV[8])
local scan_limit = tonumber(ARGV[10])
-- The same claim retried after its reply was lost gets the batch its first run took.
local taken_before = redis.call('GET', claim_token)
if taken_before then
  local raw = redis.call('HGET', batches, taken_before)
  if raw then return {'batch', taken_before, raw} end
  return {'empty'}
end

for _, held in ipairs({{hold, 'provider_quota'}, {auth_hold, 'credentials'}, {backoff, 'backoff'}}) do
  local ttl = redis.call('PTTL', held[1])
  if ttl > 0 then return {'wait', held[2], tostring(ttl / 1000)} end
end
local window = quota_window(quota_window_key, ARGV[2])
local limit = quota_limit(quota_limit_key, ARGV[3])
-- A share of the stored limit, not of this worker's own: every worker keeps one reserve.
local reserve = math.ceil(limit * tonumber(ARGV[4]))

-- Forget reservations that left the rolling window.
local expired = redis.call('ZRANGEBYSCORE', quota, '-inf', now - window)
if #expired > 0 then
  local freed = 0
  for _, member in ipairs(expired) do freed = freed + reservation_count(member) end
  redis.call('ZREMRANGEBYSCORE', quota, '-inf', now - window)
  redis.call('DECRBY', quota_total, freed)
end

local function frees_in()
  local oldest = redis.call('ZRANGE', quota, 0, 0, 'WITHSCORES')
  if #oldest == 0 then return '0' end
  return tostring(math.max(0, tonumber(oldest[2]) + window - now))
end

-- Paths whose cooldown ended go back to pending, at the rank they were requested with.
local cooled = redis.call('ZRANGEBYSCORE', cooling, '-inf', now, 'LIMIT', 0, 1000)
if #cooled > 0 then
  local ranks = redis.call('HMGET', cooling_rank, unpack(cooled))
  for i = 1, #cooled do ranks[i] = ranks[i] or tostring(bulk_floor) end
  to_pending(pending, pending_lex, cooled, ranks, #cooled)
  redis.call('ZREM', cooling, unpack(cooled))
  redis.call('HDEL', cooling_rank, unpack(cooled))
end

local function cooling_wait()
  local first = redis.call('ZRANGE', cooling, 0, 0, 'WITHSCORES')
  if #first == 0 then return nil end
  return {'wait', 'cooldown', tostring(math.max(0.05, tonumber(first[2]) - now))}
end

local used = tonumber(redis.call('GET', quota_total) or '0')
local remaining = limit - used
if redis.call('ZCARD', pending) == 0 then return cooling_wait() or {'empty'} end
if remaining <= 0 then return {'wait', 'quota', frees_in()} end
-- Never more than the provider's own count has left (others spend the account too): what
-- it said, less what we reserved since, counting reservations from a little before its
-- answer as not in it yet. A count from before the provider's last reset says nothing.
local last_reset = tonumber(ARGV[15])
local provider_left, checked_at = provider_remaining(provider_quota, last_reset)
if provider_left then
  local since = checked_at - tonumber(ARGV[16])
  local ours = 0
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', quota, '(' .. since, '+inf')) do
    ours = ours + reservation_count(member)
  end
  local left = provider_left - ours
  if left <= 0 then
    return {'wait', 'provider_quota', tostring(math.max(1, last_reset + 86400 - now))}
  end
  if left < remaining then remaining = left end
end

-- Coverage: a File waits when a pending Directory above it can go now (it is settled with
-- that Directory's task, for no unit of its own). An interactive File waits only for an
-- interactive Directory: bulk work never holds it back.
local dir_room, dir_reserve, dir_checks = -1, 0, false
if ARGV[12] == '1' then
  if redis.call('ZCARD', dir_pending) > 0
      and redis.call('PTTL', dir_hold) <= 0 and redis.call('PTTL', dir_backoff) <= 0 then
    local dir_limit = tonumber(redis.call('GET', dir_quota_limit)) or tonumber(ARGV[13])
    dir_room = dir_limit - tonumber(redis.call('GET', dir_quota_total) or '0')
    dir_reserve = math.ceil(dir_limit * tonumber(ARGV[14]))
    -- A Directory the provider has no quota left for cannot go before its reset.
    local dir_left = provider_remaining(dir_provider_quota, tonumber(ARGV[15]))
    if dir_left then dir_room = math.min(dir_room, dir_left) end
  end
  dir_checks = dir_room > 0 or redis.call('ZCARD', dir_covering) > 0
end
-- A Directory claimed and being covered ranks as IN_FLIGHT: a File under it always waits
-- (the coverage takes it within moments, or, if it was asked for after the claim, leaves it).
local IN_FLIGHT = -1
-- The pending Directories of each host met, read once per claim: host -> {path -> rank},
-- or false for a host without any. A host with very many is asked per directory instead.
local HOST_DIRS_READ = 1000
local host_dirs, parent_cover = {}, {}
local function dirs_of(host)
  local known = host_dirs[host]
  if known ~= nil then return known end
  local lo, hi = under(host)
  local found = redis.call('ZRANGEBYLEX', dir_pending_lex, lo, hi, 'LIMIT', 0, HOST_DIRS_READ + 1)
  local going = redis.call('ZRANGEBYLEX', dir_covering, lo, hi, 'LIMIT', 0, HOST_DIRS_READ + 1)
  local dirs = false
  if #found > HOST_DIRS_READ or #going > HOST_DIRS_READ then
    dirs = 'many'
  elseif #found + #going > 0 then
    dirs = {}
    if #found > 0 then
      local ranks = redis.call('ZMSCORE', dir_pending, unpack(found))
      for i = 1, #found do
        if ranks[i] then dirs[found[i]] = tonumber(ranks[i]) end
      end
    end
    for _, path in ipairs(going) do dirs[path] = IN_FLIGHT end
  end
  host_dirs[host] = dirs
  return dirs
end
-- The soonest rank among the pending Directories above `path` (or equal to it: a Directory
-- refresh of /a/ refreshes the File /a/ too), or false. Files of one directory share the
-- answer, so most Files cost one match here.
local function covering_rank(path)
  local query = string.find(path, '?', 1, true)
  local parent = string.match(query and string.sub(path, 1, query - 1) or path, '^(.*/)')
  if not parent then return false end
  local known = parent_cover[parent]
  if known ~= nil then return known end
  local anc, n = ancestors(parent)
  n = n + 1
  anc[n] = parent
  local dirs = dirs_of(anc[1])
  local best = false
  if dirs == 'many' then
    local scores = redis.call('ZMSCORE', dir_pending, unpack(anc, 1, n))
    local going = redis.call('ZMSCORE', dir_covering, unpack(anc, 1, n))
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
  parent_cover[parent] = best
  return best
end
-- A File waits only for a Directory that the next Directory claims will take within what
-- is left of the Directory window: one far back in a long queue could keep it for days.
local dir_place = {}
local function waits_for_directory(path, rank)
  local dir_rank = covering_rank(path)
  if not dir_rank then return false end
  if dir_rank == IN_FLIGHT then return true end
  local dir_bulk = dir_rank >= bulk_floor
  if dir_bulk and rank < bulk_floor then return false end
  local room = dir_room - (dir_bulk and dir_reserve or 0)
  if room <= 0 then return false end
  if dir_place[dir_rank] == nil then
    dir_place[dir_rank] = redis.call('ZCOUNT', dir_pending, '-inf', dir_rank)
  end
  return dir_place[dir_rank] <= room
end

local cooldown = tonumber(ARGV[11])
local cool_paths, cool_due, cool_ranks, ncool = {}, {}, {}, 0

local cap = math.min(max_paths, remaining)
local bulk_cap = remaining - reserve
local taken, ranks, ntaken, domains, ndomains = {}, {}, 0, {}, 0
local blocked_by_reserve = false
-- The first read is exactly what a batch can take (each member comes with its score, which
-- Redis formats as a string: not free); larger reads follow only when the domain limit
-- skipped some members. The scan ends where reads of `wide` members from 0 would end, the
-- first multiple of `wide` at or past scan_limit, as it did when every read was that wide.
-- Nothing leaves pending during the scan, so that the reads' offsets stay true.
local wide = math.max(cap * 2, 64)
local scan_end = math.ceil(scan_limit / wide) * wide
local chunk = cap
local start = 0
local done = false
while not done and start < scan_end do
  local last = math.min(start + chunk, scan_end) - 1
  local items = redis.call('ZRANGE', pending, start, last, 'WITHSCORES')
  if #items == 0 then break end
  local sent_at, claimed_at = {}, {}
  if cooldown > 0 then
    -- The later of its last submission and its last claim: a path whose call is still in
    -- flight was sent just as recently.
    local paths = {}
    for i = 1, #items, 2 do paths[(i + 1) / 2] = items[i] end
    sent_at = redis.call('ZMSCORE', records_by_time, unpack(paths))
    claimed_at = redis.call('ZMSCORE', last_sent, unpack(paths))
  end
  for i = 1, #items, 2 do
    local path, rank = items[i], items[i + 1]
    local rank_number = tonumber(rank)
    if ntaken >= bulk_cap and rank_number >= bulk_floor then
      -- Ranks are ordered, so everything after this is bulk too.
      blocked_by_reserve = ntaken == 0
      done = true
      break
    end
    local sent = math.max(tonumber(sent_at[(i + 1) / 2]) or 0, tonumber(claimed_at[(i + 1) / 2]) or 0)
    if sent > 0 and now - sent < cooldown then
      -- Submitted too recently: it cools, and goes out once when the cooldown ends.
      ncool = ncool + 1
      cool_paths[ncool], cool_due[ncool], cool_ranks[ncool] = path, sent + cooldown, rank
    elseif dir_checks and waits_for_directory(path, rank_number) then
      -- Left pending for the Directory claim to cover.
    else
      local domain = string.match(path, '^%a+://([^/:]+)') or ''
      if not domains[domain] and ndomains < max_domains then
        domains[domain] = true
        ndomains = ndomains + 1
      end
      if domains[domain] then
        ntaken = ntaken + 1
        taken[ntaken] = path
        ranks[ntaken] = rank
        if ntaken >= cap then
          done = true
          break
        end
      end
    end
  end
  start = start + chunk
  chunk = wide
end

if ncool > 0 then
  from_pending(pending, pending_lex, cool_paths, ncool)
  local due, rank_fields = {}, {}
  for i = 1, ncool do
    due[2 * i - 1], due[2 * i] = cool_due[i], cool_paths[i]
    rank_fields[2 * i - 1], rank_fields[2 * i] = cool_paths[i], cool_ranks[i]
  end
  in_slices(2 * ncool, 2, function(first, last)
    redis.call('ZADD', cooling, unpack(due, first, last))
    redis.call('HSET', cooling_rank, unpack(rank_fields, first, last))
  end)
end

if ntaken == 0 then
  if blocked_by_reserve then return {'wait', 'reserve', frees_in()} end
  return cooling_wait() or {'empty'}
end

from_pending(pending, pending_lex, taken, ntaken)
if ARGV[9] == 'Directory' then
  -- Until its coverage is done (cover.lua), the File claims leave the Files under it alone.
  local marks = {}
  for i = 1, ntaken do marks[2 * i - 1], marks[2 * i] = 0, taken[i] end
  redis.call('ZADD', covering, unpack(marks))
end
if cooldown > 0 then
  local claimed = {}
  for i = 1, ntaken do claimed[2 * i - 1], claimed[2 * i] = now, taken[i] end
  redis.call('ZADD', last_sent, unpack(claimed))
  -- Entries older than the cooldown say nothing any more.
  redis.call('ZREMRANGEBYSCORE', last_sent, '-inf', now - cooldown)
end
local waiting = redis.call('HMGET', waiters, unpack(taken))
redis.call('HDEL', waiters, unpack(taken))
local counts, jobs_of = {}, {}
for i = 1, ntaken do
  jobs_of[i] = waiting[i] or ''
  count_move(counts, jobs_of[i], STATE.PENDING, STATE.IN_FLIGHT, 1)
end
write_counts(job_counts, counts)

local id = tostring(redis.call('INCR', batch_seq))
local reservation = id .. ':' .. ntaken
redis.call('ZADD', quota, now, reservation)
redis.call('INCRBY', quota_total, ntaken)
local batch = cjson.encode({
  id = id, object_type = ARGV[9], paths = taken, ranks = ranks, waiters = jobs_of,
  reservation = reservation, claimed_at = now,
})
redis.call('HSET', batches, id, batch)
redis.call('ZADD', leases, now + lease, id)
if ARGV[17] ~= '' then redis.call('HSET', batch_owners, id, ARGV[17]) end
redis.call('SET', claim_token, id, 'PX', math.max(1, math.ceil(lease * 1000)))
return {'batch', id, batch}
