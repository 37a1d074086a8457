-- Move a record to a new state if it is in one of the allowed ones (and holds the claim token,
-- if one is given): retries, UNKNOWN, FAILED, CANCELLED and the reconciler's steps.
-- KEYS[1] record, KEYS[2] slots, KEYS[3..] lists that get one message each, pushed only if the
-- record moved (an outbox: messages that must go out once, and only with the transition).
-- ARGV[1] prefix, ARGV[2] id, ARGV[3] retention_s, ARGV[4] claim token ('' = none needed),
-- ARGV[5] new state, ARGV[6] comma-separated states it may come from, ARGV[7] index score
-- offset in ms, ARGV[8] attempts increment, ARGV[9] '1' to give the concurrency slot back,
-- ARGV[10] park: '' or the reason a QUEUED call waits in Redis (backlog or waiting room),
-- ARGV[11] number of field/value pairs, the pairs, then one message per KEYS[3..].
-- Returns {'ok', state before}, {current state} or {'missing'}.
local prefix, id = ARGV[1], ARGV[2]
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'missing'} end
local allowed = false
for s in string.gmatch(ARGV[6], '[^,]+') do if s == state then allowed = true end end
if not allowed then return {state} end
if ARGV[4] ~= '' and redis.call('HGET', KEYS[1], 'claim') ~= ARGV[4] then return {state} end
local now = now_ms()
local pairs_end = 11 + 2 * tonumber(ARGV[11])
if pairs_end > 11 then redis.call('HSET', KEYS[1], unpack(ARGV, 12, pairs_end)) end
if tonumber(ARGV[8]) > 0 then redis.call('HINCRBY', KEYS[1], 'attempts', ARGV[8]) end
local due = now + tonumber(ARGV[7])
if ARGV[5] == 'QUEUED' then redis.call('HSET', KEYS[1], 'due_at', due, 'sent', '0') end
local parked = ARGV[5] == 'QUEUED' and ARGV[10] ~= ''
move(prefix, KEYS[1], id, state, ARGV[5], (not parked) and due, now, ARGV[3])
if ARGV[9] == '1' then free_slot(prefix, KEYS[2], id) end
if parked then park(prefix, KEYS[1], id, ARGV[10], due) end
for i = 3, #KEYS do redis.call('LPUSH', KEYS[i], ARGV[pairs_end + i - 2]) end
return {'ok', state}
