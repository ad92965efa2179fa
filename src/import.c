/*
 * Parsers of the files keys are imported from: NDJSON, CSV, an nginx map
 * and a Kong decK export.  See import.h.
 */

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <yaml.h>

#include "import.h"

static const struct {
	const char		*f_name;
	enum import_format	 f_format;
} import_formats[] = {
	{ "ndjson", IMPORT_NDJSON },
	{ "csv", IMPORT_CSV },
	{ "nginx-map", IMPORT_NGINX_MAP },
	{ "kong", IMPORT_KONG },
};

/* File name endings and the format they suggest. */
static const struct {
	const char		*g_ext;
	enum import_format	 g_format;
} import_guesses[] = {
	{ ".ndjson", IMPORT_NDJSON },
	{ ".jsonl", IMPORT_NDJSON },
	{ ".csv", IMPORT_CSV },
	{ ".map", IMPORT_NGINX_MAP },
	{ ".conf", IMPORT_NGINX_MAP },
	{ ".yaml", IMPORT_KONG },
	{ ".yml", IMPORT_KONG },
	{ ".json", IMPORT_KONG },
};

/* CSV columns: header name, key member (NULL: handled apart). */
#define CSV_SCOPES	"scopes"
#define CSV_DISABLED	"disabled"
static const struct {
	const char	*c_name;
	const char	*c_member;
} csv_columns[] = {
	{ "id", "id" },
	{ "secret", "secret" },
	{ "secret_sha256", "secret_sha256" },
	{ "hint", "hint" },
	{ "name", "name" },
	{ "owner", "owner" },
	{ "app_id", "app_id" },
	{ "scopes", "scopes" },
	{ "expires_at", "expires_at" },
	{ "expires", "expires_at" },
	{ "prefix", "prefix" },
	{ "disabled", "disabled" },
};
#define CSV_NCOLUMNS	(sizeof(csv_columns) / sizeof(csv_columns[0]))
#define CSV_MAXCOLS	64

/* The format named s. */
int
import_format_parse(const char *s, enum import_format *f)
{
	size_t	 i;

	for (i = 0; i < sizeof(import_formats) / sizeof(import_formats[0]);
	    i++)
		if (strcmp(s, import_formats[i].f_name) == 0) {
			*f = import_formats[i].f_format;
			return (0);
		}
	return (-1);
}

/* The format a file name's ending suggests. */
int
import_format_guess(const char *path, enum import_format *f)
{
	size_t	 i, n = strlen(path), e;

	for (i = 0; i < sizeof(import_guesses) / sizeof(import_guesses[0]);
	    i++) {
		e = strlen(import_guesses[i].g_ext);
		if (n > e && strcasecmp(path + n - e,
		    import_guesses[i].g_ext) == 0) {
			*f = import_guesses[i].g_format;
			return (0);
		}
	}
	return (-1);
}

/* The name of format f. */
const char *
import_format_name(enum import_format f)
{
	size_t	 i;

	for (i = 0; i < sizeof(import_formats) / sizeof(import_formats[0]);
	    i++)
		if (import_formats[i].f_format == f)
			return (import_formats[i].f_name);
	return ("?");
}

static void	 import_warn(const struct import_sink *, const char *,
		    const char *, ...) __attribute__((format(printf, 3, 4)));

/* Tell the sink that the entry at where was skipped, and why. */
static void
import_warn(const struct import_sink *sk, const char *where, const char *fmt,
    ...)
{
	char	 msg[256];
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	sk->is_warn(sk->is_arg, where, msg);
}

/* Hand key (a reference) to the sink; 0, or -1 with err if it stops. */
static int
import_emit(const struct import_sink *sk, json_t *key, const char *where,
    char *err, size_t errlen)
{
	if (sk->is_key(sk->is_arg, key, where) == 0)
		return (0);
	snprintf(err, errlen, "%s: stopped", where);
	return (-1);
}

/* Is s[0..n) only spaces, tabs and CRs? */
static int
import_blank(const char *s, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
			return (0);
	return (1);
}

/* --- NDJSON ------------------------------------------------------------- */

/*
 * One JSON object per line (blank lines skipped), passed on as it is: the
 * server checks the fields.  A line that is not a JSON object is skipped
 * with a warning giving jansson's reason without the text it quotes.
 */
int
import_ndjson(const char *buf, size_t len, const struct import_sink *sk,
    char *err, size_t errlen)
{
	const char	*p = buf, *end = buf + len, *nl;
	char		 where[IMPORT_WHERE_MAX], *q;
	json_error_t	 je;
	json_t		*o;
	size_t		 lineno = 0;

	for (; p < end; p = nl + 1) {
		lineno++;
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
			nl = end;
		if (import_blank(p, (size_t)(nl - p)))
			continue;
		snprintf(where, sizeof(where), "line %zu", lineno);
		o = json_loadb(p, (size_t)(nl - p), JSON_REJECT_DUPLICATES, &je);
		if (o == NULL || !json_is_object(o)) {
			if (o == NULL && (q = strstr(je.text, " near '")) !=
			    NULL)
				*q = '\0';
			import_warn(sk, where, "not a JSON object%s%s",
			    o == NULL ? ": " : "", o == NULL ? je.text : "");
			OPENSSL_cleanse(je.text, sizeof(je.text));
			json_decref(o);
			continue;
		}
		if (import_emit(sk, o, where, err, errlen) == -1)
			return (-1);
	}
	return (0);
}

/* --- CSV ---------------------------------------------------------------- */

/* A CSV reader: position, line, and the fields of the current record. */
struct csv {
	const char	*c_p;
	const char	*c_end;
	size_t		 c_line;	/* line of c_p */
	char		*c_buf;		/* fields, NUL-separated */
	size_t		 c_size;
	size_t		 c_len;
	size_t		 c_off[CSV_MAXCOLS];
	size_t		 c_n;		/* fields */
};

/* Append byte ch to the current field; 0 or -1 (out of memory). */
static int
csv_put(struct csv *c, char ch)
{
	char	*p;

	if (c->c_len + 1 >= c->c_size) {
		if ((p = malloc(c->c_size * 2 + 64)) == NULL)
			return (-1);
		if (c->c_buf != NULL) {
			memcpy(p, c->c_buf, c->c_len);
			OPENSSL_cleanse(c->c_buf, c->c_size);
			free(c->c_buf);
		}
		c->c_buf = p;
		c->c_size = c->c_size * 2 + 64;
	}
	c->c_buf[c->c_len++] = ch;
	return (0);
}

/* End the current field; 0, or -1 when there are too many. */
static int
csv_end_field(struct csv *c, const char **why)
{
	if (csv_put(c, '\0') == -1) {
		*why = "out of memory";
		return (-1);
	}
	if (c->c_n == CSV_MAXCOLS) {
		*why = "too many fields";
		return (-1);
	}
	c->c_n++;
	if (c->c_n < CSV_MAXCOLS)
		c->c_off[c->c_n] = c->c_len;
	return (0);
}

/*
 * A quoted field from after its opening quote: "" is a quote, anything
 * else (commas, newlines) is content, up to the closing quote, which must
 * be followed by a comma, the end of the line or of the input.  0, or -1
 * with why.
 */
static int
csv_quoted(struct csv *c, const char **why)
{
	for (;;) {
		if (c->c_p == c->c_end) {
			*why = "a quoted field is not closed";
			return (-1);
		}
		if (*c->c_p == '"') {
			if (c->c_p + 1 < c->c_end && c->c_p[1] == '"') {
				c->c_p += 2;
				if (csv_put(c, '"') == -1)
					goto nomem;
				continue;
			}
			c->c_p++;
			if (c->c_p < c->c_end && *c->c_p == '\r')
				c->c_p++;
			if (c->c_p < c->c_end && *c->c_p != ',' &&
			    *c->c_p != '\n') {
				*why = "a closing quote is followed by "
				    "more than a comma";
				return (-1);
			}
			return (0);
		}
		if (*c->c_p == '\n')
			c->c_line++;
		if (csv_put(c, *c->c_p++) == -1)
			goto nomem;
	}
nomem:
	*why = "out of memory";
	return (-1);
}

/*
 * The next record into c (c_n fields at c_buf + c_off[i]).  1, 0 at the
 * end of the input, or -1 with why (the rest of the record's line is then
 * skipped).
 */
static int
csv_record(struct csv *c, const char **why)
{
	if (c->c_p >= c->c_end)
		return (0);
	c->c_len = c->c_n = 0;
	c->c_off[0] = 0;
	for (;;) {
		if (c->c_p < c->c_end && *c->c_p == '"') {
			c->c_p++;
			if (csv_quoted(c, why) == -1)
				goto skip;
		} else
			while (c->c_p < c->c_end && *c->c_p != ',' &&
			    *c->c_p != '\n') {
				if (*c->c_p == '\r' && (c->c_p + 1 ==
				    c->c_end || c->c_p[1] == '\n')) {
					c->c_p++;
					continue;
				}
				if (csv_put(c, *c->c_p++) == -1) {
					*why = "out of memory";
					return (-1);
				}
			}
		if (csv_end_field(c, why) == -1)
			goto skip;
		if (c->c_p == c->c_end)
			return (1);
		if (*c->c_p++ == '\n') {
			c->c_line++;
			return (1);
		}
	}
skip:
	while (c->c_p < c->c_end && *c->c_p++ != '\n')
		;
	c->c_line++;
	return (-1);
}

/* Field i of the current record. */
static const char *
csv_field(const struct csv *c, size_t i)
{
	return (c->c_buf + c->c_off[i]);
}

/*
 * The header: each field a known column (case-insensitive, spaces
 * around it trimmed), none twice, secret or secret_sha256 among them.
 * cols[i] is the csv_columns index of field i.  0, or -1 with err.
 */
static int
csv_header(struct csv *c, size_t *cols, char *err, size_t errlen)
{
	const char	*why, *f;
	size_t		 i, j, k, n;
	int		 rc, have = 0;

	if ((rc = csv_record(c, &why)) != 1) {
		snprintf(err, errlen, "line 1: %s", rc == 0 ? "no header line "
		    "(it names the columns: owner, secret, ...)" : why);
		return (-1);
	}
	for (i = 0; i < c->c_n; i++) {
		f = csv_field(c, i);
		/* A UTF-8 byte order mark before the first name. */
		if (i == 0 && strncmp(f, "\xef\xbb\xbf", 3) == 0)
			f += 3;
		f += strspn(f, " \t");
		for (n = strlen(f); n > 0 && (f[n - 1] == ' ' ||
		    f[n - 1] == '\t'); n--)
			;
		for (j = 0; j < CSV_NCOLUMNS; j++)
			if (strlen(csv_columns[j].c_name) == n &&
			    strncasecmp(f, csv_columns[j].c_name, n) == 0)
				break;
		if (j == CSV_NCOLUMNS) {
			snprintf(err, errlen, "line 1: unknown column \"%.*s\" "
			    "(the columns are id, secret, secret_sha256, hint, "
			    "name, owner, app_id, scopes, expires_at, prefix, "
			    "disabled)", (int)(n > 40 ? 40 : n), f);
			return (-1);
		}
		for (k = 0; k < i; k++)
			if (strcmp(csv_columns[cols[k]].c_member,
			    csv_columns[j].c_member) == 0) {
				snprintf(err, errlen, "line 1: column \"%s\" "
				    "appears twice", csv_columns[j].c_name);
				return (-1);
			}
		cols[i] = j;
		have |= strncmp(csv_columns[j].c_name, "secret", 6) == 0;
	}
	if (!have) {
		snprintf(err, errlen, "line 1: the header names no secret or "
		    "secret_sha256 column");
		return (-1);
	}
	return (0);
}

/* The scopes of a cell ("a b c") as a JSON array, or NULL (not UTF-8). */
static json_t *
csv_scopes(const char *s)
{
	json_t	*a;
	size_t	 n;

	if ((a = json_array()) == NULL)
		return (NULL);
	for (;;) {
		s += strspn(s, " \t");
		if (*s == '\0')
			return (a);
		n = strcspn(s, " \t");
		if (json_array_append_new(a, json_stringn(s, n)) == -1) {
			json_decref(a);
			return (NULL);
		}
		s += n;
	}
}

/* disabled: true/false, yes/no, 1/0 as a boolean, else the text. */
static json_t *
csv_bool(const char *s)
{
	if (strcasecmp(s, "true") == 0 || strcasecmp(s, "yes") == 0 ||
	    strcmp(s, "1") == 0)
		return (json_true());
	if (strcasecmp(s, "false") == 0 || strcasecmp(s, "no") == 0 ||
	    strcmp(s, "0") == 0)
		return (json_false());
	return (json_string(s));
}

/*
 * The key object of the current record under the header cols, or NULL
 * with why.  Empty cells are left out (the API's default).
 */
static json_t *
csv_key(const struct csv *c, const size_t *cols, const char **why)
{
	const char	*f, *m;
	json_t		*o, *v;
	size_t		 i;

	if ((o = json_object()) == NULL) {
		*why = "out of memory";
		return (NULL);
	}
	for (i = 0; i < c->c_n; i++) {
		if (*(f = csv_field(c, i)) == '\0')
			continue;
		m = csv_columns[cols[i]].c_member;
		if (strcmp(m, CSV_SCOPES) == 0)
			v = csv_scopes(f);
		else if (strcmp(m, CSV_DISABLED) == 0)
			v = csv_bool(f);
		else
			v = json_string(f);
		if (v == NULL || json_object_set_new(o, m, v) == -1) {
			json_decref(o);
			*why = "a cell is not valid UTF-8";
			return (NULL);
		}
	}
	return (o);
}

/*
 * RFC 4180 CSV with a header line; see csv_header.  A record with another
 * number of fields than the header, or bad quoting, is skipped with a
 * warning; an empty line is skipped.
 */
int
import_csv(const char *buf, size_t len, const struct import_sink *sk,
    char *err, size_t errlen)
{
	struct csv	 c;
	size_t		 cols[CSV_MAXCOLS], ncols, line;
	char		 where[IMPORT_WHERE_MAX];
	const char	*why;
	json_t		*o;
	int		 rc = -1, r;

	memset(&c, 0, sizeof(c));
	c.c_p = buf;
	c.c_end = buf + len;
	c.c_line = 1;
	if (csv_header(&c, cols, err, errlen) == -1)
		goto done;
	ncols = c.c_n;
	for (;;) {
		line = c.c_line;
		snprintf(where, sizeof(where), "line %zu", line);
		if ((r = csv_record(&c, &why)) == 0)
			break;
		if (r == -1) {
			import_warn(sk, where, "%s", why);
			continue;
		}
		if (c.c_n == 1 && *csv_field(&c, 0) == '\0')
			continue;
		if (c.c_n != ncols) {
			import_warn(sk, where, "%zu fields, but the header has "
			    "%zu", c.c_n, ncols);
			continue;
		}
		if ((o = csv_key(&c, cols, &why)) == NULL) {
			import_warn(sk, where, "%s", why);
			continue;
		}
		if (import_emit(sk, o, where, err, errlen) == -1)
			goto done;
	}
	rc = 0;
done:
	if (c.c_buf != NULL) {
		OPENSSL_cleanse(c.c_buf, c.c_size);
		free(c.c_buf);
	}
	return (rc);
}

/* --- nginx map ---------------------------------------------------------- */

#define NGX_TOKEN_MAX	4096
#define NGX_WORDS	8

/* nginx's lexer: words (quoted or not), ";", "{" and "}", with lines. */
struct ngx {
	const char	*n_p;
	const char	*n_end;
	size_t		 n_line;
	char		 n_tok[NGX_TOKEN_MAX + 1];
	size_t		 n_len;
	int		 n_quoted;
	size_t		 n_tokline;
	char		 n_words[NGX_WORDS][NGX_TOKEN_MAX + 1];	/* of a */
	int		 n_wquoted[NGX_WORDS];			/* directive */
};

#define NGX_EOF		0
#define NGX_WORD	1
#define NGX_SEMI	2
#define NGX_OPEN	3
#define NGX_CLOSE	4
#define NGX_ERROR	(-1)

/*
 * The next token.  As nginx reads its configuration: "#" starts a comment
 * outside quotes, "..." and '...' quote (\" \' \\ and \n \r \t escape,
 * any other backslash stays), a word ends at space, ";", "{" or "}".
 */
static int
ngx_next(struct ngx *n, const char **why)
{
	char	 q, ch;

	for (;;) {
		while (n->n_p < n->n_end && isspace((unsigned char)*n->n_p))
			if (*n->n_p++ == '\n')
				n->n_line++;
		if (n->n_p == n->n_end)
			return (NGX_EOF);
		if (*n->n_p != '#')
			break;
		while (n->n_p < n->n_end && *n->n_p != '\n')
			n->n_p++;
	}
	n->n_tokline = n->n_line;
	n->n_len = 0;
	n->n_quoted = 0;
	switch (*n->n_p) {
	case ';':
		n->n_p++;
		return (NGX_SEMI);
	case '{':
		n->n_p++;
		return (NGX_OPEN);
	case '}':
		n->n_p++;
		return (NGX_CLOSE);
	case '"':
	case '\'':
		q = *n->n_p++;
		n->n_quoted = 1;
		for (;;) {
			if (n->n_p == n->n_end) {
				*why = "a quoted string is not closed";
				return (NGX_ERROR);
			}
			ch = *n->n_p++;
			if (ch == q)
				break;
			if (ch == '\n')
				n->n_line++;
			if (ch == '\\' && n->n_p < n->n_end) {
				switch (*n->n_p) {
				case '"': case '\'': case '\\':
					ch = *n->n_p++;
					break;
				case 'n':
					ch = '\n';
					n->n_p++;
					break;
				case 'r':
					ch = '\r';
					n->n_p++;
					break;
				case 't':
					ch = '\t';
					n->n_p++;
					break;
				}
			}
			if (n->n_len == NGX_TOKEN_MAX)
				goto long_;
			n->n_tok[n->n_len++] = ch;
		}
		break;
	default:
		while (n->n_p < n->n_end && !isspace((unsigned char)*n->n_p) &&
		    *n->n_p != ';' && *n->n_p != '{' && *n->n_p != '}') {
			if (n->n_len == NGX_TOKEN_MAX)
				goto long_;
			n->n_tok[n->n_len++] = *n->n_p++;
		}
	}
	n->n_tok[n->n_len] = '\0';
	return (NGX_WORD);
long_:
	*why = "a word is longer than 4096 bytes";
	return (NGX_ERROR);
}

/*
 * One map entry, words[0..nw) ended by ";": a key of the map's source
 * value words[0] for owner words[1].  default, hostnames and volatile are
 * the map's own parameters; "~" starts a regular expression (which no
 * list of keys can hold); include is not followed.  A leading "\" escapes
 * a key that would be a parameter's name.
 */
static int
ngx_entry(struct ngx *n, int nw, const struct import_sink *sk, char *err,
    size_t errlen)
{
	char		 where[IMPORT_WHERE_MAX];
	char		 (*words)[NGX_TOKEN_MAX + 1] = n->n_words;
	const int	*quoted = n->n_wquoted;
	const char	*key = words[0];
	json_t		*o;

	snprintf(where, sizeof(where), "line %zu", n->n_tokline);
	if (nw == 1 && !quoted[0] && (strcmp(key, "hostnames") == 0 ||
	    strcmp(key, "volatile") == 0))
		return (0);
	if (nw >= 1 && strcmp(key, "include") == 0 && !quoted[0]) {
		import_warn(sk, where, "include is not followed: import the "
		    "included file itself");
		return (0);
	}
	if (nw != 2) {
		import_warn(sk, where, "a map entry is a key and a value, "
		    "this has %d words", nw);
		return (0);
	}
	if (strcmp(key, "default") == 0)
		return (0);
	if (key[0] == '~') {
		import_warn(sk, where, "a regular expression entry is "
		    "skipped: it is no key");
		return (0);
	}
	if (key[0] == '\\')
		key++;
	if (words[1][0] == '\0') {
		import_warn(sk, where, "the value (the owner) is empty");
		return (0);
	}
	o = json_pack("{s:s,s:s,s:s}", "secret", key, "owner", words[1],
	    "name", words[1]);
	if (o == NULL) {
		import_warn(sk, where, "not valid UTF-8");
		return (0);
	}
	return (import_emit(sk, o, where, err, errlen));
}

/*
 * The map blocks of an nginx file: "map SOURCE VARIABLE { ... }" at any
 * depth (alone, or inside http { }); every other directive and block is
 * passed over.  Entries as ngx_entry says.
 */
int
import_nginx_map(const char *buf, size_t len, const struct import_sink *sk,
    char *err, size_t errlen)
{
	struct ngx	*n;
	const char	*why = NULL;
	int		 nw = 0, t, depth = 0, inmap = 0, rc = -1, maps = 0;

	if ((n = calloc(1, sizeof(*n))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return (-1);
	}
	n->n_p = buf;
	n->n_end = buf + len;
	n->n_line = 1;
	while ((t = ngx_next(n, &why)) != NGX_EOF) {
		if (t == NGX_ERROR)
			goto fail;
		if (t == NGX_WORD) {
			if (nw < NGX_WORDS) {
				memcpy(n->n_words[nw], n->n_tok, n->n_len + 1);
				n->n_wquoted[nw] = n->n_quoted;
			}
			nw++;
			continue;
		}
		if (t == NGX_SEMI) {
			if (inmap && depth == inmap && nw > 0 &&
			    ngx_entry(n, nw, sk, err, errlen) == -1)
				goto done;
		} else if (t == NGX_OPEN) {
			depth++;
			if (!inmap && nw == 3 &&
			    strcmp(n->n_words[0], "map") == 0) {
				inmap = depth;
				maps++;
			}
		} else {
			if (nw > 0) {
				why = "a directive before \"}\" lacks its \";\"";
				goto fail;
			}
			if (depth == 0) {
				why = "\"}\" without \"{\"";
				goto fail;
			}
			if (inmap == depth)
				inmap = 0;
			depth--;
		}
		nw = 0;
	}
	if (depth > 0 || nw > 0) {
		why = depth > 0 ? "a block is not closed" :
		    "the last directive lacks its \";\"";
		goto fail;
	}
	if (maps == 0) {
		snprintf(err, errlen, "no \"map $http_x_api_key $var { ... }\" "
		    "block in the input");
		goto done;
	}
	rc = 0;
	goto done;
fail:
	snprintf(err, errlen, "line %zu: %s", n->n_line, why);
done:
	OPENSSL_cleanse(n, sizeof(*n));
	free(n);
	return (rc);
}

/* --- Kong decK ---------------------------------------------------------- */

/* Walking a YAML document into JSON: the nodes seen so far. */
struct ywalk {
	yaml_document_t	*y_doc;
	size_t		 y_nodes;
	const char	*y_why;
};

/*
 * YAML node as JSON (scalars as strings, whatever their tag: a decK key
 * of digits stays the same text), or NULL with y_why.  Aliases make the
 * document a graph: y_nodes counts every node walked, so a "billion
 * laughs" stops at IMPORT_NODES_MAX, and the depth is bounded.
 */
static json_t *
yaml_to_json(struct ywalk *w, yaml_node_t *node, int depth)
{
	yaml_node_item_t	*it;
	yaml_node_pair_t	*pr;
	yaml_node_t		*k;
	json_t			*o, *v;

	if (node == NULL || ++w->y_nodes > IMPORT_NODES_MAX ||
	    depth > IMPORT_DEPTH_MAX) {
		w->y_why = node == NULL ? "a broken YAML document" :
		    "the YAML document is too large or too deep (aliases?)";
		return (NULL);
	}
	switch (node->type) {
	case YAML_SCALAR_NODE:
		if ((o = json_stringn((const char *)node->data.scalar.value,
		    node->data.scalar.length)) == NULL)
			w->y_why = "a YAML value is not valid UTF-8";
		return (o);
	case YAML_SEQUENCE_NODE:
		if ((o = json_array()) == NULL)
			goto nomem;
		for (it = node->data.sequence.items.start;
		    it < node->data.sequence.items.top; it++) {
			if ((v = yaml_to_json(w, yaml_document_get_node(
			    w->y_doc, *it), depth + 1)) == NULL ||
			    json_array_append_new(o, v) == -1) {
				json_decref(o);
				return (NULL);
			}
		}
		return (o);
	case YAML_MAPPING_NODE:
		if ((o = json_object()) == NULL)
			goto nomem;
		for (pr = node->data.mapping.pairs.start;
		    pr < node->data.mapping.pairs.top; pr++) {
			k = yaml_document_get_node(w->y_doc, pr->key);
			if (k == NULL || k->type != YAML_SCALAR_NODE ||
			    memchr(k->data.scalar.value, '\0',
			    k->data.scalar.length) != NULL) {
				w->y_why = "a YAML mapping key is not a string";
				json_decref(o);
				return (NULL);
			}
			if ((v = yaml_to_json(w, yaml_document_get_node(
			    w->y_doc, pr->value), depth + 1)) == NULL ||
			    json_object_setn_new(o, (const char *)
			    k->data.scalar.value, k->data.scalar.length,
			    v) == -1) {
				if (v != NULL)
					w->y_why = "a YAML mapping key is not "
					    "valid UTF-8";
				json_decref(o);
				return (NULL);
			}
		}
		return (o);
	default:
		w->y_why = "an empty YAML document";
		return (NULL);
	}
nomem:
	w->y_why = "out of memory";
	return (NULL);
}

/* The first YAML document of buf as JSON, or NULL with err. */
static json_t *
kong_yaml(const char *buf, size_t len, char *err, size_t errlen)
{
	yaml_parser_t	 p;
	yaml_document_t	 doc;
	struct ywalk	 w;
	json_t		*o = NULL;

	if (yaml_parser_initialize(&p) == 0) {
		snprintf(err, errlen, "out of memory");
		return (NULL);
	}
	yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
	if (yaml_parser_load(&p, &doc) == 0) {
		snprintf(err, errlen, "line %zu: YAML: %s",
		    p.problem_mark.line + 1, p.problem != NULL ? p.problem :
		    "cannot parse");
		yaml_parser_delete(&p);
		return (NULL);
	}
	memset(&w, 0, sizeof(w));
	w.y_doc = &doc;
	if ((o = yaml_to_json(&w, yaml_document_get_root_node(&doc), 0)) ==
	    NULL)
		snprintf(err, errlen, "%s", w.y_why != NULL ? w.y_why :
		    "an empty YAML document");
	yaml_document_delete(&doc);
	yaml_parser_delete(&p);
	return (o);
}

/* A member of o as a non-empty string, or NULL. */
static const char *
kong_str(const json_t *o, const char *name)
{
	const char	*s = json_string_value(json_object_get(o, name));

	return (s != NULL && *s != '\0' ? s : NULL);
}

/* The consumer's ACL groups as scopes (a new array), or NULL. */
static json_t *
kong_scopes(const json_t *consumer)
{
	const json_t	*acls = json_object_get(consumer, "acls"), *a;
	const char	*g;
	json_t		*scopes;
	size_t		 i;

	if ((scopes = json_array()) == NULL)
		return (NULL);
	json_array_foreach(acls, i, a)
		if ((g = kong_str(a, "group")) != NULL &&
		    json_array_append_new(scopes, json_string(g)) == -1) {
			json_decref(scopes);
			return (NULL);
		}
	return (scopes);
}

/* The keys of one consumer (number ci) into the sink; 0 or -1. */
static int
kong_consumer(const json_t *cons, size_t ci, const struct import_sink *sk,
    char *err, size_t errlen)
{
	char		 where[IMPORT_WHERE_MAX];
	const char	*owner, *key;
	const json_t	*creds, *cr;
	json_t		*o, *scopes;
	size_t		 i;

	owner = kong_str(cons, "username");
	if (owner == NULL)
		owner = kong_str(cons, "custom_id");
	creds = json_object_get(cons, "keyauth_credentials");
	if (owner == NULL) {
		snprintf(where, sizeof(where), "consumers[%zu]", ci);
		if (json_array_size(creds) > 0)
			import_warn(sk, where, "the consumer has neither "
			    "username nor custom_id");
		return (0);
	}
	json_array_foreach(creds, i, cr) {
		snprintf(where, sizeof(where), "consumer \"%.64s\", key %zu",
		    owner, i + 1);
		if ((key = kong_str(cr, "key")) == NULL) {
			import_warn(sk, where, "the credential has no key");
			continue;
		}
		o = json_pack("{s:s,s:s}", "owner", owner, "secret", key);
		if (o == NULL || (scopes = kong_scopes(cons)) == NULL) {
			json_decref(o);
			snprintf(err, errlen, "out of memory");
			return (-1);
		}
		if (json_array_size(scopes) > 0)
			json_object_set_new(o, "scopes", scopes);
		else
			json_decref(scopes);
		if (import_emit(sk, o, where, err, errlen) == -1)
			return (-1);
	}
	return (0);
}

/*
 * A decK file (YAML, or JSON when it starts with "{"): every key-auth
 * credential of every consumer becomes a key of that consumer.  Consumers
 * without credentials are passed over.
 */
int
import_kong(const char *buf, size_t len, const struct import_sink *sk,
    char *err, size_t errlen)
{
	json_error_t	 je;
	const json_t	*cons, *c;
	json_t		*root;
	size_t		 i, skip;
	int		 rc = 0;

	skip = len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
	while (skip < len && isspace((unsigned char)buf[skip]))
		skip++;
	if (skip < len && buf[skip] == '{') {
		root = json_loadb(buf + skip, len - skip, JSON_REJECT_DUPLICATES,
		    &je);
		if (root == NULL) {
			snprintf(err, errlen, "line %d: JSON: %.*s", je.line,
			    (int)strcspn(je.text, "'"), je.text);
			OPENSSL_cleanse(je.text, sizeof(je.text));
			return (-1);
		}
	} else if ((root = kong_yaml(buf, len, err, errlen)) == NULL)
		return (-1);
	cons = json_object_get(root, "consumers");
	if (!json_is_array(cons)) {
		snprintf(err, errlen, "no \"consumers\" list: not a decK "
		    "export (deck gateway dump)");
		json_decref(root);
		return (-1);
	}
	json_array_foreach(cons, i, c)
		if ((rc = kong_consumer(c, i, sk, err, errlen)) == -1)
			break;
	json_decref(root);
	return (rc);
}

/* Parse buf as format. */
int
import_parse(enum import_format f, const char *buf, size_t len,
    const struct import_sink *sk, char *err, size_t errlen)
{
	switch (f) {
	case IMPORT_NDJSON:
		return (import_ndjson(buf, len, sk, err, errlen));
	case IMPORT_CSV:
		return (import_csv(buf, len, sk, err, errlen));
	case IMPORT_NGINX_MAP:
		return (import_nginx_map(buf, len, sk, err, errlen));
	case IMPORT_KONG:
		return (import_kong(buf, len, sk, err, errlen));
	}
	snprintf(err, errlen, "unknown format");
	return (-1);
}
