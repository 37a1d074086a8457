-- Write a new QUEUED call record; nothing if the id exists (enqueue is idempotent on it).
-- KEYS[1] the record; KEYS[2], optional: the campaign backlog the call waits in (else the call
-- is expected in the broker and goes into the QUEUED index).
-- ARGV[1] prefix, ARGV[2] id, ARGV[3] retention_s, ARGV[4] due in ms, ARGV[5] backlog score
-- (ms, with the row's line as a fraction), then field/value pairs.
-- Returns 1 if created, 0 if the id already exists.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local now = now_ms()
local due = now + tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'created_at', now, 'attempts', 0, 'due_at', due, unpack(ARGV, 6))
if KEYS[2] then
  redis.call('HSET', KEYS[1], 'waiting', 'backlog')
  redis.call('ZADD', KEYS[2], tonumber(ARGV[5]) or due, ARGV[2])
  move(ARGV[1], KEYS[1], ARGV[2], '', 'QUEUED', false, now, ARGV[3])
else
  move(ARGV[1], KEYS[1], ARGV[2], '', 'QUEUED', due, now, ARGV[3])
end
return 1
