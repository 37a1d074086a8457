-- Take a campaign out of the pacer's round once its backlog is empty, atomically with the
-- check, so a batch a `campaign start` commits meanwhile (backlog and SADD in one
-- transaction) is never left out. KEYS[1] active campaigns, KEYS[2] the campaign's groups.
-- ARGV[1] campaign id, ARGV[2] prefix. Returns 1 if it was taken out.
local base = ARGV[2] .. ':campaign:' .. ARGV[1] .. ':backlog:'
for _, group in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('ZCARD', base .. group) > 0 then return 0 end
end
return redis.call('SREM', KEYS[1], ARGV[1])
