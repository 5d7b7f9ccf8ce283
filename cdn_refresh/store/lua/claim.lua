-- Claim the next batch of one object type and reserve its quota, in one atomic step, so
-- that no interleaving of workers on any host can spend more than the window allows.
local pending = KEYS[1]        -- ZSET path -> rank
local waiters = KEYS[2]        -- HASH path -> job ids
local batches = KEYS[3]        -- HASH batch id -> JSON
local leases = KEYS[4]         -- ZSET batch id -> lease expiry (s)
local quota = KEYS[5]          -- ZSET "batch:count" -> reserved at (s)
local quota_total = KEYS[6]    -- sum of the counts in `quota`
local quota_window_key = KEYS[7]  -- the window every worker runs on (see the prelude)
local hold = KEYS[8]           -- set while the provider says its own quota is spent
local auth_hold = KEYS[9]      -- set while credentials are failing
local backoff = KEYS[10]       -- set while backing off after a transient error
local job_counts = KEYS[11]    -- HASH "job:state" -> count
local batch_seq = KEYS[12]
-- ARGV[1] now (s; empty: Redis's clock)   ARGV[2] window (s) this worker was configured with
-- ARGV[3] limit (paths per window)        ARGV[4] reserve: what bulk work must leave unspent
-- ARGV[5] max paths per call              ARGV[6] max domains per call
-- ARGV[7] lease (s)                       ARGV[8] lowest bulk rank
-- ARGV[9] object type                     ARGV[10] most pending paths to scan for a batch
-- Returns {'batch', id, json} | {'wait', reason, seconds} | {'empty'}
local now = clock(ARGV[1])
local limit = tonumber(ARGV[3])
local reserve = tonumber(ARGV[4])
local max_paths = tonumber(ARGV[5])
local max_domains = tonumber(ARGV[6])
local lease = tonumber(ARGV[7])
local bulk_floor = tonumber(ARGV[8])
local scan_limit = tonumber(ARGV[10])

for _, held in ipairs({{hold, 'provider_quota'}, {auth_hold, 'credentials'}, {backoff, 'backoff'}}) do
  local ttl = redis.call('PTTL', held[1])
  if ttl > 0 then return {'wait', held[2], tostring(ttl / 1000)} end
end
local window = quota_window(quota_window_key, ARGV[2])

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

local used = tonumber(redis.call('GET', quota_total) or '0')
local remaining = limit - used
if redis.call('ZCARD', pending) == 0 then return {'empty'} end
if remaining <= 0 then return {'wait', 'quota', frees_in()} end

local cap = math.min(max_paths, remaining)
local bulk_cap = remaining - reserve
local taken, ranks, ntaken, domains, ndomains = {}, {}, 0, {}, 0
local blocked_by_reserve = false
-- The first read is exactly what a batch can take (each member comes with its score, which
-- Redis formats as a string: not free); larger reads follow only when the domain limit
-- skipped some members. The scan ends where reads of `wide` members from 0 would end, the
-- first multiple of `wide` at or past scan_limit, as it did when every read was that wide.
local wide = math.max(cap * 2, 64)
local scan_end = math.ceil(scan_limit / wide) * wide
local chunk = cap
local start = 0
local done = false
while not done and start < scan_end do
  local last = math.min(start + chunk, scan_end) - 1
  local items = redis.call('ZRANGE', pending, start, last, 'WITHSCORES')
  if #items == 0 then break end
  for i = 1, #items, 2 do
    local path, rank = items[i], items[i + 1]
    if ntaken >= bulk_cap and tonumber(rank) >= bulk_floor then
      -- Ranks are ordered, so everything after this is bulk too.
      blocked_by_reserve = ntaken == 0
      done = true
      break
    end
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
  start = start + chunk
  chunk = wide
end

if ntaken == 0 then
  if blocked_by_reserve then return {'wait', 'reserve', frees_in()} end
  return {'empty'}
end

redis.call('ZREM', pending, unpack(taken))
local waiting = redis.call('HMGET', waiters, unpack(taken))
redis.call('HDEL', waiters, unpack(taken))
local counts, jobs_of = {}, {}
for i = 1, ntaken do
  jobs_of[i] = waiting[i] or ''
  count_move(counts, jobs_of[i], 'pending', 'in_flight', 1)
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
return {'batch', id, batch}
