-- Our count of one type's rolling window, read on the window every worker runs on.
local quota = KEYS[1]             -- ZSET "batch:count" -> reserved at (s)
local quota_window_key = KEYS[2]  -- the stored window (see the prelude)
-- ARGV[1] now (s; empty: Redis's clock)   ARGV[2] this process's configured window (s)
-- Returns {used, window (s), seconds until the oldest reservation leaves the window}.
-- Read-only: the window is stored by the first claim, not by a reader.
local now = clock(ARGV[1])
local window = tonumber(redis.call('GET', quota_window_key)) or tonumber(ARGV[2])
local members = redis.call('ZRANGEBYSCORE', quota, '(' .. (now - window), '+inf', 'WITHSCORES')
local used, oldest = 0, nil
for i = 1, #members, 2 do
  used = used + reservation_count(members[i])
  if not oldest then oldest = tonumber(members[i + 1]) end
end
local frees_in = oldest and math.max(0, oldest + window - now) or 0
return {used, tostring(window), tostring(frees_in)}
