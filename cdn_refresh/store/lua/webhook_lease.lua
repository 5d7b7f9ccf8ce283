-- Lease the deliveries that are due: their next attempt moves to now + lease, so that no
-- other worker takes them while this one sends. A worker that dies mid-send loses nothing:
-- the lease runs out and the delivery is due again.
local webhook_outbox = KEYS[1]      -- ZSET delivery id -> next attempt (s)
local webhook_deliveries = KEYS[2]  -- HASH delivery id -> JSON delivery
local webhook_created = KEYS[3]     -- ZSET delivery id -> when it was fired (s)
-- ARGV[1] now (s; empty: Redis's clock)   ARGV[2] most to lease   ARGV[3] lease (s)
-- Returns the JSON of each leased delivery.
local now = clock(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', webhook_outbox, '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local leased = {}
for _, id in ipairs(due) do
  local raw = redis.call('HGET', webhook_deliveries, id)
  if raw then
    redis.call('ZADD', webhook_outbox, now + tonumber(ARGV[3]), id)
    leased[#leased + 1] = raw
  else
    redis.call('ZREM', webhook_outbox, id)
    redis.call('ZREM', webhook_created, id)
  end
end
return leased
