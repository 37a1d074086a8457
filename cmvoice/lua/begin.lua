-- Everything a dispatch checks before its POST, in one round trip (docs/architecture.md,
-- "Dispatch"): claim the call, refuse what must not go (deadline passed, token refused,
-- campaign paused or cancelled), take a concurrency slot and a turn of the account's rate.
-- A call that cannot have a slot or a turn now waits in Redis (park), never in the broker.
-- KEYS[1] record, KEYS[2] account hash (tat in µs, refused_until in ms), KEYS[3] slots.
-- ARGV[1] prefix, ARGV[2] id, ARGV[3] retention_s, ARGV[4] claim token, ARGV[5] lease_ms,
-- ARGV[6] rate interval (µs), ARGV[7] longest rate wait of an interactive call (µs),
-- ARGV[8] longest rate wait of a campaign call (µs), ARGV[9] slot limit, ARGV[10] slot lease ms,
-- ARGV[11] '1' to mark the record sent when no wait remains (else mark_sending does it),
-- ARGV[12] calls allowed per number (campaign calls; 0 = no limit), ARGV[13] its window in ms,
-- ARGV[14] the cooldown of a number between campaigns in ms (0 = none), ARGV[15] the slots
-- campaign calls may hold (they hold them in KEYS[3]..':campaign' too; the rest are kept free
-- for interactive calls).
-- An interval or slot limit of 0 means no such limit. A refusal by a calling rule ends the
-- call FAILED with `refused_rule` set; the number is known by its keyed hash only.
-- Returns {'go', wait_us, record...}, {'busy', state}, {'missing'}, {'wait', why}, or {'ended', state}.
local prefix, id, retention = ARGV[1], ARGV[2], ARGV[3]
local raw = redis.call('HGETALL', KEYS[1])
if #raw == 0 then
  -- Expired (or never written): a pacer release of it must not count as in flight any more.
  redis.call('ZREM', prefix .. ':pacer:released', id)
  return {'missing'}
end
local f = {}
for i = 1, #raw, 2 do f[raw[i]] = raw[i + 1] end
local t = redis.call('TIME')
local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = math.floor(us / 1000)
local state = f['state']
local reclaim = state == 'DISPATCHING' and f['sent'] ~= '1' and tonumber(f['lease_until'] or '0') < now
if not (state == 'QUEUED' or reclaim) then return {'busy', state} end
-- A parked call goes only when the pacer releases it: a stray message for it changes nothing.
if state == 'QUEUED' and (f['waiting'] or '') ~= '' then return {'busy', 'waiting: ' .. f['waiting']} end

local function finish(new, why, rule)
  redis.call('HSET', KEYS[1], 'last_error', why)
  if rule then
    redis.call('HSET', KEYS[1], 'refused_rule', rule)
    redis.call('HINCRBY', prefix .. ':refusals', rule, 1)
    if f['campaign_id'] then
      redis.call('HINCRBY', prefix .. ':campaign:' .. f['campaign_id'] .. ':counts', 'rule:' .. rule, 1)
    end
  end
  move(prefix, KEYS[1], id, state, new, false, now, retention)
  free_slot(prefix, KEYS[3], id)
  redis.call('ZREM', prefix .. ':pacer:released', id)
  return {'ended', new, why, rule or ''}
end
local function refuse(rule, why)
  return finish('FAILED', 'refused by rule ' .. rule .. ': ' .. why, rule)
end
local function wait(why, due_ms)
  if state ~= 'QUEUED' then move(prefix, KEYS[1], id, state, 'QUEUED', false, now, retention) end
  free_slot(prefix, KEYS[3], id)
  redis.call('ZREM', prefix .. ':pacer:released', id)
  park(prefix, KEYS[1], id, why, due_ms)
  return {'wait', why}
end

local expires = tonumber(f['expires_at'] or '')
if expires and now >= expires then return finish('EXPIRED', 'not placed before its deadline', 'deadline') end
local account = redis.call('HMGET', KEYS[2], 'tat', 'refused_until', 'tat_i')
if tonumber(account[2] or '0') > now then
  return finish('FAILED', 'not sent: CM refused the product token minutes ago (fix CMVOICE_PRODUCT_TOKEN)')
end
local campaign = f['campaign_id']
if campaign then
  local status = redis.call('HGET', prefix .. ':campaign:' .. campaign, 'status')
  if status == 'cancelled' then return finish('CANCELLED', 'campaign cancelled') end
  if status == 'paused' then return wait('campaign paused', now) end
end

local number = f['number_hash']
local number_calls, cooldown_key
if number then
  if redis.call('HEXISTS', prefix .. ':suppressed', number) == 1 then
    return refuse('suppressed', 'the number is on the suppression (opt-out) list')
  end
  if campaign then
    local cooldown = tonumber(ARGV[14])
    if cooldown > 0 then
      -- Any campaign's call to this number within the cooldown, but the same call's redials.
      cooldown_key = prefix .. ':number:' .. number .. ':campaign'
      local root = f['root_id'] or id
      local by = redis.call('GET', cooldown_key)
      if by and by ~= root then
        return refuse('cooldown', 'a campaign called this number within CMVOICE_NUMBER_COOLDOWN')
      end
    end
    local limit_n = tonumber(ARGV[12])
    if limit_n > 0 then
      number_calls = prefix .. ':number:' .. number
      redis.call('ZREMRANGEBYSCORE', number_calls, '-inf', now - tonumber(ARGV[13]))
      if redis.call('ZCARD', number_calls) >= limit_n then
        return refuse('per_number_limit', 'the number was called as often as CMVOICE_PER_NUMBER_LIMIT allows')
      end
    end
  end
end

-- A slot of the account; a campaign call also one of the campaigns' share, so that the slots
-- kept for interactive calls are free when one comes. Slots whose lease ran out belong to
-- calls whose end never came: a full set takes them back first, from both sets at once (a
-- lapsed slot left in one would keep the pacer from releasing into the other).
local campaign_slots = KEYS[3] .. ':campaign'
local function full(slots_key, slot_limit)
  if slot_limit <= 0 or redis.call('ZSCORE', slots_key, id) then return false end
  if redis.call('ZCARD', slots_key) < slot_limit then return false end
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  redis.call('ZREMRANGEBYSCORE', campaign_slots, '-inf', now)
  return redis.call('ZCARD', slots_key) >= slot_limit
end
local limit = tonumber(ARGV[9])
local campaign_limit = campaign and tonumber(ARGV[15]) or 0
if full(KEYS[3], limit) then return wait('a concurrency slot', now) end
if full(campaign_slots, campaign_limit) then return wait('a concurrency slot for campaigns', now) end

-- Rate turns. Campaign calls take the account's next turn (`tat`); the pacer released them at
-- most its lead ahead of it. An interactive call takes the next turn of the interactive
-- timeline (`tat_i`) instead, so it is not queued behind the campaign turns already booked;
-- it pushes the account's timeline one turn on, so the pacer releases one campaign call less.
-- The send gate keeps the sends themselves an interval apart either way.
local tat = math.max(tonumber(account[1] or '0'), us)
local turn = tat
if not campaign then turn = math.max(tonumber(account[3] or '0'), us) end
local wait_us = turn - us
local longest = tonumber(campaign and ARGV[8] or ARGV[7])
if wait_us > longest then return wait('a turn of the rate limit', now + math.floor(wait_us / 1000)) end
local interval = tonumber(ARGV[6])
if interval > 0 then
  redis.call('HSET', KEYS[2], 'tat', string.format('%d', tat + interval))
  if not campaign then redis.call('HSET', KEYS[2], 'tat_i', string.format('%d', turn + interval)) end
end
if limit > 0 then redis.call('ZADD', KEYS[3], now + tonumber(ARGV[10]), id) end
if campaign_limit > 0 then redis.call('ZADD', campaign_slots, now + tonumber(ARGV[10]), id) end
if number_calls then
  redis.call('ZADD', number_calls, now, id)
  redis.call('PEXPIRE', number_calls, tonumber(ARGV[13]))
end
if cooldown_key then
  redis.call('SET', cooldown_key, f['root_id'] or id, 'PX', tonumber(ARGV[14]))
end

-- The send gate (see mark_sending.lua): a call that may go now takes the gate's next ticket,
-- at least an interval after the last one; if that is later than now, it waits for it.
local gate_at = 0
if interval > 0 and wait_us <= 0 and ARGV[11] == '1' then
  local last = tonumber(redis.call('HGET', KEYS[2], 'sent_us') or '0')
  gate_at = math.max(last + interval, us)
  redis.call('HSET', KEYS[2], 'sent_us', string.format('%d', gate_at))
  wait_us = gate_at - us
end
local lease = now + math.ceil(wait_us / 1000) + tonumber(ARGV[5])
redis.call('HDEL', KEYS[1], 'gate_at')
if wait_us > 0 or ARGV[11] ~= '1' then
  redis.call('HSET', KEYS[1], 'claim', ARGV[4], 'lease_until', lease, 'sent', '0')
  if gate_at > 0 then redis.call('HSET', KEYS[1], 'gate_at', string.format('%d', gate_at)) end
else
  -- No wait: the POST goes out now. From here a lost worker means UNKNOWN, never a resend.
  redis.call('HSET', KEYS[1], 'claim', ARGV[4], 'lease_until', lease, 'sent', '1', 'sent_at', now)
  redis.call('HINCRBY', KEYS[1], 'posts', 1)
end
redis.call('HINCRBY', KEYS[1], 'claims', 1)
redis.call('ZREM', prefix .. ':pacer:released', id)
move(prefix, KEYS[1], id, state, 'DISPATCHING', lease, now, retention)
return {'go', wait_us, raw}
