-- POST /api/v1/orders as post.lua sends it: every request a new synchronous order ($BENCH_BODY,
-- quantity 1, no client_reference). Counts the 201s answered DELIVERED with a code and those that
-- were not: an order answered PENDING (its supplier call outlived the synchronous deadline) was
-- not fulfilled within its request, so the run did not measure what it claims to.
dofile(os.getenv("BENCH_LUA_DIR") .. "/post.lua")

delivered = 0
undelivered = 0

function response(status, headers, body)
   if status == 201 then
      if body:find('"status":"DELIVERED"', 1, true) and body:find('"voucher_reference_number":"VRN-', 1, true) then
         delivered = delivered + 1
      else
         undelivered = undelivered + 1
      end
   end
end

function report_extra(threads)
   local d, u = 0, 0
   for _, t in ipairs(threads) do
      d = d + t:get("delivered")
      u = u + t:get("undelivered")
   end
   return string.format('"delivered": %d, "undelivered": %d', d, u)
end
