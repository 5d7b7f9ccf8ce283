-- A delivery that will not be sent (older than WEBHOOK_MAX_AGE_S, or its job is gone) moves
-- to the dead letters, kept for an operator instead of being dropped. ARGV[1] names either a
-- delivery in the outbox or, with ARGV[3] set, a registration whose job is gone.
local webhooks = KEYS[1]            -- HASH job id -> JSON registration
local webhook_outbox = KEYS[2]      -- ZSET delivery id -> next attempt (s)
local webhook_deliveries = KEYS[3]  -- HASH delivery id -> JSON delivery
local webhook_created = KEYS[4]     -- ZSET delivery id -> when it was fired (s)
local webhook_dead = KEYS[5]        -- HASH delivery id -> JSON delivery, with its last error
-- ARGV[1] delivery id   ARGV[2] JSON delivery (last error set)   ARGV[3] job id of a
-- registration, or ''
-- Returns 1 when this call buried it, 0 when it was gone already (delivered, or buried).
if ARGV[3] ~= '' then
  if redis.call('HDEL', webhooks, ARGV[3]) == 0 then return 0 end
else
  if redis.call('ZREM', webhook_outbox, ARGV[1]) == 0 then return 0 end
  redis.call('HDEL', webhook_deliveries, ARGV[1])
  redis.call('ZREM', webhook_created, ARGV[1])
end
redis.call('HSET', webhook_dead, ARGV[1], ARGV[2])
return 1
