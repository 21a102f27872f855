-- Publish one status change of one order: check the transition and append it
-- as a single atomic step, so that of two racing publishers (on any instance)
-- at most one moves the order.
--
-- KEYS[1]  the order's stream: its whole history, one entry per event
-- KEYS[2]  the order's latest-event hash (id, status, ts): Latest in O(1)
-- KEYS[3]  the order's idempotency hash: key -> "id status ts" of the event it made
-- ARGV[1]  requested status name
-- ARGV[2]  retention after a terminal status, in milliseconds
-- ARGV[3]  time-to-live of an unfinished order after its last event, in milliseconds
-- ARGV[4]  MAXLEN guard for the stream
-- ARGV[5]  pub/sub channel of the order's live events
-- ARGV[6]  the request's idempotency key, "" for none
-- ARGV[7]  the command that publishes the live message: PUBLISH, or SPUBLISH
--          on a cluster (the channel shares the order's hash tag, so it is
--          in this slot)
--
-- Returns {1, id, ts, prev} when accepted (ts in microseconds since the epoch,
-- prev the id of the event before, "0-0" for the first), {0, current} when the
-- transition is refused, {2, id, ts} when the key already made that event,
-- {3, status} when the key already made an event with another status.
-- Statuses are stored by name, never by number.

-- rank mirrors order.Status: the rules below are order.CheckTransition's.
local rank = {Created = 1, PaymentConfirmed = 2, Packed = 3, Shipped = 4, OutForDelivery = 5, Delivered = 6, Cancelled = 7}

local function terminal(name)
  return name == 'Delivered' or name == 'Cancelled'
end

local to = ARGV[1]
if rank[to] == nil then
  return redis.error_reply('ERR orderstream: unknown status ' .. tostring(to))
end

-- A retried request answers what it first did, whatever followed it: the
-- check comes before the transition's, which would refuse it now.
local key = ARGV[6]
if key ~= '' then
  local seen = redis.call('HGET', KEYS[3], key)
  if seen then
    local seenID, seenStatus, seenTS = string.match(seen, '^(%S+) (%S+) (%S+)$')
    if seenStatus ~= to then
      return {3, seenStatus}
    end
    return {2, seenID, seenTS}
  end
end

local last = redis.call('HMGET', KEYS[2], 'id', 'status', 'ts')
local prev, current, lastTS = last[1], last[2], tonumber(last[3])

if current then
  local from = rank[current]
  if from == nil then
    return redis.error_reply('ERR orderstream: stored status ' .. tostring(current) .. ' is unknown')
  end
  local allowed
  if terminal(current) then
    allowed = false
  elseif to == 'Cancelled' then
    allowed = from < rank.Shipped
  else
    allowed = rank[to] > from
  end
  if not allowed then
    return {0, current}
  end
end

-- The time is Redis's, so that every instance stamps with one clock, and it
-- never goes back for an order even if Redis's clock does.
local now = redis.call('TIME')
local ts = tonumber(now[1]) * 1000000 + tonumber(now[2])
if lastTS and lastTS > ts then
  ts = lastTS
end
ts = string.format('%.0f', ts) -- an integer below 2^53: exact in a Lua number

-- '*' lets Redis choose the id: strictly greater than every id in the stream.
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[4], '*', 'status', to, 'ts', ts)
redis.call('HSET', KEYS[2], 'id', id, 'status', to, 'ts', ts)
if key ~= '' then
  redis.call('HSET', KEYS[3], key, id .. ' ' .. to .. ' ' .. ts)
end

local ttl = ARGV[3]
if terminal(to) then
  ttl = ARGV[2]
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[3], ttl) -- the keys go with the order (no-op if it has none)

prev = prev or '0-0'
-- The live message names the event before it, so that a subscriber that
-- missed a message sees the gap and reads it back from the stream.
redis.call(ARGV[7], ARGV[5], id .. ' ' .. prev .. ' ' .. to .. ' ' .. ts)
return {1, id, ts, prev}
