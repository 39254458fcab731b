-- POST /auth/logout followed by POST /auth/login, in a loop. Logout revokes every token of a
-- client, so each wrk thread (run with one connection per thread) is a client of its own:
-- line k of $BENCH_CLIENTS ("api_key secret") for thread k. The first request logs in; each
-- login's access token is read from its response and used by the next logout.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

logins = 0
logouts = 0
failures = 0
local login_request
local token
local expecting = "login"

function init(args)
   local line_no = 0
   for line in io.lines(os.getenv("BENCH_CLIENTS")) do
      if line_no == thread_index then
         local key, secret = line:match("^(%S+)%s+(%S+)$")
         login_request = wrk.format("POST", "/auth/login", { ["Content-Type"] = "application/json" },
            string.format('{"username": "%s", "password": "%s"}', key, secret))
      end
      line_no = line_no + 1
   end
   assert(login_request, "no client for this thread")
end

function request()
   if expecting == "logout" then
      return wrk.format("POST", "/auth/logout", { ["Authorization"] = "Bearer " .. token }, nil)
   end
   return login_request
end

function response(status, headers, body)
   if expecting == "login" then
      token = status == 200 and body:match('"access_token"%s*:%s*"([^"]+)"') or nil
      if token then
         logins = logins + 1
         expecting = "logout"
      else
         failures = failures + 1
      end
   else
      if status == 200 then logouts = logouts + 1 else failures = failures + 1 end
      expecting = "login"
   end
end

function report_extra(threads)
   local li, lo, f = 0, 0, 0
   for _, t in ipairs(threads) do
      li = li + t:get("logins")
      lo = lo + t:get("logouts")
      f = f + t:get("failures")
   end
   return string.format('"logins": %d, "logouts": %d, "failures": %d', li, lo, f)
end
