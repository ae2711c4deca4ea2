-- wrk script: POST pre-signed webhooks to /webhooks/lightspark, one request
-- per body, cycling through them.
--
--   WEBHOOK_BODIES=FILE WEBHOOK_THREADS=2 \
--     wrk -t2 -c64 -d10s --latency -s scripts/bench/webhooks.lua http://127.0.0.1:PORT
--
-- FILE is written by `bench wrk-bodies`: one request a line, the 64-digit
-- hex `lightspark-signature`, one space, the exact body bytes.
-- WEBHOOK_THREADS must equal wrk's -t: thread k of n sends lines k, k+n,
-- k+2n, ... so the threads send different webhooks.
--
-- Why the bodies are read in setup(), not in each thread's init(): wrk
-- starts each thread right after that thread's init, and a thread's
-- connections are open from then on. Were each init to read and format its
-- own share (seconds for a million bodies), the first thread would send
-- alone while the next ones read, and its idle connections could outlive
-- the service's 10 s header timeout. So the main script state (where wrk
-- calls setup) reads the file and formats every request once, with
-- wrk.format, before the first thread exists, and setup() hands each
-- thread its share. Copying a share still takes a moment, so with
-- WEBHOOK_GATE set (a path that must not exist yet) the last thread's
-- init creates that file and every thread waits for it before its first
-- request: all start together, when wrk starts its clock.
--
-- done() prints one `wrk-result key=value ...` line for `bench wrk`.

local threads = {}
local shares = nil
local count_threads = 0

local function read_bodies()
  local path = assert(os.getenv("WEBHOOK_BODIES"), "set WEBHOOK_BODIES to a file from `bench wrk-bodies`")
  local n = tonumber(os.getenv("WEBHOOK_THREADS") or "2")
  local file = assert(io.open(path, "rb"))
  local data = file:read("*a")
  file:close()
  local out = {}
  for k = 1, n do
    out[k] = {}
  end
  local headers = { ["content-type"] = "application/json" }
  local pos, line = 1, 0
  while pos <= #data do
    local newline = data:find("\n", pos, true) or (#data + 1)
    assert(data:byte(pos + 64) == 32, "line " .. (line + 1) .. " of " .. path .. " is not `SIGNATURE BODY`")
    headers["lightspark-signature"] = data:sub(pos, pos + 63)
    local share = out[line % n + 1]
    share[#share + 1] = wrk.format("POST", "/webhooks/lightspark", headers, data:sub(pos + 65, newline - 1))
    pos = newline + 1
    line = line + 1
  end
  return out
end

function setup(thread)
  shares = shares or read_bodies()
  count_threads = count_threads + 1
  local share = shares[count_threads]
  assert(share and #share > 0, "no bodies for thread " .. count_threads .. ": is WEBHOOK_THREADS wrk's -t?")
  thread:set("prepared", share)
  thread:set("thread_index", count_threads - 1)
  thread:set("thread_count", #shares)
  thread:set("gate", os.getenv("WEBHOOK_GATE"))
  shares[count_threads] = false
  table.insert(threads, thread)
end

local function sleep_ms(ms)
  local ok, ffi = pcall(require, "ffi")
  if ok then
    pcall(ffi.cdef, "int usleep(unsigned int usec);")
    ffi.C.usleep(ms * 1000)
  else
    os.execute("sleep " .. ms / 1000)
  end
end

function init(args)
  count = #prepared
  sent = 0
  wrapped = 0
  started = (gate == nil)
  if gate and thread_index == thread_count - 1 then
    assert(io.open(gate, "w")):close()
  end
end

function request()
  if not started then
    -- wrk calls the first thread's request() once, right after its init,
    -- to check what it returns: answer that call without waiting (the
    -- gate does not exist yet) and without counting it.
    if thread_index == 0 and not checked then
      checked = true
      return prepared[1]
    end
    local open = io.open(gate, "r")
    while not open do
      sleep_ms(1)
      open = io.open(gate, "r")
    end
    open:close()
    started = true
  end
  sent = sent + 1
  if sent > count then
    wrapped = wrapped + 1
  end
  return prepared[(sent - 1) % count + 1]
end

function done(summary, latency, requests)
  local wrapped_all, bodies = 0, 0
  for _, t in ipairs(threads) do
    wrapped_all = wrapped_all + (t:get("wrapped") or 0)
    bodies = bodies + (t:get("count") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    "wrk-result requests=%.0f duration_us=%.0f p50_us=%.0f p90_us=%.0f p99_us=%.0f max_us=%.0f mean_us=%.1f "
      .. "connect=%.0f read=%.0f write=%.0f status=%.0f timeout=%.0f wrapped=%.0f bodies=%.0f\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout, wrapped_all, bodies))
end
