/*
 * replay_topics: the topics a recording sends to, for replay
 * --keep-partitions: the highest partition the recording uses in each, and
 * the partitions each has, asked of the broker once.
 */
#ifndef VALCTL_REPLAY_TOPICS_H
#define VALCTL_REPLAY_TOPICS_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

/* The partitions a topic has, and the highest one the recording uses. */
typedef struct {
	char *topic;
	int32_t partitions; /* -1 until asked */
	int32_t max_used;
	size_t first_line; /* the first line that uses max_used */
} replay_topic;

/* Every topic seen so far; {NULL, 0} is empty. */
typedef struct {
	replay_topic *items;
	size_t count;
} replay_topics;

/* The entry of topic name, added (partitions and max_used -1) when new;
 * borrowed from ts until the next call. NULL when out of memory. */
replay_topic *replay_topics_get(replay_topics *ts, const char *name)
    __attribute__((warn_unused_result));

/* How many partitions t's topic has, asked of the broker through rk at the
 * first call (waiting at most timeout_ms) and remembered; -1 with errstr
 * filled. */
int32_t replay_topics_partitions(replay_topic *t, rd_kafka_t *rk, int timeout_ms, char *errstr,
                                 size_t errstr_size) __attribute__((warn_unused_result));

/* Free every entry; ts is empty afterwards. */
void replay_topics_free(replay_topics *ts);

#endif
