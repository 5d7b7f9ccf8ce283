-- Mark a job open while its enqueue streams, until Redis's clock passes now + lease: queued
-- in the same pipeline as the job's chunks, and renewed by the producer's beat in between.
local jobs_open = KEYS[1]  -- ZSET job id -> when its enqueue must have ended (s)
-- ARGV[1] job id   ARGV[2] lease (s)   ARGV[3] 'new' (first mark) | 'renew' (only if open)
-- Returns 1 when the job is open until the new deadline, 0 when a renew found it ended.
local now = clock('')
local deadline = now + tonumber(ARGV[2])
if ARGV[3] == 'new' then
  redis.call('ZADD', jobs_open, deadline, ARGV[1])
  return 1
end
-- A mark past its deadline stays ended: the job was declared incomplete (its status, its
-- webhook), and a producer that comes back must not bring it to life again.
local open_until = tonumber(redis.call('ZSCORE', jobs_open, ARGV[1]))
if not open_until or open_until <= now then return 0 end
redis.call('ZADD', jobs_open, 'XX', deadline, ARGV[1])
return 1
