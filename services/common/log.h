/*
 * log: one JSON object per line on stderr, for every event worth a line.
 * Never pass a token, a key or a payload in the fields.
 */
#ifndef KMS_LOG_H
#define KMS_LOG_H

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level;

/* Lines below this level are dropped. Not thread-safe to change while other
 * threads log; set it once at start. */
void log_set_level(log_level min);
/* Parse "debug", "info", "warn", "error"; returns 0 or -1. */
int log_level_parse(const char *name, log_level *out);
/* Name stamped on every line as "svc". Borrowed; must outlive logging. */
void log_set_service(const char *name);

/* Write {"ts":..., "level":..., "svc":..., "event": event, ...fields}. fields is
 * a jansson json_pack() format for an object ("{s:s, s:i}") followed by its
 * arguments, or NULL for none. */
void log_event(log_level level, const char *event, const char *fields, ...);

#endif
