-- Our count of one type's rolling window, read on the window every worker runs on.
local quota = KEYS[1]             -- ZSET "batch:count" -> reserved at (s)
local quota_window_key = KEYS[2]  -- the stored window (see the prelude)
local quota_limit_key = KEYS[3]   -- the stored limit (see the prelude)
local now = clock(ARGV[1])        -- s; empty: Redis's clock
local configured_window_s = ARGV[2]  -- this process's, when none is stored
local configured_limit = ARGV[3]  -- this process's (paths per window), when none is stored
-- Returns {used, window (s), seconds until the oldest reservation leaves the window, limit}.
-- Read-only: the window and the limit are stored by the first claim, not by a reader.
local window = tonumber(redis.call('GET', quota_window_key)) or tonumber(configured_window_s)
local limit = tonumber(redis.call('GET', quota_limit_key)) or tonumber(configured_limit)
local members = redis.call('ZRANGEBYSCORE', quota, '(' .. (now - window), '+inf', 'WITHSCORES')
local used, oldest = 0, nil
for i = 1, #members, 2 do
  used = used + reservation_count(members[i])
  if not oldest then oldest = tonumber(members[i + 1]) end
end
local frees_in = oldest and math.max(0, oldest + window - now) or 0
return {used, tostring(window), tostring(frees_in), limit}
