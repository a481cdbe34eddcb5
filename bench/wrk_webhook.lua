-- Signed GitHub webhook deliveries for wrk, each with its own X-GitHub-Delivery id and its own body
-- (bench/webhook_ingress.py).
--
--   wrk -t1 -c32 -d30s -s bench/wrk_webhook.lua http://127.0.0.1:PORT/github/webhooks -- \
--       BODY_FILE SECRET RUN_TAG [EVENT]
--
-- autodev dedupes on the delivery id and on the hash of the signed body, so every request must carry a body
-- of its own: the file's JSON object gets a last member "bench_nonce": "<delivery id>", and each body is
-- signed here (HMAC-SHA256, X-Hub-Signature-256). The object's start is padded with spaces to whole SHA-256
-- blocks and hashed once per thread, so a request hashes only its last block or two and the outer hash:
-- about 4 compressions, microseconds in LuaJIT, against 190 to hash the 12 KB body whole.
-- The delivery id is RUN_TAG-t<thread>-<counter>, unique across threads and runs. At the end one line
-- `WRK_JSON {...}` gives, summed over threads, the 2xx answers and those whose body says "stored":true.

local bit = require("bit")
local band, bnot, bxor, rshift, ror, tobit = bit.band, bit.bnot, bit.bxor, bit.rshift, bit.ror, bit.tobit
local byte, char, rep, format = string.byte, string.char, string.rep, string.format

local K = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}
for i = 1, 64 do K[i] = tobit(K[i]) end
local IV = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 }
for i = 1, 8 do IV[i] = tobit(IV[i]) end

local W = {}

-- One SHA-256 compression of the 64 bytes of `s` after `offset` into the state H (8 words, updated).
local function compress(H, s, offset)
  for i = 0, 15 do
    local a, b, c, d = byte(s, offset + i * 4 + 1, offset + i * 4 + 4)
    W[i] = tobit(((a * 256 + b) * 256 + c) * 256 + d)
  end
  for i = 16, 63 do
    local w15, w2 = W[i - 15], W[i - 2]
    local s0 = bxor(ror(w15, 7), ror(w15, 18), rshift(w15, 3))
    local s1 = bxor(ror(w2, 17), ror(w2, 19), rshift(w2, 10))
    W[i] = tobit(W[i - 16] + s0 + W[i - 7] + s1)
  end
  local a, b, c, d, e, f, g, h = H[1], H[2], H[3], H[4], H[5], H[6], H[7], H[8]
  for i = 0, 63 do
    local S1 = bxor(ror(e, 6), ror(e, 11), ror(e, 25))
    local ch = bxor(band(e, f), band(bnot(e), g))
    local t1 = h + S1 + ch + K[i + 1] + W[i]
    local S0 = bxor(ror(a, 2), ror(a, 13), ror(a, 22))
    local maj = bxor(band(a, b), band(a, c), band(b, c))
    h, g, f, e, d, c, b, a = g, f, e, tobit(d + t1), c, b, a, tobit(t1 + S0 + maj)
  end
  H[1], H[2], H[3], H[4] = tobit(H[1] + a), tobit(H[2] + b), tobit(H[3] + c), tobit(H[4] + d)
  H[5], H[6], H[7], H[8] = tobit(H[5] + e), tobit(H[6] + f), tobit(H[7] + g), tobit(H[8] + h)
end

local function copy(H)
  return { H[1], H[2], H[3], H[4], H[5], H[6], H[7], H[8] }
end

-- The state after whole blocks `s` (its length a multiple of 64), from state H.
local function absorb(H, s)
  for offset = 0, #s - 64, 64 do compress(H, s, offset) end
  return H
end

-- The digest (32 bytes) of a message whose first `done` bytes (a multiple of 64) left state H, and whose
-- rest is `tail`.
local function finish(H, tail, done)
  local bits = (done + #tail) * 8
  local padded = tail .. "\128" .. rep("\0", (55 - #tail) % 64)
  local length = {}
  for i = 7, 0, -1 do
    length[#length + 1] = char(math.floor(bits / 2 ^ (i * 8)) % 256)
  end
  absorb(H, padded .. table.concat(length))
  local out = {}
  for i = 1, 8 do
    local w = H[i]
    out[i] = char(band(rshift(w, 24), 255), band(rshift(w, 16), 255), band(rshift(w, 8), 255), band(w, 255))
  end
  return table.concat(out)
end

local function hex(s)
  return (s:gsub(".", function(c) return format("%02x", byte(c)) end))
end

local function xor_pad(key, value)
  local out = {}
  for i = 1, 64 do out[i] = char(bxor(byte(key, i) or 0, value)) end
  return table.concat(out)
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_number", #threads)
end

local prefix = ""
local body_head = ""
local counter = 0
local inner_state, outer_state, prefix_bytes
ok = 0
stored = 0
other = 0

function init(args)
  local file = assert(io.open(args[1], "rb"))
  local body = file:read("*a")
  file:close()
  local secret = args[2]
  assert(#secret <= 64, "a secret longer than SHA-256's block would be hashed first; not supported here")
  -- The object without its closing brace, padded with spaces (JSON whitespace) to whole blocks after the
  -- 64-byte key block.
  local head = assert(body:match("^(.*)}%s*$"), "the body file must hold a JSON object")
  head = head .. rep(" ", (64 - #head % 64) % 64)
  body_head = head
  prefix_bytes = 64 + #head
  inner_state = absorb(absorb(copy(IV), xor_pad(secret, 0x36)), head)
  outer_state = absorb(copy(IV), xor_pad(secret, 0x5c))
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-GitHub-Event"] = args[4] or "issues"
  prefix = args[3] .. "-t" .. thread_number .. "-"
end

local function sign(tail)
  local inner = finish(copy(inner_state), tail, prefix_bytes)
  return "sha256=" .. hex(finish(copy(outer_state), inner, 64))
end

function request()
  counter = counter + 1
  local id = prefix .. counter
  local tail = ',"bench_nonce":"' .. id .. '"}'
  wrk.headers["X-GitHub-Delivery"] = id
  wrk.headers["X-Hub-Signature-256"] = sign(tail)
  return wrk.format(nil, nil, nil, body_head .. tail)
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
    if body and string.find(body, '"stored":true', 1, true) then
      stored = stored + 1
    end
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local sum_ok, sum_stored, sum_other = 0, 0, 0
  for _, thread in ipairs(threads) do
    sum_ok = sum_ok + thread:get("ok")
    sum_stored = sum_stored + thread:get("stored")
    sum_other = sum_other + thread:get("other")
  end
  local errors = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"ok_2xx":%d,"stored":%d,"not_2xx":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
    '"latency_p50_us":%d,"latency_p99_us":%d,"latency_max_us":%d}\n',
    summary.requests, summary.duration, sum_ok, sum_stored, sum_other,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
