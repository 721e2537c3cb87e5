/*
 * key_cases.h — reader of the shared key lists test/key_cases.txt (edge-case
 * primary-key values with the key the server gives them) and
 * test/key_cases_bad.txt (keys outside the grammar), which test/sql/keys.sql
 * reads too, so server and client tests cannot drift apart.
 *
 * Both files are in COPY text format with a header line: fields split by
 * tabs, \N is null, and backslash escapes (\\ \t \n \r \v \f \b, octal
 * \ooo, hex \xHH) stand for bytes.  Paths are relative to the repository
 * root, where run-tests runs every test.
 */
#ifndef PSYNC_TEST_KEY_CASES_H
#define PSYNC_TEST_KEY_CASES_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "para_sync/key.h"

#define KEY_CASES_FILE "test/key_cases.txt"
#define KEY_CASES_BAD_FILE "test/key_cases_bad.txt"
#define KEY_CASES_MAX_FIELDS 3

typedef struct key_case
{
	char	   *field[KEY_CASES_MAX_FIELDS];	/* NULL for \N */
	size_t		len[KEY_CASES_MAX_FIELDS];
} key_case;

static inline int
key_cases_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* One COPY text field s[0..n) into a malloc'd byte string (NULL for \N). */
static inline char *
key_cases_field(const char *s, size_t n, size_t *len)
{
	static const char from[] = "tnrvfb";
	static const char to[] = "\t\n\r\v\f\b";
	char	   *out;
	size_t		o = 0;

	if (n == 2 && s[0] == '\\' && s[1] == 'N')
		return NULL;
	out = malloc(n + 1);
	for (size_t i = 0; i < n; i++)
	{
		const char *e;

		if (s[i] != '\\' || i + 1 == n)
		{
			out[o++] = s[i];
			continue;
		}
		i++;
		if ((e = strchr(from, s[i])) != NULL && *e != '\0')
			out[o++] = to[e - from];
		else if (s[i] >= '0' && s[i] <= '7')
		{
			int			v = 0;

			for (int k = 0; k < 3 && i < n && s[i] >= '0' && s[i] <= '7'; k++, i++)
				v = v * 8 + (s[i] - '0');
			i--;
			out[o++] = (char) v;
		}
		else if (s[i] == 'x' && i + 1 < n && key_cases_hex(s[i + 1]) >= 0)
		{
			int			v = 0;

			for (int k = 0; k < 2 && i + 1 < n && key_cases_hex(s[i + 1]) >= 0; k++, i++)
				v = v * 16 + key_cases_hex(s[i + 1]);
			out[o++] = (char) v;
		}
		else
			out[o++] = s[i];
	}
	out[o] = '\0';
	*len = o;
	return out;
}

/*
 * The rows of path (nfields fields each, header skipped) into *out; returns
 * their number, or 0 (with a message) when the file cannot be read.
 */
static inline size_t
key_cases_read(const char *path, int nfields, key_case **out)
{
	FILE	   *f = fopen(path, "r");
	char	   *line = NULL;
	size_t		cap = 0,
				n = 0;
	ssize_t		got;
	bool		header = true;

	*out = NULL;
	if (f == NULL)
	{
		fprintf(stderr, "  cannot open %s\n", path);
		return 0;
	}
	while ((got = getline(&line, &cap, f)) >= 0)
	{
		key_case   *c;
		const char *p = line;

		if (got > 0 && line[got - 1] == '\n')
			line[--got] = '\0';
		if (header)
		{
			header = false;
			continue;
		}
		*out = realloc(*out, (n + 1) * sizeof(key_case));
		c = &(*out)[n++];
		memset(c, 0, sizeof(*c));
		for (int k = 0; k < nfields; k++)
		{
			const char *tab = strchr(p, '\t');
			size_t		flen = tab != NULL ? (size_t) (tab - p) : strlen(p);

			c->field[k] = key_cases_field(p, flen, &c->len[k]);
			p = tab != NULL ? tab + 1 : p + flen;
		}
	}
	free(line);
	fclose(f);
	return n;
}

static inline void
key_cases_free(key_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++)
		for (int k = 0; k < KEY_CASES_MAX_FIELDS; k++)
			free(cases[i].field[k]);
	free(cases);
}

#endif							/* PSYNC_TEST_KEY_CASES_H */
