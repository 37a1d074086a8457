-- The receiver takes a callback: refuse one that names another call-id than CM gave, drop a
-- duplicate, keep the event in the record until the worker has handled it (the inbox, which the
-- reconciler re-publishes from if the message is lost), and publish it in the same step when
-- the broker is this Redis (docs/architecture.md, "Callbacks").
-- KEYS[1] record, KEYS[2] duplicate guard, KEYS[3] inbox (sorted set), KEYS[4] queue list.
-- ARGV[1] call-id, ARGV[2] guard ttl s, ARGV[3] event JSON, ARGV[4] envelope ('' = the
-- receiver publishes it itself), ARGV[5] instruction id. Returns accepted | duplicate | mismatch | missing.
local f = redis.call('HMGET', KEYS[1], 'state', 'call_id')
if not f[1] then return 'missing' end
if f[2] and f[2] ~= '' and f[2] ~= ARGV[1] then return 'mismatch' end
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then return 'duplicate' end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'callback', ARGV[3])
redis.call('ZADD', KEYS[3], now, ARGV[5])
if ARGV[4] ~= '' then redis.call('LPUSH', KEYS[4], ARGV[4]) end
return 'accepted'
