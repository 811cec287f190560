"""The Lua scripts that make each batch of changes one atomic Redis operation.

A node's batch of proposals for a project goes to Redis as ONE call of :data:`BATCH`,
which runs them in order (see its comment for the layout). A call transition comes
guarded: the script checks that the call is still in the state the node saw, and
refuses the transition's ops (and none other) if another node changed it first, so two
nodes cannot both win. Presence, leases and start-up reads are scripts of their own.

Every script gets ``KEYS[1]`` = the project's log stream (so a Redis Cluster routes it to
the project's slot: every key of a project carries the hash tag ``{PROJECT}``), ``ARGV[1]``
= the project's key prefix and ``ARGV[2]`` = the log's approximate length cap. Scripts
return the log's last entry id first: once the node has read that far, its view includes
the outcome, whatever it was.

Keys under the prefix ``hub:{P}:``::

    log             stream: what happened, in order (kinds below)
    seq             hash topic -> last seq
    epoch           string, created once: seqs are valid within it
    users           set of user ids
    u:USER          hash: a:NAME value (JSON), t:NAME ms, p:NAME "topic topic" (grants),
                    dn display name, lt login time, g grants (JSON),
                    ho a supervisor's logout hold (JSON [until ms, by, reason])
    c:USER          hash connection id -> node id
    ci:USER         hash connection id -> the client's description (JSON, as in the AUTHEN
                    reply's ``clients``), for every node's ``clients`` lists
    n:NODE          set "CONNECTION USER": the connections a node holds
    nodes           set of node ids that hold connections
    lease:NODE      the node's lease (PX); gone = node presumed dead
    due             zset user -> ms: users with no connection, offline from then on
    calls           hash call id -> call (JSON), calls in progress
    cend            zset call id -> ms ended: the latest ended calls (a guard's "Ended")
    hist, hu:USER, hc:USER, hcalls, hcall, hcfg: the event log (cluster/history.py)

Log entry kinds (field ``k``): ``a`` attribute change (u user, n name, v value, o old
value, t ms, x extra JSON, s "topic seq ...", d display name, e call ended 1/0),
``l`` login (u, d, l login time, g grants), ``c`` call (i id, v call JSON),
``n`` notice (u users JSON, f frame, x a connection left out), ``k`` kick (u; h a logout
hold, as ``ho``), ``g`` gone: the user's last connection on any node closed (u).
"""

from __future__ import annotations

from monitor.hub.cluster.history import HCALL_LUA, HISTORY_LUA

ENDED_KEPT = 10_000  # ended calls a guard still knows as "Ended"

PRELUDE = r"""
local P = ARGV[1]
local MAXLEN = ARGV[2]
local LOG = KEYS[1]
local PID = string.match(P, '{(%d+)}')

local function last_id()
  local e = redis.call('XREVRANGE', LOG, '+', '-', 'COUNT', 1)
  if e[1] then return e[1][1] end
  return '0-0'
end

local function next_seq(seqs, topic)
  seqs[#seqs + 1] = topic
  seqs[#seqs + 1] = redis.call('HINCRBY', P .. 'seq', topic, 1)
end

""" + HISTORY_LUA + HCALL_LUA + r"""
-- Store one value and log it; number a message for each topic it publishes to.
-- ``topics``: '=' then the topics a connection's grants name, or '' for the user's latest.
local function publish(user, name, value, ts, always, extra, more, topics)
  local ukey = P .. 'u:' .. user
  -- One read for the old value, the call the user is in and the display name.
  local known = redis.call('HMGET', ukey, 'a:' .. name, 'a:call', 'dn')
  local old = known[1]
  if old == value and always ~= '1' then return end
  redis.call('HSET', ukey, 'a:' .. name, value, 't:' .. name, ts)
  if not old then
    redis.call('SADD', P .. 'users', user)  -- a user with a value is in the set already
    if name == 'onlineStatus' then old = '"offline"' end
  end
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
  local call = known[2]
  if name == 'call' then call = value end
  local ended = '1'
  if call and call ~= 'null' and call ~= '"Ended"' then ended = '0' end
  redis.call('XADD', LOG, 'MAXLEN', '~', MAXLEN, '*', 'k', 'a', 'u', user, 'n', name,
    'v', value, 'o', old or 'null', 't', ts, 'x', extra, 's', table.concat(seqs, ' '),
    'd', known[3] or '', 'e', ended)
  log_change(user, name, value, old or 'null', ts, extra, seqs)
end

local function offline(user, ts)
  publish(user, 'onlineStatus', '"offline"', ts, '0', '', '')
  redis.call('ZREM', P .. 'due', user)
end

-- A connection is gone from ``c:USER`` and ``ci:USER``. With none left on any node, the
-- log says so (``g``: every node ends the user's calls). True if none is left.
local function drop_connection(user, conn)
  local ckey = P .. 'c:' .. user
  redis.call('HDEL', ckey, conn)
  redis.call('HDEL', P .. 'ci:' .. user, conn)
  if redis.call('HLEN', ckey) > 0 then return false end
  redis.call('XADD', LOG, 'MAXLEN', '~', MAXLEN, '*', 'k', 'g', 'u', user)
  return true
end

-- The client descriptions (JSON) of a user's connections held by nodes other than
-- ``node``, but ``skip``.
local function other_clients(user, node, skip)
  local out = {}
  local conns = redis.call('HGETALL', P .. 'c:' .. user)
  for j = 1, #conns, 2 do
    if conns[j + 1] ~= node and conns[j] ~= skip then
      local c = redis.call('HGET', P .. 'ci:' .. user, conns[j])
      if c then out[#out + 1] = c end
    end
  end
  return out
end
"""

# -- the batch ------------------------------------------------------------------------------

# Each op below reads its arguments from ARGV[o] on (``n`` of them) and may return a
# value for the node (see BATCH). ``NODE`` is the proposing node.
BATCH_OPS = r"""
local NODE = ARGV[3]

-- C: user, then per change: name, value JSON, ms, always, extra JSON, extra topic,
-- topics ('=' and the connection's topics, or '' for the user's latest grants). The
-- changes of one user in one request are applied together.
local function op_change(o, n)
  local user = ARGV[o]
  for i = o + 1, o + n - 1, 7 do
    publish(user, ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5],
            ARGV[i + 6])
  end
end

-- L: user, display name or '', login ms ('' for none yet: a user made known by REST),
-- grants JSON, then attribute, "topic topic" pairs: the user's latest grants replace
-- the previous ones.
local function op_login(o, n)
  local user = ARGV[o]
  local ukey = P .. 'u:' .. user
  for _, f in ipairs(redis.call('HKEYS', ukey)) do
    if string.sub(f, 1, 2) == 'p:' then redis.call('HDEL', ukey, f) end
  end
  if ARGV[o + 1] ~= '' then redis.call('HSET', ukey, 'dn', ARGV[o + 1]) end
  if ARGV[o + 2] ~= '' then redis.call('HSET', ukey, 'lt', ARGV[o + 2]) end
  redis.call('HSET', ukey, 'g', ARGV[o + 3])
  for i = o + 4, o + n - 1, 2 do redis.call('HSET', ukey, 'p:' .. ARGV[i], ARGV[i + 1]) end
  redis.call('SADD', P .. 'users', user)
  redis.call('XADD', LOG, 'MAXLEN', '~', MAXLEN, '*', 'k', 'l', 'u', user,
    'd', redis.call('HGET', ukey, 'dn') or '', 'l', redis.call('HGET', ukey, 'lt') or '',
    'g', ARGV[o + 3])
end

-- I: user, ms. A user made known without a connection is offline, published, unless
-- Redis already knows its presence (it may have connected on another node meanwhile).
local function op_introduce(o, n)
  if redis.call('HEXISTS', P .. 'u:' .. ARGV[o], 'a:onlineStatus') == 0 then
    publish(ARGV[o], 'onlineStatus', '"offline"', ARGV[o + 1], '0', '', '')
  end
end

-- O: user, connection, ms, client JSON. Returns the user's connections on other nodes
-- (their client JSON), for the AUTHEN reply's ``clients``.
local function op_connect(o, n)
  local user, conn = ARGV[o], ARGV[o + 1]
  redis.call('HSET', P .. 'c:' .. user, conn, NODE)
  redis.call('HSET', P .. 'ci:' .. user, conn, ARGV[o + 3])
  redis.call('SADD', P .. 'n:' .. NODE, conn .. ' ' .. user)
  redis.call('SADD', P .. 'nodes', NODE)
  redis.call('ZREM', P .. 'due', user)
  publish(user, 'onlineStatus', '"online"', ARGV[o + 2], '0', '', '')
  return other_clients(user, NODE, conn)
end

-- D: user, connection, ms, grace ms (0: offline now). The last connection gone, the
-- user is due offline after the grace period (zset ``due``): the node that saw it go
-- checks then (E), and every sweeper checks overdue users (DUE), so a node that dies or
-- stops meanwhile leaves no user online.
local function op_disconnect(o, n)
  local user, conn = ARGV[o], ARGV[o + 1]
  redis.call('SREM', P .. 'n:' .. NODE, conn .. ' ' .. user)
  if drop_connection(user, conn) then
    if ARGV[o + 3] == '0' then offline(user, ARGV[o + 2])
    else redis.call('ZADD', P .. 'due', tonumber(ARGV[o + 2]) + tonumber(ARGV[o + 3]), user) end
  end
end

-- E: user, ms now.
local function op_expire(o, n)
  local user = ARGV[o]
  if redis.call('HLEN', P .. 'c:' .. user) == 0 then
    local due = redis.call('ZSCORE', P .. 'due', user)
    if (not due) or tonumber(due) <= tonumber(ARGV[o + 1]) then offline(user, ARGV[o + 1]) end
  end
end

-- A: call id, call JSON, 1 in progress / 0 ended, ms.
local function op_call(o, n)
  local id = ARGV[o]
  if ARGV[o + 2] == '1' then redis.call('HSET', P .. 'calls', id, ARGV[o + 1])
  else
    redis.call('HDEL', P .. 'calls', id)
    redis.call('ZADD', P .. 'cend', ARGV[o + 3], id)
    if redis.call('ZCARD', P .. 'cend') > """ + str(ENDED_KEPT) + r""" then
      redis.call('ZREMRANGEBYRANK', P .. 'cend', 0, -""" + str(ENDED_KEPT + 1) + r""")
    end
  end
  redis.call('XADD', LOG, 'MAXLEN', '~', MAXLEN, '*', 'k', 'c', 'i', id, 'v', ARGV[o + 1])
end

-- N: users JSON, frame, a connection id left out ('' for none), '1': only if the (one)
-- user holds a connection other than that one, on any node, and then the frame's
-- ``clients`` (its last field: an OTHER_DEVICE notice) gains the other nodes' clients.
local function op_notify(o, n)
  local users, frame, skip = ARGV[o], ARGV[o + 1], ARGV[o + 2]
  if ARGV[o + 3] == '1' then
    local user = cjson.decode(users)[1]
    local ckey = P .. 'c:' .. user
    if redis.call('HLEN', ckey) - redis.call('HEXISTS', ckey, skip) == 0 then return end
    local others = other_clients(user, NODE, skip)
    local at = string.find(frame, ',"clients":[', 1, true)
    if #others > 0 and at and string.sub(frame, -3) == ']}}' then
      local mine = string.sub(frame, at + 12, -4)
      if mine ~= '' then mine = mine .. ',' end
      frame = string.sub(frame, 1, at + 11) .. mine .. table.concat(others, ',') .. ']}}'
    end
  end
  redis.call('XADD', LOG, 'MAXLEN', '~', MAXLEN, '*', 'k', 'n', 'u', users, 'f', frame,
             'x', skip)
end

-- K: user, a supervisor's logout hold ('' for none): JSON [until ms, by, reason], kept on
-- the user for nodes that start later. Returns the user's connections on every node.
local function op_kick(o, n)
  local user = ARGV[o]
  if ARGV[o + 1] ~= '' then
    redis.call('HSET', P .. 'u:' .. user, 'ho', ARGV[o + 1])
    redis.call('XADD', LOG, 'MAXLEN', '~', MAXLEN, '*', 'k', 'k', 'u', user, 'h', ARGV[o + 1])
  else
    redis.call('XADD', LOG, 'MAXLEN', '~', MAXLEN, '*', 'k', 'k', 'u', user)
  end
  return redis.call('HLEN', P .. 'c:' .. user)
end

-- A call's status as Redis knows it: in progress, recently ended, or '' (none).
local function call_status(id)
  local text = redis.call('HGET', P .. 'calls', id)
  if text then return cjson.decode(text)['status'] end
  if redis.call('ZSCORE', P .. 'cend', id) then return 'Ended' end
  return ''
end

local OPS = {C = op_change, L = op_login, O = op_connect, D = op_disconnect,
             E = op_expire, A = op_call, N = op_notify, H = hist_call, K = op_kick,
             I = op_introduce}
"""

# ARGV[3] the node, then the ops, each as: kind, number of arguments, arguments. Kind
# ``G`` guards the ops after it: arguments: how many ops it guards, then call id,
# expected status ('' for a call that must not exist yet) pairs; if a call is not in the
# status expected, the guarded ops are skipped (refused). Returns {last id, op index,
# result, op index, result...}: indexes count from 1 over every op; ``G``'s result is
# '!' when it refused.
BATCH = PRELUDE + BATCH_OPS + r"""
local results = {last_id()}
local i, index = 4, 0
while i <= #ARGV do
  local kind, n = ARGV[i], tonumber(ARGV[i + 1])
  local o = i + 2
  i = o + n
  index = index + 1
  if kind == 'G' then
    local ok = true
    for j = o + 1, o + n - 1, 2 do
      if call_status(ARGV[j]) ~= ARGV[j + 1] then ok = false; break end
    end
    if not ok then
      results[#results + 1] = index
      results[#results + 1] = '!'
      for _ = 1, tonumber(ARGV[o]) do
        i = i + 2 + tonumber(ARGV[i + 1])
        index = index + 1
      end
    end
  else
    local out = OPS[kind](o, n)
    if out ~= nil then
      results[#results + 1] = index
      results[#results + 1] = out
    end
  end
end
results[1] = last_id()
return results
"""

# -- presence, leases and reads: scripts of their own -----------------------------------------

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

# ARGV[3] node, [4] ms, [5] batch size. A node whose lease is gone loses its connections:
# the users' other devices are told (OTHER_DEVICE_AUTHEN "disconnected", as if the
# connection had closed), and users with no connection left go offline. Idempotent: a
# second sweeper finds nothing left. Returns {last id, connections left (-1: the node is
# alive), swept}.
SWEEP = PRELUDE + r"""
local node = ARGV[3]
if redis.call('EXISTS', P .. 'lease:' .. node) == 1 then return {last_id(), -1, 0} end
local nkey = P .. 'n:' .. node
local members = redis.call('SPOP', nkey, tonumber(ARGV[5]))
for _, m in ipairs(members) do
  local sp = string.find(m, ' ', 1, true)
  local conn, user = string.sub(m, 1, sp - 1), string.sub(m, sp + 1)
  local client = redis.call('HGET', P .. 'ci:' .. user, conn)
  if drop_connection(user, conn) then offline(user, ARGV[4])
  elseif client and string.sub(client, -1) == '}' and #client > 2 then
    local frame = '{"service":104,"body":' .. string.sub(client, 1, -2) ..
      ',"status":"disconnected","userId":' .. cjson.encode(user) .. ',"projectId":' ..
      PID .. ',"connectionId":' .. cjson.encode(conn) .. ',"clients":[' ..
      table.concat(redis.call('HVALS', P .. 'ci:' .. user), ',') .. ']}}'
    redis.call('XADD', LOG, 'MAXLEN', '~', MAXLEN, '*', 'k', 'n',
      'u', cjson.encode({user}), 'f', frame, 'x', conn)
  end
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
