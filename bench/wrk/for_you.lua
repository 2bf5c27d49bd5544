-- For You page 1, signed in as random seeded users (one session cookie per request, rotated).
--   WRK_COOKIES=cookies.txt wrk -t1 -c32 -d15s --latency -s bench/wrk/for_you.lua http://127.0.0.1:8000
package.path = debug.getinfo(1, "S").source:match("@?(.*/)") .. "?.lua;" .. package.path
require("_common").install("/")
