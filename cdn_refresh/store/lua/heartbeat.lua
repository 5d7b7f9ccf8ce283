-- A worker process says it is alive (or, with a TTL of 0, that it leaves), on Redis's clock
-- so that hosts whose clocks disagree still agree on who is dead.
local heartbeats = KEYS[1]  -- ZSET worker process -> when its heartbeat runs out (s)
local owner = ARGV[1]
local ttl_s = ARGV[2]             -- TTL (s; 0: it leaves now)
-- Returns the time its heartbeat now runs out, as a string ('' when it left).
local ttl = tonumber(ttl_s)
if ttl <= 0 then
  redis.call('ZREM', heartbeats, owner)
  return ''
end
local expires = clock('') + ttl
redis.call('ZADD', heartbeats, expires, owner)
return tostring(expires)
