"""Lua for the per-tenant limits: each check-and-count is one atomic round trip.

Both scripts read the clock with Redis ``TIME``, so replicas whose clocks differ still share one
window. Keys named inside a script (the audio window) assume a single Redis or a primary with
replicas, as the session store does; Redis Cluster would need hash tags.
"""

from __future__ import annotations

_NOW_MS = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

# KEYS: the tenant's live-session set (member -> expiry ms). ARGV: member, max, ttl ms.
# Returns 1 admitted (or refreshed), 0 refused. Members a crashed replica left expire after ttl.
ACQUIRE_SESSION = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not held and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
)

# KEYS: the tenant's audio counter prefix (the window number is appended). ARGV: cost ms, limit ms,
# window ms, force (1: count even past the limit). Returns {0, counter key} when counted, else
# {ms until the window ends (when the chunk would fit again), ''}. The key lets a reservation be
# refunded in the window it was counted in.
CHARGE_AUDIO = (
    _NOW_MS
    + """
local window_ms = tonumber(ARGV[3])
local window = math.floor(now / window_ms)
local key = KEYS[1] .. string.format('%d', window)
local used = tonumber(redis.call('GET', key) or '0')
local cost = tonumber(ARGV[1])
if ARGV[4] ~= '1' and used + cost > tonumber(ARGV[2]) then
  return {math.max(1, (window + 1) * window_ms - now), ''}
end
redis.call('INCRBY', key, cost)
redis.call('PEXPIRE', key, 2 * window_ms)
return {0, key}
"""
)

# KEYS: a counter key CHARGE_AUDIO returned. ARGV: ms to give back. Never below 0; a window that
# already expired has nothing to give back to.
REFUND_AUDIO = """
local used = tonumber(redis.call('GET', KEYS[1]) or '-1')
if used < 0 then return 0 end
local back = math.min(used, tonumber(ARGV[1]))
redis.call('DECRBY', KEYS[1], back)
return back
"""
