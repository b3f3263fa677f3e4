/*
 * fetch: libcurl's easy interface, one handle per fetch, so that the JWKS
 * refresher thread and the consumer thread (a fetch for an unknown kid) never
 * share one. CURLOPT_NOSIGNAL keeps libcurl away from signals, which belong
 * to the service's loop; the body is gathered by a write callback that stops
 * the transfer as soon as it passes the bound, whatever Content-Length said.
 */
#include "fetch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

typedef struct {
	char *data;
	size_t len, cap, max;
	int too_large;
} body_buf;

int fetch_global_init(char *errstr, size_t errstr_size)
{
	CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);

	if (rc != CURLE_OK) {
		snprintf(errstr, errstr_size, "libcurl: %s", curl_easy_strerror(rc));
		return -1;
	}
	return 0;
}

void fetch_global_cleanup(void)
{
	curl_global_cleanup();
}

static int loopback_host(const char *host)
{
	/* curl gives an IPv6 address in brackets */
	if (strcmp(host, "[::1]") == 0 || strcasecmp(host, "localhost") == 0)
		return 1;
	if (strncmp(host, "127.", 4) != 0)
		return 0;
	/* dotted digits only: "127.evil.example" is a name, not an address */
	for (const char *p = host + 4; *p != '\0'; p++)
		if ((*p < '0' || *p > '9') && *p != '.')
			return 0;
	return 1;
}

int fetch_url_check(const char *url, char *errstr, size_t errstr_size)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL;
	int rc = -1;

	if (u == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return -1;
	}
	if (url == NULL || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
		snprintf(errstr, errstr_size, "not an absolute URL");
		goto done;
	}
	if (strcasecmp(scheme, "https") == 0) {
		rc = 0;
	} else if (strcasecmp(scheme, "http") == 0) {
		if (loopback_host(host))
			rc = 0;
		else
			snprintf(errstr, errstr_size,
			         "plain http is allowed only to a loopback address: use https");
	} else {
		snprintf(errstr, errstr_size, "the scheme must be https");
	}
done:
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	return rc;
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	body_buf *b = userdata;
	size_t n = size * nmemb;

	if (n > b->max - b->len) {
		b->too_large = 1;
		return 0; /* ends the transfer with CURLE_WRITE_ERROR */
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap == 0 ? 8192 : b->cap;
		char *d;

		while (cap < b->len + n + 1)
			cap *= 2;
		d = realloc(b->data, cap);
		if (d == NULL)
			return 0;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, ptr, n);
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

/* libcurl calls this at least once a second, even while nothing moves. */
static int on_progress(void *clientp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
	const atomic_int *cancel = clientp;

	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	return atomic_load(cancel) != 0; /* non-zero aborts the transfer */
}

/* One line from libcurl's words: its error buffer when it filled it. */
static void curl_err(char *errstr, size_t errstr_size, CURLcode rc, const char *buf)
{
	snprintf(errstr, errstr_size, "%s", buf[0] != '\0' ? buf : curl_easy_strerror(rc));
	for (char *p = errstr; *p != '\0'; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
}

int fetch_get(const fetch_request *rq, char **body, size_t *len, char *errstr, size_t errstr_size)
{
	CURL *h = NULL;
	struct curl_slist *hdrs = NULL;
	body_buf b = {0};
	char cerr[CURL_ERROR_SIZE] = "";
	long status = 0;
	CURLcode rc;
	int ret = -1;

	*body = NULL;
	*len = 0;
	if (rq == NULL || rq->url == NULL || rq->max_bytes == 0) {
		snprintf(errstr, errstr_size, "fetch_get: missing argument");
		return -1;
	}
	if (fetch_url_check(rq->url, errstr, errstr_size) != 0)
		return -1;
	b.max = rq->max_bytes;
	h = curl_easy_init();
	hdrs = curl_slist_append(NULL, "Accept: application/jwk-set+json, application/json");
	if (h == NULL || hdrs == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		goto done;
	}
	/* Each setting is checked: one libcurl refused would mean a fetch
	 * with weaker rules than these. */
	if (curl_easy_setopt(h, CURLOPT_URL, rq->url) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http") != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2) != CURLE_OK ||
	    (rq->ca_file != NULL && rq->ca_file[0] != '\0' &&
	     curl_easy_setopt(h, CURLOPT_CAINFO, rq->ca_file) != CURLE_OK) ||
	    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, rq->timeout_ms) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, rq->timeout_ms) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)rq->max_bytes) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_USERAGENT, "seal-kms") != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b) != CURLE_OK ||
	    (rq->cancel != NULL &&
	     (curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress) != CURLE_OK ||
	      curl_easy_setopt(h, CURLOPT_XFERINFODATA, (void *)rq->cancel) != CURLE_OK ||
	      curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L) != CURLE_OK))) {
		snprintf(errstr, errstr_size, "libcurl refused a setting");
		goto done;
	}
	rc = curl_easy_perform(h);
	if (b.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
		snprintf(errstr, errstr_size, "the document is larger than %zu bytes",
		         rq->max_bytes);
		goto done;
	}
	if (rc == CURLE_ABORTED_BY_CALLBACK) {
		snprintf(errstr, errstr_size, "cancelled");
		goto done;
	}
	if (rc == CURLE_OPERATION_TIMEDOUT) {
		snprintf(errstr, errstr_size, "timed out after %ld ms", rq->timeout_ms);
		goto done;
	}
	if (rc != CURLE_OK) {
		curl_err(errstr, errstr_size, rc, cerr);
		goto done;
	}
	if (curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK || status != 200) {
		snprintf(errstr, errstr_size, "the server answered HTTP %ld", status);
		goto done;
	}
	if (b.data == NULL) {
		b.data = calloc(1, 1);
		if (b.data == NULL) {
			snprintf(errstr, errstr_size, "out of memory");
			goto done;
		}
	}
	*body = b.data;
	*len = b.len;
	b.data = NULL;
	ret = 0;
done:
	free(b.data);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	return ret;
}
