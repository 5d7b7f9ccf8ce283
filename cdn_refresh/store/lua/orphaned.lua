-- The batches in flight whose owner's heartbeat is gone: the worker process that claimed
-- them died (or hangs), and another may send them now instead of waiting for the lease.
local batch_owners = KEYS[1]  -- HASH batch id -> owner
local batches = KEYS[2]       -- HASH batch id -> JSON batch in flight
local heartbeats = KEYS[3]    -- ZSET owner -> when its heartbeat runs out (s)
local now = clock(ARGV[1])        -- s; empty: Redis's clock
-- Returns {batch id, object type, batch id, object type, ...}
-- A heartbeat that ran out says the same as none at all: its owner is gone.
redis.call('ZREMRANGEBYSCORE', heartbeats, '-inf', now)
local owned = redis.call('HGETALL', batch_owners)
local found = {}
for i = 1, #owned, 2 do
  local id, owner = owned[i], owned[i + 1]
  if redis.call('HEXISTS', batches, id) == 0 then
    -- Settled: submit and release leave the owner entry for this script to drop.
    redis.call('HDEL', batch_owners, id)
  elseif not redis.call('ZSCORE', heartbeats, owner) then
    found[#found + 1] = id
    found[#found + 1] = cjson.decode(redis.call('HGET', batches, id)).object_type
  end
end
return found
