-- Member heartbeat on Redis's clock; evicts expired members and bumps the epoch when membership changes.
-- KEYS[1] group state, KEYS[2] members ZSET (member -> expiry ms)
-- ARGV[1] member, ARGV[2] session timeout ms, ARGV[3] mode: 0 beat, 1 register, 2 subscription changed.
-- Returns {-1, 0, 0} when this member is unknown or expired (it must re-register), else {1, epoch, generation}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local mode = tonumber(ARGV[3])
local mine = redis.call('ZSCORE', KEYS[2], ARGV[1])
local bump = mode ~= 0
if mode == 0 and (not mine or tonumber(mine) < now) then
  if mine then redis.call('ZREM', KEYS[2], ARGV[1]); bump = true end
  if bump then redis.call('HINCRBY', KEYS[1], 'epoch', 1) end
  return {-1, 0, 0}
end
if redis.call('ZCOUNT', KEYS[2], '-inf', now) > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  bump = true
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
local epoch
if bump then epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
else epoch = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0') end
local gen = tonumber(redis.call('HGET', KEYS[1], 'generation') or '-1')
return {1, epoch, gen}
