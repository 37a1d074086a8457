-- Admit an interactive call to a number: refused if the number is suppressed, or if it was
-- called as often as the per-number limit allows within its window; else counted, in the
-- same step. KEYS[1] suppressed (hash), KEYS[2] the number's calls (sorted set).
-- ARGV[1] number hash, ARGV[2] instruction id, ARGV[3] calls allowed (0 = no limit),
-- ARGV[4] window ms. Returns ok | suppressed | per_number_limit.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 'suppressed' end
local limit = tonumber(ARGV[3])
if limit > 0 then
  local now = now_ms()
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[4]))
  if redis.call('ZCARD', KEYS[2]) >= limit then return 'per_number_limit' end
  redis.call('ZADD', KEYS[2], now, ARGV[2])
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4]))
end
return 'ok'
