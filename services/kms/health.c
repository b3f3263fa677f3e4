/*
 * health: the liveness and readiness endpoints. /livez answers 200 while the
 * process runs; /readyz answers 200 only when every fact is good, else 503;
 * either way its JSON body holds every fact and the notes that are set.
 */
#include "health.h"

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#define NOTE_MAX 400

struct health {
	struct MHD_Daemon *daemon;
	atomic_int facts[HEALTH__COUNT];
	pthread_mutex_t notes_mu;
	char notes[HEALTH_NOTE__COUNT][NOTE_MAX + 1]; /* "" when not set */
};

static const char *const fact_names[HEALTH__COUNT] = {
    "group_joined", "database", "broker", "not_paused", "issuers_reloaded", "keys_fresh"};
static const char *const note_names[HEALTH_NOTE__COUNT] = {"reload_error", "stale_keys"};

/* The /readyz body; NULL when out of memory. Caller frees. */
static char *ready_body(health *h, int ready)
{
	json_t *o = json_object();
	char *text = NULL;

	if (o == NULL ||
	    json_object_set_new(o, "status", json_string(ready ? "ready" : "not ready")))
		goto done;
	for (int i = 0; i < HEALTH__COUNT; i++)
		if (json_object_set_new(o, fact_names[i],
		                        json_boolean(atomic_load(&h->facts[i]) != 0)) != 0)
			goto done;
	pthread_mutex_lock(&h->notes_mu);
	for (int i = 0; i < HEALTH_NOTE__COUNT; i++)
		if (h->notes[i][0] != '\0')
			/* json_string() refuses text that is not UTF-8: the
			 * note is then left out rather than the whole body */
			json_object_set_new(o, note_names[i], json_string(h->notes[i]));
	pthread_mutex_unlock(&h->notes_mu);
	text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
done:
	json_decref(o);
	return text;
}

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
		int ready = health_ready(h);
		char *body = ready_body(h, ready);
		enum MHD_Result rc;

		if (body == NULL)
			return reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
			             "{\"error\":\"memory\"}\n");
		rc = reply(conn, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, body);
		free(body);
		return rc;
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
	if (pthread_mutex_init(&h->notes_mu, NULL) != 0) {
		snprintf(errstr, errstr_size, "cannot make a mutex");
		free(h);
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
	MHD_stop_daemon(h->daemon);
	pthread_mutex_destroy(&h->notes_mu);
	free(h);
}

void health_set(health *h, health_fact fact, int good)
{
	if (h != NULL)
		atomic_store(&h->facts[fact], good ? 1 : 0);
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

int health_ready(const health *h)
{
	if (h == NULL)
		return 0;
	for (int i = 0; i < HEALTH__COUNT; i++)
		if (!atomic_load(&((health *)(uintptr_t)h)->facts[i]))
			return 0;
	return 1;
}
