-- Lease the deliveries that are due: their next attempt moves to now + lease, so that no
-- other worker takes them while this one sends. A worker that dies mid-send loses nothing:
-- the lease runs out and the delivery is due again.
local webhook_outbox = KEYS[1]      -- ZSET delivery id -> next attempt (s)
local webhook_deliveries = KEYS[2]  -- HASH delivery id -> JSON delivery
local webhook_created = KEYS[3]     -- ZSET delivery id -> when it was fired (s)
local now = clock(ARGV[1])        -- s; empty: Redis's clock
local most = ARGV[2]              -- to lease
local lease_s = ARGV[3]
-- Returns the JSON of each leased delivery.
local due = redis.call('ZRANGEBYSCORE', webhook_outbox, '-inf', now, 'LIMIT', 0, tonumber(most))
local leased = {}
for _, id in ipairs(due) do
  local raw = redis.call('HGET', webhook_deliveries, id)
  if raw then
    redis.call('ZADD', webhook_outbox, now + tonumber(lease_s), id)
    leased[#leased + 1] = raw
  else
    redis.call('ZREM', webhook_outbox, id)
    redis.call('ZREM', webhook_created, id)
  end
end
return leased
