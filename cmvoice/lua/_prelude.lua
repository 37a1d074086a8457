-- Shared by every script (docs/architecture.md, "Ledger"): Redis server time, so the clocks of
-- workers never matter, and moving a call record between states in one atomic step.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- States whose ids a sorted-set index keeps, so the reconciler finds them without a scan.
-- A QUEUED call is indexed only while a dispatch message for it is expected in the broker;
-- one that waits in a campaign backlog or the interactive waiting room is not.
local INDEXED = {QUEUED = true, DISPATCHING = true, PLACED = true, UNKNOWN = true}
local TERMINAL = {FINISHED = true, FAILED = true, CANCELLED = true, EXPIRED = true}

-- Move the record at `key` (id `id`) from `old` to `new`. `score` is the new index score (ms),
-- or false to leave the id out of the index. Campaign counters move in the same step as the
-- record, so they cannot drift; the OTP code goes once CM has it or the call is over; an ended
-- record lives `retention_s` after its last change.
local function move(prefix, key, id, old, new, score, now, retention_s)
  if INDEXED[old] then redis.call('ZREM', prefix .. ':state:' .. old, id) end
  if INDEXED[new] and score then redis.call('ZADD', prefix .. ':state:' .. new, score, id) end
  if old ~= new then
    local campaign = redis.call('HGET', key, 'campaign_id')
    if campaign then
      local counts = prefix .. ':campaign:' .. campaign .. ':counts'
      if old ~= '' then redis.call('HINCRBY', counts, old, -1) end
      redis.call('HINCRBY', counts, new, 1)
      if new == 'FINISHED' then
        local code = redis.call('HGET', key, 'result_code')
        if code then redis.call('HINCRBY', counts, 'code:' .. code, 1) end
      end
    end
  end
  redis.call('HSET', key, 'state', new, 'updated_at', now)
  if new == 'PLACED' or TERMINAL[new] then
    redis.call('HDEL', key, 'code')
  end
  redis.call('EXPIRE', key, retention_s)
end

-- Give a concurrency slot back (a campaign call's in the campaigns' share too, see begin.lua);
-- wake the pacer if it waits for one.
local function free_slot(prefix, slots_key, id)
  redis.call('ZREM', slots_key .. ':campaign', id)
  if redis.call('ZREM', slots_key, id) == 1 and redis.call('DEL', prefix .. ':pacer:slot_bound') == 1 then
    redis.call('LPUSH', prefix .. ':pacer:wake', '1')
    redis.call('LTRIM', prefix .. ':pacer:wake', 0, 0)
  end
end

-- Put a call that may not go yet back where it waits: a campaign call into its campaign's
-- backlog (the pacer releases it again), an interactive one into the waiting room (served
-- before any campaign). `why` is what `call status` shows.
local function park(prefix, key, id, why, due_ms)
  local fields = redis.call('HMGET', key, 'campaign_id', 'zone_group')
  local campaign, group = fields[1], fields[2]
  redis.call('HSET', key, 'waiting', why)
  redis.call('ZREM', prefix .. ':state:QUEUED', id)
  if campaign then
    redis.call('ZADD', prefix .. ':campaign:' .. campaign .. ':backlog:' .. (group or 'any'), due_ms, id)
    redis.call('SADD', prefix .. ':campaign:' .. campaign .. ':groups', group or 'any')
    redis.call('SADD', prefix .. ':campaigns:active', campaign)
  else
    redis.call('RPUSH', prefix .. ':interactive:waiting', id)
  end
  redis.call('LPUSH', prefix .. ':pacer:wake', '1')
  redis.call('LTRIM', prefix .. ':pacer:wake', 0, 0)
end
