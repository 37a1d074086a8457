-- Record CM's callback: FINISHED, the concurrency slot back, then (only because the record
-- moved) the redial and the outcome deliveries, all in one atomic step (docs/architecture.md,
-- "Results"). A callback whose call-id is not the one CM gave at PLACED changes nothing.
-- KEYS[1] record, KEYS[2] slots, KEYS[3] the redial's record, KEYS[4] outbox (sorted set),
-- KEYS[5] outbox messages (hash), KEYS[6..] one queue list per delivery.
-- ARGV[1] prefix, ARGV[2] id, ARGV[3] retention_s, ARGV[4] call-id, ARGV[5] redial id ('' for
-- none), ARGV[6] redial delay ms, ARGV[7] '1' to put an interactive redial in the schedule
-- (else the caller publishes a countdown), ARGV[8] comma-separated fields the redial copies,
-- ARGV[9] outbox confirmation timeout ms, ARGV[10] number of field/value pairs, the pairs, then
-- per delivery: outbox member, stored message, envelope to push now ('' = published later).
-- Returns {'recorded', state before}, {'duplicate'}, {'mismatch', call-id}, {'refused', state}
-- or {'missing'}.
local prefix, id, retention = ARGV[1], ARGV[2], ARGV[3]
local f = redis.call('HMGET', KEYS[1], 'state', 'call_id', 'unknown_since')
local state, known = f[1], f[2]
if not state then return {'missing'} end
if known and known ~= '' and known ~= ARGV[4] then return {'mismatch', known} end
if state == 'FINISHED' then return {'duplicate'} end
-- A callback proves the call was placed: also an UNKNOWN one, or one FAILED while its outcome
-- was unknown or its callback late. A call CM refused, or never sent, has no callback to take.
local allowed = state == 'DISPATCHING' or state == 'PLACED' or state == 'UNKNOWN'
  or (state == 'FAILED' and ((known and known ~= '') or f[3]))
if not allowed then return {'refused', state} end
local now = now_ms()
local pairs_end = 10 + 2 * tonumber(ARGV[10])
redis.call('HSET', KEYS[1], 'call_id', ARGV[4], unpack(ARGV, 11, pairs_end))
move(prefix, KEYS[1], id, state, 'FINISHED', false, now, retention)
free_slot(prefix, KEYS[2], id)
local campaign = redis.call('HGET', KEYS[1], 'campaign_id')
if campaign then
  -- Ends per minute (its speed and ETA) and outcomes per minute and code (its page's chart).
  local minute = math.floor(now / 60000)
  local base = prefix .. ':campaign:' .. campaign
  redis.call('HINCRBY', base .. ':ended', minute, 1)
  local code = redis.call('HGET', KEYS[1], 'result_code') or '?'
  redis.call('HINCRBY', base .. ':outcomes', minute .. ':' .. code, 1)
end
redis.call('ZREM', prefix .. ':inbox', id)

if ARGV[5] ~= '' and redis.call('EXISTS', KEYS[3]) == 0 then
  local next_id = ARGV[5]
  local due = now + tonumber(ARGV[6])
  local copy = {}
  for name in string.gmatch(ARGV[8], '[^,]+') do
    local value = redis.call('HGET', KEYS[1], name)
    if value then copy[#copy + 1] = name; copy[#copy + 1] = value end
  end
  local meta = redis.call('HMGET', KEYS[1], 'root_id', 'attempt_no', 'campaign_id', 'zone_group')
  redis.call('HSET', KEYS[3], 'created_at', now, 'attempts', 0, 'due_at', due,
    'root_id', meta[1] or id, 'attempt_no', (tonumber(meta[2] or '1') + 1), 'previous_id', id,
    unpack(copy))
  redis.call('HSET', KEYS[1], 'next_id', next_id)
  if meta[3] then
    -- A campaign's redial waits in its backlog: windows, rates and pauses apply to it too.
    redis.call('HSET', KEYS[3], 'waiting', 'backlog')
    move(prefix, KEYS[3], next_id, '', 'QUEUED', false, now, retention)
    local group = meta[4] or 'any'
    redis.call('ZADD', prefix .. ':campaign:' .. meta[3] .. ':backlog:' .. group, due, next_id)
    redis.call('SADD', prefix .. ':campaign:' .. meta[3] .. ':groups', group)
    redis.call('SADD', prefix .. ':campaigns:active', meta[3])
  else
    move(prefix, KEYS[3], next_id, '', 'QUEUED', due, now, retention)
    if ARGV[7] == '1' then redis.call('ZADD', prefix .. ':schedule', due, next_id) end
  end
end

local deadline = now + tonumber(ARGV[9])
local key = 6
for i = pairs_end + 1, #ARGV, 3 do
  redis.call('ZADD', KEYS[4], deadline, ARGV[i])
  redis.call('HSET', KEYS[5], ARGV[i], ARGV[i + 1])
  if ARGV[i + 2] ~= '' then redis.call('LPUSH', KEYS[key], ARGV[i + 2]) end
  key = key + 1
end
return {'recorded', state}
