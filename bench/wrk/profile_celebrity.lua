-- The profile of user 1 (the most-followed account), signed in; WRK_PATH=/@<username of user 1>.
--   WRK_PATH=/@bold_otter1 WRK_COOKIES=cookies.txt wrk -t1 -c32 -d15s -s bench/wrk/profile_celebrity.lua http://127.0.0.1:8000
package.path = debug.getinfo(1, "S").source:match("@?(.*/)") .. "?.lua;" .. package.path
require("_common").install("/")
