"""The store's Lua scripts: each is one round trip and runs atomically inside Redis.

Common KEYS: 1 session hash, 2 turns list, 3 speech hash (4 lease where used). The resume key is
derived inside the script from the hash's ``resume`` field (ARGV names the prefix), which a single
Redis or a primary with replicas allows; Redis Cluster would need the token to carry a hash tag.
"""

from __future__ import annotations

# Refreshes the TTL of every key of the session except the lease, which has its own.
_REFRESH = """
local function refresh(ttl, resume_prefix, resume)
  for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ttl) end
  if resume then redis.call('EXPIRE', resume_prefix .. resume, ttl) end
end
"""

# ARGV: sequence, turn JSON, embeddings (may be empty), ttl seconds, resume key prefix.
# Returns {status, next_sequence}: 1 stored, 0 already stored (same bytes), -1 no session,
# -2 a different turn holds this sequence, -3 the sequence skips ahead.
APPEND_TURN = (
    _REFRESH
    + """
local resume = redis.call('HGET', KEYS[1], 'resume')
if not resume then return {-1, 0} end
local next_seq = redis.call('LLEN', KEYS[2]) + 1
local seq = tonumber(ARGV[1])
if seq > next_seq then return {-3, next_seq} end
if seq < next_seq then
  local same = redis.call('LINDEX', KEYS[2], seq - 1) == ARGV[2]
    and (redis.call('HGET', KEYS[3], ARGV[1]) or '') == ARGV[3]
  if not same then return {-2, next_seq} end
  refresh(ARGV[4], ARGV[5], resume)
  return {0, next_seq}
end
redis.call('RPUSH', KEYS[2], ARGV[2])
if #ARGV[3] > 0 then redis.call('HSET', KEYS[3], ARGV[1], ARGV[3]) end
refresh(ARGV[4], ARGV[5], resume)
return {1, next_seq + 1}
"""
)

# ARGV: ttl seconds, resume key prefix. Returns 1, or 0 when the session is absent.
TOUCH = (
    _REFRESH
    + """
local resume = redis.call('HGET', KEYS[1], 'resume')
if not resume then return 0 end
refresh(ARGV[1], ARGV[2], resume)
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

# KEYS 1-4 (with the lease). ARGV: resume key prefix, tenant, default tenant. Returns 1, or 0 when the
# session is absent or another tenant's (the caller cannot tell the two apart).
DELETE = (
    _OWNED
    + """
local resume = redis.call('HGET', KEYS[1], 'resume')
if not resume or not owned(KEYS[1], ARGV[2] or '', ARGV[3]) then return 0 end
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

# KEYS: session hash, lease. ARGV: owner, lease ms. Returns 1 held, 0 held by another, -1 no session.
ACQUIRE_LEASE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local holder = redis.call('GET', KEYS[2])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return 1
end
if holder then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
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
