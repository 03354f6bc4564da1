-- The leader publishes the assignment of one epoch; members that did not join are dropped.
-- KEYS[1] group state, KEYS[2] members, KEYS[3] assign:<epoch>, KEYS[4] owners
-- ARGV[1] epoch, ARGV[2] leader, ARGV[3] number of members n, then n pairs (member, assignment blob),
-- then pairs ("topic:partition", owner member).
-- Returns 1 published, 0 the epoch moved on.
if (redis.call('HGET', KEYS[1], 'epoch') or '0') ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[3])
local assigned = {}
redis.call('DEL', KEYS[3])
for i = 4, 3 + 2 * n, 2 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  assigned[ARGV[i]] = true
end
redis.call('EXPIRE', KEYS[3], 3600)
for _, member in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if not assigned[member] then redis.call('ZREM', KEYS[2], member) end
end
redis.call('DEL', KEYS[4])
for i = 4 + 2 * n, #ARGV, 2 do redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'generation', ARGV[1], 'leader', ARGV[2])
return 1
