#!/bin/sh
#
# Turn a JSON file into a C file defining
#	const char admin_openapi_json[] = "...";
# one string literal per line of the input, so that the daemon can serve
# the document it was built with.
#
#	sh contrib/embed-json.sh doc/openapi.json > openapi.c
#
# Backslashes and double quotes are escaped, "?" too (no trigraph can
# form), carriage returns are dropped, and each line keeps its newline as
# "\n".  An empty "" first literal keeps the output valid for an empty file.

set -e

if [ $# -ne 1 ]; then
	echo "usage: embed-json.sh FILE.json > FILE.c" >&2
	exit 2
fi
if [ ! -r "$1" ]; then
	echo "embed-json.sh: cannot read $1" >&2
	exit 1
fi

printf '/* Generated from %s by contrib/embed-json.sh: do not edit. */\n\n' \
    "$(basename "$1")"
printf '#include "admin.h"\n\n'
printf 'const char admin_openapi_json[] =\n\t""\n'
tr -d '\r' < "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/?/\\?/g' \
    -e 's/^/	"/' -e 's/$/\\n"/'
printf ';\n'
