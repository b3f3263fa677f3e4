/*
 * health: the liveness and readiness endpoints. /livez answers 200 while the
 * process runs; /readyz answers 200 only when every fact is good, else 503
 * with the facts that are not, as JSON.
 */
#include "health.h"

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>

struct health {
	struct MHD_Daemon *daemon;
	atomic_int facts[HEALTH__COUNT];
	atomic_llong blocked_since_ms; /* monotonic; 0 when not in a call */
};

static long long mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int not_blocked(const health *h)
{
	long long since = atomic_load(&((health *)(uintptr_t)h)->blocked_since_ms);
	return since == 0 || mono_ms() - since <= HEALTH_BLOCKED_MS;
}

static const char *const fact_names[HEALTH__COUNT] = {"group_joined", "database", "broker",
                                                      "not_paused"};

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *body)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(
	    strlen(body), (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", "application/json");
	enum MHD_Result rc = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return rc;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **req_cls)
{
	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	(void)req_cls;
	health *h = cls;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "{\"error\":\"GET only\"}\n");
	if (strcmp(url, "/livez") == 0)
		return reply(conn, MHD_HTTP_OK, "{\"status\":\"live\"}\n");
	if (strcmp(url, "/readyz") == 0) {
		char body[256];
		size_t o = (size_t)snprintf(body, sizeof body, "{\"status\":\"%s\"",
		                            health_ready(h) ? "ready" : "not ready");
		for (int i = 0; i < HEALTH__COUNT && o < sizeof body; i++)
			o +=
			    (size_t)snprintf(body + o, sizeof body - o, ",\"%s\":%s", fact_names[i],
			                     atomic_load(&h->facts[i]) ? "true" : "false");
		if (o < sizeof body)
			o += (size_t)snprintf(body + o, sizeof body - o, ",\"not_blocked\":%s",
			                      not_blocked(h) ? "true" : "false");
		if (o < sizeof body)
			snprintf(body + o, sizeof body - o, "}\n");
		return reply(conn, health_ready(h) ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
		             body);
	}
	return reply(conn, MHD_HTTP_NOT_FOUND, "{\"error\":\"not found\"}\n");
}

health *health_new(unsigned port, char *errstr, size_t errstr_size)
{
	health *h = calloc(1, sizeof *h);
	if (h == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return NULL;
	}
	struct sockaddr_in addr;
	memset(&addr, 0, sizeof addr);
	addr.sin_family = AF_INET;
	addr.sin_port = htons((uint16_t)port);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	h->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
	                             (uint16_t)port, NULL, NULL, handle, h, MHD_OPTION_SOCK_ADDR,
	                             &addr, MHD_OPTION_CONNECTION_TIMEOUT, 5u, MHD_OPTION_END);
	if (h->daemon == NULL) {
		snprintf(errstr, errstr_size, "cannot serve health on 127.0.0.1:%u", port);
		free(h);
		return NULL;
	}
	return h;
}

void health_destroy(health *h)
{
	if (h == NULL)
		return;
	MHD_stop_daemon(h->daemon);
	free(h);
}

void health_set(health *h, health_fact fact, int good)
{
	if (h != NULL)
		atomic_store(&h->facts[fact], good ? 1 : 0);
}

void health_blocked(health *h, int blocked)
{
	if (h != NULL)
		atomic_store(&h->blocked_since_ms, blocked ? mono_ms() : 0);
}

int health_ready(const health *h)
{
	if (h == NULL)
		return 0;
	for (int i = 0; i < HEALTH__COUNT; i++)
		if (!atomic_load(&((health *)(uintptr_t)h)->facts[i]))
			return 0;
	return not_blocked(h);
}
