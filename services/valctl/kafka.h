/*
 * kafka: valctl's librdkafka handles: the producer of requests, the
 * headers of a request, and the tail, a reader of every partition of a
 * topic without a consumer group.
 */
#ifndef VALCTL_KAFKA_H
#define VALCTL_KAFKA_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "cli.h"

#define VALCTL_REQUEST_CE_TYPE "org.threegpp.seal.km.provisioning.request.v1"

/* What the callbacks of one librdkafka handle share with its owner. */
typedef struct {
	int verbose;
	char last_error[256]; /* the last error the handle reported, "" if none */
	/* The delivery report callback, when the handle is a producer. */
	void (*on_delivery)(const rd_kafka_message_t *m, void *user);
	void *user;
} valctl_kctx;

/* A producer for the contract topics: idempotent, acks=all, lz4, then the
 * -X properties. message_timeout_ms bounds the delivery of each message.
 * kctx is borrowed and must outlive the handle. NULL with errstr filled. */
rd_kafka_t *valctl_producer_new(const valctl_common *c, valctl_kctx *kctx, int message_timeout_ms,
                                char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

/* Load the metadata of topic into the producer, so that the first message
 * to it leaves at once rather than at librdkafka's next periodic refresh;
 * also fails early when no broker answers. 0, or -1 with errstr filled. */
int valctl_producer_prepare(rd_kafka_t *rk, const char *topic, int timeout_ms, char *errstr,
                            size_t errstr_size) __attribute__((warn_unused_result));

/* Produce one message (value and key copied) with the given headers, whose
 * ownership passes to the message on success. On -1 the headers are still
 * the caller's. When the local queue is full it polls and retries until
 * deadline_us (monotonic). msg_opaque reaches the delivery callback. */
int valctl_produce(rd_kafka_t *rk, const char *topic, int32_t partition, const void *key,
                   size_t key_len, const void *value, size_t value_len, rd_kafka_headers_t *headers,
                   void *msg_opaque, int64_t deadline_us, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

/* The headers of a request: kafka_replyTopic (when reply_topic is not NULL),
 * kafka_correlationId, kafka_replyPartition (when >= 0), and the CloudEvents
 * binary-mode headers with ce_id = request_id and ce_source =
 * valctl/<requester>. Caller owns the result. */
rd_kafka_headers_t *valctl_request_headers(const char *reply_topic, const void *correlation_id,
                                           size_t correlation_len, int32_t reply_partition,
                                           const char *request_id, const char *requester)
    __attribute__((warn_unused_result));

/* A reader of every partition of one topic, without a consumer group,
 * starting at the high watermarks read when it is made (or at the beginning):
 * whatever is produced to the topic after valctl_tail_new() returns is seen. */
typedef struct valctl_tail valctl_tail;

valctl_tail *valctl_tail_new(const valctl_common *c, const char *topic, int from_beginning,
                             int timeout_ms, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));
/* Up to max messages, waiting at most timeout_ms for the first; returns the
 * count. Caller destroys each with rd_kafka_message_destroy(). Messages that
 * are errors are returned too (m->err != 0). */
size_t valctl_tail_poll(valctl_tail *t, int timeout_ms, rd_kafka_message_t **msgs, size_t max)
    __attribute__((warn_unused_result));
int valctl_tail_partition_count(const valctl_tail *t);
/* The last error librdkafka reported for the reader, "" if none. */
const char *valctl_tail_last_error(const valctl_tail *t);
void valctl_tail_destroy(valctl_tail *t); /* NULL is a no-op */

/* The value of the last header named name, or -1 if absent. */
int valctl_header_get(const rd_kafka_message_t *m, const char *name, const void **value,
                      size_t *len) __attribute__((warn_unused_result));

#endif
