-- wrk script: POST one JSON body (from $WRK_BODY) at a constant total rate ($WRK_RATE
-- requests/s over all connections; run wrk with -t1 so they share this schedule).
-- Request k is due at start + k / rate; a connection that is free waits for the next due
-- time (wrk's delay() hook, millisecond timer), so the server sees a steady arrival rate
-- instead of wrk's closed loop. Latency is wrk's own, measured from the actual send.
-- Used by bench/serve_bench.py for the latency at half of the peak.
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } wrk_rate_timespec;
int clock_gettime(int clk_id, wrk_rate_timespec *tp);
]]
local ts = ffi.new("wrk_rate_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("WRK_BODY")
local rate = tonumber(os.getenv("WRK_RATE") or "")
if wrk.body == nil or wrk.body == "" or rate == nil or rate <= 0 then
  error("set WRK_BODY to the JSON request body and WRK_RATE to requests per second")
end
local interval = 1000 / rate
local due = nil

function delay()
  local now = now_ms()
  if due == nil then due = now end
  due = due + interval
  local wait = due - now
  if wait <= 0 then return 0 end
  return math.floor(wait + 0.5)
end
