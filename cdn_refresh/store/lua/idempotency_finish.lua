-- The POST that owns an Idempotency-Key answered: keep the answer for its retries. Only the
-- owner may: a POST that lost the key (taken over after it stalled) changes nothing.
local idempotency = KEYS[1]  -- STRING JSON mark: state, fingerprint, owner, job_id, beat
local owner = ARGV[1]
local done_mark = ARGV[2]         -- JSON done mark (state, fingerprint, status, document)
local ttl_s = ARGV[3]
-- Returns 1 when kept, 0 when this POST no longer owns a running mark.
local raw = redis.call('GET', idempotency)
if not raw then return 0 end
local mark = cjson.decode(raw)
if mark.state ~= 'running' or mark.owner ~= owner then return 0 end
redis.call('SET', idempotency, done_mark, 'EX', tonumber(ttl_s))
return 1
