-- wrk script for the keys-* workloads of contrib/bench/run.sh: every
-- request carries one API key, chosen at random (uniformly, per request)
-- among the secrets in the file named by $KEYS_FILE, one per line, in the
-- header named by $KEYS_HEADER (default X-API-KEY).  The other request
-- headers (wrk -H) and the path come from the command line as usual.
-- The jwt-* workloads use it with KEYS_HEADER=Authorization and lines
-- "Bearer TOKEN".
--
-- With KEYS_ORDER=cycle each thread takes the lines in turn instead (from
-- an offset of its own, wrapping around), so that a line comes back only
-- after all the others: the jwt-fresh workloads, where a token repeated
-- soon could be answered from a cache of verified tokens.
--
-- With KEYS_ORDER=clock every request of a second takes the same line: line
-- (UNIX_SECONDS mod LINES) + 1 (jwks-refresh: the token of the provider
-- whose JWKS is re-fetched in that second).
--
-- Each thread formats one request per secret when it starts, so that the
-- per-request cost in wrk is one random number and a table look-up, the
-- same for every server under test.
--
-- With KEYS_STATUS=1 it also counts the responses by status and prints one
-- "status CODE: COUNT" line per status after wrk's summary.  That costs
-- wrk a Lua call per response (wrk hands it the headers and body), so the
-- throughput rounds leave it off; wrk's own "Non-2xx or 3xx responses"
-- (every status >= 400) costs nothing.

local file = os.getenv("KEYS_FILE")
local header = os.getenv("KEYS_HEADER") or "X-API-KEY"
local count_status = os.getenv("KEYS_STATUS") == "1"
local cycle = os.getenv("KEYS_ORDER") == "cycle"
local clock = os.getenv("KEYS_ORDER") == "clock"
local threads = 0
local thread_list = {}

function setup(thread)
	threads = threads + 1
	thread:set("thread_number", threads)
	thread_list[#thread_list + 1] = thread
end

-- Defined only when asked for: wrk does the per-response work only for a
-- script that has a response() function.
if count_status then
	statuses = {}
	function response(status, headers, body)
		statuses[status] = (statuses[status] or 0) + 1
	end
end

-- Sum the threads' counts (wrk copies each thread's table into the main
-- Lua state) and print them in order of status.
function done(summary, latency, requests)
	if not count_status then
		return
	end
	local total, codes = {}, {}
	for _, t in ipairs(thread_list) do
		for code, n in pairs(t:get("statuses") or {}) do
			if total[code] == nil then
				codes[#codes + 1] = code
				total[code] = 0
			end
			total[code] = total[code] + n
		end
	end
	table.sort(codes)
	for _, code in ipairs(codes) do
		io.write(string.format("status %d: %d\n", code, total[code]))
	end
end

function init(args)
	if file == nil or file == "" then
		error("KEYS_FILE is not set")
	end
	math.randomseed(os.time() * 1000 + (thread_number or 0))
	reqs = {}
	for secret in io.lines(file) do
		if secret ~= "" then
			local h = {}
			for name, value in pairs(wrk.headers) do
				h[name] = value
			end
			h[header] = secret
			reqs[#reqs + 1] = wrk.format(nil, nil, h)
		end
	end
	nreqs = #reqs
	if nreqs == 0 then
		error("no secrets in " .. file)
	end
	-- Threads start apart (7919 is prime), so they do not send the
	-- same line at the same time.
	nexti = (((thread_number or 1) - 1) * 7919) % nreqs
end

function request()
	if cycle then
		nexti = nexti % nreqs + 1
		return reqs[nexti]
	end
	if clock then
		return reqs[os.time() % nreqs + 1]
	end
	return reqs[math.random(nreqs)]
end
