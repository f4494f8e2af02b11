-- wrk: print one JSON line with the run's totals (parsed by run.mjs).
-- With RATE_DELAY_MS set, wrk runs at a fixed request rate per connection
-- (wrk2 is not in Debian): each connection waits RATE_DELAY_MS between a
-- response and its next request. A closed loop (no coordinated-omission
-- correction): a slow response delays the next request instead of being
-- counted as queueing. run.mjs picks the delay from the target rate and the
-- connection count.
local delay_ms = tonumber(os.getenv("RATE_DELAY_MS") or "")
if delay_ms then
  function delay()
    return delay_ms
  end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"bytes":%d,"errors":%d,"status_errors":%d,"seconds":%.3f,"p50_ms":%.3f,"p99_ms":%.3f,"p999_ms":%.3f}\n',
    summary.requests, summary.bytes, e.connect + e.read + e.write + e.timeout, e.status, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency:percentile(99.9) / 1000))
end
