-- wrk script: POST one JSON body (from $WRK_BODY) to the URL's path, keep-alive.
-- Used by bench/serve_bench.py:  WRK_BODY='{"Age": 52, ...}' wrk -s bench/wrk_predict.lua URL
-- The body is formatted once by wrk (no per-request Lua work), so the load generator stays cheap.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("WRK_BODY")
if wrk.body == nil or wrk.body == "" then
  error("set WRK_BODY to the JSON request body")
end
