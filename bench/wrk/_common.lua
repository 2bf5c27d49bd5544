-- Shared by the wrk scripts: signed-in requests (session cookies rotated per request), a
-- content check on every response, and a JSON summary line for bench/run_bench.py.
-- Environment: WRK_COOKIES = a file of Cookie header values, one per line (run_bench.py signs
-- in that many seeded users and writes it); WRK_PATH = the page; WRK_EXPECT = a string every
-- response body must hold.
local M = {}
local threads = {}

function M.load_cookies()
  local cookies = {}
  local path = os.getenv("WRK_COOKIES")
  if path then
    for line in io.lines(path) do
      if line ~= "" then cookies[#cookies + 1] = line end
    end
  end
  return cookies
end

function M.install(default_path)
  local path = os.getenv("WRK_PATH") or default_path
  local expect = os.getenv("WRK_EXPECT") or 'class="post'

  function setup(thread)
    thread:set("id", #threads + 1)
    threads[#threads + 1] = thread
  end

  function init(args)
    cookies = M.load_cookies()
    n = id or 1
    bad = 0
  end

  function request()
    n = n + 1
    local headers = {}
    if #cookies > 0 then headers["Cookie"] = cookies[(n % #cookies) + 1] end
    return wrk.format("GET", path, headers)
  end

  function response(status, headers, body)
    if status ~= 200 or not string.find(body, expect, 1, true) then bad = bad + 1 end
  end

  function done(summary, latency, requests)
    local bad_total = 0
    for _, t in ipairs(threads) do bad_total = bad_total + (t:get("bad") or 0) end
    local e = summary.errors
    io.write(string.format(
      'WRK_JSON {"requests": %d, "duration_s": %.3f, "rps": %.1f, "p50_ms": %.2f, ' ..
      '"p95_ms": %.2f, "p99_ms": %.2f, "max_ms": %.2f, "bad_responses": %d, ' ..
      '"socket_errors": %d, "non_2xx_3xx": %d}\n',
      summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
      latency:percentile(50) / 1000, latency:percentile(95) / 1000,
      latency:percentile(99) / 1000, latency.max / 1000, bad_total,
      e.connect + e.read + e.write + e.timeout, e.status))
  end
end

return M
