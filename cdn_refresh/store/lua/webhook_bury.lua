-- A delivery that will not be sent (older than WEBHOOK_MAX_AGE_S, or its job is gone) moves
-- to the dead letters, kept for an operator instead of being dropped. `delivery_id` names either a
-- delivery in the outbox or, with `job_id` set, a registration whose job is gone.
local webhooks = KEYS[1]            -- HASH job id -> JSON registration
local webhook_outbox = KEYS[2]      -- ZSET delivery id -> next attempt (s)
local webhook_deliveries = KEYS[3]  -- HASH delivery id -> JSON delivery
local webhook_created = KEYS[4]     -- ZSET delivery id -> when it was fired (s)
local webhook_dead = KEYS[5]        -- HASH delivery id -> JSON delivery, with its last error
local delivery_id = ARGV[1]
local delivery = ARGV[2]          -- JSON, last error set
local job_id = ARGV[3]            -- of a registration, or ''
-- Returns 1 when this call buried it, 0 when it was gone already (delivered, or buried).
if job_id ~= '' then
  if redis.call('HDEL', webhooks, job_id) == 0 then return 0 end
else
  if redis.call('ZREM', webhook_outbox, delivery_id) == 0 then return 0 end
  redis.call('HDEL', webhook_deliveries, delivery_id)
  redis.call('ZREM', webhook_created, delivery_id)
end
redis.call('HSET', webhook_dead, delivery_id, delivery)
return 1
