-- wrk script used by bench/intake: POST a signed GitHub push with a unique X-GitHub-Delivery.
--
--   wrk ... -s bench/post.lua URL -- BODY_FILE SIGNATURE RUN_PREFIX
--
-- BODY_FILE   the payload, sent byte for byte
-- SIGNATURE   the X-Hub-Signature-256 value ("sha256=<hex>") computed over BODY_FILE
-- RUN_PREFIX  prefix of the delivery ids of this run; each request gets PREFIX-<thread>-<n>
--
-- Counts answers by status class in every thread and prints one line at the end:
--   WRKRESULT {json}
-- which bench/intake parses (requests, 2xx, non-2xx, socket errors, latency percentiles in µs).

local threads = {}
local counter = 0

function setup(thread)
   thread:set("tid", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

function init(args)
   local f = assert(io.open(args[1], "rb"))
   body = f:read("*a")
   f:close()
   signature = args[2]
   prefix = args[3]
   n = 0
   s2xx, s3xx, s4xx, s5xx, sother = 0, 0, 0, 0, 0
end

function request()
   n = n + 1
   local headers = {
      ["Content-Type"] = "application/json",
      ["User-Agent"] = "GitHub-Hookshot/044aadd",
      ["X-GitHub-Event"] = "push",
      ["X-GitHub-Delivery"] = prefix .. "-" .. tid .. "-" .. n,
      ["X-GitHub-Hook-ID"] = "109948940",
      ["X-Hub-Signature-256"] = signature,
   }
   return wrk.format("POST", nil, headers, body)
end

function response(status, headers, body)
   if status >= 200 and status < 300 then
      s2xx = s2xx + 1
   elseif status < 400 then
      s3xx = s3xx + 1
   elseif status < 500 then
      s4xx = s4xx + 1
   elseif status < 600 then
      s5xx = s5xx + 1
   else
      sother = sother + 1
   end
end

function done(summary, latency, requests)
   local c = {s2xx = 0, s3xx = 0, s4xx = 0, s5xx = 0, sother = 0, sent = 0}
   for _, t in ipairs(threads) do
      for k, _ in pairs(c) do
         if k == "sent" then
            c.sent = c.sent + (t:get("n") or 0)
         else
            c[k] = c[k] + (t:get(k) or 0)
         end
      end
   end
   local e = summary.errors
   io.write(string.format(
      'WRKRESULT {"duration_us":%d,"requests":%d,"bytes":%d,' ..
      '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
      '"s2xx":%d,"s3xx":%d,"s4xx":%d,"s5xx":%d,"sother":%d,"sent":%d,' ..
      '"lat_p50_us":%d,"lat_p90_us":%d,"lat_p99_us":%d,"lat_p999_us":%d,"lat_max_us":%d,"lat_mean_us":%.1f}\n',
      summary.duration, summary.requests, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      c.s2xx, c.s3xx, c.s4xx, c.s5xx, c.sother, c.sent,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.max, latency.mean))
end
