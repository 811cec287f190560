"""The Lua scripts that make each change one atomic Redis operation.

Every script gets ``KEYS[1]`` = the project's log stream (so a Redis Cluster routes it to
the project's slot: every key of a project carries the hash tag ``{PROJECT}``), ``ARGV[1]``
= the project's key prefix and ``ARGV[2]`` = the log's approximate length cap. Scripts
return the log's last entry id: once the node has read that far, its view includes the
outcome, whatever it was.

Keys under the prefix ``hub:{P}:``::

    log             stream: what happened, in order (kinds below)
    seq             hash topic -> last seq
    epoch           string, created once: seqs are valid within it
    users           set of user ids
    u:USER          hash: a:NAME value (JSON), t:NAME ms, p:NAME "topic topic" (grants),
                    dn display name, lt login time, g grants (JSON),
                    ho a supervisor's logout hold (JSON [until ms, by, reason])
    c:USER          hash connection id -> node id
    n:NODE          set "CONNECTION USER": the connections a node holds
    nodes           set of node ids that hold connections
    lease:NODE      the node's lease (PX); gone = node presumed dead
    due             zset user -> ms: users with no connection, offline from then on
    calls           hash call id -> call (JSON), calls in progress
    hist, hu:USER, hc:USER, hcalls, hcall, hcfg: the event log (cluster/history.py)

Log entry kinds (field ``k``): ``a`` attribute change (u user, n name, v value, o old
value, t ms, x extra JSON, s "topic seq ...", d display name, e call ended 1/0),
``l`` login (u, d, l login time, g grants), ``c`` call (i id, v call JSON),
``n`` notice (u users JSON, f frame), ``k`` kick (u; h a logout hold, as ``ho``).
"""

from __future__ import annotations

from monitor.hub.cluster.history import HCALL_BODY, HISTORY_LUA

PRELUDE = r"""
local P = ARGV[1]
local MAXLEN = ARGV[2]
local LOG = KEYS[1]

local function last_id()
  local e = redis.call('XREVRANGE', LOG, '+', '-', 'COUNT', 1)
  if e[1] then return e[1][1] end
  return '0-0'
end

local function next_seq(seqs, topic)
  seqs[#seqs + 1] = topic
  seqs[#seqs + 1] = redis.call('HINCRBY', P .. 'seq', topic, 1)
end

""" + HISTORY_LUA + r"""
-- Store one value and log it; number a message for each topic it publishes to.
-- ``topics``: '=' then the topics a connection's grants name, or '' for the user's latest.
local function publish(user, name, value, ts, always, extra, more, topics)
  local ukey = P .. 'u:' .. user
  local old = redis.call('HGET', ukey, 'a:' .. name)
  if old == value and always ~= '1' then return end
  if not old and name == 'onlineStatus' then old = '"offline"' end
  redis.call('HSET', ukey, 'a:' .. name, value, 't:' .. name, ts)
  redis.call('SADD', P .. 'users', user)
  local seqs = {}
  local granted
  if topics and string.sub(topics, 1, 1) == '=' then
    granted = string.sub(topics, 2)
  else
    granted = redis.call('HGET', ukey, 'p:' .. name)
  end
  if granted then
    for topic in string.gmatch(granted, '%S+') do next_seq(seqs, topic) end
  end
  if more ~= '' then next_seq(seqs, more) end
  local call = redis.call('HGET', ukey, 'a:call')
  local ended = '1'
  if call and call ~= 'null' and call ~= '"Ended"' then ended = '0' end
  redis.call('XADD', LOG, 'MAXLEN', '~', MAXLEN, '*', 'k', 'a', 'u', user, 'n', name,
    'v', value, 'o', old or 'null', 't', ts, 'x', extra, 's', table.concat(seqs, ' '),
    'd', redis.call('HGET', ukey, 'dn') or '', 'e', ended)
  log_change(user, name, value, old or 'null', ts, extra, seqs)
end

local function offline(user, ts)
  publish(user, 'onlineStatus', '"offline"', ts, '0', '', '')
  redis.call('ZREM', P .. 'due', user)
end
"""

# ARGV[3] user, then per change: name, value JSON, ms, always, extra JSON, extra topic,
# topics ('=' and the connection's topics, or '' for the user's latest grants).
CHANGE = PRELUDE + r"""
local user = ARGV[3]
for i = 4, #ARGV, 7 do
  publish(user, ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5],
          ARGV[i + 6])
end
return last_id()
"""

# ARGV[3] user, [4] display name or '', [5] login ms, [6] grants JSON, then attribute,
# "topic topic" pairs: the user's latest grants replace the previous ones.
LOGIN = PRELUDE + r"""
local user = ARGV[3]
local ukey = P .. 'u:' .. user
for _, f in ipairs(redis.call('HKEYS', ukey)) do
  if string.sub(f, 1, 2) == 'p:' then redis.call('HDEL', ukey, f) end
end
if ARGV[4] ~= '' then redis.call('HSET', ukey, 'dn', ARGV[4]) end
redis.call('HSET', ukey, 'lt', ARGV[5], 'g', ARGV[6])
for i = 7, #ARGV, 2 do redis.call('HSET', ukey, 'p:' .. ARGV[i], ARGV[i + 1]) end
redis.call('SADD', P .. 'users', user)
redis.call('XADD', LOG, 'MAXLEN', '~', MAXLEN, '*', 'k', 'l', 'u', user,
  'd', redis.call('HGET', ukey, 'dn') or '', 'l', ARGV[5], 'g', ARGV[6])
return last_id()
"""

# ARGV[3] user, [4] connection, [5] node, [6] ms.
CONNECT = PRELUDE + r"""
local user, conn, node = ARGV[3], ARGV[4], ARGV[5]
redis.call('HSET', P .. 'c:' .. user, conn, node)
redis.call('SADD', P .. 'n:' .. node, conn .. ' ' .. user)
redis.call('SADD', P .. 'nodes', node)
redis.call('ZREM', P .. 'due', user)
publish(user, 'onlineStatus', '"online"', ARGV[6], '0', '', '')
return last_id()
"""

# ARGV[3] user, [4] connection, [5] node, [6] ms, [7] grace ms (0: offline now). The
# last connection gone, the user is due offline after the grace period (zset ``due``):
# the node that saw it go checks then (EXPIRE), and every sweeper checks overdue users
# (DUE), so a node that dies or stops meanwhile leaves no user online.
DISCONNECT = PRELUDE + r"""
local user, conn, node = ARGV[3], ARGV[4], ARGV[5]
local ckey = P .. 'c:' .. user
redis.call('HDEL', ckey, conn)
redis.call('SREM', P .. 'n:' .. node, conn .. ' ' .. user)
if redis.call('HLEN', ckey) == 0 then
  if ARGV[7] == '0' then offline(user, ARGV[6])
  else redis.call('ZADD', P .. 'due', tonumber(ARGV[6]) + tonumber(ARGV[7]), user) end
end
return last_id()
"""

# ARGV[3] user, [4] ms now.
EXPIRE = PRELUDE + r"""
local user = ARGV[3]
if redis.call('HLEN', P .. 'c:' .. user) == 0 then
  local due = redis.call('ZSCORE', P .. 'due', user)
  if (not due) or tonumber(due) <= tonumber(ARGV[4]) then offline(user, ARGV[4]) end
end
return last_id()
"""

# ARGV[3] ms now, [4] batch size. Returns {last id, users checked}.
DUE = PRELUDE + r"""
local users = redis.call('ZRANGEBYSCORE', P .. 'due', '-inf', ARGV[3], 'LIMIT', 0,
  tonumber(ARGV[4]))
for _, user in ipairs(users) do
  redis.call('ZREM', P .. 'due', user)
  if redis.call('HLEN', P .. 'c:' .. user) == 0 then offline(user, ARGV[3]) end
end
return {last_id(), #users}
"""

# ARGV[3] node, [4] ms, [5] batch size. A node whose lease is gone loses its connections;
# their users with no connection left go offline. Idempotent: a second sweeper finds
# nothing left. Returns {last id, connections left (-1: the node is alive), swept}.
SWEEP = PRELUDE + r"""
local node = ARGV[3]
if redis.call('EXISTS', P .. 'lease:' .. node) == 1 then return {last_id(), -1, 0} end
local nkey = P .. 'n:' .. node
local members = redis.call('SPOP', nkey, tonumber(ARGV[5]))
for _, m in ipairs(members) do
  local sp = string.find(m, ' ', 1, true)
  local conn, user = string.sub(m, 1, sp - 1), string.sub(m, sp + 1)
  local ckey = P .. 'c:' .. user
  redis.call('HDEL', ckey, conn)
  if redis.call('HLEN', ckey) == 0 then offline(user, ARGV[4]) end
end
local left = redis.call('SCARD', nkey)
if left == 0 then redis.call('SREM', P .. 'nodes', node) end
return {last_id(), left, #members}
"""

# ARGV[3] node, [4] ttl ms. Returns 1 if the lease was still there.
LEASE = PRELUDE + r"""
local key = P .. 'lease:' .. ARGV[3]
local existed = redis.call('EXISTS', key)
redis.call('SET', key, '1', 'PX', ARGV[4])
redis.call('SADD', P .. 'nodes', ARGV[3])
return existed
"""

# ARGV[3] node. A node that stops cleanly gives up its lease.
RELEASE = PRELUDE + r"""
redis.call('DEL', P .. 'lease:' .. ARGV[3])
if redis.call('SCARD', P .. 'n:' .. ARGV[3]) == 0 then
  redis.call('SREM', P .. 'nodes', ARGV[3])
end
return last_id()
"""

# ARGV[3] call id, [4] call JSON, [5] 1 in progress / 0 ended.
CALL = PRELUDE + r"""
if ARGV[5] == '1' then redis.call('HSET', P .. 'calls', ARGV[3], ARGV[4])
else redis.call('HDEL', P .. 'calls', ARGV[3]) end
redis.call('XADD', LOG, 'MAXLEN', '~', MAXLEN, '*', 'k', 'c', 'i', ARGV[3], 'v', ARGV[4])
return last_id()
"""

# ARGV[3] users JSON, [4] frame, [5] a connection id left out ('' for none), [6] '1':
# only if the (one) user holds a connection other than that one, on any node.
NOTIFY = PRELUDE + r"""
if ARGV[6] == '1' then
  local ckey = P .. 'c:' .. cjson.decode(ARGV[3])[1]
  if redis.call('HLEN', ckey) - redis.call('HEXISTS', ckey, ARGV[5]) == 0 then
    return last_id()
  end
end
redis.call('XADD', LOG, 'MAXLEN', '~', MAXLEN, '*', 'k', 'n', 'u', ARGV[3], 'f', ARGV[4],
           'x', ARGV[5])
return last_id()
"""

# ARGV[3] user, [4] a supervisor's logout hold ('' for none): JSON [until ms, by, reason],
# kept on the user for nodes that start later. Returns {last id, the user's connections
# on every node}.
KICK = PRELUDE + r"""
if ARGV[4] ~= '' then
  redis.call('HSET', P .. 'u:' .. ARGV[3], 'ho', ARGV[4])
  redis.call('XADD', LOG, 'MAXLEN', '~', MAXLEN, '*', 'k', 'k', 'u', ARGV[3], 'h', ARGV[4])
else
  redis.call('XADD', LOG, 'MAXLEN', '~', MAXLEN, '*', 'k', 'k', 'u', ARGV[3])
end
return {last_id(), redis.call('HLEN', P .. 'c:' .. ARGV[3])}
"""

# ARGV[3] a new epoch, used if the project has none (first start, or Redis lost its
# data). Returns {epoch, last log id, seq hash as a flat list, 1 if the epoch is new}:
# one consistent point to start reading the log from.
STATE = PRELUDE + r"""
local key = P .. 'epoch'
local epoch = redis.call('GET', key)
local fresh = 0
if not epoch then
  redis.call('SET', key, ARGV[3])
  epoch, fresh = ARGV[3], 1
end
return {epoch, last_id(), redis.call('HGETALL', P .. 'seq'), fresh}
"""

# A call transition in the event log (see monitor.hub.cluster.history).
HCALL = PRELUDE + HCALL_BODY
