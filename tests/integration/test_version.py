"""
One version everywhere: keygated -v, keygatectl --version, the admin API's
OpenAPI document (doc/openapi.json, and the copy the daemon serves at
GET /v1/openapi.json) and GET /v1/health all say configure.ac's
PACKAGE_VERSION ($KEYGATE_VERSION), and NEWS has an entry for it.
"""

import json
import os
import re
import subprocess

import kgtest as kg

VERSION = os.environ.get("KEYGATE_VERSION", "")


def version():
    kg.check(re.match(r"^\d+\.\d+\.\d+$", VERSION) is not None,
             "KEYGATE_VERSION %r is not a version" % VERSION)
    return VERSION


def test_keygated_v():
    r = kg.keygated("-v")
    kg.eq(r.returncode, 0, "keygated -v status")
    kg.eq(r.stdout, "keygated %s\n" % version(), "keygated -v")


def test_keygatectl_version():
    ctl = os.path.join(os.path.dirname(kg.binary()), "keygatectl")
    for opt in ("--version", "-v"):
        r = subprocess.run([ctl, opt], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=10)
        kg.eq(r.returncode, 0, "keygatectl %s status" % opt)
        kg.eq(r.stdout, "keygatectl %s\n" % version(), "keygatectl " + opt)


def test_openapi_file():
    with open(os.path.join(kg.SRCDIR, "doc", "openapi.json")) as f:
        doc = json.load(f)
    kg.eq(doc["info"]["version"], version(), "doc/openapi.json info.version")
    kg.eq(doc["info"]["license"]["identifier"], "ISC",
          "doc/openapi.json licence")


def test_served_versions():
    d = kg.start(kg.config(admin="{port2}"), nports=2)
    r = kg.admin(d, "GET", "/v1/openapi.json")
    kg.eq(r.status, 200, "GET /v1/openapi.json status")
    kg.eq(r.json()["info"]["version"], version(),
          "served OpenAPI info.version")
    r = kg.admin(d, "GET", "/v1/health", token=None)
    kg.eq(r.status, 200, "GET /v1/health status")
    kg.eq(r.json().get("version"), version(), "health version")


def test_news_and_license():
    with open(os.path.join(kg.SRCDIR, "NEWS")) as f:
        news = f.read()
    kg.check(re.search(r"(?m)^%s\b" % re.escape(version()), news),
             "NEWS has no entry for %s" % version())
    with open(os.path.join(kg.SRCDIR, "LICENSE")) as f:
        lic = f.read()
    kg.check(lic.startswith("ISC License") and "keygate contributors" in lic,
             "LICENSE is not the ISC licence of keygate contributors")


kg.run([test_keygated_v, test_keygatectl_version, test_openapi_file,
        test_served_versions, test_news_and_license])
