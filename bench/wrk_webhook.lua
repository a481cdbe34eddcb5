-- Signed GitHub webhook deliveries for wrk, each with its own X-GitHub-Delivery id (bench/webhook_ingress.py).
--
--   wrk -t1 -c32 -d30s -s bench/wrk_webhook.lua http://127.0.0.1:PORT/github/webhooks -- \
--       BODY_FILE SIGNATURE RUN_TAG [EVENT]
--
-- The signature (X-Hub-Signature-256) covers the body only, so one pre-signed body serves every request;
-- the delivery id is RUN_TAG-t<thread>-<counter>, unique across threads and runs. At the end one line
-- `WRK_JSON {...}` gives, summed over threads, the 2xx answers and those whose body says "created":true.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_number", #threads)
end

local prefix = ""
local counter = 0
ok = 0
created = 0
other = 0

function init(args)
  local file = assert(io.open(args[1], "rb"))
  wrk.method = "POST"
  wrk.body = file:read("*a")
  file:close()
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-GitHub-Event"] = args[4] or "issues"
  wrk.headers["X-Hub-Signature-256"] = args[2]
  prefix = args[3] .. "-t" .. thread_number .. "-"
end

function request()
  counter = counter + 1
  wrk.headers["X-GitHub-Delivery"] = prefix .. counter
  return wrk.format()
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
    if body and string.find(body, '"created":true', 1, true) then
      created = created + 1
    end
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local sum_ok, sum_created, sum_other = 0, 0, 0
  for _, thread in ipairs(threads) do
    sum_ok = sum_ok + thread:get("ok")
    sum_created = sum_created + thread:get("created")
    sum_other = sum_other + thread:get("other")
  end
  local errors = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"ok_2xx":%d,"created":%d,"not_2xx":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
    '"latency_p50_us":%d,"latency_p99_us":%d,"latency_max_us":%d}\n',
    summary.requests, summary.duration, sum_ok, sum_created, sum_other,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
