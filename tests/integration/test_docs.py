"""
test_docs: the manual pages and README.md must cover what the code does,
so that the documentation cannot silently drift from it again.

This test reads the source tree ($KEYGATE_SRCDIR) and starts no daemon.  It
takes its facts from the code itself:

- the directives[] table of src/config.c: every directive must have an
  entry (".It Ic NAME") in doc/keygate.conf.5 that states its default, and
  a row in README.md's configuration table with the same default ("none"
  when it has none);
- every refusal the code can send, found as the (status, code) arguments of
  the functions that send refusals (conn_refuse, conn_refuse_request,
  proxy_fail, auth_refuse, admin_error, admin_verror), the status-to-code
  switch of conn_fail, and direct assignments of a status and a code:
  each code must appear in doc/keygated.8 with its status next to it;
- the option letters of keygated's getopt() string: each must have an
  entry (".It Fl X") in doc/keygated.8 and a row in README.md's table.

The extraction must find refusals in every file that sends them, so a
refactoring that hides them from these patterns fails the test instead of
making it pass with nothing to check.
"""

import os
import re

import kgtest as kg


def src(path):
    with open(os.path.join(kg.SRCDIR, path), encoding="utf-8") as f:
        return f.read()


def c_args(text, start):
    """The top-level arguments of the call whose "(" is at text[start]."""
    args, depth, cur, i, quote = [], 0, "", start + 1, False
    while i < len(text):
        ch = text[i]
        if quote:
            cur += ch
            if ch == "\\":
                cur += text[i + 1]
                i += 1
            elif ch == '"':
                quote = False
        elif ch == '"':
            quote = True
            cur += ch
        elif ch == "(":
            depth += 1
            cur += ch
        elif ch == ")":
            if depth == 0:
                args.append(cur.strip())
                return args
            depth -= 1
            cur += ch
        elif ch == "," and depth == 0:
            args.append(cur.strip())
            cur = ""
        else:
            cur += ch
        i += 1
    raise AssertionError("unterminated call at offset %d" % start)


def c_defines():
    """Every simple #define NAME VALUE of src/config.c and include/*.h."""
    defs = {}
    texts = [src("src/config.c")]
    for name in sorted(os.listdir(os.path.join(kg.SRCDIR, "include"))):
        if name.endswith(".h"):
            texts.append(src(os.path.join("include", name)))
    for text in texts:
        text = text.replace("\\\n", " ")
        for m in re.finditer(r"^#define\s+([A-Za-z_]\w*)[ \t]+(.+)$", text,
                             re.M):
            defs.setdefault(m.group(1), re.sub(r"/\*.*?\*/", "",
                                               m.group(2)).strip())
    return defs


def c_fragments(expr, defs, depth=0):
    """
    The literal text a C default expression stands for, as a list of
    fragments: string literals as they are, XSTR(NAME) and macros defined
    in the tree expanded, and macros defined elsewhere (paths given by
    configure, such as KEYGATE_RUNSTATEDIR) left out, so that only the
    fragments the documentation must show remain.
    """
    check(depth < 8, "macro expansion too deep in %r" % expr)
    out = []
    for m in re.finditer(r'"((?:[^"\\]|\\.)*)"|XSTR\((\w+)\)|([A-Za-z_]\w*)',
                         expr):
        if m.group(1) is not None:
            out.append(m.group(1))
        elif m.group(2) is not None:
            out.append(defs.get(m.group(2), ""))
        elif m.group(3) in defs:
            out.extend(c_fragments(defs[m.group(3)], defs, depth + 1))
    # Adjacent literals are one string in C: "20" "/1s " is "20/1s ".
    return [s.strip() for s in ["".join(out)] if s.strip()]


def check(cond, msg):
    kg.check(cond, msg)


# Which argument of each directives[] macro is the default.
DEFAULT_ARG = {"FUNC": 6, "PATH": 2, "NUM": 5, "ENUM": 3, "RATE": 2}


def directives():
    """[(name, default fragments or None)] from src/config.c's table."""
    text = src("src/config.c")
    m = re.search(r"static const struct directive directives\[\] = \{(.*?)"
                  r"\n\};", text, re.S)
    check(m is not None, "src/config.c: directives[] table not found")
    table, defs, out = m.group(1), c_defines(), []
    for e in re.finditer(r"\b(FUNC|PATH|NUM|ENUM|RATE)\(", table):
        args = c_args(table, e.end() - 1)
        name = args[0].strip('"')
        default = args[DEFAULT_ARG[e.group(1)]]
        out.append((name, None if default == "NULL" else
                    c_fragments(default, defs)))
    check(len(out) >= 20, "only %d directives found in directives[]: has "
          "the table's shape changed?" % len(out))
    return out


def mdoc_plain(text):
    """mdoc source as words: macro names dropped, escapes undone."""
    words = []
    for line in text.splitlines():
        if line.startswith('.\\"'):
            continue
        toks = line.split()
        if line.startswith(".") and toks:
            toks = toks[1:]
            toks = [t for t in toks if not re.fullmatch(r"[A-Z][a-z]{1,2}",
                                                          t)]
        words.extend(toks)
    s = " ".join(words)
    return s.replace("\\e", "\\").replace("\\(dq", '"').replace("\\&", "")


def man_entries(page, macro):
    """{NAME: source text of its entry} for the ".It MACRO NAME" lines."""
    entries, cur = {}, None
    for line in page.splitlines():
        m = re.match(r"\.It %s (\S+)" % macro, line)
        if m:
            cur = m.group(1)
            entries.setdefault(cur, "")
            continue
        if line.startswith((".It Ic ", ".Sh ", ".Ss ")):
            cur = None
        if cur is not None:
            entries[cur] += line + "\n"
    return entries


def test_directives_in_keygate_conf_5():
    page = src("doc/keygate.conf.5")
    entries = man_entries(page, "Ic")
    missing, nodefault = [], []
    for name, default in directives():
        if name not in entries:
            missing.append(name)
            continue
        if default is None:
            continue
        text = mdoc_plain(entries[name])
        at = text.lower().find("default")
        if at == -1 or any(f not in text[at:] for f in default):
            nodefault.append("%s (%s)" % (name, " ".join(default)))
    check(not missing and not nodefault, "doc/keygate.conf.5 has no entry "
          "for: %s; gives no default for: %s" % (", ".join(missing) or "-",
                                                 ", ".join(nodefault) or "-"))


def readme_table_rows():
    """{directive: [default cells]} from README.md's configuration table."""
    text = src("README.md")
    sect = text.split("## Configuration", 1)
    check(len(sect) == 2, "README.md has no Configuration section")
    rows = {}
    for line in sect[1].split("\n## ", 1)[0].splitlines():
        m = re.match(r"\| `([a-z_]+)[ `][^|]*(?:\\\|[^|]*)*\| ([^|]*) \|",
                     line)
        if m:
            rows.setdefault(m.group(1), []).append(m.group(2))
    return rows


def test_directives_in_readme():
    rows = readme_table_rows()
    missing, wrong = [], []
    for name, default in directives():
        if name not in rows:
            missing.append(name)
            continue
        want = default if default is not None else ["none"]
        if not any(all(f in cell for f in want) for cell in rows[name]):
            wrong.append("%s (%s, README says %s)" % (name, " ".join(want),
                                                      " / ".join(rows[name])))
    check(not missing and not wrong, "README.md's configuration table has "
          "no row for: %s; the wrong default for: %s" %
          (", ".join(missing) or "-", ", ".join(wrong) or "-"))


# Functions whose second and third arguments are a status and a code.
REFUSERS = r"conn_refuse|conn_refuse_request|proxy_fail|auth_refuse|" \
           r"admin_error|admin_verror"


def refusals():
    """{(status, code): set of files} for every refusal in src/*.c."""
    found = {}
    files = sorted(f for f in os.listdir(os.path.join(kg.SRCDIR, "src"))
                   if f.endswith(".c") and f != "keygatectl.c")
    for f in files:
        text = src(os.path.join("src", f))
        pairs = set()
        for m in re.finditer(r"\b(?:%s)\(" % REFUSERS, text):
            args = c_args(text, m.end() - 1)
            if len(args) < 3 or not re.fullmatch(r"\d{3}", args[1]):
                continue
            code = args[2]
            if code == "NULL":		# a 204, not a refusal
                continue
            if code.startswith('"'):
                pairs.add((args[1], code.strip('"')))
                continue
            # A variable: the strings assigned to it in this file.
            vals = re.findall(r"\b%s\s*=\s*\"([a-z_]+)\"" % re.escape(code),
                              text)
            check(vals, "src/%s: cannot tell which code %s holds"
                  % (f, code))
            pairs.update((args[1], v) for v in vals)
        # conn_fail(): status to code.
        for m in re.finditer(r"case (\d{3}):\s*code = \"([a-z_]+)\"", text):
            pairs.add((m.group(1), m.group(2)))
        for m in re.finditer(r"default:\s*status = (\d{3});\s*"
                             r"code = \"([a-z_]+)\"", text):
            pairs.add((m.group(1), m.group(2)))
        # Direct assignments: x_status = N; x->x_code = "code".
        for m in re.finditer(r"_status = (\d{3});\s*\w+(?:->|\.)\w*_code = "
                             r"\"([a-z_]+)\"", text):
            pairs.add((m.group(1), m.group(2)))
        for p in pairs:
            found.setdefault(p, set()).add(f)
    for f in ("server.c", "auth.c", "admin.c", "proxy.c"):
        check(any(f in fs for fs in found.values()),
              "no refusal found in src/%s: have the refusal functions "
              "changed?" % f)
    check(len(found) >= 25, "only %d refusals found" % len(found))
    return found


def test_refusals_in_keygated_8():
    page = src("doc/keygated.8")
    missing = []
    for (status, code), files in sorted(refusals().items()):
        ok = False
        for m in re.finditer(r"(?<![A-Za-z0-9_])%s(?![A-Za-z0-9_])"
                             % re.escape(code), page):
            if re.search(r"\b%s\b" % status, page[max(0, m.start() - 60):
                                                  m.start()]):
                ok = True
                break
        if not ok:
            missing.append("%s %s (src/%s)" % (status, code,
                                               ", src/".join(sorted(files))))
    check(not missing, "doc/keygated.8 does not list these refusals with "
          "their status: %s" % "; ".join(missing))


def test_options():
    text = src("src/keygated.c")
    m = re.search(r"getopt(?:_long)?\(\s*argc,\s*argv,\s*\"([^\"]*)\"", text)
    check(m is not None, "src/keygated.c: getopt() string not found")
    letters = [ch for ch in m.group(1).lstrip("+:") if ch != ":"]
    check(letters, "no option letters in %r" % m.group(1))
    page = man_entries(src("doc/keygated.8"), "Fl")
    readme = src("README.md")
    missing = [ch for ch in letters if ch not in page]
    check(not missing, "doc/keygated.8 has no entry for option(s): %s"
          % ", ".join("-" + ch for ch in missing))
    missing = [ch for ch in letters if "| `-%s" % ch not in readme]
    check(not missing, "README.md's option table has no row for: %s"
          % ", ".join("-" + ch for ch in missing))


if __name__ == "__main__":
    kg.run([
        test_directives_in_keygate_conf_5,
        test_directives_in_readme,
        test_refusals_in_keygated_8,
        test_options,
    ])
