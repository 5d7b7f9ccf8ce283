-- A delivery attempt failed: keep it, with its attempt counted, due again after a delay.
-- Nothing happens to a delivery that is gone (another worker delivered it meanwhile).
local webhook_outbox = KEYS[1]      -- ZSET delivery id -> next attempt (s)
local webhook_deliveries = KEYS[2]  -- HASH delivery id -> JSON delivery
local delivery_id = ARGV[1]
local delivery = ARGV[2]          -- JSON, attempts counted
local delay_s = ARGV[3]
-- Returns 1 when kept, 0 when the delivery is gone.
if not redis.call('ZSCORE', webhook_outbox, delivery_id) then return 0 end
redis.call('HSET', webhook_deliveries, delivery_id, delivery)
redis.call('ZADD', webhook_outbox, clock('') + tonumber(delay_s), delivery_id)
return 1
