-- chainplan live dispatcher: every state change of one cluster, atomically.
--
-- KEYS[1] is the cluster's key prefix (ending in ':'); every key the script
-- touches starts with it, so a standalone Redis may hold any number of clusters
-- and test prefixes.  ARGV[1] names the operation.  Time is Redis's own clock
-- (TIME), so any number of dispatcher processes agree on deadlines.
--
-- Redis Cluster: the prefix carries the planning cluster's hash tag ('<prefix>:{c42}:'), so every key
-- built from it below, fixed or per generation, chain or waiter, hashes to the slot of KEYS[1].  The
-- call is routed by KEYS[1] and Redis (7.0: a script without a shebang line may touch keys it did
-- not declare, as long as they are served by this node; one slot here) runs it there.  Only the
-- prefix is declared: the generation-suffixed names cannot be known before the call reads the
-- header, and declaring the 22 fixed ones would add a slot check per key to every call on the hot
-- path while protecting nothing more (they share one slot anyway).  What declaring would not fix
-- either: moving that slot to another shard (resharding) while calls run; move a slot only with
-- its planning clusters idle (docs/dispatcher.md, "Deployment").
--
-- The hot path (acquire with a free slot, release, renew) is a fixed dozen of O(1) or O(log n)
-- commands: it decodes no JSON and scans no chain, server or lease.  Every redis.call costs about
-- a microsecond inside Redis, so the layout below is chosen to need few of them.
--
-- Keys (P = KEYS[1]; serving/dispatch/lua_keys.py gives each the long name MemoryStore uses for it):
--   m              hash of the plan now dispatched to: cur (its generation), fp (fingerprint of its
--                  snapshot: set_plan is idempotent), policy, ttl (ms), plan (its id, as JSON), and
--                  multi = 1 while an older generation still has leases in flight
--   gen            generation counter
--   plan:<g>, planx:<g>   the compiled snapshot of generation g as JSON (read only off the hot path:
--                  jsq/sed/random, queues, plan switches, state)
--   pg:<g>         hash of generation g's chains: o<k> the answer's hop list, c<k> capacity,
--                  r<k> rank in speed order, h<k> hops [[server, blocks], ...] (JSON)
--   z:<g>          hash chain -> jobs in progress (Z_k) on generation g
--   free:<g>       zset chain -> rank: the chains of generation g with Z_k < c_k, fastest first
--   srv, lim       hash server -> KV block-slots held by jobs in progress (all generations), and the
--                  block-slots a server may hold now (its slots under the current plan, lowered to its
--                  slots under every older plan still in flight).  Kept only while multi = 1: with a
--                  single generation in flight, Z_k <= c_k on every chain already keeps every server
--                  within its slots (a server's slots are the sum of blocks x c_k over its chains), so
--                  the per-server counts are derived from z:<g> when asked for (state)
--   gin            hash generation -> leases in flight, for the older generations only
--   lease          hash lease id -> "g|k|t0|dl|w|rank|c|ttl" (grant time, deadline, wait: ms)
--   dl             zset lease id -> deadline (ms); swept by every call
--   q              the central FIFO queue (JFFC waiters, and every waiter after a switch)
--   q:<g>:<k>      per-chain FIFO queue of waiters committed to chain k (jsq, sed, random)
--   tk             hash ticket id -> {seq, t0, dl, k}: the waiters (empty: nobody waits)
--   w:<id>         mailbox: the lease granted to waiter <id> (the waiter BLPOPs it)
--   st             hash of counters (arrivals, releases, expiries, timeouts, wait_ms, nq)
--   wh             hash bucket -> count: waiting-time histogram of the grants (their sum is the grant count)
--   svc:<g>        hash "<k>:n" / "<k>:s": count and sum of measured service times (ms) of generation g
--   arr            hash second -> arrivals; first: time of the first arrival (ms)
--
-- Liveness and masking (the rules: serving/dispatch/liveness.py, mirrored by the lv_* functions below):
--   sv             hash server -> its liveness record (JSON: state, since, src, till, ep, fl, heard, hdl,
--                  fails, err); a server with no record is up
--   svi            hash server -> the last heartbeat's info (JSON)
--   lvdl           zset server -> when the liveness rules over time may next change its record (ms)
--   mk:<g>         hash chain -> servers of the chain in a masking state, for the current generation g
--                  only; a masked chain is kept out of free:<g> (so JFFC's read of its head is unchanged)
--   ev, evn        stream of state transitions (ids 0-<n>, n from the counter evn), capped near EVENTS_KEPT
--   m's fields mk (1 while a chain of the current plan is masked), dn (servers down), ep (servers in a
--   failure streak) and lvn (the head of lvdl) let the hot path skip every liveness check when none applies

local P = KEYS[1]
local op = ARGV[1]
local tm = redis.call('TIME')
local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
local WAIT_BUCKETS = {1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000, 300000}
local ARRIVAL_WINDOW_S = 60
local EVENTS_KEPT = 10000
local M = P .. 'm'

local function num(v) if v then return tonumber(v) end return 0 end

-- counters that nothing reads during a call are added up here and written once at its end (flush):
-- a batch of operations then costs one HINCRBY per counter, not one per operation
local acc = {}
local arrivals = 0
local function inc(key, field, n)
  local h = acc[key]
  if h == nil then h = {}; acc[key] = h end
  h[field] = (h[field] or 0) + n
end

-- the current plan's header, read once per call (one HMGET)
local meta = nil
local function cur()
  if meta == nil then
    local v = redis.call('HMGET', M, 'cur', 'policy', 'ttl', 'plan', 'multi', 'mk', 'dn', 'ep', 'lvn')
    meta = {g = v[1], policy = v[2], ttl = tonumber(v[3]), plan = v[4], multi = (v[5] == '1'), mk = (v[6] == '1'),
            dn = tonumber(v[7]) or 0, ep = tonumber(v[8]) or 0, lvn = tonumber(v[9])}
  end
  return meta
end

-- the whole snapshot of generation g (slow paths only), in two parts
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

local function hops_of(g, k)
  return cjson.decode(redis.call('HGET', P .. 'pg:' .. g, 'h' .. k))
end

-- room on every server of chain k (0-based) for one more job (only while multi: see srv above)
local function fits(g, k)
  local hops = hops_of(g, k)
  local names = {}
  for i, h in ipairs(hops) do names[i] = h[1] end
  local used = redis.call('HMGET', P .. 'srv', unpack(names))
  local lim = redis.call('HMGET', P .. 'lim', unpack(names))
  for i, h in ipairs(hops) do
    if num(used[i]) + h[2] > num(lim[i]) then return false end
  end
  return true
end

-- chain k (0-based) of the current generation g can take one more job now
local function is_free(g, k)
  if not redis.call('ZSCORE', P .. 'free:' .. g, k) then return false end
  if cur().multi then return fits(g, k) end
  return true
end

-- JFFC: the fastest chain of the current generation g that can take one more job (0-based), or nil
-- (the rule of solvers.dispatch_policy.FreeChains.fastest, with free:<g> as its heap)
local function fastest_free(g)
  if not cur().multi then
    local top = redis.call('ZRANGE', P .. 'free:' .. g, 0, 0)
    if top[1] then return tonumber(top[1]) end
    return nil
  end
  for _, k in ipairs(redis.call('ZRANGE', P .. 'free:' .. g, 0, -1)) do
    if fits(g, k) then return tonumber(k) end
  end
  return nil
end

-- server counts of every job in flight, from the chains' counts (entering multi)
local function count_servers(g, into)
  local p = plan_of(g)
  if p == nil then return end
  local zs = busy(p, g)
  for k = 1, #p.c do
    if zs[k] > 0 then
      for _, h in ipairs(p.hops[k]) do into[h[1]] = (into[h[1]] or 0) + h[2] * zs[k] end
    end
  end
end

-- limits per server: the current plan's, lowered by every older generation in flight
local function recompute_limits(g)
  local p = full(plan_of(g), g)
  local lim = {}
  for s, v in pairs(p.L) do lim[s] = v end
  for _, og in ipairs(redis.call('HKEYS', P .. 'gin')) do
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
  redis.call('DEL', P .. 'plan:' .. g, P .. 'planx:' .. g, P .. 'pg:' .. g, P .. 'z:' .. g, P .. 'free:' .. g,
             P .. 'svc:' .. g, P .. 'mk:' .. g)
  acc[P .. 'svc:' .. g] = nil
  plans[g] = nil
end

local function bucket_of(ms)
  for i, b in ipairs(WAIT_BUCKETS) do
    if ms <= b then return i end
  end
  return #WAIT_BUCKETS + 1
end

local function lease_answer(id, k, out, ttl, dl, waited, plan)
  return '{"lease":"' .. id .. '","chain":' .. k .. ',"servers":' .. out .. ',"ttl_ms":' .. ttl ..
      ',"expires_ms":' .. dl .. ',"waited_ms":' .. waited .. ',"plan":' .. plan .. '}'
end

-- nil for a record this version did not write (a lease of an older dispatcher: it is dropped)
local function parse_lease(raw)
  local g, k, t0, dl, w, r, c, ttl = string.match(raw, '^([^|]+)|([^|]+)|([^|]+)|([^|]+)|([^|]+)|([^|]+)|([^|]+)|([^|]+)$')
  if ttl == nil then return nil end
  return {g = g, k = tonumber(k), t0 = tonumber(t0), dl = tonumber(dl), w = tonumber(w), r = tonumber(r),
          c = tonumber(c), ttl = tonumber(ttl)}
end

local function lease_record(l)
  return table.concat({l.g, l.k, l.t0, l.dl, l.w, l.r, l.c, l.ttl}, '|')
end

-- chain k (0-based) of the current generation g to lease id
local function grant(g, k, id, t0, mailbox)
  local m = cur()
  local pgk = P .. 'pg:' .. g
  local z = redis.call('HINCRBY', P .. 'z:' .. g, k, 1)
  local info = redis.call('HMGET', pgk, 'c' .. k, 'o' .. k, 'r' .. k)
  local c = tonumber(info[1])
  if z >= c then redis.call('ZREM', P .. 'free:' .. g, k) end
  if m.multi then
    for _, h in ipairs(hops_of(g, k)) do redis.call('HINCRBY', P .. 'srv', h[1], h[2]) end
  end
  local dl = now + m.ttl
  local waited = now - t0
  if waited < 0 then waited = 0 end
  redis.call('HSET', P .. 'lease', id,
             lease_record({g = g, k = k, t0 = now, dl = dl, w = waited, r = info[3], c = c, ttl = m.ttl}))
  redis.call('ZADD', P .. 'dl', dl, id)
  if waited > 0 then inc(P .. 'st', 'wait_ms', waited) end
  inc(P .. 'wh', bucket_of(waited), 1)
  local resp = lease_answer(id, k, info[2], m.ttl, dl, waited, m.plan)
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
  -- nothing waits (the common case): done, with one command
  if redis.call('HLEN', P .. 'tk') == 0 then return end
  local g = cur().g
  if not g then return end
  while true do
    local best_id, best_t, best_k, best_q, best_counted = nil, nil, nil, nil, false
    local id, t = head(P .. 'q', false)
    if id then
      local k = fastest_free(g)
      if k then best_id, best_t, best_k, best_q = id, t, k, P .. 'q' end
    end
    if num(redis.call('HGET', P .. 'st', 'nq')) > 0 then
      local p = plan_of(g)
      for k = 0, #p.c - 1 do
        local qk = P .. 'q:' .. g .. ':' .. k
        if redis.call('LLEN', qk) > 0 then
          local id2, t2 = head(qk, true)
          if id2 and (best_id == nil or t2.seq < best_t.seq) and is_free(g, k) then
            best_id, best_t, best_k, best_q, best_counted = id2, t2, k, qk, true
          end
        end
      end
    end
    if best_id == nil then return end
    redis.call('LPOP', best_q)
    redis.call('HDEL', P .. 'tk', best_id)
    if best_counted then redis.call('HINCRBY', P .. 'st', 'nq', -1) end
    grant(g, best_k, best_id, best_t.t0, true)
  end
end

-- liveness: the rules of serving/dispatch/liveness.py, function by function ---------------------------
-- (built on the first call that needs it: a call with no liveness work creates none of these closures)
local function make_lv()
  local MASKING = {suspect = true, down = true, draining = true, joining = true}

  local function copy(t)
    local o = {}
    for key, v in pairs(t) do o[key] = v end
    return o
  end

  local function lv_new()
    return {state = 'up', since = 0, src = '', till = 0, ep = 0, fl = '', heard = 0, hdl = 0, fails = 0, err = ''}
  end

  local function lv_get(s)
    local raw = redis.call('HGET', P .. 'sv', s)
    if raw then return cjson.decode(raw) end
    return lv_new()
  end

  local function probation(ep, sm, mx)
    local p = sm
    for _ = 1, ep - 1 do
      p = p * 2
      if p >= mx then return mx end
    end
    if p > mx then return mx end
    return p
  end

  local function moved(rec, state, src)
    local out = copy(rec)
    out.state, out.src = state, src
    if rec.state ~= state then out.since = now end
    return out
  end

  local function in_period(rec)
    return rec.src == 'f' and (rec.state == 'suspect' or rec.state == 'down') and now < rec.till
  end

  -- (the caller has cut err to liveness.MAX_CAUSE characters)
  local function lv_failure(rec, lease, err, sm, mx)
    local out = copy(rec)
    out.fails = rec.fails + 1
    out.err = err
    local cause = 'failure report'
    if err ~= '' then cause = 'failure report: ' .. err end
    if rec.state == 'up' then
      out = moved(out, 'suspect', 'f')
      out.ep = rec.ep + 1
      out.till = now + probation(out.ep, sm, mx)
      out.fl = lease
      return out, cause
    end
    if rec.state == 'suspect' and lease ~= rec.fl then
      out = moved(out, 'down', 'f')
      out.till = now + probation(math.max(1, rec.ep), sm, mx)
      return out, cause
    end
    return out, nil
  end

  local function lv_heartbeat(rec, state, tmo)
    local out = copy(rec)
    out.heard, out.hdl = now, now + tmo
    if in_period(rec) then return out, nil end
    local c = rec.state
    if state == 'draining' then
      if c == 'draining' then return out, nil end
      out = moved(out, 'draining', 'h')
      out.till = 0
      return out, 'heartbeat: draining'
    end
    if c == 'down' or c == 'joining' or (c == 'draining' and rec.src == 'h') then
      out = moved(out, 'up', 'h')
      out.till = 0
      return out, 'heartbeat'
    end
    return out, nil
  end

  local function lv_set(rec, state, cause, sm, mx, tmo)
    if rec.state == state and rec.src == 'o' then return copy(rec), nil end
    local out = moved(rec, state, 'o')
    out.till = 0
    if rec.hdl > 0 then out.hdl = now + tmo end
    if state == 'up' then
      out.ep = 0
    elseif state == 'suspect' then
      out.ep = rec.ep + 1
      out.till = now + probation(out.ep, sm, mx)
    end
    if rec.state == state then return out, nil end
    if cause == '' then cause = 'set by owner' end
    return out, cause
  end

  local function lv_tick(rec)
    local c = rec.state
    local silent = rec.hdl > 0 and now >= rec.hdl
    if (c == 'suspect' or c == 'down') and rec.till ~= 0 and now >= rec.till then
      local out = copy(rec)
      out.till = 0
      if silent then
        local why = nil
        if c ~= 'down' then why = 'heartbeat timeout' end
        return moved(out, 'down', 't'), why
      end
      local why = 'failure ban over'
      if c == 'suspect' then why = 'suspect period over' end
      return moved(out, 'up', 'p'), why
    end
    if silent and (c == 'up' or c == 'suspect' or c == 'joining') then
      local out = moved(rec, 'down', 't')
      out.till = 0
      return out, 'heartbeat timeout'
    end
    return rec, nil
  end

  local function lv_deadline(rec)
    local c = rec.state
    local t = nil
    if (c == 'suspect' or c == 'down') and rec.till ~= 0 then t = rec.till end
    if rec.hdl > 0 and (c == 'up' or c == 'suspect' or c == 'joining') then
      if t == nil or rec.hdl < t then t = rec.hdl end
    end
    return t
  end

  -- waiters committed to chain k0 of generation g (masked now) move to the central queue, in arrival order
  local function requeue_chain(g, k0)
    local qk = P .. 'q:' .. g .. ':' .. k0
    if redis.call('LLEN', qk) == 0 then return end
    local live = {}
    for _, id in ipairs(redis.call('LRANGE', P .. 'q', 0, -1)) do
      local raw = redis.call('HGET', P .. 'tk', id)
      if raw then live[#live + 1] = {cjson.decode(raw).seq, id} end
    end
    local n = 0
    for _, id in ipairs(redis.call('LRANGE', qk, 0, -1)) do
      local raw = redis.call('HGET', P .. 'tk', id)
      if raw then
        local t = cjson.decode(raw)
        t.k = -1
        redis.call('HSET', P .. 'tk', id, cjson.encode(t))
        live[#live + 1] = {t.seq, id}
        n = n + 1
      end
    end
    redis.call('DEL', qk, P .. 'q')
    if n > 0 then redis.call('HINCRBY', P .. 'st', 'nq', -n) end
    table.sort(live, function(a, b) return a[1] < b[1] end)
    for _, e in ipairs(live) do redis.call('RPUSH', P .. 'q', e[2]) end
  end

  -- server s entered (+1) or left (-1) a masking state: the current plan's chains through it
  local function mask_server(s, delta)
    local m = cur()
    local g = m.g
    if not g then return end
    local p = plan_of(g)
    local mkk = P .. 'mk:' .. g
    for k = 1, #p.c do
      local on = false
      for _, h in ipairs(p.hops[k]) do
        if h[1] == s then on = true; break end
      end
      if on then
        local k0 = k - 1
        local room = p.c[k] > 0 and num(redis.call('HGET', P .. 'z:' .. g, k0)) < p.c[k]
        local n = redis.call('HINCRBY', mkk, k0, delta)
        if delta > 0 and n == 1 then
          redis.call('ZREM', P .. 'free:' .. g, k0)
          requeue_chain(g, k0)
        elseif n <= 0 then
          redis.call('HDEL', mkk, k0)
          if room then redis.call('ZADD', P .. 'free:' .. g, redis.call('HGET', P .. 'pg:' .. g, 'r' .. k0), k0) end
        end
      end
    end
    m.mk = redis.call('HLEN', mkk) > 0
    if m.mk then redis.call('HSET', M, 'mk', 1) else redis.call('HSET', M, 'mk', 0) end
    drain()
  end

  -- store a server's new record; a change of state is an event, and masks or unmasks its chains
  local function lv_write(s, old, new, cause)
    local m = cur()
    redis.call('HSET', P .. 'sv', s, cjson.encode(new))
    local dl = lv_deadline(new)
    if dl then redis.call('ZADD', P .. 'lvdl', dl, s) else redis.call('ZREM', P .. 'lvdl', s) end
    local top = redis.call('ZRANGE', P .. 'lvdl', 0, 0, 'WITHSCORES')
    if top[1] then
      redis.call('HSET', M, 'lvn', top[2])
      m.lvn = tonumber(top[2])
    else
      redis.call('HDEL', M, 'lvn')
      m.lvn = nil
    end
    local de = 0
    if new.ep > 0 then de = de + 1 end
    if old.ep > 0 then de = de - 1 end
    if de ~= 0 then m.ep = redis.call('HINCRBY', M, 'ep', de) end
    if old.state == new.state then return end
    local n = redis.call('INCR', P .. 'evn')
    redis.call('XADD', P .. 'ev', 'MAXLEN', '~', EVENTS_KEPT, '0-' .. n, 'server', s, 'state', new.state,
               'prev', old.state, 'at', now, 'cause', cause or '')
    local dd = 0
    if new.state == 'down' then dd = dd + 1 end
    if old.state == 'down' then dd = dd - 1 end
    if dd ~= 0 then m.dn = redis.call('HINCRBY', M, 'dn', dd) end
    local was, is = MASKING[old.state] == true, MASKING[new.state] == true
    if was ~= is then
      if is then mask_server(s, 1) else mask_server(s, -1) end
    end
  end

  -- the rules over time, for the servers whose deadline passed
  local function lv_sweep()
    for _, s in ipairs(redis.call('ZRANGEBYSCORE', P .. 'lvdl', '-inf', now)) do
      local old = lv_get(s)
      local new, cause = lv_tick(old)
      lv_write(s, old, new, cause)
    end
  end

  -- a successful release through chain k of generation g: each up server's failure streak ends
  local function lv_success(g, k)
    local names, seen = {}, {}
    for _, h in ipairs(hops_of(g, k)) do
      if not seen[h[1]] then seen[h[1]] = true; names[#names + 1] = h[1] end
    end
    local recs = redis.call('HMGET', P .. 'sv', unpack(names))
    local m = cur()
    for i, raw in ipairs(recs) do
      if raw then
        local r = cjson.decode(raw)
        if r.ep > 0 and r.state == 'up' then
          r.ep = 0
          redis.call('HSET', P .. 'sv', names[i], cjson.encode(r))
          m.ep = redis.call('HINCRBY', M, 'ep', -1)
        end
      end
    end
  end

  -- the first server of chain k of generation g that is down, or nil
  local function down_on(g, k)
    local names = {}
    for i, h in ipairs(hops_of(g, k)) do names[i] = h[1] end
    local recs = redis.call('HMGET', P .. 'sv', unpack(names))
    for i, raw in ipairs(recs) do
      if raw and string.find(raw, '"state":"down"', 1, true) then return names[i] end
    end
    return nil
  end

  return {MASKING = MASKING, get = lv_get, new = lv_new, failure = lv_failure, heartbeat = lv_heartbeat,
          set = lv_set, write = lv_write, sweep = lv_sweep, success = lv_success, down_on = down_on}
end

local LV = nil
local function lv()
  if LV == nil then LV = make_lv() end
  return LV
end

local function release(id, kind)
  local raw = redis.call('HGET', P .. 'lease', id)
  if not raw then return false end
  local l = parse_lease(raw)
  redis.call('HDEL', P .. 'lease', id)
  redis.call('ZREM', P .. 'dl', id)
  if l == nil then return false end
  local g, k = l.g, l.k
  local m = cur()
  if redis.call('HINCRBY', P .. 'z:' .. g, k, -1) == l.c - 1 then
    -- a masked chain stays out of free:<g> (m.mk: some chain of the current plan is masked)
    if not (m.mk and g == m.g and redis.call('HEXISTS', P .. 'mk:' .. g, k) == 1) then
      redis.call('ZADD', P .. 'free:' .. g, l.r, k)
    end
  end
  if m.multi then
    for _, h in ipairs(hops_of(g, k)) do redis.call('HINCRBY', P .. 'srv', h[1], -h[2]) end
  end
  if kind == 'release' then
    inc(P .. 'st', 'releases', 1)
    inc(P .. 'svc:' .. g, k .. ':n', 1)
    inc(P .. 'svc:' .. g, k .. ':s', now - l.t0)
    if m.ep > 0 then lv().success(g, k) end
  elseif kind == 'failed' then        -- a failed request's time is no service time
    inc(P .. 'st', 'releases', 1)
    inc(P .. 'st', 'failures', 1)
  elseif kind == 'revoked' then
    inc(P .. 'st', 'revoked', 1)
  else
    inc(P .. 'st', 'expiries', 1)
  end
  if m.multi and g ~= m.g then
    -- a job of an older plan ended: when that plan has none left, it goes, and so do its limits
    if redis.call('HINCRBY', P .. 'gin', g, -1) <= 0 then
      redis.call('HDEL', P .. 'gin', g)
      drop_generation(g)
      if redis.call('HLEN', P .. 'gin') == 0 then
        redis.call('DEL', P .. 'srv', P .. 'lim')
        redis.call('HSET', M, 'multi', 0)
        m.multi = false
      elseif m.g then
        recompute_limits(m.g)
      end
    end
  end
  return true
end

local swept = false
local function sweep()
  -- once per call: a batch runs at one instant, and a lease granted in it expires later
  if swept then return 0 end
  swept = true
  local m = cur()
  if m.lvn and now >= m.lvn then lv().sweep() end
  local gone = redis.call('ZRANGEBYSCORE', P .. 'dl', '-inf', now, 'LIMIT', 0, 256)
  for _, id in ipairs(gone) do release(id, 'expiry') end
  if #gone > 0 then drain() end
  return #gone
end

local function count_arrival()
  arrivals = arrivals + 1
end

local function flush()
  for key, h in pairs(acc) do
    for field, n in pairs(h) do
      redis.call('HINCRBY', key, field, n)
    end
  end
  acc = {}
  if arrivals == 0 then return end
  local n = arrivals
  arrivals = 0
  local sec = math.floor(now / 1000)
  redis.call('HINCRBY', P .. 'st', 'arrivals', n)
  if redis.call('HINCRBY', P .. 'arr', sec, n) == n then
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

-- the immediate-dispatch policies of solvers.dispatch: the chain (0-based) a job is committed to
-- (masked chains are left out; -1: every chain is masked, the job waits in the central queue)
local function choose(g, policy, u)
  local p = full(plan_of(g), g)
  local K = #p.c
  local masked, any = {}, false
  if cur().mk then
    local mv = redis.call('HGETALL', P .. 'mk:' .. g)
    for i = 1, #mv, 2 do masked[tonumber(mv[i]) + 1] = true; any = true end
  end
  if policy == 'random' then
    if not any then
      local total = p.cum[K]
      local x = u * total
      for k = 1, K do
        if p.cum[k] > x then return k - 1 end     -- bisect_right
      end
      return K - 1
    end
    -- the unmasked chains' rates, summed in index order as MemoryStore._choose does
    local cum, total, last = {}, 0, -1
    for k = 1, K do
      if not masked[k] and p.c[k] > 0 then
        total = total + p.c[k] / p.t[k]
        last = k - 1
      end
      cum[k] = total
    end
    if total <= 0 then return -1 end
    local x = u * total
    for k = 1, K do
      if cum[k] > x then return k - 1 end
    end
    return last
  end
  local zs = busy(p, g)
  local best, best_key, best_rank = nil, nil, nil
  for k = 1, K do
    local c = p.c[k]
    if c > 0 and not masked[k] then
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
  if best == nil then return -1 end
  return best - 1
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

-- ARGV of acquire: id, policy ('' = the plan's), u (uniform for random), wait_ms
local function op_acquire(id, policy, u, wait_ms)
  -- a retried call (the reply was lost to a dropped connection) gets the first call's answer
  local again = redis.call('HGET', P .. 'lease', id)
  local l = again and parse_lease(again)
  if l then
    local info = redis.call('HMGET', P .. 'pg:' .. l.g, 'o' .. l.k, 'plan')
    return lease_answer(id, l.k, info[1], l.ttl, l.dl, l.w, info[2])
  end
  local nw = waiting()
  if nw > 0 and redis.call('HEXISTS', P .. 'tk', id) == 1 then
    return '{"queued":true,"position":' .. nw .. '}'
  end
  if sweep() > 0 then nw = waiting() end
  local m = cur()
  local g = m.g
  if not g then return '{"error":"no_plan"}' end
  if policy == '' then policy = m.policy end
  count_arrival()
  local k, committed = nil, -1
  if policy == 'jffc' then
    if nw == 0 or head(P .. 'q', false) == nil then k = fastest_free(g) end
  else
    local kc = choose(g, policy, u)
    if kc >= 0 and (nw == 0 or (redis.call('LLEN', P .. 'q:' .. g .. ':' .. kc) == 0
                                and head(P .. 'q', false) == nil)) then
      if is_free(g, kc) then k = kc end
    end
    committed = kc
  end
  if k then return grant(g, k, id, now, false) end
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

end

local function op_release(id)
  local ok = release(id, 'release')
  -- expired leases matter only to waiters (every acquire sweeps first, every waiter every 0.25 s)
  if waiting() > 0 then
    sweep()
    drain()
  end
  if ok then return 1 end
  return 0
end

local function op_renew(id)
  sweep()
  local raw = redis.call('HGET', P .. 'lease', id)
  local l = raw and parse_lease(raw)
  if not l then drain(); return '{"gone":true}' end
  if cur().dn > 0 then
    local s = lv().down_on(l.g, l.k)
    if s then     -- the request cannot finish: the lease ends, the client is told why
      release(id, 'revoked')
      drain()
      return '{"gone":true,"server":' .. cjson.encode(s) .. '}'
    end
  end
  l.dl = now + l.ttl
  redis.call('HSET', P .. 'lease', id, lease_record(l))
  redis.call('ZADD', P .. 'dl', l.dl, id)
  return '{"ttl_ms":' .. l.ttl .. ',"expires_ms":' .. l.dl .. '}'
end

-- every branch leaves through here: the counters added up during the call are written first
local function done(result)
  flush()
  return result
end

if op == 'acquire' then
  return done(op_acquire(ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])))

elseif op == 'batch' then
  -- several operations of one cluster, in order, in one call (the client's auto-pipelining): ARGV[2..]
  -- is 'acquire', id, policy, u, wait_ms | 'release', id | 'renew', id, ...; the answer is their answers
  local out = {}
  local i = 2
  while i <= #ARGV do
    local o = ARGV[i]
    if o == 'acquire' then
      out[#out + 1] = op_acquire(ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4]))
      i = i + 5
    elseif o == 'release' then
      out[#out + 1] = op_release(ARGV[i + 1])
      i = i + 2
    elseif o == 'renew' then
      out[#out + 1] = op_renew(ARGV[i + 1])
      i = i + 2
    else
      flush()
      return redis.error_reply('unknown batched operation ' .. tostring(o))
    end
  end
  return done(out)

elseif op == 'fail' then
  local L = lv()
  -- a release with a failure report, in one step (ARGV: lease, server, error, suspect_ms, max_ms): the
  -- server's new state (and masks) before the slot frees, so the freed slot never goes back to its chain
  local id, s, err = ARGV[2], ARGV[3], ARGV[4]
  sweep()
  local raw = redis.call('HGET', P .. 'lease', id)
  local l = raw and parse_lease(raw)
  if not l then
    return done(cjson.encode({released = false, server = s, server_state = L.get(s).state}))
  end
  local names, on = {}, false
  for i, h in ipairs(hops_of(l.g, l.k)) do
    names[i] = h[1]
    if h[1] == s then on = true end
  end
  if not on then return done(cjson.encode({error = 'not_on_chain', server = s, servers = names})) end
  local old = L.get(s)
  local new, cause = L.failure(old, id, err, tonumber(ARGV[5]), tonumber(ARGV[6]))
  L.write(s, old, new, cause)
  release(id, 'failed')
  drain()
  return done(cjson.encode({released = true, server = s, server_state = new.state}))

elseif op == 'heartbeat' then
  local L = lv()
  -- ARGV: server, state ('up' | 'draining'), info (JSON or ''), heartbeat timeout (ms)
  local s = ARGV[2]
  sweep()
  local old = L.get(s)
  local new, cause = L.heartbeat(old, ARGV[3], tonumber(ARGV[5]))
  L.write(s, old, new, cause)
  if ARGV[4] ~= '' then redis.call('HSET', P .. 'svi', s, ARGV[4]) end
  return done(cjson.encode(new))

elseif op == 'setstate' then
  local L = lv()
  -- ARGV: server, state, cause, suspect_ms, max_ms, heartbeat timeout (ms)
  local s = ARGV[2]
  sweep()
  local old = L.get(s)
  local new, cause = L.set(old, ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]))
  L.write(s, old, new, cause)
  return done(cjson.encode(new))

elseif op == 'servers' then
  local L = lv()
  sweep()
  local out = {}
  local g = cur().g
  if g then
    for s, _ in pairs(full(plan_of(g), g).L) do out[s] = L.new() end
  end
  local sv = redis.call('HGETALL', P .. 'sv')
  for i = 1, #sv, 2 do out[sv[i]] = cjson.decode(sv[i + 1]) end
  local info = {}
  local si = redis.call('HGETALL', P .. 'svi')
  for i = 1, #si, 2 do info[si[i]] = si[i + 1] end
  return done(cjson.encode({servers = out, info = info}))

elseif op == 'events' then
  -- ARGV: the first stream id to answer ('0-<after + 1>'), limit
  sweep()
  local rows = redis.call('XRANGE', P .. 'ev', ARGV[2], '+', 'COUNT', tonumber(ARGV[3]))
  local out = {}
  for _, r in ipairs(rows) do
    local e = {id = tonumber(string.match(r[1], '^0%-(%d+)$'))}
    local f = r[2]
    for i = 1, #f, 2 do e[f[i]] = f[i + 1] end
    e.at = tonumber(e.at)
    out[#out + 1] = e
  end
  return done(cjson.encode(out))

elseif op == 'cancel' then
  -- the waiter's wait ended: leave the queue, or take the lease granted meanwhile
  local id = ARGV[2]
  local raw = redis.call('HGET', P .. 'tk', id)
  if raw then
    local t = cjson.decode(raw)
    redis.call('HDEL', P .. 'tk', id)
    redis.call('HINCRBY', P .. 'st', 'timeouts', 1)
    if t.k >= 0 then
      local g = cur().g
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
  return done(op_release(ARGV[2]))

elseif op == 'renew' then
  return done(op_renew(ARGV[2]))

elseif op == 'sweep' then
  local n = sweep()
  drain()
  return done(n)

elseif op == 'plan' then
  -- ARGV: compiled snapshot JSON ('' = no adopted plan), fingerprint
  local snap, fp = ARGV[2], ARGV[3]
  local m = cur()
  local old = m.g
  if old and snap ~= '' and redis.call('HGET', M, 'fp') == fp then return tonumber(old) end
  if old then
    redis.call('DEL', P .. 'mk:' .. old)     -- masks are kept for the plan dispatched to only
    redis.call('HSET', M, 'mk', 0)
    m.mk = false
    requeue_committed(old)
    local n = 0
    for _, v in ipairs(redis.call('HVALS', P .. 'z:' .. old)) do n = n + tonumber(v) end
    if n > 0 then
      -- its jobs finish on it; from now on the servers' counts and limits are kept
      if not m.multi then
        local used = {}
        count_servers(old, used)
        redis.call('DEL', P .. 'srv')
        local flat = {}
        for s, v in pairs(used) do flat[#flat + 1] = s; flat[#flat + 1] = v end
        if #flat > 0 then redis.call('HSET', P .. 'srv', unpack(flat)) end
        redis.call('HSET', M, 'multi', 1)
        m.multi = true
      end
      redis.call('HSET', P .. 'gin', old, n)
    else
      drop_generation(old)
    end
  end
  if snap == '' then
    redis.call('HDEL', M, 'cur', 'fp', 'policy', 'ttl', 'plan')
    m.g = nil
    return 0
  end
  local g = tostring(redis.call('INCR', P .. 'gen'))
  local whole = cjson.decode(snap)
  local planjson = cjson.encode(whole.plan)
  redis.call('SET', P .. 'plan:' .. g, cjson.encode({plan = whole.plan, policy = whole.policy, ttl_ms = whole.ttl_ms,
                                                     c = whole.c, hops = whole.hops}))
  redis.call('SET', P .. 'planx:' .. g, cjson.encode({t = whole.t, rank = whole.rank, cum = whole.cum, L = whole.L}))
  -- the chains masked from the start: those through a server in a masking state
  local states = {}
  local sv = redis.call('HGETALL', P .. 'sv')
  for i = 1, #sv, 2 do states[sv[i]] = string.match(sv[i + 1], '"state":"(%a+)"') end
  local fields, free, masks = {'plan', planjson}, {}, {}
  for k = 1, #whole.c do
    local k0 = k - 1
    fields[#fields + 1] = 'o' .. k0; fields[#fields + 1] = whole.out[k]
    fields[#fields + 1] = 'c' .. k0; fields[#fields + 1] = whole.c[k]
    fields[#fields + 1] = 'r' .. k0; fields[#fields + 1] = whole.rank[k]
    fields[#fields + 1] = 'h' .. k0; fields[#fields + 1] = cjson.encode(whole.hops[k])
    local n = 0
    for _, h in ipairs(whole.hops[k]) do
      if lv().MASKING[states[h[1]] or 'up'] then n = n + 1 end
    end
    if n > 0 then
      masks[#masks + 1] = k0; masks[#masks + 1] = n
    elseif whole.c[k] > 0 then
      free[#free + 1] = whole.rank[k]; free[#free + 1] = k0
    end
  end
  redis.call('HSET', P .. 'pg:' .. g, unpack(fields))
  if #free > 0 then redis.call('ZADD', P .. 'free:' .. g, unpack(free)) end
  if #masks > 0 then
    redis.call('HSET', P .. 'mk:' .. g, unpack(masks))
    redis.call('HSET', M, 'mk', 1)
    m.mk = true
  end
  redis.call('HSET', M, 'cur', g, 'fp', fp, 'policy', whole.policy, 'ttl', whole.ttl_ms, 'plan', planjson)
  m.g, m.policy, m.ttl, m.plan = g, whole.policy, tonumber(whole.ttl_ms), planjson
  if m.multi then recompute_limits(g) end
  sweep()
  drain()
  return done(tonumber(g))

elseif op == 'state' then
  -- one consistent snapshot of everything (the tests sample it to check invariants)
  sweep()
  drain()
  flush()
  local m = cur()
  local g = m.g
  local p = nil
  if g then p = full(plan_of(g), g) end
  local out = {now_ms = now, waiting = waiting()}
  local st = redis.call('HGETALL', P .. 'st')
  local stats = {}
  for i = 1, #st, 2 do stats[st[i]] = tonumber(st[i + 1]) end
  out.stats = stats
  local wh = redis.call('HGETALL', P .. 'wh')
  local hist = {}
  local grants = 0
  for i = 1, #wh, 2 do
    hist[#hist + 1] = {tonumber(wh[i]), tonumber(wh[i + 1])}
    grants = grants + tonumber(wh[i + 1])
  end
  stats.grants = grants
  out.wait_histogram = hist
  out.wait_buckets_ms = WAIT_BUCKETS
  out.arrival_rate = arrival_rate()
  if out.arrival_rate == nil then out.arrival_rate = cjson.null end
  local servers = {}
  if m.multi then
    local srv = redis.call('HGETALL', P .. 'srv')
    local lim = redis.call('HGETALL', P .. 'lim')
    for i = 1, #srv, 2 do servers[srv[i]] = {used = tonumber(srv[i + 1])} end
    for i = 1, #lim, 2 do
      servers[lim[i]] = servers[lim[i]] or {used = 0}
      servers[lim[i]].limit = tonumber(lim[i + 1])
    end
  elseif g then
    local used = {}
    count_servers(g, used)
    for s, v in pairs(p.L) do servers[s] = {used = used[s] or 0, limit = v} end
  end
  out.servers = servers
  local states = {}
  if g then
    for s, _ in pairs(p.L) do states[s] = {state = 'up', since = 0} end
  end
  local sv = redis.call('HGETALL', P .. 'sv')
  for i = 1, #sv, 2 do
    local r = cjson.decode(sv[i + 1])
    states[sv[i]] = {state = r.state, since = r.since}
  end
  out.server_states = states
  -- generations with leases in flight: the older ones (gin), then the current one
  local gens = {}
  local inflight = {}
  local gin = redis.call('HGETALL', P .. 'gin')
  for i = 1, #gin, 2 do inflight[#inflight + 1] = {gin[i], tonumber(gin[i + 1])} end
  if g then
    local n = 0
    for _, z in ipairs(busy(p, g)) do n = n + z end
    if n > 0 then inflight[#inflight + 1] = {g, n} end
  end
  for _, e in ipairs(inflight) do
    local gp = plan_of(e[1])
    if gp then gp = full(gp, e[1]) end
    local entry = {generation = tonumber(e[1]), in_flight = e[2]}
    if gp then
      entry.plan = gp.plan
      entry.capacity = gp.c
      entry.in_progress = busy(gp, e[1])
      entry.hops = gp.hops
      entry.L = gp.L
    end
    gens[#gens + 1] = entry
  end
  out.generations = gens
  if g then
    out.generation = tonumber(g)
    out.plan = p.plan
    out.policy = p.policy
    local zs = busy(p, g)
    local svc = redis.call('HGETALL', P .. 'svc:' .. g)
    local sm = {}
    for i = 1, #svc, 2 do sm[svc[i]] = tonumber(svc[i + 1]) end
    local masked = {}
    local mv = redis.call('HGETALL', P .. 'mk:' .. g)
    for i = 1, #mv, 2 do masked[tonumber(mv[i]) + 1] = true end
    local chains = {}
    for k = 1, #p.c do
      local n = sm[(k - 1) .. ':n'] or 0
      local mean = cjson.null
      if n > 0 then mean = (sm[(k - 1) .. ':s'] or 0) / n / 1000 end
      chains[k] = {chain = k - 1, capacity = p.c[k], in_progress = zs[k], masked = masked[k] == true,
                   service_time_s = p.t[k],
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
