-- wrk script for the abkit example service: GET /v1/assign for rotating unit ids, and a count
-- of answers whose variant is not one of the configured ones (or that are not 2xx).
local counter = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  invalid = 0
  non2xx = 0
end

function request()
  counter = counter + 1
  return wrk.format("GET", "/v1/assign?experiment=exp&unit=user-" .. counter)
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  elseif not (string.find(body, '"variant":"control"', 1, true)
           or string.find(body, '"variant":"treatment"', 1, true)) then
    invalid = invalid + 1
  end
end

function done(summary, latency, requests)
  local bad, non = 0, 0
  for _, t in ipairs(threads) do
    bad = bad + t:get("invalid")
    non = non + t:get("non2xx")
  end
  io.write(string.format("ABKIT invalid=%d non2xx=%d requests=%d errors=%d p50_us=%d p99_us=%d\n",
    bad, non, summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
