-- After its rate wait, a dispatch's POST goes out now, if it still may (the campaign may have
-- been paused or cancelled during the wait). From here a lost worker means UNKNOWN.
-- The send gate: a worker that woke late for its turn must not go out right behind the next
-- call, so two sends of the account are at least one interval apart, by Redis's clock. A call
-- takes the gate's next ticket (kept in its record as gate_at) and goes once its time came:
-- tickets are served in order, so no caller is starved by others racing for the gate.
-- KEYS[1] record, KEYS[2] slots, KEYS[3] account hash (sent_us: the last send).
-- ARGV[1] prefix, ARGV[2] id, ARGV[3] retention_s, ARGV[4] claim token, ARGV[5] lease_ms,
-- ARGV[6] rate interval (µs, 0 = none).
-- Returns sending | lost | paused | cancelled, or the µs to wait at the gate first.
local prefix, id, retention = ARGV[1], ARGV[2], ARGV[3]
local f = redis.call('HMGET', KEYS[1], 'state', 'claim', 'campaign_id', 'sent')
if f[1] ~= 'DISPATCHING' or f[2] ~= ARGV[4] then return 'lost' end
if f[4] == '1' then return 'sending' end
local now = now_ms()
if f[3] then
  local status = redis.call('HGET', prefix .. ':campaign:' .. f[3], 'status')
  if status == 'cancelled' or status == 'paused' then
    free_slot(prefix, KEYS[2], id)
    if status == 'cancelled' then
      redis.call('HSET', KEYS[1], 'last_error', 'campaign cancelled')
      move(prefix, KEYS[1], id, 'DISPATCHING', 'CANCELLED', false, now, retention)
    else
      move(prefix, KEYS[1], id, 'DISPATCHING', 'QUEUED', false, now, retention)
      park(prefix, KEYS[1], id, 'campaign paused', now)
    end
    return status
  end
end
local interval = tonumber(ARGV[6])
if interval > 0 then
  local t = redis.call('TIME')
  local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local gate_at = tonumber(redis.call('HGET', KEYS[1], 'gate_at') or '0')
  if gate_at == 0 then
    local last = tonumber(redis.call('HGET', KEYS[3], 'sent_us') or '0')
    gate_at = math.max(last + interval, us)
    redis.call('HSET', KEYS[3], 'sent_us', string.format('%d', gate_at))
    redis.call('HSET', KEYS[1], 'gate_at', string.format('%d', gate_at))
  end
  if us < gate_at then return gate_at - us end
end
redis.call('HDEL', KEYS[1], 'gate_at')
local lease = now + tonumber(ARGV[5])
redis.call('HSET', KEYS[1], 'sent', '1', 'lease_until', lease, 'sent_at', now)
redis.call('HINCRBY', KEYS[1], 'posts', 1)
redis.call('ZADD', prefix .. ':state:DISPATCHING', lease, id)
return 'sending'
