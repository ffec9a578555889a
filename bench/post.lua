-- wrk script used by bench/intake: POST a distinct, freshly signed GitHub push per request.
--
--   wrk ... -s bench/post.lua URL -- BODY_FILE SECRET RUN_PREFIX
--
-- BODY_FILE   the payload template: a GitHub push (bench/push-main.json)
-- SECRET      the webhook secret; every body is signed with it (X-Hub-Signature-256)
-- RUN_PREFIX  prefix of the delivery ids of this run; each request gets PREFIX-<thread>-<n>.
--             Must be unique per server process: the commit ids are derived from it too.
--
--   wrk ... -s bench/post.lua URL -- GET
--
-- instead sends a bare GET (bench/intake's ceiling: `/healthz` on the same listener), counted
-- and reported the same way.
--
-- Every request is a different push, as a real sender's would be: ferry deduplicates signed
-- deliveries on a hash of the body (a captured push replayed under a new X-GitHub-Delivery is
-- a duplicate), so resending one body would measure dedupe, not intake. Per request:
--   * a new commit id (40 lowercase hex: a scrambled per-thread counter, the wrk thread, 16
--     hex of an HMAC of RUN_PREFIX, the counter) in `after`, `commits[].id`, `head_commit.id`,
--     their `url`s and the `compare` URL;
--   * the commit `timestamp`s set to the current UTC second, so later requests are newer
--     (two requests that overtake each other at a second boundary make ferry plan the older
--     one as a `stale` skip, as real out-of-order pushes would);
--   * X-Hub-Signature-256 = "sha256=" .. hex HMAC-SHA256(SECRET, body), computed with
--     OpenSSL's libcrypto through LuaJIT's FFI (wrk links libcrypto, so ffi.C resolves it).
--     That costs about 6 µs of wrk's CPU per request on the bench machine (SHA-256 of 7.7 KB);
--     the whole request() takes about 12 µs, against 1.5 µs with one fixed body.
-- Replacements have the length of what they replace: every body has the template's size.
-- The template is split once per thread around those places; a request concatenates the
-- pieces (no JSON parsing or pattern matching per request).
--
-- Counts answers by status class in every thread and prints one line at the end:
--   WRKRESULT {json}
-- which bench/intake parses (requests, 2xx, non-2xx, socket errors, latency percentiles in µs).

local ffi = require("ffi")
local bit = require("bit")

ffi.cdef [[
typedef struct evp_md_st EVP_MD;
typedef struct hmac_ctx_st HMAC_CTX;
const EVP_MD *EVP_sha256(void);
HMAC_CTX *HMAC_CTX_new(void);
void HMAC_CTX_free(HMAC_CTX *ctx);
int HMAC_Init_ex(HMAC_CTX *ctx, const void *key, int len, const EVP_MD *md, void *impl);
int HMAC_Update(HMAC_CTX *ctx, const void *data, size_t len);
int HMAC_Final(HMAC_CTX *ctx, unsigned char *md, unsigned int *len);
]]

-- wrk itself links libcrypto, so its symbols are normally global already.
local function load_crypto()
   if pcall(function() return ffi.C.HMAC_CTX_new end) then
      return ffi.C
   end
   for _, name in ipairs({"libcrypto.so.3", "crypto"}) do
      local ok, lib = pcall(ffi.load, name)
      if ok then
         return lib
      end
   end
   error("post.lua: OpenSSL's libcrypto not found (needed for HMAC-SHA256)")
end

local crypto = load_crypto()
local md = ffi.new("unsigned char[32]")
local md_len = ffi.new("unsigned int[1]")
local hexbuf = ffi.new("uint8_t[64]")
local hexdigits = ffi.new("uint8_t[16]", {48, 49, 50, 51, 52, 53, 54, 55, 56, 57,
                                          97, 98, 99, 100, 101, 102}) -- "0123456789abcdef"

-- A function returning the lowercase hex HMAC-SHA256 of its argument under key. The context
-- keeps the keyed state: each call only resets it (saves ~1.5 µs a call over one-shot HMAC()).
-- The legacy HMAC_CTX API is deprecated in OpenSSL 3 but exported, and simpler over FFI than
-- EVP_MAC.
local function hmac_sha256_hex(key)
   local ctx = crypto.HMAC_CTX_new()
   assert(ctx ~= nil, "post.lua: HMAC_CTX_new failed")
   ctx = ffi.gc(ctx, crypto.HMAC_CTX_free)
   assert(crypto.HMAC_Init_ex(ctx, key, #key, crypto.EVP_sha256(), nil) == 1,
          "post.lua: HMAC_Init_ex failed")
   return function(data)
      assert(crypto.HMAC_Init_ex(ctx, nil, 0, nil, nil) == 1 and
             crypto.HMAC_Update(ctx, data, #data) == 1 and
             crypto.HMAC_Final(ctx, md, md_len) == 1, "post.lua: HMAC-SHA256 failed")
      for i = 0, 31 do
         local b = md[i]
         hexbuf[2 * i] = hexdigits[bit.rshift(b, 4)]
         hexbuf[2 * i + 1] = hexdigits[bit.band(b, 15)]
      end
      return ffi.string(hexbuf, 64)
   end
end

-- RFC 4231 test case 2: a broken FFI binding fails here, not as 401s under load.
assert(hmac_sha256_hex("Jefe")("what do ya want for nothing?") ==
       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
       "post.lua: HMAC-SHA256 self-test failed")

-- Splits body into literal pieces and slots: every occurrence of each key of `marks` becomes
-- a slot named by its value. Returns parts (literals in place, slots false) and slot names.
local function split_template(body, marks)
   local found = {}
   for text, name in pairs(marks) do
      local from = 1
      while true do
         local s, e = string.find(body, text, from, true)
         if not s then
            break
         end
         table.insert(found, {s = s, e = e, name = name})
         from = e + 1
      end
      assert(from > 1, "post.lua: body template lacks " .. text)
   end
   table.sort(found, function(a, b) return a.s < b.s end)
   local parts, slots, pos = {}, {}, 1
   for _, f in ipairs(found) do
      assert(f.s >= pos, "post.lua: overlapping template marks")
      table.insert(parts, string.sub(body, pos, f.s - 1))
      table.insert(parts, false)
      slots[#parts] = f.name
      pos = f.e + 1
   end
   table.insert(parts, string.sub(body, pos))
   return parts, slots
end

local threads = {}
local counter = 0

function setup(thread)
   thread:set("tid", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

function init(args)
   s2xx, s3xx, s4xx, s5xx, sother = 0, 0, 0, 0, 0
   n = 0
   if args[1] == "GET" then
      request = function()
         n = n + 1
         return wrk.format("GET")
      end
      return
   end
   local f = assert(io.open(args[1], "rb"))
   local body = f:read("*a")
   f:close()
   sign = hmac_sha256_hex(assert(args[2], "post.lua: SECRET argument missing"))
   prefix = assert(args[3], "post.lua: RUN_PREFIX argument missing")
   assert(tid < 256, "post.lua: at most 256 wrk threads (2 hex digits of the commit id)")
   local sha = assert(string.match(body, '"after":"(%x+)"'), "post.lua: no \"after\" in body")
   assert(#sha == 40, "post.lua: \"after\" is not a 40-hex commit id")
   local ts = assert(string.match(body, '"timestamp":"([^"]+)"'), "post.lua: no timestamp")
   assert(#ts == 20, "post.lua: expected timestamps like 2019-05-15T15:31:02Z")
   -- The whole id first; the compare URL ("...<12 hex>\"") holds its abbreviation.
   parts, slots = split_template(body, {
      [sha] = "id",
      ["..." .. string.sub(sha, 1, 12) .. '"'] = "short",
      ['"timestamp":"' .. ts .. '"'] = "time",
   })
   run_hex = string.sub(hmac_sha256_hex(prefix)("bench/post.lua commit ids"), 1, 16)
   last_sec, stamp = nil, nil
   n = 0
   s2xx, s3xx, s4xx, s5xx, sother = 0, 0, 0, 0, 0
end

function request()
   n = n + 1
   -- An LCG step scrambles the counter (a bijection mod 2^32, exact in doubles), so the
   -- abbreviated ids differ between requests as real ones do.
   local mix = (1664525 * n + 1013904223) % 4294967296
   local id = string.format("%08x%02x%s%014x", mix, tid, run_hex, n)
   local now = os.time()
   if now ~= last_sec then
      last_sec = now
      stamp = '"timestamp":"' .. os.date("!%Y-%m-%dT%H:%M:%SZ", now) .. '"'
   end
   local short = "..." .. string.sub(id, 1, 12) .. '"'
   for i, name in pairs(slots) do
      parts[i] = (name == "id" and id) or (name == "time" and stamp) or short
   end
   local body = table.concat(parts)
   local headers = {
      ["Content-Type"] = "application/json",
      ["User-Agent"] = "GitHub-Hookshot/044aadd",
      ["X-GitHub-Event"] = "push",
      ["X-GitHub-Delivery"] = prefix .. "-" .. tid .. "-" .. n,
      ["X-GitHub-Hook-ID"] = "109948940",
      ["X-Hub-Signature-256"] = "sha256=" .. sign(body),
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
