-- Take the dispatches that are due now out of the schedule, atomically, so two reconcilers
-- never both take one. KEYS[1] the schedule; ARGV[1] most entries. Returns the ids.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0, tonumber(ARGV[1]))
if #ids > 0 then redis.call('ZREM', KEYS[1], unpack(ids)) end
return ids
