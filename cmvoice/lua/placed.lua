-- CM answered call-queued: PLACED with its call-id, and the OTP code is deleted. If the
-- callback already came (FINISHED), only the call-id is filled in; the code goes either way.
-- KEYS[1] record. ARGV[1] prefix, ARGV[2] id, ARGV[3] retention_s, ARGV[4] claim token,
-- ARGV[5] call-id. Returns 'placed', or the state the record is in instead.
local f = redis.call('HMGET', KEYS[1], 'state', 'claim', 'campaign_id')
if not f[1] then return 'missing' end
if f[1] == 'DISPATCHING' and f[2] == ARGV[4] then
  local now = now_ms()
  redis.call('HSET', KEYS[1], 'call_id', ARGV[5])
  move(ARGV[1], KEYS[1], ARGV[2], 'DISPATCHING', 'PLACED', now, now, ARGV[3])
  if f[3] then
    -- Calls placed per minute: the campaign page's chart.
    redis.call('HINCRBY', ARGV[1] .. ':campaign:' .. f[3] .. ':placed', math.floor(now / 60000), 1)
  end
  return 'placed'
end
redis.call('HDEL', KEYS[1], 'code')
if TERMINAL[f[1]] then redis.call('HSETNX', KEYS[1], 'call_id', ARGV[5]) end
return f[1]
