"""The store's Lua scripts: each is one round trip and runs atomically inside Redis.

Common KEYS: 1 session hash, 2 turns list, 3 speech hash (4 lease where used). Keys derived inside a
script (the resume keys from the hash's ``resume`` / ``resume_prev`` fields, a tenant's speech
accounting from its ``tenant`` field; ARGV names the prefixes) assume a single Redis or a primary
with replicas; Redis Cluster would need hash tags.

Session hash fields the scripts own: ``resume`` / ``resume_prev`` (digests of the current and the
previous resume token), ``fence`` (the owner lease's fencing token, +1 on every new owner) and
``speech_bytes`` (stored speech embeddings, for the per-session quota).
"""

from __future__ import annotations

# Refreshes the TTL of every key of the session except the lease, which has its own.
_REFRESH = """
local function refresh(ttl, resume_prefix, resume)
  for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ttl) end
  if resume then redis.call('EXPIRE', resume_prefix .. resume, ttl) end
  local previous = redis.call('HGET', KEYS[1], 'resume_prev')
  if previous then redis.call('EXPIRE', resume_prefix .. previous, ttl) end
end
"""

_NOW_MS = """
local function now_ms()
  local clock = redis.call('TIME')
  return tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
end
"""

# A tenant's stored speech: hash ``<prefix>tenant:<t>:speech`` (session id -> bytes, and ``_total``) and
# zset ``...:speech:expiry`` (session id -> when its keys expire, ms). Sessions whose keys expired are
# taken out of the total on the next use, so an expired session stops counting without a sweeper.
_TENANT_SPEECH = (
    _NOW_MS
    + """
local function tenant_speech_keys(prefix, default)
  local tenant = redis.call('HGET', KEYS[1], 'tenant') or default
  local hash = prefix .. 'tenant:' .. tenant .. ':speech'
  return hash, hash .. ':expiry'
end
local function forget_session(hash, zset, session_id)
  local held = tonumber(redis.call('HGET', hash, session_id) or '0')
  if held > 0 then redis.call('HINCRBY', hash, '_total', -held) end
  redis.call('HDEL', hash, session_id)
  redis.call('ZREM', zset, session_id)
end
local function tenant_speech_total(hash, zset)
  local now = now_ms()
  for _, gone in ipairs(redis.call('ZRANGEBYSCORE', zset, '-inf', now)) do forget_session(hash, zset, gone) end
  return tonumber(redis.call('HGET', hash, '_total') or '0'), now
end
"""
)

# ARGV: 1 sequence, 2 turn JSON, 3 embeddings (may be empty), 4 ttl seconds, 5 resume key prefix,
# 6 fencing token ('' skips the check), 7 session speech limit bytes (0: none), 8 tenant speech limit
# bytes (0: none), 9 key prefix, 10 default tenant, 11 session id.
# Returns {status, next_sequence}: 1 stored, 0 already stored (same bytes), -1 no session,
# -2 a different turn holds this sequence, -3 the sequence skips ahead, -4 the writer's fencing token
# is not the session's (a newer owner took the lease), -5 over the session's speech quota, -6 over the
# tenant's speech quota. Nothing is written unless the status is 1 (or 0: the TTLs are refreshed).
APPEND_TURN = (
    _REFRESH
    + _TENANT_SPEECH
    + """
local resume = redis.call('HGET', KEYS[1], 'resume')
if not resume then return {-1, 0} end
local next_seq = redis.call('LLEN', KEYS[2]) + 1
if ARGV[6] ~= '' and (redis.call('HGET', KEYS[1], 'fence') or '0') ~= ARGV[6] then return {-4, next_seq} end
local seq = tonumber(ARGV[1])
if seq > next_seq then return {-3, next_seq} end
if seq < next_seq then
  local same = redis.call('LINDEX', KEYS[2], seq - 1) == ARGV[2]
    and (redis.call('HGET', KEYS[3], ARGV[1]) or '') == ARGV[3]
  if not same then return {-2, next_seq} end
  refresh(ARGV[4], ARGV[5], resume)
  return {0, next_seq}
end
local bytes = #ARGV[3]
if bytes > 0 then
  local session_limit = tonumber(ARGV[7])
  local held = tonumber(redis.call('HGET', KEYS[1], 'speech_bytes') or '0')
  if session_limit > 0 and held + bytes > session_limit then return {-5, next_seq} end
  local tenant_limit = tonumber(ARGV[8])
  if tenant_limit > 0 then
    local hash, zset = tenant_speech_keys(ARGV[9], ARGV[10])
    local total, now = tenant_speech_total(hash, zset)
    if total + bytes > tenant_limit then return {-6, next_seq} end
    redis.call('HINCRBY', hash, ARGV[11], bytes)
    redis.call('HINCRBY', hash, '_total', bytes)
    redis.call('ZADD', zset, now + tonumber(ARGV[4]) * 1000, ARGV[11])
    redis.call('EXPIRE', hash, ARGV[4])
    redis.call('EXPIRE', zset, ARGV[4])
  end
  redis.call('HINCRBY', KEYS[1], 'speech_bytes', bytes)
end
redis.call('RPUSH', KEYS[2], ARGV[2])
if bytes > 0 then redis.call('HSET', KEYS[3], ARGV[1], ARGV[3]) end
refresh(ARGV[4], ARGV[5], resume)
return {1, next_seq + 1}
"""
)

# ARGV: 1 ttl seconds, 2 resume key prefix, 3 key prefix, 4 default tenant, 5 session id.
# Returns 1, or 0 when the session is absent. A session counted in its tenant's speech keeps counting.
TOUCH = (
    _REFRESH
    + _TENANT_SPEECH
    + """
local resume = redis.call('HGET', KEYS[1], 'resume')
if not resume then return 0 end
refresh(ARGV[1], ARGV[2], resume)
local hash, zset = tenant_speech_keys(ARGV[3], ARGV[4])
if redis.call('ZSCORE', zset, ARGV[5]) then
  redis.call('ZADD', zset, now_ms() + tonumber(ARGV[1]) * 1000, ARGV[5])
  redis.call('EXPIRE', hash, ARGV[1])
  redis.call('EXPIRE', zset, ARGV[1])
end
return 1
"""
)

# Tenant checks: ARGV tenant '' skips the check; a hash without a tenant field belongs to the default
# tenant (ARGV default), so records written before tenants existed keep working under auth none.
_OWNED = """
local function owned(hash_key, tenant, default)
  if tenant == '' then return true end
  return (redis.call('HGET', hash_key, 'tenant') or default) == tenant
end
"""

# KEYS 1-4 (with the lease). ARGV: 1 resume key prefix, 2 tenant, 3 default tenant, 4 key prefix,
# 5 session id. Returns 1, or 0 when the session is absent or another tenant's (the caller cannot tell
# the two apart). Its stored speech leaves the tenant's total.
DELETE = (
    _OWNED
    + _TENANT_SPEECH
    + """
local resume = redis.call('HGET', KEYS[1], 'resume')
if not resume or not owned(KEYS[1], ARGV[2] or '', ARGV[3]) then return 0 end
local hash, zset = tenant_speech_keys(ARGV[4], ARGV[3])
forget_session(hash, zset, ARGV[5])
local previous = redis.call('HGET', KEYS[1], 'resume_prev')
if previous then redis.call('DEL', ARGV[1] .. previous) end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1] .. resume)
return 1
"""
)

# KEYS: resume key. ARGV: session key prefix, tenant, default tenant. Returns the session id, or nil when
# the token is unknown or the session is another tenant's.
RESOLVE = (
    _OWNED
    + """
local session_id = redis.call('GET', KEYS[1])
if not session_id or not owned(ARGV[1] .. session_id, ARGV[2], ARGV[3]) then return false end
return session_id
"""
)

# KEYS: session hash. ARGV: 1 digest of the token just used, 2 digest of the new one, 3 resume key prefix,
# 4 ttl seconds, 5 session id. The new token becomes current and the used one previous; any other
# (older) token stops working. Keeping the used one lets a client that never received the new token
# (the call broke first) resume with the old one again. Returns 1, or 0 when the used token is neither
# current nor previous (it was rotated out meanwhile) or the session is gone.
ROTATE_RESUME = """
local current = redis.call('HGET', KEYS[1], 'resume')
if not current then return 0 end
local previous = redis.call('HGET', KEYS[1], 'resume_prev')
if ARGV[1] ~= current and ARGV[1] ~= previous then return 0 end
for _, digest in ipairs({current, previous or ARGV[1]}) do
  if digest ~= ARGV[1] then redis.call('DEL', ARGV[3] .. digest) end
end
redis.call('SET', ARGV[3] .. ARGV[2], ARGV[5], 'EX', ARGV[4])
redis.call('EXPIRE', ARGV[3] .. ARGV[1], ARGV[4])
redis.call('HSET', KEYS[1], 'resume', ARGV[2], 'resume_prev', ARGV[1])
return 1
"""

# KEYS: session hash, lease. ARGV: owner, lease ms. Returns {1, fencing token} held (a new owner gets
# the next token; the same owner again keeps its own, so a retried call is harmless), {0, 0} held by
# another, {-1, 0} no session.
ACQUIRE_LEASE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0} end
local holder = redis.call('GET', KEYS[2])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return {1, tonumber(redis.call('HGET', KEYS[1], 'fence') or '0')}
end
if holder then return {0, 0} end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return {1, redis.call('HINCRBY', KEYS[1], 'fence', 1)}
"""

# KEYS: lease. ARGV: owner, lease ms. Compare-and-extend; returns 1 when the owner still held it.
REFRESH_LEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS: lease. ARGV: owner. Compare-and-delete.
RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""
