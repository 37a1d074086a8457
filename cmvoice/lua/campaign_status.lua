-- Change a campaign's status (running, paused, cancelled) if it is in one of the allowed ones.
-- KEYS[1] campaign hash, KEYS[2] active campaigns (set), KEYS[3] pacer wake list.
-- ARGV[1] new status, ARGV[2] comma-separated statuses it may come from.
-- Returns {outcome, status before, server time in ms}; outcome ok | refused | missing.
local now = now_ms()
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing', '', now} end
for s in string.gmatch(ARGV[2], '[^,]+') do
  if s == status then
    redis.call('HSET', KEYS[1], 'status', ARGV[1], ARGV[1] .. '_at', now)
    if ARGV[1] == 'running' then
      -- Its backlog may go again: the pacer looks at once.
      redis.call('SADD', KEYS[2], redis.call('HGET', KEYS[1], 'id'))
      redis.call('LPUSH', KEYS[3], '1')
      redis.call('LTRIM', KEYS[3], 0, 0)
    end
    return {'ok', status, now}
  end
end
return {'refused', status, now}
