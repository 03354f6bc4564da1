-- A member leaves the group cleanly: the others rebalance at once instead of after the session timeout.
-- KEYS[1] group state, KEYS[2] members; ARGV[1] member
if redis.call('ZREM', KEYS[2], ARGV[1]) == 1 then
  return redis.call('HINCRBY', KEYS[1], 'epoch', 1)
end
return -1
