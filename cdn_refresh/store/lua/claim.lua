-- Claim the next batch of one object type and reserve its quota, in one atomic step, so
-- that no interleaving of workers on any host can spend more than the window allows.
local pending = KEYS[1]        -- ZSET path -> rank
local pending_lex = KEYS[2]    -- ZSET path -> 0 (pending Directories in byte order)
local waiters = KEYS[3]        -- HASH waiter_field(path) -> job ids
local cooling = KEYS[4]        -- ZSET path -> when its cooldown ends (s)
local cooling_rank = KEYS[5]   -- HASH path -> rank it goes back to pending with
local records_by_time = KEYS[6]  -- ZSET path -> last submitted at (s)
local last_sent = KEYS[7]      -- ZSET path -> last claimed for a call (s), with a cooldown
local batches = KEYS[8]        -- HASH batch id -> JSON
local leases = KEYS[9]         -- ZSET batch id -> lease expiry (s)
local quota = KEYS[10]          -- ZSET "batch:count" -> reserved at (s)
local quota_total = KEYS[11]   -- sum of the counts in `quota`
local quota_window_key = KEYS[12]  -- the window every worker runs on (see the prelude)
local hold = KEYS[13]          -- set while the provider says its own quota is spent
local auth_hold = KEYS[14]     -- set while credentials are failing
local backoff = KEYS[15]       -- set while backing off after a transient error
local job_counts = KEYS[16]    -- HASH "job:state" -> count
local batch_seq = KEYS[17]
local dir_pending = KEYS[18]   -- the other type's keys: for a File claim, the Directories
local dir_pending_lex = KEYS[19]       -- that may cover its paths
local dir_quota_total = KEYS[20]
local dir_hold = KEYS[21]
local dir_backoff = KEYS[22]
local covering = KEYS[23]      -- ZSET Directories claimed whose coverage is under way
local dir_covering = KEYS[24]  -- the same for a File claim: Files under them wait too
local provider_quota = KEYS[25]  -- HASH remaining, limit, checked_at: the provider's count
local batch_owners = KEYS[26]  -- HASH batch id -> the worker process that claimed it
local claim_token = KEYS[27]   -- STRING: the batch this claim attempt took (a retried claim)
local dir_provider_quota = KEYS[28]  -- for a File claim: what the provider has left of Directories
local quota_limit_key = KEYS[29]  -- the limit every worker runs on (see the prelude)
local dir_quota_limit = KEYS[30]  -- for a File claim: the Directories' stored limit
local digesting = KEYS[31]      -- set while waiters may be keyed by path (prelude_waiters.lua)
local now = clock(ARGV[1])                    -- now (s; empty: Redis's clock)
local window_s = ARGV[2]                      -- window (s) this worker was configured with
local limit = ARGV[3]                         -- paths per window this worker was configured with
local reserve_share = ARGV[4]                 -- the share of the stored limit bulk work leaves
local max_paths = tonumber(ARGV[5])           -- per call
local max_domains = tonumber(ARGV[6])         -- per call
local lease_s = tonumber(ARGV[7])
local bulk_floor = tonumber(ARGV[8])          -- the lowest bulk rank
local object_type = ARGV[9]
local scan_limit = tonumber(ARGV[10])         -- most pending paths to scan for a batch
local cooldown_s = tonumber(ARGV[11])         -- 0: none
local file_claim = ARGV[12]                   -- '1': a File waits for a Directory covering it
local covering_limit = ARGV[13]               -- the covering operation's limit, as `limit`
local covering_reserve = ARGV[14]             -- its reserve, as `reserve_share`
local last_reset = tonumber(ARGV[15])         -- the provider's last reset (s)
local count_margin_s = tonumber(ARGV[16])     -- reservations this recent may be uncounted
local owner = ARGV[17]                        -- worker process; empty: the lease alone reclaims
-- Returns {'batch', id, json} | {'wait', reason, seconds} | {'empty'} (sections: claim_*.lua)
local answer = retried_claim(claim_token, batches) or held_back(hold, auth_hold, backoff)
if answer then return answer end
local window = quota_window(quota_window_key, window_s)
local stored_limit = quota_limit(quota_limit_key, limit)
evict_window(quota, quota_total, now, window)
local k = {pending = pending, pending_lex = coverage_index(object_type, pending_lex),
  cooling = cooling, cooling_rank = cooling_rank, covering = covering, last_sent = last_sent,
  waiters = waiters, digesting = digesting, job_counts = job_counts, batch_seq = batch_seq,
  records_by_time = records_by_time, quota = quota, quota_total = quota_total, batches = batches,
  leases = leases, batch_owners = batch_owners, claim_token = claim_token}
release_cooled(k, now, bulk_floor)
local remaining, reserved = our_room(quota_total, stored_limit, reserve_share)
if redis.call('ZCARD', pending) == 0 then return cooling_wait(cooling, now) or {'empty'} end
if remaining <= 0 then return {'wait', 'quota', frees_in(quota, window, now)} end
remaining, answer = provider_room(provider_quota, quota, last_reset, count_margin_s, now, remaining)
if answer then return answer end
local waits = file_claim == '1' and directory_wait({pending = dir_pending,
  pending_lex = dir_pending_lex, covering = dir_covering, hold = dir_hold, backoff = dir_backoff,
  quota_total = dir_quota_total, quota_limit = dir_quota_limit, limit = covering_limit,
  provider_quota = dir_provider_quota, reserve_share = covering_reserve}, bulk_floor, last_reset)
local taken, cool, blocked_by_reserve = pack(k, {now = now, cooldown = cooldown_s,
  waits = waits or nil, cap = math.min(max_paths, remaining), bulk_cap = remaining - reserved,
  bulk_floor = bulk_floor, scan_limit = scan_limit, max_domains = max_domains})
start_cooling(k, cool)
if blocked_by_reserve then return {'wait', 'reserve', frees_in(quota, window, now)} end
if taken.n == 0 then return cooling_wait(cooling, now) or {'empty'} end
local jobs_of = take_paths(k, taken, now, cooldown_s, object_type)
return reserve(k, taken, jobs_of, now, object_type, lease_s, owner)
