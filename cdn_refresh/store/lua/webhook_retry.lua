-- A delivery attempt failed: keep it, with its attempt counted, due again after a delay.
-- Nothing happens to a delivery that is gone (another worker delivered it meanwhile).
local webhook_outbox = KEYS[1]      -- ZSET delivery id -> next attempt (s)
local webhook_deliveries = KEYS[2]  -- HASH delivery id -> JSON delivery
-- ARGV[1] delivery id   ARGV[2] JSON delivery (attempts counted)   ARGV[3] delay (s)
-- Returns 1 when kept, 0 when the delivery is gone.
if not redis.call('ZSCORE', webhook_outbox, ARGV[1]) then return 0 end
redis.call('HSET', webhook_deliveries, ARGV[1], ARGV[2])
redis.call('ZADD', webhook_outbox, clock('') + tonumber(ARGV[3]), ARGV[1])
return 1
