-- A job with a callback ended: move its registration into the outbox, once. Several ticks
-- on several workers may see the same job end; only the one that removes it fires.
local webhooks = KEYS[1]            -- HASH job id -> JSON registration
local webhook_outbox = KEYS[2]      -- ZSET delivery id -> next attempt (s)
local webhook_deliveries = KEYS[3]  -- HASH delivery id -> JSON delivery
local webhook_created = KEYS[4]     -- ZSET delivery id -> when it was fired (s)
-- ARGV[1] job id   ARGV[2] delivery id   ARGV[3] JSON delivery   ARGV[4] now (s; empty: Redis's)
-- ARGV[5] the delivery's created_at (s)
-- Returns 1 when this call fired it, 0 when another did (or nothing was registered).
if redis.call('HDEL', webhooks, ARGV[1]) == 0 then return 0 end
redis.call('HSET', webhook_deliveries, ARGV[2], ARGV[3])
redis.call('ZADD', webhook_outbox, clock(ARGV[4]), ARGV[2])
redis.call('ZADD', webhook_created, tonumber(ARGV[5]), ARGV[2])
return 1
