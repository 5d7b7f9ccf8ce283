-- The POST that owns an Idempotency-Key opened no job (its paths were refused, Redis refused
-- writes): free the key, and drop the callback registered for the job id it reserved.
local idempotency = KEYS[1]  -- STRING JSON mark: state, fingerprint, owner, job_id, beat
local webhooks = KEYS[2]     -- HASH job id -> JSON callback registration
local owner = ARGV[1]
-- Returns 1 when freed, 0 when this POST no longer owns a running mark.
local raw = redis.call('GET', idempotency)
if not raw then return 0 end
local mark = cjson.decode(raw)
if mark.state ~= 'running' or mark.owner ~= owner then return 0 end
redis.call('DEL', idempotency)
redis.call('HDEL', webhooks, mark.job_id)
return 1
