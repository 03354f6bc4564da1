-- Join the rebalance of one epoch with the member's subscription metadata.
-- KEYS[1] group state, KEYS[2] members, KEYS[3] join:<epoch>; ARGV[1] epoch, ARGV[2] member, ARGV[3] metadata
-- Returns 1 joined, 0 the epoch moved on, -1 not a member (evicted: re-register first).
if not redis.call('ZSCORE', KEYS[2], ARGV[2]) then return -1 end
if (redis.call('HGET', KEYS[1], 'epoch') or '0') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[3], 3600)
return 1
