/*
 * health: the liveness, readiness and metrics endpoints. /livez answers 200
 * while the process runs; /readyz answers 200 only when every fact is good
 * and the consumer is not stuck (metrics_stalled()), else 503, with the facts
 * and the reasons as JSON, with the notes that are set (why a fact is not
 * good); /metrics is the metrics registry in Prometheus's text format.
 */
#include "health.h"

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#define NOTE_MAX 400

struct health {
	struct MHD_Daemon *daemon;
	metrics *metrics; /* borrowed */
	atomic_int facts[HEALTH__COUNT];
	atomic_llong blocked_since_ms; /* monotonic; 0 when not in a call */
	pthread_mutex_t notes_mu;
	char notes[HEALTH_NOTE__COUNT][NOTE_MAX + 1]; /* "" when not set */
};

static const char *const fact_names[HEALTH__COUNT] = {
    "group_joined",     "database",   "broker",  "not_paused",
    "issuers_reloaded", "keys_fresh", "registry"};
static const char *const fact_reasons[HEALTH__COUNT] = {
    "no partition assigned by the consumer group",
    "the database is unreachable",
    "the Kafka broker is unreachable",
    "partitions are paused while a batch waits",
    "the last reload of the issuers file was refused",
    "the keys of a JWKS issuer are stale",
    "the schema registry is unreachable"};
static const char *const note_names[HEALTH_NOTE__COUNT] = {"reload_error", "stale_keys"};

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

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned status, const char *type,
                               char *body, size_t len, enum MHD_ResponseMemoryMode mode)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, mode);
	if (resp == NULL) {
		if (mode == MHD_RESPMEM_MUST_FREE)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", type);
	enum MHD_Result rc = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return rc;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *body)
{
	return respond(conn, status, "application/json", (char *)(uintptr_t)body, strlen(body),
	               MHD_RESPMEM_PERSISTENT);
}

static enum MHD_Result readyz(health *h, struct MHD_Connection *conn)
{
	char stall[1024];
	int stalled = metrics_stalled(h->metrics, metrics_now_ms(), stall, sizeof stall);
	int ready = !stalled;
	json_t *body = json_object(), *reasons = json_array();
	if (body == NULL || reasons == NULL)
		goto nomem;
	for (int i = 0; i < HEALTH__COUNT; i++) {
		int good = atomic_load(&h->facts[i]);
		ready &= good;
		if (json_object_set_new(body, fact_names[i], json_boolean(good)) != 0 ||
		    (!good && json_array_append_new(reasons, json_string(fact_reasons[i])) != 0))
			goto nomem;
	}
	pthread_mutex_lock(&h->notes_mu);
	for (int i = 0; i < HEALTH_NOTE__COUNT; i++)
		if (h->notes[i][0] != '\0')
			/* json_string() refuses text that is not UTF-8: the
			 * note is then left out rather than the whole body */
			json_object_set_new(body, note_names[i], json_string(h->notes[i]));
	pthread_mutex_unlock(&h->notes_mu);
	int unblocked = not_blocked(h);
	ready &= unblocked;
	if (json_object_set_new(body, "consumer_progressing", json_boolean(!stalled)) != 0 ||
	    (stalled && json_array_append_new(reasons, json_string(stall)) != 0) ||
	    json_object_set_new(body, "not_blocked", json_boolean(unblocked)) != 0 ||
	    (!unblocked && json_array_append_new(
	                       reasons, json_string("a Kafka transactional call has waited for the "
	                                            "broker for more than a second")) != 0) ||
	    json_object_set_new(body, "status", json_string(ready ? "ready" : "not ready")) != 0 ||
	    json_object_set(body, "reasons", reasons) != 0)
		goto nomem;
	char *text = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(body);
	json_decref(reasons);
	if (text == NULL)
		return MHD_NO;
	size_t n = strlen(text);
	/* json_dumps' buffer comes from malloc unless jansson's allocators are
	 * replaced, which this program does not do */
	return respond(conn, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, "application/json",
	               text, n, MHD_RESPMEM_MUST_FREE);
nomem:
	json_decref(body);
	json_decref(reasons);
	return MHD_NO;
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
	if (strcmp(url, "/readyz") == 0)
		return readyz(h, conn);
	if (strcmp(url, "/metrics") == 0 && h->metrics != NULL) {
		size_t len;
		char *text = metrics_render(h->metrics, metrics_now_ms(), &len);
		if (text == NULL)
			return MHD_NO;
		return respond(conn, MHD_HTTP_OK, METRICS_CONTENT_TYPE, text, len,
		               MHD_RESPMEM_MUST_FREE);
	}
	return reply(conn, MHD_HTTP_NOT_FOUND, "{\"error\":\"not found\"}\n");
}

health *health_new(const char *address, unsigned port, metrics *m, char *errstr, size_t errstr_size)
{
	health *h = calloc(1, sizeof *h);
	if (h == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return NULL;
	}
	if (pthread_mutex_init(&h->notes_mu, NULL) != 0) {
		snprintf(errstr, errstr_size, "cannot make a mutex");
		free(h);
		return NULL;
	}
	h->metrics = m;
	if (port == 0)
		return h;

	struct sockaddr_in v4;
	struct sockaddr_in6 v6;
	const struct sockaddr *addr;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	memset(&v4, 0, sizeof v4);
	memset(&v6, 0, sizeof v6);
	if (inet_pton(AF_INET, address, &v4.sin_addr) == 1) {
		v4.sin_family = AF_INET;
		v4.sin_port = htons((uint16_t)port);
		addr = (const struct sockaddr *)&v4;
	} else if (inet_pton(AF_INET6, address, &v6.sin6_addr) == 1) {
		v6.sin6_family = AF_INET6;
		v6.sin6_port = htons((uint16_t)port);
		addr = (const struct sockaddr *)&v6;
		flags |= MHD_USE_IPv6;
	} else {
		snprintf(errstr, errstr_size, "health_address '%.64s' is not an IP address",
		         address);
		pthread_mutex_destroy(&h->notes_mu);
		free(h);
		return NULL;
	}
	h->daemon =
	    MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, handle, h, MHD_OPTION_SOCK_ADDR,
	                     addr, MHD_OPTION_CONNECTION_TIMEOUT, 5u, MHD_OPTION_END);
	if (h->daemon == NULL) {
		snprintf(errstr, errstr_size, "cannot serve health on %.64s port %u", address,
		         port);
		pthread_mutex_destroy(&h->notes_mu);
		free(h);
		return NULL;
	}
	return h;
}

void health_destroy(health *h)
{
	if (h == NULL)
		return;
	if (h->daemon != NULL)
		MHD_stop_daemon(h->daemon);
	pthread_mutex_destroy(&h->notes_mu);
	free(h);
}

void health_set(health *h, health_fact fact, int good)
{
	if (h == NULL)
		return;
	atomic_store(&h->facts[fact], good ? 1 : 0);
	if (fact == HEALTH_DATABASE)
		metrics_dependency(h->metrics, METRICS_DEP_DATABASE, good, metrics_now_ms());
	else if (fact == HEALTH_BROKER)
		metrics_dependency(h->metrics, METRICS_DEP_BROKER, good, metrics_now_ms());
}

void health_set_note(health *h, health_note note, const char *text)
{
	if (h == NULL || (unsigned)note >= HEALTH_NOTE__COUNT)
		return;
	pthread_mutex_lock(&h->notes_mu);
	/* A cut note still says what it is about. */
	snprintf(h->notes[note], sizeof h->notes[note], "%s", text != NULL ? text : "");
	pthread_mutex_unlock(&h->notes_mu);
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
	return not_blocked(h) && metrics_stalled(h->metrics, metrics_now_ms(), NULL, 0) == 0;
}
