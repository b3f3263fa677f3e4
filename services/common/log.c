/*
 * log: structured event lines on stderr. Each line is built whole and
 * written with one fwrite so lines of concurrent threads do not interleave.
 */
#include "log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "isotime.h"

static log_level min_level = LOG_INFO;
static const char *service_name = "kms";

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(log_level min)
{
	min_level = min;
}

void log_set_service(const char *name)
{
	service_name = name;
}

int log_level_parse(const char *name, log_level *out)
{
	for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*out = (log_level)i;
			return 0;
		}
	}
	return -1;
}

void log_event(log_level level, const char *event, const char *fields, ...)
{
	if (level < min_level)
		return;

	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	char when[ISOTIME_SIZE];
	isotime_format_ms((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000L, when, sizeof when);

	json_t *line = NULL;
	if (fields != NULL) {
		va_list ap;
		va_start(ap, fields);
		json_error_t err;
		line = json_vpack_ex(&err, 0, fields, ap);
		va_end(ap);
		if (line == NULL || !json_is_object(line)) {
			json_decref(line);
			line = json_pack("{s:s}", "log_error", err.text);
		}
	} else {
		line = json_object();
	}
	if (line == NULL)
		return;

	json_t *head = json_pack("{s:s, s:s, s:s, s:s}", "ts", when, "level", level_names[level],
	                         "svc", service_name, "event", event);
	if (head != NULL) {
		json_object_update_missing(head, line);
		char *text = json_dumps(head, JSON_COMPACT | JSON_PRESERVE_ORDER);
		if (text != NULL) {
			size_t n = strlen(text);
			text[n] = '\n';
			fwrite(text, 1, n + 1, stderr);
			free(text);
		}
		json_decref(head);
	}
	json_decref(line);
}
