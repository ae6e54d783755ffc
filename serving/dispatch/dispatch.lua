-- chainplan live dispatcher: every state change of one cluster, atomically.
--
-- KEYS[1] is the cluster's key prefix (ending in ':'); every key the script
-- touches starts with it, so a standalone Redis may hold any number of clusters
-- and test prefixes.  ARGV[1] names the operation.  Time is Redis's own clock
-- (TIME), so any number of dispatcher processes agree on deadlines.
--
-- Keys (P = KEYS[1]):
--   cur            generation of the adopted plan now dispatched to
--   fp             fingerprint of that plan's snapshot (set_plan is idempotent)
--   gen            generation counter
--   plan:<g>, planx:<g>, out:<g>   compiled snapshot of generation g, in three parts (see plan_of)
--   z:<g>          hash chain -> jobs in progress (Z_k) on generation g
--   srv            hash server -> KV block-slots held by jobs in progress (all generations)
--   lim            hash server -> block-slots a server may hold now: its slots under the
--                  current plan, lowered to its slots under every older plan that still
--                  has jobs in flight (so no server exceeds its slots under either plan)
--   gin            hash generation -> leases in flight
--   lease          hash lease id -> {g, k, t0, dl}
--   dl             zset lease id -> deadline (ms); swept by every call
--   q              the central FIFO queue (JFFC waiters, and every waiter after a switch)
--   q:<g>:<k>      per-chain FIFO queue of waiters committed to chain k (jsq, sed, random)
--   tk             hash ticket id -> {seq, t0, dl, k}: the waiters
--   w:<id>         mailbox: the lease granted to waiter <id> (the waiter BLPOPs it)
--   st             hash of counters (arrivals, grants, releases, expiries, timeouts, ...)
--   wh             hash bucket -> count: waiting-time histogram (grants)
--   svc:<g>        hash "<k>:n" / "<k>:s": count and sum of measured service times (ms) of generation g
--   arr            hash second -> arrivals; first: time of the first arrival (ms)

local P = KEYS[1]
local op = ARGV[1]
local tm = redis.call('TIME')
local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
local WAIT_BUCKETS = {1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000, 300000}
local ARRIVAL_WINDOW_S = 60

-- A plan is kept in three parts so the hot path decodes little: plan:<g> (policy, ttl, capacities,
-- order, hops), planx:<g> (service times, ranks, cumulative rates, slots per server: decoded only
-- by the policies and operations that need them) and out:<g> (hash chain -> the answer's hop list).
local plans = {}
local function plan_of(g)
  local p = plans[g]
  if p == nil then
    local raw = redis.call('GET', P .. 'plan:' .. g)
    if not raw then return nil end
    p = cjson.decode(raw)
    plans[g] = p
  end
  return p
end

local function full(p, g)
  if p.L == nil then
    local x = cjson.decode(redis.call('GET', P .. 'planx:' .. g))
    for key, v in pairs(x) do p[key] = v end
  end
  return p
end

local function current()
  local g = redis.call('GET', P .. 'cur')
  if not g then return nil, nil end
  return g, plan_of(g)
end

local function num(v) if v then return tonumber(v) end return 0 end

-- chain k (1-based) of plan p / generation g can take one more job now
local function is_free(p, g, k, z)
  local c = p.c[k]
  if c <= 0 then return false end
  if z == nil then z = num(redis.call('HGET', P .. 'z:' .. g, k - 1)) end
  if z >= c then return false end
  local hops = p.hops[k]
  local names = {}
  for i, h in ipairs(hops) do names[i] = h[1] end
  local used = redis.call('HMGET', P .. 'srv', unpack(names))
  local lim = redis.call('HMGET', P .. 'lim', unpack(names))
  for i, h in ipairs(hops) do
    if num(used[i]) + h[2] > num(lim[i]) then return false end
  end
  return true
end

local function busy(p, g)
  if p.keys == nil then
    p.keys = {}
    for i = 1, #p.c do p.keys[i] = tostring(i - 1) end
  end
  local zs = redis.call('HMGET', P .. 'z:' .. g, unpack(p.keys))
  local out = {}
  for i = 1, #p.c do out[i] = num(zs[i]) end
  return out
end

local function fastest_free(p, g)
  local zs = busy(p, g)
  for _, k0 in ipairs(p.order) do
    local k = k0 + 1
    if is_free(p, g, k, zs[k]) then return k end
  end
  return nil
end

-- limits per server: the current plan's, lowered by every older generation in flight
local function recompute_limits(g)
  local p = full(plan_of(g), g)
  local lim = {}
  for s, v in pairs(p.L) do lim[s] = v end
  local live = redis.call('HKEYS', P .. 'gin')
  for _, og in ipairs(live) do
    if og ~= g then
      local op_ = plan_of(og)
      if op_ then
        op_ = full(op_, og)
        for s, v in pairs(op_.L) do
          if lim[s] ~= nil and v < lim[s] then lim[s] = v end
        end
      end
    end
  end
  redis.call('DEL', P .. 'lim')
  local flat = {}
  for s, v in pairs(lim) do flat[#flat + 1] = s; flat[#flat + 1] = v end
  if #flat > 0 then redis.call('HSET', P .. 'lim', unpack(flat)) end
end

local function drop_generation(g)
  redis.call('DEL', P .. 'plan:' .. g, P .. 'planx:' .. g, P .. 'out:' .. g, P .. 'z:' .. g, P .. 'svc:' .. g)
  plans[g] = nil
end

local function bucket_of(ms)
  for i, b in ipairs(WAIT_BUCKETS) do
    if ms <= b then return i end
  end
  return #WAIT_BUCKETS + 1
end

local function grant(p, g, k, id, t0, mailbox)
  redis.call('HINCRBY', P .. 'z:' .. g, k - 1, 1)
  for _, h in ipairs(p.hops[k]) do redis.call('HINCRBY', P .. 'srv', h[1], h[2]) end
  redis.call('HINCRBY', P .. 'gin', g, 1)
  local dl = now + p.ttl_ms
  local waited = now - t0
  if waited < 0 then waited = 0 end
  redis.call('HSET', P .. 'lease', id, cjson.encode({g = g, k = k - 1, t0 = now, dl = dl, w = waited}))
  redis.call('ZADD', P .. 'dl', dl, id)
  redis.call('HINCRBY', P .. 'st', 'grants', 1)
  redis.call('HINCRBY', P .. 'st', 'wait_ms', waited)
  redis.call('HINCRBY', P .. 'wh', bucket_of(waited), 1)
  local resp = '{"lease":"' .. id .. '","chain":' .. (k - 1) .. ',"servers":' ..
      redis.call('HGET', P .. 'out:' .. g, k - 1) ..
      ',"ttl_ms":' .. p.ttl_ms .. ',"expires_ms":' .. dl .. ',"waited_ms":' .. waited ..
      ',"plan":' .. cjson.encode(p.plan) .. '}'
  if mailbox then
    redis.call('RPUSH', P .. 'w:' .. id, resp)
    redis.call('PEXPIRE', P .. 'w:' .. id, 600000)
  end
  return resp
end

-- first live ticket of a queue; tickets whose waiter's deadline passed are dropped
local function head(qkey, counted)
  while true do
    local id = redis.call('LINDEX', qkey, 0)
    if not id then return nil, nil end
    local raw = redis.call('HGET', P .. 'tk', id)
    if raw then
      local t = cjson.decode(raw)
      if t.dl >= now then return id, t end
      redis.call('HDEL', P .. 'tk', id)
      redis.call('HINCRBY', P .. 'st', 'timeouts', 1)
      if counted then redis.call('HINCRBY', P .. 'st', 'nq', -1) end
    end
    redis.call('LPOP', qkey)
  end
end

-- hand every free slot to the earliest waiter that may take it
local function drain()
  -- nothing waits (the common case): done, without reading the plan
  if not redis.call('LINDEX', P .. 'q', 0) and num(redis.call('HGET', P .. 'st', 'nq')) <= 0 then return end
  local g, p = current()
  if not g then return end
  while true do
    local best_id, best_t, best_k, best_q, best_counted = nil, nil, nil, nil, false
    local id, t = head(P .. 'q', false)
    if id then
      local k = fastest_free(p, g)
      if k then best_id, best_t, best_k, best_q = id, t, k, P .. 'q' end
    end
    if num(redis.call('HGET', P .. 'st', 'nq')) > 0 then
      for k = 1, #p.c do
        local qk = P .. 'q:' .. g .. ':' .. (k - 1)
        if redis.call('LLEN', qk) > 0 then
          local id2, t2 = head(qk, true)
          if id2 and (best_id == nil or t2.seq < best_t.seq) and is_free(p, g, k) then
            best_id, best_t, best_k, best_q, best_counted = id2, t2, k, qk, true
          end
        end
      end
    end
    if best_id == nil then return end
    redis.call('LPOP', best_q)
    redis.call('HDEL', P .. 'tk', best_id)
    if best_counted then redis.call('HINCRBY', P .. 'st', 'nq', -1) end
    grant(p, g, best_k, best_id, best_t.t0, true)
  end
end

local function release(id, kind)
  local raw = redis.call('HGET', P .. 'lease', id)
  if not raw then return false end
  local l = cjson.decode(raw)
  local g = tostring(l.g)
  local p = plan_of(g)
  redis.call('HDEL', P .. 'lease', id)
  redis.call('ZREM', P .. 'dl', id)
  redis.call('HINCRBY', P .. 'z:' .. g, l.k, -1)
  if p then
    for _, h in ipairs(p.hops[l.k + 1]) do redis.call('HINCRBY', P .. 'srv', h[1], -h[2]) end
  end
  if kind == 'release' then
    redis.call('HINCRBY', P .. 'st', 'releases', 1)
    local d = now - l.t0
    redis.call('HINCRBY', P .. 'svc:' .. g, l.k .. ':n', 1)
    redis.call('HINCRBY', P .. 'svc:' .. g, l.k .. ':s', d)
  else
    redis.call('HINCRBY', P .. 'st', 'expiries', 1)
  end
  local left = redis.call('HINCRBY', P .. 'gin', g, -1)
  if left <= 0 then
    redis.call('HDEL', P .. 'gin', g)
    local cur = redis.call('GET', P .. 'cur')
    if cur ~= g then
      drop_generation(g)
      if cur then recompute_limits(cur) end
    end
  end
  return true
end

local function sweep()
  local gone = redis.call('ZRANGEBYSCORE', P .. 'dl', '-inf', now, 'LIMIT', 0, 256)
  for _, id in ipairs(gone) do release(id, 'expiry') end
  if #gone > 0 then drain() end
  return #gone
end

local function count_arrival()
  local sec = math.floor(now / 1000)
  redis.call('HINCRBY', P .. 'st', 'arrivals', 1)
  if redis.call('HINCRBY', P .. 'arr', sec, 1) == 1 then
    -- first arrival of this second: note the very first one, drop buckets out of the window
    redis.call('SETNX', P .. 'first', now)
    if redis.call('HLEN', P .. 'arr') > 2 * ARRIVAL_WINDOW_S + 8 then
      for _, s in ipairs(redis.call('HKEYS', P .. 'arr')) do
        if tonumber(s) <= sec - ARRIVAL_WINDOW_S then redis.call('HDEL', P .. 'arr', s) end
      end
    end
  end
end

local function arrival_rate()
  local first = redis.call('GET', P .. 'first')
  if not first then return nil end
  local sec = math.floor(now / 1000)
  local n = 0
  local vals = redis.call('HGETALL', P .. 'arr')
  for i = 1, #vals, 2 do
    if tonumber(vals[i]) > sec - ARRIVAL_WINDOW_S then n = n + tonumber(vals[i + 1]) end
  end
  local span = (now - tonumber(first)) / 1000
  if span > ARRIVAL_WINDOW_S then span = ARRIVAL_WINDOW_S end
  if span < 1 then span = 1 end
  return n / span
end

-- the immediate-dispatch policies of solvers.dispatch: the chain a job is committed to
local function choose(p, g, policy, u)
  full(p, g)
  local K = #p.c
  local zs = busy(p, g)
  if policy == 'random' then
    local total = p.cum[K]
    local x = u * total
    for k = 1, K do
      if p.cum[k] > x then return k end     -- bisect_right
    end
    return K
  end
  local best, best_key, best_rank = nil, nil, nil
  for k = 1, K do
    local c = p.c[k]
    if c > 0 then
      local n = zs[k] + redis.call('LLEN', P .. 'q:' .. g .. ':' .. (k - 1))
      local key
      if policy == 'jsq' then
        key = n / c
      else   -- sed
        local t = p.t[k]
        if n < c then key = t else key = t * (1.0 + (n - c + 1) / c) end
      end
      local rank = p.rank[k]
      if best == nil or key < best_key or (key == best_key and rank < best_rank) then
        best, best_key, best_rank = k, key, rank
      end
    end
  end
  return best
end

-- waiters committed to generation g's chains start over in the central queue, in arrival order
local function requeue_committed(g)
  local p = plan_of(g)
  if p == nil or num(redis.call('HGET', P .. 'st', 'nq')) <= 0 then return end
  local live = {}
  local function take(key)
    for _, id in ipairs(redis.call('LRANGE', key, 0, -1)) do
      local raw = redis.call('HGET', P .. 'tk', id)
      if raw then
        local t = cjson.decode(raw)
        t.k = -1
        redis.call('HSET', P .. 'tk', id, cjson.encode(t))
        live[#live + 1] = {t.seq, id}
      end
    end
    redis.call('DEL', key)
  end
  take(P .. 'q')
  for k = 1, #p.c do take(P .. 'q:' .. g .. ':' .. (k - 1)) end
  redis.call('HSET', P .. 'st', 'nq', 0)
  table.sort(live, function(a, b) return a[1] < b[1] end)
  for _, e in ipairs(live) do redis.call('RPUSH', P .. 'q', e[2]) end
end

local function waiting()
  return redis.call('HLEN', P .. 'tk')
end

if op == 'acquire' then
  -- ARGV: id, policy ('' = the plan's), u (uniform for random), wait_ms
  local id, policy, u, wait_ms = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
  -- a retried call (the reply was lost to a dropped connection) gets the first call's answer
  local again = redis.call('HGET', P .. 'lease', id)
  if again then
    local l = cjson.decode(again)
    local lp = plan_of(tostring(l.g))
    return '{"lease":"' .. id .. '","chain":' .. l.k .. ',"servers":' ..
        redis.call('HGET', P .. 'out:' .. tostring(l.g), l.k) ..
        ',"ttl_ms":' .. lp.ttl_ms .. ',"expires_ms":' .. l.dl .. ',"waited_ms":' .. (l.w or 0) ..
        ',"plan":' .. cjson.encode(lp.plan) .. '}'
  end
  if redis.call('HEXISTS', P .. 'tk', id) == 1 then
    return '{"queued":true,"position":' .. redis.call('HLEN', P .. 'tk') .. '}'
  end
  sweep()
  local g, p = current()
  if not g then return '{"error":"no_plan"}' end
  if policy == '' then policy = p.policy end
  count_arrival()
  local k, committed = nil, -1
  if policy == 'jffc' then
    if head(P .. 'q', false) == nil then k = fastest_free(p, g) end
  else
    local kc = choose(p, g, policy, u)
    local qk = P .. 'q:' .. g .. ':' .. (kc - 1)
    if redis.call('LLEN', qk) == 0 and head(P .. 'q', false) == nil and is_free(p, g, kc) then k = kc end
    committed = kc - 1
  end
  if k then return grant(p, g, k, id, now, false) end
  if wait_ms <= 0 then
    return '{"queued":false,"position":' .. (waiting() + 1) .. '}'
  end
  local seq = redis.call('INCR', P .. 'seq')
  redis.call('HSET', P .. 'tk', id, cjson.encode({seq = seq, t0 = now, dl = now + wait_ms, k = committed}))
  if committed >= 0 then
    redis.call('RPUSH', P .. 'q:' .. g .. ':' .. committed, id)
    redis.call('HINCRBY', P .. 'st', 'nq', 1)
  else
    redis.call('RPUSH', P .. 'q', id)
  end
  return '{"queued":true,"position":' .. waiting() .. '}'

elseif op == 'cancel' then
  -- the waiter's wait ended: leave the queue, or take the lease granted meanwhile
  local id = ARGV[2]
  local raw = redis.call('HGET', P .. 'tk', id)
  if raw then
    local t = cjson.decode(raw)
    redis.call('HDEL', P .. 'tk', id)
    redis.call('HINCRBY', P .. 'st', 'timeouts', 1)
    if t.k >= 0 then
      local g = redis.call('GET', P .. 'cur')
      local n = 0
      if g then n = redis.call('LREM', P .. 'q:' .. g .. ':' .. t.k, 1, id) end
      redis.call('HINCRBY', P .. 'st', 'nq', -1)
      if n == 0 then redis.call('LREM', P .. 'q', 1, id) end
    else
      redis.call('LREM', P .. 'q', 1, id)
    end
    return '{"queued":false,"position":0}'
  end
  local resp = redis.call('LPOP', P .. 'w:' .. id)
  if resp then return resp end
  return '{"queued":false,"position":0}'

elseif op == 'release' then
  local ok = release(ARGV[2], 'release')
  sweep()
  drain()
  if ok then return 1 end
  return 0

elseif op == 'renew' then
  sweep()
  local id = ARGV[2]
  local raw = redis.call('HGET', P .. 'lease', id)
  if not raw then drain(); return '{"gone":true}' end
  local l = cjson.decode(raw)
  local p = plan_of(tostring(l.g))
  l.dl = now + p.ttl_ms
  redis.call('HSET', P .. 'lease', id, cjson.encode(l))
  redis.call('ZADD', P .. 'dl', l.dl, id)
  return '{"ttl_ms":' .. p.ttl_ms .. ',"expires_ms":' .. l.dl .. '}'

elseif op == 'sweep' then
  local n = sweep()
  drain()
  return n

elseif op == 'plan' then
  -- ARGV: compiled snapshot JSON ('' = no adopted plan), fingerprint
  local snap, fp = ARGV[2], ARGV[3]
  local old = redis.call('GET', P .. 'cur')
  if old and snap ~= '' and redis.call('GET', P .. 'fp') == fp then return tonumber(old) end
  if old then
    requeue_committed(old)
    if num(redis.call('HGET', P .. 'gin', old)) <= 0 then drop_generation(old) end
  end
  if snap == '' then
    redis.call('DEL', P .. 'cur', P .. 'fp')
    return 0
  end
  local g = tostring(redis.call('INCR', P .. 'gen'))
  local whole = cjson.decode(snap)
  redis.call('SET', P .. 'plan:' .. g, cjson.encode({plan = whole.plan, policy = whole.policy, ttl_ms = whole.ttl_ms,
                                                     c = whole.c, order = whole.order, hops = whole.hops}))
  redis.call('SET', P .. 'planx:' .. g, cjson.encode({t = whole.t, rank = whole.rank, cum = whole.cum, L = whole.L}))
  for k, o in ipairs(whole.out) do redis.call('HSET', P .. 'out:' .. g, k - 1, o) end
  redis.call('SET', P .. 'cur', g)
  redis.call('SET', P .. 'fp', fp)
  recompute_limits(g)
  sweep()
  drain()
  return tonumber(g)

elseif op == 'state' then
  -- one consistent snapshot of everything (the tests sample it to check invariants)
  sweep()
  drain()
  local g, p = current()
  local out = {now_ms = now, waiting = waiting()}
  local st = redis.call('HGETALL', P .. 'st')
  local stats = {}
  for i = 1, #st, 2 do stats[st[i]] = tonumber(st[i + 1]) end
  out.stats = stats
  local wh = redis.call('HGETALL', P .. 'wh')
  local hist = {}
  for i = 1, #wh, 2 do hist[#hist + 1] = {tonumber(wh[i]), tonumber(wh[i + 1])} end
  out.wait_histogram = hist
  out.wait_buckets_ms = WAIT_BUCKETS
  out.arrival_rate = arrival_rate()
  if out.arrival_rate == nil then out.arrival_rate = cjson.null end
  local srv = redis.call('HGETALL', P .. 'srv')
  local lim = redis.call('HGETALL', P .. 'lim')
  local servers = {}
  for i = 1, #srv, 2 do servers[srv[i]] = {used = tonumber(srv[i + 1])} end
  for i = 1, #lim, 2 do
    servers[lim[i]] = servers[lim[i]] or {used = 0}
    servers[lim[i]].limit = tonumber(lim[i + 1])
  end
  out.servers = servers
  local gens = {}
  local gin = redis.call('HGETALL', P .. 'gin')
  for i = 1, #gin, 2 do
    local gp = plan_of(gin[i])
    if gp then gp = full(gp, gin[i]) end
    local entry = {generation = tonumber(gin[i]), in_flight = tonumber(gin[i + 1])}
    if gp then
      entry.plan = gp.plan
      entry.capacity = gp.c
      entry.in_progress = busy(gp, gin[i])
      entry.hops = gp.hops
      entry.L = gp.L
    end
    gens[#gens + 1] = entry
  end
  out.generations = gens
  if g then
    full(p, g)
    out.generation = tonumber(g)
    out.plan = p.plan
    out.policy = p.policy
    local zs = busy(p, g)
    local svc = redis.call('HGETALL', P .. 'svc:' .. g)
    local m = {}
    for i = 1, #svc, 2 do m[svc[i]] = tonumber(svc[i + 1]) end
    local chains = {}
    for k = 1, #p.c do
      local n = m[(k - 1) .. ':n'] or 0
      local mean = cjson.null
      if n > 0 then mean = m[(k - 1) .. ':s'] / n / 1000 end
      chains[k] = {chain = k - 1, capacity = p.c[k], in_progress = zs[k], service_time_s = p.t[k],
                   measured_service_time_s = mean, completed = n,
                   waiting = redis.call('LLEN', P .. 'q:' .. g .. ':' .. (k - 1))}
    end
    out.chains = chains
  else
    out.plan = cjson.null
  end
  return cjson.encode(out)
end
return redis.error_reply('unknown operation ' .. tostring(op))
