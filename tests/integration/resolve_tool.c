/*
 * resolve_tool: the resolve module on the command line, for the round-trip
 * tests against fastavro (tests/python/test_resolve_fastavro.py).
 *
 *   resolve_tool WRITER.avsc READER.avsc < datums
 *
 * Each input line is a datum of the writer schema in hex; each output line
 * is the reader's encoding of it in hex, or "ERR <status> <message>".
 * Exit 0, or 2 when the schemas cannot be parsed or resolved (the reason on
 * stderr, one line).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resolve.h"

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0, got;
	if (f == NULL)
		return NULL;
	do {
		if (cap - n < 4096) {
			char *nb = realloc(buf, cap + 65536);
			if (nb == NULL) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = nb;
			cap += 65536;
		}
		got = fread(buf + n, 1, cap - n, f);
		n += got;
	} while (got > 0);
	fclose(f);
	*len = n;
	return buf;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int main(int argc, char **argv)
{
	char err[256], *wj, *rj, *line = NULL;
	size_t wl = 0, rl = 0, cap = 0;
	ssize_t n;
	resolve_schema *w, *r;
	resolve_plan *p;
	resolve_limits lim = {64 * 1024, 8 * 1024 * 1024, 1024 * 1024};

	if (argc != 3) {
		fprintf(stderr, "usage: resolve_tool WRITER.avsc READER.avsc < hex-lines\n");
		return 2;
	}
	wj = slurp(argv[1], &wl);
	rj = slurp(argv[2], &rl);
	if (wj == NULL || rj == NULL) {
		fprintf(stderr, "resolve_tool: cannot read the schemas\n");
		free(wj);
		free(rj);
		return 2;
	}
	/* every refusal frees what it holds: a leak would change the exit
	 * code under LeakSanitizer */
	w = resolve_schema_parse(wj, wl, NULL, err, sizeof err);
	r = w != NULL ? resolve_schema_parse(rj, rl, NULL, err, sizeof err) : NULL;
	p = r != NULL ? resolve_plan_new(w, r, NULL, err, sizeof err) : NULL;
	if (p == NULL) {
		fprintf(stderr, "resolve_tool: %s%s\n",
		        w == NULL   ? "writer: "
		        : r == NULL ? "reader: "
		                    : "",
		        err);
		resolve_schema_destroy(w);
		resolve_schema_destroy(r);
		free(wj);
		free(rj);
		return 2;
	}
	while ((n = getline(&line, &cap, stdin)) >= 0) {
		size_t len = 0;
		unsigned char *in = malloc((size_t)n / 2 + 1), *out = NULL;
		size_t out_len = 0;
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		for (ssize_t i = 0; in != NULL && i + 1 < n; i += 2)
			in[len++] = (unsigned char)(hexval(line[i]) << 4 | hexval(line[i + 1]));
		codec_status st =
		    resolve_datum(p, &lim, in, len, 0, &out, &out_len, err, sizeof err);
		if (st != CODEC_OK) {
			printf("ERR %s %s\n", codec_status_name(st), err);
		} else {
			for (size_t i = 0; i < out_len; i++)
				printf("%02x", out[i]);
			printf("\n");
		}
		free(in);
		free(out);
	}
	free(line);
	resolve_plan_destroy(p);
	resolve_schema_destroy(w);
	resolve_schema_destroy(r);
	free(wj);
	free(rj);
	return 0;
}
