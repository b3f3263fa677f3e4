/*
 * service: the KM-S's consume, decide, reply loop.
 */
#ifndef KMS_SERVICE_H
#define KMS_SERVICE_H

#include "config.h"

/* Exit codes of the service. */
enum {
	SERVICE_EXIT_OK = 0,      /* stopped gracefully */
	SERVICE_EXIT_FAILED = 1,  /* could not start, or a fatal error */
	SERVICE_EXIT_MISUSE = 2,  /* bad configuration */
	SERVICE_EXIT_TIMEOUT = 3, /* a graceful stop ran out of time */
	SERVICE_EXIT_SIGNAL = 4,  /* a second signal cut the stop short */
	SERVICE_EXIT_FATAL = 5    /* exactly_once: a fatal Kafka error, such as this
	                           * transactional.id fenced by a newer instance */
};

/* Run until SIGTERM or SIGINT. The first signal stops fetching, finishes the
 * batch in hand (decision, Results, offsets), leaves the group and returns;
 * a second one exits the process at once. With cfg->exactly_once a fatal
 * Kafka error stops it too, without committing anything more. cfg and
 * derived (config_validate()'s, of cfg) are borrowed for the call. Returns
 * a SERVICE_EXIT_ code. */
int service_run(const kms_config *cfg, const config_derived *derived)
    __attribute__((warn_unused_result));

#endif
