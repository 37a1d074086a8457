-- Schedule a dispatch ARGV[2] ms from now, by Redis's clock. KEYS[1] the schedule; ARGV[1] id.
return redis.call('ZADD', KEYS[1], now_ms() + tonumber(ARGV[2]), ARGV[1])
