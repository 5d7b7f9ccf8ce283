-- claim_pack.lua: the sections of a claim that choose its paths: cooled paths back, pack by
-- domain, take them out of pending. Prepended to claim.lua only, after the prelude.

-- Release cooled paths: those whose cooldown ended go back to pending, at the rank they
-- were requested with.
local function release_cooled(k, now, bulk_floor)
  local cooled = redis.call('ZRANGEBYSCORE', k.cooling, '-inf', now, 'LIMIT', 0, 1000)
  if #cooled == 0 then return end
  local ranks = redis.call('HMGET', k.cooling_rank, unpack(cooled))
  for i = 1, #cooled do ranks[i] = ranks[i] or tostring(bulk_floor) end
  to_pending(k.pending, k.pending_lex, cooled, ranks, #cooled)
  redis.call('ZREM', k.cooling, unpack(cooled))
  redis.call('HDEL', k.cooling_rank, unpack(cooled))
end

-- The wait until the first cooling path may go again, or nil when none cools.
local function cooling_wait(cooling, now)
  local first = redis.call('ZRANGE', cooling, 0, 0, 'WITHSCORES')
  if #first == 0 then return nil end
  return {'wait', 'cooldown', tostring(math.max(0.05, tonumber(first[2]) - now))}
end

-- When each of the paths in `items` (path, rank, ...) last went out: the later of its last
-- submission and its last claim (a path whose call is still in flight was sent just as
-- recently). Nothing is read without a cooldown.
local function last_sent_at(p, items)
  if p.cooldown <= 0 then return {} end
  local paths, sent = {}, {}
  for i = 1, #items, 2 do paths[(i + 1) / 2] = items[i] end
  local submitted = redis.call('ZMSCORE', p.records_by_time, unpack(paths))
  local claimed = redis.call('ZMSCORE', p.last_sent, unpack(paths))
  for i = 1, #paths do
    sent[i] = math.max(tonumber(submitted[i]) or 0, tonumber(claimed[i]) or 0)
  end
  return sent
end

-- One pending path met by the scan: it cools (submitted too recently: it goes out once
-- when the cooldown ends), waits for a Directory (left pending for its claim to cover), or
-- joins the batch if its domain fits. Returns true when the batch is full.
local function pack_path(p, path, rank, sent)
  if sent and sent > 0 and p.now - sent < p.cooldown then
    local cool = p.cool
    cool.n = cool.n + 1
    cool.paths[cool.n], cool.due[cool.n], cool.ranks[cool.n] = path, sent + p.cooldown, rank
  elseif not (p.waits and p.waits(path, tonumber(rank))) then
    local domain = string.match(path, '^%a+://([^/:]+)') or ''
    if not p.domains[domain] and p.ndomains < p.max_domains then
      p.domains[domain] = true
      p.ndomains = p.ndomains + 1
    end
    if p.domains[domain] then
      local taken = p.taken
      taken.n = taken.n + 1
      taken.paths[taken.n], taken.ranks[taken.n] = path, rank
      return taken.n >= p.cap
    end
  end
  return false
end

-- The scan of `pack`, in rank order; true when the reserve alone kept the batch empty.
local function pack_scan(p)
  local wide = math.max(p.cap * 2, 64)
  local scan_end = math.ceil(p.scan_limit / wide) * wide
  local chunk, start = p.cap, 0
  while start < scan_end do
    local last = math.min(start + chunk, scan_end) - 1
    local items = redis.call('ZRANGE', p.pending, start, last, 'WITHSCORES')
    if #items == 0 then return false end
    local sent = last_sent_at(p, items)
    for i = 1, #items, 2 do
      -- Ranks are ordered, so everything after a bulk path past bulk_cap is bulk too.
      if p.taken.n >= p.bulk_cap and tonumber(items[i + 1]) >= p.bulk_floor then
        return p.taken.n == 0
      end
      if pack_path(p, items[i], items[i + 1], sent[(i + 1) / 2]) then return false end
    end
    start = start + chunk
    chunk = wide
  end
  return false
end

-- Pack by domain: pending paths in rank order, at most `cap` of them over at most
-- `max_domains` domains, bulk ones only while `bulk_cap` allows. The first read is exactly
-- what a batch can take (each member comes with its score, which Redis formats as a string:
-- not free); larger reads follow only when the domain limit skipped some members. The scan
-- ends where reads of `wide` members from 0 would end, the first multiple of `wide` at or
-- past scan_limit, as it did when every read was that wide. Nothing leaves pending during
-- the scan, so that the reads' offsets stay true. `k` holds the claim's keys, `p` its
-- numbers (and `waits`, the coverage test, or nil). Returns the taken paths and ranks, the
-- paths that cool, and whether the reserve alone kept the batch empty.
local function pack(k, p)
  p.pending, p.records_by_time, p.last_sent = k.pending, k.records_by_time, k.last_sent
  p.domains, p.ndomains = {}, 0
  p.taken = {paths = {}, ranks = {}, n = 0}
  p.cool = {paths = {}, due = {}, ranks = {}, n = 0}
  return p.taken, p.cool, pack_scan(p)
end

-- The paths that cooled during the scan leave pending until their cooldown ends.
local function start_cooling(k, cool)
  if cool.n == 0 then return end
  from_pending(k.pending, k.pending_lex, cool.paths, cool.n)
  local due, rank_fields = {}, {}
  for i = 1, cool.n do
    due[2 * i - 1], due[2 * i] = cool.due[i], cool.paths[i]
    rank_fields[2 * i - 1], rank_fields[2 * i] = cool.paths[i], cool.ranks[i]
  end
  in_slices(2 * cool.n, 2, function(first, last)
    redis.call('ZADD', k.cooling, unpack(due, first, last))
    redis.call('HSET', k.cooling_rank, unpack(rank_fields, first, last))
  end)
end

-- The taken paths leave pending for the batch: a Directory is marked as being covered (until
-- its coverage is done, cover.lua, the File claims leave the Files under it alone), the
-- claim time kept for the cooldown, and their jobs move from pending to in flight. Returns
-- each path's waiting jobs.
local function take_paths(k, taken, now, cooldown, object_type)
  from_pending(k.pending, k.pending_lex, taken.paths, taken.n)
  if object_type == 'Directory' then
    local marks = {}
    for i = 1, taken.n do marks[2 * i - 1], marks[2 * i] = 0, taken.paths[i] end
    redis.call('ZADD', k.covering, unpack(marks))
  end
  if cooldown > 0 then
    local claimed = {}
    for i = 1, taken.n do claimed[2 * i - 1], claimed[2 * i] = now, taken.paths[i] end
    redis.call('ZADD', k.last_sent, unpack(claimed))
    -- Entries older than the cooldown say nothing any more.
    redis.call('ZREMRANGEBYSCORE', k.last_sent, '-inf', now - cooldown)
  end
  waiters_mode(k.digesting)
  local jobs_of = waiters_get(k.waiters, taken.paths, taken.n)
  waiters_drop(k.waiters, taken.paths, taken.n)
  local counts = {}
  for i = 1, taken.n do count_move(counts, jobs_of[i], STATE.PENDING, STATE.IN_FLIGHT, 1) end
  write_counts(k.job_counts, counts)
  return jobs_of
end
