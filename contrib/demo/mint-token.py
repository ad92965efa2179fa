#!/usr/bin/python3
# Mint a token for the demo jwt_provider of contrib/keygate-demo.conf.
#
#   /usr/bin/python3 contrib/demo/mint-token.py [SUB] [SCOPES] [MINUTES]
#
# DEMO ONLY: private.pem is published with keygate, so anyone can sign
# tokens with it.  Never list contrib/demo/jwks.json in a real
# configuration.  Needs Debian's python3-jwt and python3-cryptography.
import os
import sys
import time

import jwt

here = os.path.dirname(os.path.abspath(__file__))
sub = sys.argv[1] if len(sys.argv) > 1 else "alice@example.com"
scopes = sys.argv[2] if len(sys.argv) > 2 else "Catalog.Read"
minutes = int(sys.argv[3]) if len(sys.argv) > 3 else 60
now = int(time.time())
with open(os.path.join(here, "private.pem"), "rb") as f:
    key = f.read()
print(jwt.encode({
    "iss": "https://login.demo.keygate.invalid/v2.0",
    "aud": "api://keygate-demo",
    "sub": sub,
    "scp": scopes,
    "iat": now,
    "nbf": now,
    "exp": now + 60 * minutes,
}, key, algorithm="RS256", headers={"kid": "demo-1"}))
