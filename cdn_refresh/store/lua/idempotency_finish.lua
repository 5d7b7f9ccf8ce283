-- The POST that owns an Idempotency-Key answered: keep the answer for its retries. Only the
-- owner may: a POST that lost the key (taken over after it stalled) changes nothing.
local idempotency = KEYS[1]  -- STRING JSON mark: state, fingerprint, owner, job_id, beat
-- ARGV[1] owner   ARGV[2] JSON done mark (state, fingerprint, status, document)   ARGV[3] TTL (s)
-- Returns 1 when kept, 0 when this POST no longer owns a running mark.
local raw = redis.call('GET', idempotency)
if not raw then return 0 end
local mark = cjson.decode(raw)
if mark.state ~= 'running' or mark.owner ~= ARGV[1] then return 0 end
redis.call('SET', idempotency, ARGV[2], 'EX', tonumber(ARGV[3]))
return 1
