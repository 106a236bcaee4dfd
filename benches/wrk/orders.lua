-- POST-only load for wrk: every request places an order for one unit of one of
-- the products p-0001 .. p-0020 (seed them first, with plenty of stock).
-- wrk -t2 -c64 -d15s -s benches/wrk/orders.lua http://127.0.0.1:8080
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"product_id":"p-%04d","quantity":1}', n % 20 + 1)
  return wrk.format(nil, "/api/orders", nil, body)
end
