-- wrk script: each thread drives its own users; tokens come from tokens.txt (one per line,
-- user i on line i+1). MODE=set alternates each user between two numbers (so every Set is
-- a change; the warm-up's pair differs from the measured run's); MODE=verify sends a wrong
-- code (recorded as a failed attempt: the same write path as a successful Verify,
-- repeatable without reading SMS); MODE=get reads the phone.
local mode = os.getenv("MODE") or "set"
local tokens = {}
for line in io.lines(os.getenv("TOKENS")) do tokens[#tokens + 1] = line end
local threads = tonumber(os.getenv("THREADS") or "2")
-- With several replicas (PORTS="p1 p2 ...", THREADS a multiple of their number), thread i
-- talks to replica i mod N: one wrk process with the same threads and connections whatever
-- the replica count, so a comparison of 1 and N replicas holds the load generator fixed.
local ports = {}
for p in (os.getenv("PORTS") or ""):gmatch("%d+") do ports[#ports + 1] = p end
local run = tonumber(os.getenv("RUN") or "1")
local counter = 0
answered = 0 -- global: done() reads it from each thread
local first, span
local started = {} -- each thread with the port it talks to, for done()

function setup(thread)
  local tid = #started
  thread:set("tid", tid)
  local port = ports[tid % math.max(#ports, 1) + 1]
  if port then thread.addr = wrk.lookup("127.0.0.1", port)[1] end
  started[#started + 1] = { thread = thread, port = port }
end

function init(args)
  -- Each thread drives its own slice of the users.
  span = math.floor(#tokens / threads)
  first = tid * span
end

function request()
  local c = counter
  counter = counter + 1
  local user = first + (c % span)
  local token = tokens[user + 1]
  local headers = { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" }
  if mode == "set" then
    -- RUN (0 for the warm-up, 1 for the measured run) shifts the pair, so a measured Set
    -- never names the number the warm-up left (that would be refused as unchanged).
    local flip = math.floor(c / span) % 2 + 2 * run
    local body = string.format('{"phone":"+41 79 %03d %02d %02d"}', flip, math.floor(user / 100) % 100, user % 100)
    return wrk.format("PUT", "/auth/v1/users/me/phone", headers, body)
  elseif mode == "get" then
    return wrk.format("GET", "/auth/v1/users/me/phone", { ["Authorization"] = "Bearer " .. token })
  else
    return wrk.format("POST", "/auth/v1/users/me/phone/_verify", headers, '{"code":"WRONG1"}')
  end
end

function response(status, headers, body)
  answered = answered + 1
end

function done(summary, latency, requests)
  io.write(string.format("requests/s %.0f  p50 %.2f ms  p99 %.2f ms  errors %d  non2xx %d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout, summary.errors.status))
  -- Each replica's share of the answers (its threads' count over the run).
  if #ports > 1 then
    local per = {}
    for _, t in ipairs(started) do
      per[t.port] = (per[t.port] or 0) + t.thread:get("answered")
    end
    for _, p in ipairs(ports) do
      io.write(string.format("  @%s: requests/s %.0f\n", p, per[p] / (summary.duration / 1e6)))
    end
  end
end
