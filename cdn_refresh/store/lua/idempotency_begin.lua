-- The POST of an Idempotency-Key begins: reserve its job id (and register its callback) in
-- the same step that marks the key running, so that whatever fails later, a retry finds the
-- job id it must answer for, and never makes a second job.
local idempotency = KEYS[1]  -- STRING JSON mark: state, fingerprint, owner, job_id, beat
local job_seq = KEYS[2]      -- STRING counter of job ids
local jobs = KEYS[3]         -- HASH job id -> JSON JobHeader (written when the job opens)
local webhooks = KEYS[4]     -- HASH job id -> JSON callback registration
-- ARGV[1] body fingerprint   ARGV[2] owner (this POST)   ARGV[3] stale after (s)
-- ARGV[4] TTL of the key (s)   ARGV[5] JSON callback registration, '' for none
-- Returns {'begun', job id}: go on, as this job. {'done', JSON mark}: answer it again.
-- {'running', job id}: another POST is at it. {'orphan', job id}: that POST opened the job
-- and died before it answered. {'conflict', ''}: the key was used with another body.
local now = clock('')
local raw = redis.call('GET', idempotency)
local mark
if raw then
  mark = cjson.decode(raw)
  if mark.fingerprint ~= ARGV[1] then return {'conflict', ''} end
  if mark.state == 'done' then return {'done', raw} end
  local beat = tonumber(mark.beat) or now
  if now - beat < tonumber(ARGV[3]) or not mark.job_id then
    return {'running', mark.job_id or ''}
  end
  if redis.call('HEXISTS', jobs, mark.job_id) == 1 then return {'orphan', mark.job_id} end
  mark.owner = ARGV[2]  -- its POST died before the job opened: this one takes it over
else
  local job_id = tostring(redis.call('INCR', job_seq))
  mark = {state = 'running', fingerprint = ARGV[1], owner = ARGV[2], job_id = job_id}
end
mark.beat = now
redis.call('SET', idempotency, cjson.encode(mark), 'EX', tonumber(ARGV[4]))
if ARGV[5] ~= '' then redis.call('HSET', webhooks, mark.job_id, ARGV[5]) end
return {'begun', mark.job_id}
