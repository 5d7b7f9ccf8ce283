-- Mark a job open while its enqueue streams, until Redis's clock passes now + lease: queued
-- in the same pipeline as the job's chunks, and renewed by the producer's beat in between.
local jobs_open = KEYS[1]  -- ZSET job id -> when its enqueue must have ended (s)
local job_id = ARGV[1]
local lease_s = ARGV[2]
local mode = ARGV[3]              -- 'new' (first mark) | 'renew' (only if open)
-- Returns 1 when the job is open until the new deadline, 0 when a renew found it ended.
local now = clock('')
local deadline = now + tonumber(lease_s)
if mode == 'new' then
  redis.call('ZADD', jobs_open, deadline, job_id)
  return 1
end
-- A mark past its deadline stays ended: the job was declared incomplete (its status, its
-- webhook), and a producer that comes back must not bring it to life again.
local open_until = tonumber(redis.call('ZSCORE', jobs_open, job_id))
if not open_until or open_until <= now then return 0 end
redis.call('ZADD', jobs_open, 'XX', deadline, job_id)
return 1
