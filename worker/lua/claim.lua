-- Claim the next batch of one object type and reserve its quota, in one atomic step, so
-- that no interleaving of workers on any host can spend more than the window allows.
--
-- KEYS[1]  pending ZSET      path -> rank
-- KEYS[2]  waiters HASH      path -> job ids
-- KEYS[3]  batches HASH      batch id -> JSON
-- KEYS[4]  leases ZSET       batch id -> lease expiry (s)
-- KEYS[5]  quota ZSET        "batch:count" -> reserved at (s)
-- KEYS[6]  quota_total       sum of the counts in KEYS[5]
-- KEYS[7]  hold              set while the provider says its own quota is spent
-- KEYS[8]  auth_hold         set while credentials are failing
-- KEYS[9]  backoff           set while backing off after a transient error
-- KEYS[10] job_counts HASH   "job:state" -> count
-- KEYS[11] batch_seq
-- ARGV[1] now (s; empty: Redis's own clock)           ARGV[2] window (s)         ARGV[3] limit (paths per window)
-- ARGV[4] reserve: what bulk work must leave unspent      ARGV[5] max paths per call
-- ARGV[6] max domains per call ARGV[7] lease (s)          ARGV[8] lowest bulk rank
-- ARGV[9] object type         ARGV[10] most pending paths to scan for a batch
-- Returns {'batch', id, json} | {'wait', reason, seconds} | {'empty'}
-- Redis's clock, not the workers': hosts whose clocks disagree must share one window.
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1e6
end
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local reserve = tonumber(ARGV[4])
local max_paths = tonumber(ARGV[5])
local max_domains = tonumber(ARGV[6])
local lease = tonumber(ARGV[7])
local bulk_floor = tonumber(ARGV[8])
local scan_limit = tonumber(ARGV[10])

for _, k in ipairs({7, 8, 9}) do
  local ttl = redis.call('PTTL', KEYS[k])
  if ttl > 0 then
    local reasons = {[7] = 'provider_quota', [8] = 'credentials', [9] = 'backoff'}
    return {'wait', reasons[k], tostring(ttl / 1000)}
  end
end

-- Forget reservations that left the rolling window.
local expired = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now - window)
if #expired > 0 then
  local freed = 0
  for _, member in ipairs(expired) do
    freed = freed + tonumber(string.match(member, ':(%d+)$'))
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - window)
  redis.call('DECRBY', KEYS[6], freed)
end

local function frees_in()
  local oldest = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
  if #oldest == 0 then return '0' end
  return tostring(math.max(0, tonumber(oldest[2]) + window - now))
end

local used = tonumber(redis.call('GET', KEYS[6]) or '0')
local remaining = limit - used
if redis.call('ZCARD', KEYS[1]) == 0 then return {'empty'} end
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
  local items = redis.call('ZRANGE', KEYS[1], start, last, 'WITHSCORES')
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

redis.call('ZREM', KEYS[1], unpack(taken))
local waiting = redis.call('HMGET', KEYS[2], unpack(taken))
redis.call('HDEL', KEYS[2], unpack(taken))
local per_job = {}
local waiters = {}
for i = 1, ntaken do
  local w = waiting[i] or ''
  waiters[i] = w
  for job in string.gmatch(w, '[^,]+') do per_job[job] = (per_job[job] or 0) + 1 end
end
for job, n in pairs(per_job) do
  redis.call('HINCRBY', KEYS[10], job .. ':pending', -n)
  redis.call('HINCRBY', KEYS[10], job .. ':in_flight', n)
end

local id = tostring(redis.call('INCR', KEYS[11]))
local reservation = id .. ':' .. ntaken
redis.call('ZADD', KEYS[5], now, reservation)
redis.call('INCRBY', KEYS[6], ntaken)
local batch = cjson.encode({
  id = id, object_type = ARGV[9], paths = taken, ranks = ranks, waiters = waiters,
  reservation = reservation, claimed_at = now,
})
redis.call('HSET', KEYS[3], id, batch)
redis.call('ZADD', KEYS[4], now + lease, id)
return {'batch', id, batch}
