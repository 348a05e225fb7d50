"""Lua scripts of the router: each runs atomically in Redis, so two orchestrator replicas picking at once
cannot both see the same load, and a pod marked draining gets no pin after the mark lands.

Keys of pod sets are built inside the scripts from ARGV (prefix, pool, pod): fine for one Redis or a
primary with replicas; Redis Cluster would need hash tags.
"""

from __future__ import annotations

# KEYS: 1 the session's pin hash, 2 the pool's draining set.
# ARGV: 1 pool, 2 pin TTL seconds, 3 key prefix, 4 session id, 5.. candidate pod names sorted by name.
# Returns {pod, repinned}: repinned is 1 when the session had a pin to a pod that is gone.
# The choice mirrors routing.choice.least_loaded: fewest pinned sessions among pods not draining,
# ties to the smallest name, draining pods only when all drain.
PIN = """
local pool, ttl, prefix, sid = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local function pod_key(pod) return prefix .. 'pool:' .. pool .. ':pod:' .. pod .. ':sessions' end
local current = redis.call('HGET', KEYS[1], pool)
local repinned = 0
if current then
  for i = 5, #ARGV do
    if ARGV[i] == current then
      redis.call('SADD', pod_key(current), sid)
      redis.call('EXPIRE', KEYS[1], ttl)
      return {current, 0}
    end
  end
  redis.call('SREM', pod_key(current), sid)
  repinned = 1
end
local best, best_load, fallback, fallback_load = nil, nil, nil, nil
for i = 5, #ARGV do
  local load = redis.call('SCARD', pod_key(ARGV[i]))
  if redis.call('SISMEMBER', KEYS[2], ARGV[i]) == 0 then
    if best == nil or load < best_load then best, best_load = ARGV[i], load end
  elseif fallback == nil or load < fallback_load then
    fallback, fallback_load = ARGV[i], load
  end
end
best = best or fallback
if best == nil then return {false, repinned} end
redis.call('HSET', KEYS[1], pool, best)
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('SADD', pod_key(best), sid)
return {best, repinned}
"""

# KEYS: 1 the session's pin hash. ARGV: 1 key prefix, 2 session id. Returns how many pins it removed.
RELEASE = """
local pins = redis.call('HGETALL', KEYS[1])
for i = 1, #pins, 2 do
  redis.call('SREM', ARGV[1] .. 'pool:' .. pins[i] .. ':pod:' .. pins[i + 1] .. ':sessions', ARGV[2])
end
redis.call('DEL', KEYS[1])
return #pins / 2
"""
