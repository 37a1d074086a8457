-- The pacer releases calls to the broker (docs/architecture.md, "Pacing"): each leaves the
-- campaign backlog or the interactive waiting room and gets its dispatch message in the same
-- atomic step, so a call is never released twice, and a pacer killed mid-step loses nothing.
-- Only the holder of the pacer lease may release; a campaign's calls only while it runs.
-- KEYS[1] pacer lease, KEYS[2] released (sorted set).
-- ARGV[1] prefix, ARGV[2] lease token, then per call 7 values: source kind ('z' backlog sorted
-- set, 'l' waiting list), source key, id, queue key, envelope ('' = published by the caller),
-- campaign id ('' for an interactive call), the campaign's rate interval in µs ('' = none).
-- Returns the ids released.
local prefix = ARGV[1]
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return {} end
local t = redis.call('TIME')
local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = math.floor(us / 1000)
local running, tats, released, pushes = {}, {}, {}, {}
for i = 3, #ARGV, 7 do
  local kind, source, id, queue, envelope = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local campaign, interval = ARGV[i + 5], ARGV[i + 6]
  local go = true
  if campaign ~= '' then
    if running[campaign] == nil then
      running[campaign] = redis.call('HGET', prefix .. ':campaign:' .. campaign, 'status') == 'running'
    end
    go = running[campaign]
  end
  if go then
    local removed
    if kind == 'z' then removed = redis.call('ZREM', source, id) else removed = redis.call('LREM', source, 1, id) end
    if removed == 1 then
      redis.call('HDEL', prefix .. ':call:' .. id, 'waiting')
      released[#released + 1] = id
      if envelope ~= '' then
        pushes[queue] = pushes[queue] or {}
        table.insert(pushes[queue], envelope)
      end
      if interval ~= '' then
        local tat = math.max(tats[campaign] or tonumber(redis.call('HGET', prefix .. ':campaign:' .. campaign, 'tat') or '0'), us)
        tats[campaign] = tat + tonumber(interval)
      end
    end
  end
end
if #released > 0 then
  local scored = {}
  for _, id in ipairs(released) do scored[#scored + 1] = now; scored[#scored + 1] = id end
  redis.call('ZADD', KEYS[2], unpack(scored))
end
for queue, envelopes in pairs(pushes) do redis.call('LPUSH', queue, unpack(envelopes)) end
for campaign, tat in pairs(tats) do
  redis.call('HSET', prefix .. ':campaign:' .. campaign, 'tat', string.format('%d', tat))
end
return released
