-- The POST that owns an Idempotency-Key is still at it: refresh its mark's beat, so that a
-- retry waits for it instead of taking the key over, and record how far its enqueue got, so
-- that a retry after it died goes on from there.
local idempotency = KEYS[1]  -- STRING JSON mark: state, fingerprint, owner, job_id, beat, done
local owner = ARGV[1]
local done = ARGV[2]              -- valid paths in so far, in order ('' when unchanged)
-- Returns 1 when refreshed, 0 when this POST no longer owns a running mark.
local raw = redis.call('GET', idempotency)
if not raw then return 0 end
local mark = cjson.decode(raw)
if mark.state ~= 'running' or mark.owner ~= owner then return 0 end
mark.beat = clock('')
if done ~= '' then mark.done = tonumber(done) end
redis.call('SET', idempotency, cjson.encode(mark), 'KEEPTTL')
return 1
