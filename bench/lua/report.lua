-- Shared by every scenario script: done() writes the run's summary and its full latency
-- histogram (microseconds) as JSON to $BENCH_WRK_OUT, so the runner can merge rounds exactly.
-- A script may define `report_extra(threads)` returning a JSON fragment of its own counters.
local threads = {}

function setup(thread)
   thread:set("thread_index", #threads)
   table.insert(threads, thread)
end

function done(summary, latency, requests)
   local out = assert(io.open(os.getenv("BENCH_WRK_OUT"), "w"))
   local e = summary.errors
   out:write(string.format(
      '{"duration_us": %d, "requests": %d, "bytes": %d, "errors": {"connect": %d, "read": %d, ' ..
      '"write": %d, "status": %d, "timeout": %d}, "latency_mean_us": %.1f, "latency_max_us": %d, ',
      summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status,
      e.timeout, latency.mean, latency.max))
   if report_extra then
      out:write(report_extra(threads), ", ")
   end
   out:write('"histogram": [')
   for i = 1, #latency do
      local value, count = latency(i)
      if i > 1 then out:write(",") end
      out:write(string.format("[%d,%d]", value, count))
   end
   out:write("]}\n")
   out:close()
end
