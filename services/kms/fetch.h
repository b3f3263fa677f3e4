/*
 * fetch: one bounded HTTPS GET with libcurl, for the issuers' JWKS
 * documents. The server's certificate is verified (against the system's CA
 * store or a given CA file) and so is its name; plain HTTP is allowed only to
 * a loopback address, for tests; redirects are not followed (a key set must
 * come from the URI that was configured). The body is bounded in size and
 * the whole exchange in time.
 *
 * Safe to call from several threads at once (one curl handle per call)
 * once fetch_global_init() has run.
 */
#ifndef KMS_FETCH_H
#define KMS_FETCH_H

#include <stdatomic.h>
#include <stddef.h>

#if defined(__GNUC__)
#define FETCH_MUST_CHECK __attribute__((warn_unused_result))
#else
#define FETCH_MUST_CHECK
#endif

/* libcurl's global set-up: once, before any thread that fetches is started.
 * Returns 0, or -1 with errstr filled. */
int fetch_global_init(char *errstr, size_t errstr_size) FETCH_MUST_CHECK;
void fetch_global_cleanup(void);

/* Whether url may be fetched: an absolute https URL, or http to 127.0.0.0/8,
 * ::1 or localhost. Returns 0, or -1 with errstr filled. */
int fetch_url_check(const char *url, char *errstr, size_t errstr_size) FETCH_MUST_CHECK;

typedef struct {
	const char *url;     /* checked by fetch_url_check() */
	const char *ca_file; /* PEM CA bundle to verify the server, or NULL: the system's */
	long timeout_ms;     /* the whole exchange, connecting included */
	size_t max_bytes;    /* the largest body taken */
	/* Optional: the fetch gives up (within about a second) once this
	 * reads non-zero, so that a stopping service need not wait out a
	 * slow server. */
	const atomic_int *cancel;
} fetch_request;

/* GET the URL. Returns 0 with *body (malloc'd, NUL-terminated, caller
 * frees) and *len when the server answered 200 with at most max_bytes;
 * otherwise -1 with errstr filled with one line (TLS and connection errors
 * as libcurl words them, "HTTP 500", "larger than N bytes", "timed out",
 * "cancelled"). */
int fetch_get(const fetch_request *rq, char **body, size_t *len, char *errstr,
              size_t errstr_size) FETCH_MUST_CHECK;

#endif
