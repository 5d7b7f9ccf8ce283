-- The POST of an Idempotency-Key begins: reserve its job id (and register its callback) in
-- the same step that marks the key running, so that whatever fails later, a retry finds the
-- job id it must answer for, and never makes a second job.
local idempotency = KEYS[1]  -- STRING JSON mark: state, fingerprint, owner, job_id, beat, done
local legacy_idempotency = KEYS[2]  -- STRING the same key's mark from before keys were per token
local job_seq = KEYS[3]      -- STRING counter of job ids
local jobs = KEYS[4]         -- HASH job id -> JSON JobHeader (written when the job opens)
local webhooks = KEYS[5]     -- HASH job id -> JSON callback registration
local fingerprint = ARGV[1]       -- of the body
local owner = ARGV[2]             -- this POST
local stale_after_s = ARGV[3]
local ttl_s = ARGV[4]             -- of the key
local callback = ARGV[5]          -- JSON registration, '' for none (registered unless the
                                  -- job opened already)
-- Returns {'begun', job id, done}: go on, as this job, past the first `done` valid paths
-- (0 unless a POST that died had put them in). {'resume', job id, done}: the same, but that
-- POST had opened the job. {'done', JSON mark}: answer it again. {'running', job id}: another
-- POST is at it. {'conflict', ''}: the key was used with another body.
local now = clock('')
local raw = redis.call('GET', idempotency)
if not raw and legacy_idempotency ~= idempotency then
  -- A key used before the upgrade moves under its token's scope (it keeps its TTL): a retry
  -- across the upgrade still gets its one job.
  -- Only with the body it was used with: another token's request with another body is
  -- refused, and leaves the mark where its own retry will find it.
  raw = redis.call('GET', legacy_idempotency)
  if raw then
    if cjson.decode(raw).fingerprint ~= fingerprint then return {'conflict', ''} end
    local ttl = redis.call('PTTL', legacy_idempotency)
    redis.call('DEL', legacy_idempotency)
    redis.call('SET', idempotency, raw, 'PX', math.max(ttl, 1))
  end
end
local mark
local outcome = 'begun'
if raw then
  mark = cjson.decode(raw)
  if mark.fingerprint ~= fingerprint then return {'conflict', ''} end
  if mark.state == 'done' then return {'done', raw} end
  local beat = tonumber(mark.beat) or now
  if now - beat < tonumber(stale_after_s) or not mark.job_id then
    return {'running', mark.job_id or ''}
  end
  -- Its POST died: this one takes the key over, and goes on where it stopped.
  if redis.call('HEXISTS', jobs, mark.job_id) == 1 then outcome = 'resume' end
  mark.owner = owner
else
  local job_id = tostring(redis.call('INCR', job_seq))
  mark = {state = 'running', fingerprint = fingerprint, owner = owner, job_id = job_id, done = 0}
end
mark.beat = now
redis.call('SET', idempotency, cjson.encode(mark), 'EX', tonumber(ttl_s))
-- Never for a job that opened: its callback may have fired already (the job had ended), and
-- must not fire a second time. Until the job opens it cannot have fired (a registration left
-- that long without its job is buried): then a retry registers it again.
if callback ~= '' and outcome ~= 'resume' then
  redis.call('HSET', webhooks, mark.job_id, callback)
end
return {outcome, mark.job_id, tostring(mark.done or 0)}
