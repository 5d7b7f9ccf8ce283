-- A worker process says it is alive (or, with a TTL of 0, that it leaves), on Redis's clock
-- so that hosts whose clocks disagree still agree on who is dead.
local heartbeats = KEYS[1]  -- ZSET worker process -> when its heartbeat runs out (s)
-- ARGV[1] owner   ARGV[2] TTL (s; 0: it leaves now)
-- Returns the time its heartbeat now runs out, as a string ('' when it left).
local ttl = tonumber(ARGV[2])
if ttl <= 0 then
  redis.call('ZREM', heartbeats, ARGV[1])
  return ''
end
local expires = clock('') + ttl
redis.call('ZADD', heartbeats, expires, ARGV[1])
return tostring(expires)
