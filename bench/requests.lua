-- wrk script: cycle through pre-built, pre-signed raw HTTP requests.
--
--   wrk -t2 -c16 -d5s -s bench/requests.lua http://127.0.0.1:PORT -- <prefix> <check>
--
-- Thread N reads <prefix>.N: records of "<byte length>\n<raw request bytes>".
-- Each thread sends its records in order and wraps around at the end (wraps are
-- counted: for lists of unique writes a wrap means the list was too short).
-- response() counts non-2xx answers and, when <check> is "1", 2xx answers that
-- did not do the work: RunTask with an empty "tasks" list, or a Describe* with
-- "failures". done() prints one line "WRKRESULT k=v ..." for the harness.

local threads = {}
local nthreads = 0

function setup(thread)
  thread:set("id", nthreads)
  nthreads = nthreads + 1
  table.insert(threads, thread)
end

function init(args)
  local path = args[1] .. "." .. id
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  reqs = {}
  local pos, size = 1, #data
  while pos <= size do
    local nl = string.find(data, "\n", pos, true)
    local len = tonumber(string.sub(data, pos, nl - 1))
    reqs[#reqs + 1] = string.sub(data, nl + 1, nl + len)
    pos = nl + 1 + len
  end
  data = nil
  n = #reqs
  i = 0
  wrapped = 0
  non2xx = 0
  bad = 0
  responses = 0
  first_error = ""
  first_bad = ""
  check = args[2] == "1"
end

function request()
  i = i + 1
  if i > n then
    i = 1
    wrapped = wrapped + 1
  end
  return reqs[i]
end

-- Whether the key's value in body matches pattern (anchored at the key). The plain find is a
-- memchr/memcmp scan; an unanchored Lua pattern tries a match at every byte, which on the
-- 2.6 KB DescribeTaskDefinition answer cost wrk ~20 us per pattern per response (CPU taken
-- from the server on these 2 cores).
function empty_after(body, key, pattern)
  local at = string.find(body, key, 1, true)
  return at ~= nil and string.find(body, pattern, at) ~= nil
end

function response(status, headers, body)
  responses = responses + 1
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    if first_error == "" then
      first_error = status .. " " .. string.sub(body or "", 1, 300)
    end
  elseif check and body and (empty_after(body, '"tasks":', '^"tasks":%s*%[%]')
                             or empty_after(body, '"failures":', '^"failures":%s*%[%s*{')) then
    bad = bad + 1
    if first_bad == "" then
      first_bad = string.sub(body, 1, 300)
    end
  end
end

local function clean(s)
  return (string.gsub(s or "", "[%c\"\\]", " "))
end

function done(summary, latency, requests)
  local tn, tb, tw, tr = 0, 0, 0, 0
  local fe, fb = "", ""
  for _, t in ipairs(threads) do
    tn = tn + t:get("non2xx")
    tb = tb + t:get("bad")
    tr = tr + t:get("responses")
    local w = t:get("wrapped")
    if w > tw then tw = w end
    if fe == "" then fe = t:get("first_error") end
    if fb == "" then fb = t:get("first_bad") end
  end
  local e = summary.errors
  io.write(string.format(
    'WRKRESULT {"duration_us": %d, "requests": %d, "responses": %d, "non2xx": %d, "bad": %d, "wrapped": %d, ' ..
    '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "mean_us": %.1f, "max_us": %d, ' ..
    '"first_error": "%s", "first_bad": "%s"}\n',
    summary.duration, summary.requests, tr, tn, tb, tw,
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max,
    clean(fe), clean(fb)))
end
