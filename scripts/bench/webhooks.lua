-- wrk script: POST pre-signed webhooks to /webhooks/lightspark, one request
-- per body, cycling through them.
--
--   wrk -t2 -c64 -d10s --latency -s scripts/bench/webhooks.lua URL -- BODIES THREADS [GATE]
--
-- BODIES is a file written by `bench wrk-bodies`: one request a line, the
-- hex `lightspark-signature`, one space, the exact body bytes. Thread k of
-- THREADS takes lines k, k+THREADS, k+2*THREADS, ... so the threads send
-- different webhooks. Each thread reads its lines and formats its requests
-- once, at init.
--
-- wrk starts each thread right after that thread's init, so the first
-- thread would send alone while the next ones still read their bodies.
-- With GATE (a path that must not exist yet), the last thread's init
-- creates that file, and every thread waits for it before its first
-- request: all start together, when wrk starts its clock.
--
-- done() prints one `wrk-result key=value ...` line for `bench wrk`.

local threads = {}
local counter = 0

function setup(thread)
  thread:set("thread_index", counter)
  counter = counter + 1
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
  local path = args[1] or os.getenv("WEBHOOK_BODIES")
  local nthreads = tonumber(args[2] or "1")
  gate = args[3]
  local index = thread_index or 0
  assert(path, "usage: -- BODIES THREADS [GATE]")
  local list, line_no = {}, 0
  for line in io.lines(path) do
    if line_no % nthreads == index then
      local sig, body = line:match("^(%x+) (.+)$")
      assert(sig, "line " .. (line_no + 1) .. " of " .. path .. " is not `SIGNATURE BODY`")
      list[#list + 1] = wrk.format("POST", "/webhooks/lightspark", {
        ["lightspark-signature"] = sig,
        ["content-type"] = "application/json",
      }, body)
    end
    line_no = line_no + 1
  end
  assert(#list > 0, path .. " holds no body for thread " .. index)
  prepared = list
  count = #list
  sent = 0
  wrapped = 0
  started = (gate == nil)
  if gate and index == nthreads - 1 then
    assert(io.open(gate, "w")):close()
  end
end

function request()
  if not started then
    -- wrk calls the first thread's request() once, right after its init,
    -- to check what it returns: answer that call without waiting (the
    -- gate does not exist yet) and without counting it.
    if (thread_index or 0) == 0 and not checked then
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
