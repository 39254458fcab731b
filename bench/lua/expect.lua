-- POST as post.lua sends it ($BENCH_PATH, $BENCH_BODY, $BENCH_TOKEN), every answer checked: it is
-- `expected` when its status is $BENCH_EXPECT_STATUS and its body holds each line of
-- $BENCH_EXPECT_BODY (literal substrings), else `unexpected`. An unexpected answer (a top-up order
-- not answered 201 PENDING, an eSIM order not 200 DELIVERED with its activation code) means the
-- run did not measure what it claims to: the runner marks it invalid.
dofile(os.getenv("BENCH_LUA_DIR") .. "/post.lua")

local want_status = tonumber(os.getenv("BENCH_EXPECT_STATUS"))
local want_body = {}
for line in string.gmatch(os.getenv("BENCH_EXPECT_BODY") or "", "[^\n]+") do
   table.insert(want_body, line)
end

expected = 0
unexpected = 0

function response(status, headers, body)
   local ok = status == want_status
   if ok then
      for _, text in ipairs(want_body) do
         if not body:find(text, 1, true) then
            ok = false
            break
         end
      end
   end
   if ok then
      expected = expected + 1
   else
      unexpected = unexpected + 1
   end
end

function report_extra(threads)
   local e, u = 0, 0
   for _, t in ipairs(threads) do
      e = e + t:get("expected")
      u = u + t:get("unexpected")
   end
   return string.format('"expected": %d, "unexpected": %d', e, u)
end
