-- claim_quota.lua: the sections of a claim that decide how much it may take, and reserve it
-- (claim.lua calls them in order). Prepended to claim.lua only, after the prelude.

-- The same claim retried after its reply was lost gets the batch its first run took; nil
-- when this attempt is the first.
local function retried_claim(claim_token, batches)
  local taken_before = redis.call('GET', claim_token)
  if not taken_before then return nil end
  local raw = redis.call('HGET', batches, taken_before)
  if raw then return {'batch', taken_before, raw} end
  return {'empty'}
end

-- A hold (the provider's quota spent, failing credentials, a backoff) stops every claim of
-- the type until it expires: the wait answer, or nil.
local function held_back(hold, auth_hold, backoff)
  for _, held in ipairs({{hold, 'provider_quota'}, {auth_hold, 'credentials'}, {backoff, 'backoff'}}) do
    local ttl = redis.call('PTTL', held[1])
    if ttl > 0 then return {'wait', held[2], tostring(ttl / 1000)} end
  end
  return nil
end

-- Evict the window: forget reservations that left it, so their units count as free again.
local function evict_window(quota, quota_total, now, window)
  local expired = redis.call('ZRANGEBYSCORE', quota, '-inf', now - window)
  if #expired == 0 then return end
  local freed = 0
  for _, member in ipairs(expired) do freed = freed + reservation_count(member) end
  redis.call('ZREMRANGEBYSCORE', quota, '-inf', now - window)
  redis.call('DECRBY', quota_total, freed)
end

-- Seconds until the oldest reservation leaves the window (the wait of a full window).
local function frees_in(quota, window, now)
  local oldest = redis.call('ZRANGE', quota, 0, 0, 'WITHSCORES')
  if #oldest == 0 then return '0' end
  return tostring(math.max(0, tonumber(oldest[2]) + window - now))
end

-- Our room: the stored limit less what the window holds, and the reserve bulk work must
-- leave unspent. The reserve is a share of the stored limit, not of this worker's own, so
-- that every worker keeps one reserve.
local function our_room(quota_total, limit, reserve_share)
  local used = tonumber(redis.call('GET', quota_total) or '0')
  return limit - used, math.ceil(limit * tonumber(reserve_share))
end

-- The provider's room: never more than its own count has left (others spend the account
-- too): what it said, less what we reserved since, counting reservations from `margin`
-- seconds before its answer as not in it yet. A count from before the provider's last
-- reset says nothing. Returns the room left (at most `remaining`), or nil and a wait.
local function provider_room(provider_quota, quota, last_reset, margin, now, remaining)
  local provider_left, checked_at = provider_remaining(provider_quota, last_reset)
  if not provider_left then return remaining end
  local since = checked_at - margin
  local ours = 0
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', quota, '(' .. since, '+inf')) do
    ours = ours + reservation_count(member)
  end
  local left = provider_left - ours
  if left <= 0 then
    return nil, {'wait', 'provider_quota', tostring(math.max(1, last_reset + 86400 - now))}
  end
  if left < remaining then return left end
  return remaining
end

-- Reserve: the batch's units join the window, the batch is leased (to `owner`, if any) and
-- the claim token remembers it for a retried claim. Returns the claim's answer.
local function reserve(k, taken, jobs_of, now, object_type, lease, owner)
  local id = tostring(redis.call('INCR', k.batch_seq))
  local reservation = id .. ':' .. taken.n
  redis.call('ZADD', k.quota, now, reservation)
  redis.call('INCRBY', k.quota_total, taken.n)
  local batch = cjson.encode({
    id = id, object_type = object_type, paths = taken.paths, ranks = taken.ranks,
    waiters = jobs_of, reservation = reservation, claimed_at = now,
  })
  redis.call('HSET', k.batches, id, batch)
  redis.call('ZADD', k.leases, now + lease, id)
  if owner ~= '' then redis.call('HSET', k.batch_owners, id, owner) end
  redis.call('SET', k.claim_token, id, 'PX', math.max(1, math.ceil(lease * 1000)))
  return {'batch', id, batch}
end
