-- Duplicate callees of a campaign: for each (callee hash, line), the first line that calls it.
-- Keyed by line, not a bare set member, so a batch replayed by --resume finds its own rows as
-- first (not duplicates of themselves). KEYS[1] the campaign's :seen hash; ARGV the pairs.
local owners = {}
for i = 1, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
    owners[#owners + 1] = ARGV[i + 1]
  else
    owners[#owners + 1] = redis.call('HGET', KEYS[1], ARGV[i])
  end
end
return owners
