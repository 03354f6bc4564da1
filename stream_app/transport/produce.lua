-- Append a batch of records to one partition with dense offsets: entry id = "<offset>-1".
-- KEYS[1] stream, KEYS[2] offset counter (= highwater), KEYS[3] group state (only read when fenced)
-- ARGV[1] approximate MAXLEN (0 = none), ARGV[2] fence generation ('' = not fenced),
-- then 5 values per record: ts_ms, flags (1 key, 2 value, 4 headers), key, value, headers.
-- Returns {1, first_offset, last_offset} or {-1, current_generation} when fenced.
if ARGV[2] ~= '' then
  local gen = redis.call('HGET', KEYS[3], 'generation')
  if gen ~= ARGV[2] then return {-1, gen or ''} end
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  -- a lost counter (e.g. restored stream without it) restarts after the last entry, never reusing ids
  local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  if #last > 0 then
    local top = string.match(last[1][1], '^(%d+)-')
    redis.call('SET', KEYS[2], top + 1)
  end
end
local maxlen = tonumber(ARGV[1])
local first = -1
local off = -1
for i = 3, #ARGV, 5 do
  off = redis.call('INCR', KEYS[2]) - 1
  if first < 0 then first = off end
  local flags = tonumber(ARGV[i + 1])
  local entry = {'ts', ARGV[i]}
  if flags % 2 == 1 then entry[#entry + 1] = 'k'; entry[#entry + 1] = ARGV[i + 2] end
  if math.floor(flags / 2) % 2 == 1 then entry[#entry + 1] = 'v'; entry[#entry + 1] = ARGV[i + 3] end
  if math.floor(flags / 4) % 2 == 1 then entry[#entry + 1] = 'h'; entry[#entry + 1] = ARGV[i + 4] end
  local id = string.format('%d-1', off)
  if maxlen > 0 then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, id, unpack(entry))
  else
    redis.call('XADD', KEYS[1], id, unpack(entry))
  end
end
return {1, first, off}
