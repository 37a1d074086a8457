-- Refresh or release a lock, only by its holder. KEYS[1] the lock; ARGV[1] the holder's token,
-- ARGV[2] the new time to live in ms, or 0 to release it.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '0' then return redis.call('DEL', KEYS[1]) end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
