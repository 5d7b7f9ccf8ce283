-- Set a key with a time to live, unless it already lives longer: a short backoff after one
-- error must never cut short a longer one (say, the provider's x-acs-retry-after) set by
-- another worker.
local target = KEYS[1]  -- the hold or backoff key
local value = ARGV[1]
local ttl_ms = ARGV[2]            -- time to live (ms)
-- Returns 1 if set, 0 if the key already lived longer.
local ttl = redis.call('PTTL', target)
if ttl >= tonumber(ttl_ms) then return 0 end
redis.call('SET', target, value, 'PX', ttl_ms)
return 1
