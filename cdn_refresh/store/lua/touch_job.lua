-- Mark a job open while its enqueue streams, until Redis's clock passes now + lease: queued
-- in the same pipeline as the job's chunks, so keeping the mark fresh costs no round trip.
local jobs_open = KEYS[1]  -- ZSET job id -> when its enqueue must have ended (s)
-- ARGV[1] job id   ARGV[2] lease (s)   ARGV[3] 'new' (first mark) | 'renew' (only if open)
local deadline = clock('') + tonumber(ARGV[2])
if ARGV[3] == 'new' then
  redis.call('ZADD', jobs_open, deadline, ARGV[1])
else
  redis.call('ZADD', jobs_open, 'XX', deadline, ARGV[1])
end
return 1
