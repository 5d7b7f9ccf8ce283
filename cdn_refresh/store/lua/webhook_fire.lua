-- A job with a callback ended: move its registration into the outbox, once. Several ticks
-- on several workers may see the same job end; only the one that removes it fires.
local webhooks = KEYS[1]            -- HASH job id -> JSON registration
local webhook_outbox = KEYS[2]      -- ZSET delivery id -> next attempt (s)
local webhook_deliveries = KEYS[3]  -- HASH delivery id -> JSON delivery
local webhook_created = KEYS[4]     -- ZSET delivery id -> when it was fired (s)
local job_id = ARGV[1]
local delivery_id = ARGV[2]
local delivery = ARGV[3]          -- JSON
local now = ARGV[4]               -- s; empty: Redis's clock
local created_at = ARGV[5]        -- the delivery's (s)
-- Returns 1 when this call fired it, 0 when another did (or nothing was registered).
if redis.call('HDEL', webhooks, job_id) == 0 then return 0 end
redis.call('HSET', webhook_deliveries, delivery_id, delivery)
redis.call('ZADD', webhook_outbox, clock(now), delivery_id)
redis.call('ZADD', webhook_created, tonumber(created_at), delivery_id)
return 1
