-- Store committed offsets, fenced by group generation and partition owner.
-- KEYS[1] group state, KEYS[2] owners, KEYS[3] offsets
-- ARGV[1] member, ARGV[2] generation, then pairs "topic:partition", offset.
-- Returns {1, generation} | {-1, current_generation} (stale) | {-2, tp} (not the owner).
local gen = redis.call('HGET', KEYS[1], 'generation')
if gen ~= ARGV[2] then return {-1, gen or ''} end
for i = 3, #ARGV, 2 do
  if redis.call('HGET', KEYS[2], ARGV[i]) ~= ARGV[1] then return {-2, ARGV[i]} end
end
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]) end
return {1, gen}
