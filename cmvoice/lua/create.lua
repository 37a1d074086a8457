-- Write a new QUEUED call record; nothing if the id exists (enqueue is idempotent on it).
-- KEYS[1] the record; KEYS[2], optional: the campaign backlog the call waits in, or the queue
-- list its dispatch message is pushed onto in this same step (the broker is this Redis).
-- ARGV[1] prefix, ARGV[2] id, ARGV[3] retention_s, ARGV[4] due in ms, ARGV[5] backlog score
-- (ms, with the row's line as a fraction; '' when not in a backlog), ARGV[6] the dispatch
-- message to push ('' for none: the caller publishes it), then field/value pairs.
-- Returns 1 if created, 0 if the id already exists.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local now = now_ms()
local due = now + tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'created_at', now, 'attempts', 0, 'due_at', due, unpack(ARGV, 7))
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[1], 'waiting', 'backlog')
  redis.call('ZADD', KEYS[2], tonumber(ARGV[5]), ARGV[2])
  move(ARGV[1], KEYS[1], ARGV[2], '', 'QUEUED', false, now, ARGV[3])
else
  move(ARGV[1], KEYS[1], ARGV[2], '', 'QUEUED', due, now, ARGV[3])
  if ARGV[6] ~= '' then redis.call('LPUSH', KEYS[2], ARGV[6]) end
end
return 1
