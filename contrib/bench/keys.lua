-- wrk script for the keys-* workloads of contrib/bench/run.sh: every
-- request carries one API key, chosen at random (uniformly, per request)
-- among the secrets in the file named by $KEYS_FILE, one per line, in the
-- header named by $KEYS_HEADER (default X-API-KEY).  The other request
-- headers (wrk -H) and the path come from the command line as usual.
--
-- Each thread formats one request per secret when it starts, so that the
-- per-request cost in wrk is one random number and a table look-up, the
-- same for every server under test.

local file = os.getenv("KEYS_FILE")
local header = os.getenv("KEYS_HEADER") or "X-API-KEY"
local threads = 0

function setup(thread)
	threads = threads + 1
	thread:set("thread_number", threads)
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
end

function request()
	return reqs[math.random(nreqs)]
end
