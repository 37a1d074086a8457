-- A result task processed a delivery: remember it (so a re-publish is skipped) and take the
-- delivery out of the outbox, in one step. KEYS[1] processed marker, KEYS[2] outbox,
-- KEYS[3] outbox messages. ARGV[1] outbox member, ARGV[2] marker ttl s.
redis.call('SET', KEYS[1], '1', 'EX', ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
