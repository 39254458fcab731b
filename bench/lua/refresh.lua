-- POST /auth/refresh, each request with a different, fresh, never-used refresh token.
-- $BENCH_TOKENS is a file of tokens, one a line; thread k of n takes lines k, k+n, k+2n, ...
-- Should the pool run out, the thread stops rather than reuse a token (reported as exhausted).
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

requests_made = 0
pool_size = 0
exhausted = 0
local pool = {}

function init(args)
   local n = tonumber(os.getenv("BENCH_THREADS"))
   local headers = { ["Content-Type"] = "application/json" }
   local line_no = 0
   for token in io.lines(os.getenv("BENCH_TOKENS")) do
      if line_no % n == thread_index then
         pool[#pool + 1] = wrk.format("POST", "/auth/refresh", headers, '{"refresh_token": "' .. token .. '"}')
      end
      line_no = line_no + 1
   end
   pool_size = #pool
end

function request()
   requests_made = requests_made + 1
   if requests_made > pool_size then
      exhausted = 1
      wrk.thread:stop()
      -- Never a used token: an empty body (400), counted as a status error.
      return wrk.format("POST", "/auth/refresh", { ["Content-Type"] = "application/json" }, "{}")
   end
   return pool[requests_made]
end

function report_extra(threads)
   local made, size, ex = 0, 0, 0
   for _, t in ipairs(threads) do
      made = made + math.min(t:get("requests_made"), t:get("pool_size"))
      size = size + t:get("pool_size")
      ex = ex + t:get("exhausted")
   end
   return string.format('"tokens_sent": %d, "pool_size": %d, "exhausted_threads": %d', made, size, ex)
end
