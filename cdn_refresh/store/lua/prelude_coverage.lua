-- prelude_coverage.lua: the prelude's coverage helpers, prepended after prelude_paths.lua: where
-- a path lies, which type keeps a coverage index, what a Directory in flight covered.

-- Coverage: a Directory covers every path that starts with it (same scheme and host; the
-- directory ends with "/"). The directories above a path, shallowest first and without the
-- path itself, from "scheme://host/" down to the path's own directory; a query is no part of
-- where a path lies ("/a/b?x=/c/" lies in "/a/").
local function ancestors(path)
  local found, n = {}, 0
  local query = string.find(path, '?', 1, true)
  local body = query and string.sub(path, 1, query - 1) or path
  local host_end = string.find(body, '/', (string.find(body, '://', 1, true) or 0) + 3, true)
  local at = host_end
  while at do
    local prefix = string.sub(body, 1, at)
    if prefix ~= path then
      n = n + 1
      found[n] = prefix
    end
    at = string.find(body, '/', at + 1, true)
  end
  return found, n
end

-- The ZRANGEBYLEX bounds of every member that starts with `prefix` (paths are ASCII).
local function under(prefix)
  return '[' .. prefix, '[' .. prefix .. '\255'
end

-- Only an operation that covers others keeps a coverage index (INDEXED, generated from the
-- operations table: store/keys.py keeps_coverage_index): the Files under a claimed Directory
-- are found by a scan of their pending set (cover.lua), which costs a File path no second
-- copy. The index key of `object_type`, or nil.
local function coverage_index(object_type, lex_key)
  if INDEXED[object_type] then return lex_key end
  return nil
end

-- `prefix` as a SCAN MATCH pattern that matches itself alone: the glob characters escaped.
local function glob_escaped(prefix)
  return (string.gsub(prefix, '[%*%?%[%]\\]', '\\%0'))
end

-- What the Directories `directories` of batch `id` covered (cover.lua writes one field of
-- `covered_key` per step): each entry is handed to `call(directory, entry)` and taken out.
-- Those Directories leave `covering_key`: their coverage is over, settled or sent back.
local function take_covered(covered_key, covering_key, id, batch, directories, call)
  for _, directory in ipairs(batch.cover and directories or {}) do
    local st = batch.cover[directory]
    for step = 1, st and st.n or 0 do
      local field = id .. '|' .. directory .. '|' .. step
      local raw = redis.call('HGET', covered_key, field)
      if raw then
        call(directory, cjson.decode(raw))
        redis.call('HDEL', covered_key, field)
      end
    end
  end
  if batch.object_type == 'Directory' and #directories > 0 then
    redis.call('ZREM', covering_key, unpack(directories))
  end
end
