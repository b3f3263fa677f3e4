/*
 * replay_topics: what --keep-partitions needs to know of each topic a
 * recording names. The broker is asked for a topic's partitions once, and
 * only when a line needs it, so that a replay without --keep-partitions
 * asks nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replay_topics.h"

replay_topic *replay_topics_get(replay_topics *ts, const char *name)
{
	replay_topic *grown;
	size_t i;

	for (i = 0; i < ts->count; i++) {
		if (strcmp(ts->items[i].topic, name) == 0)
			return &ts->items[i];
	}
	grown = realloc(ts->items, (ts->count + 1) * sizeof *grown);
	if (grown == NULL)
		return NULL;
	ts->items = grown;
	grown[ts->count].topic = strdup(name);
	if (grown[ts->count].topic == NULL)
		return NULL;
	grown[ts->count].partitions = -1;
	grown[ts->count].max_used = -1;
	grown[ts->count].first_line = 0;
	return &grown[ts->count++];
}

int32_t replay_topics_partitions(replay_topic *t, rd_kafka_t *rk, int timeout_ms, char *errstr,
                                 size_t errstr_size)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_t *rkt;
	rd_kafka_resp_err_t err;

	if (t->partitions >= 0)
		return t->partitions;
	rkt = rd_kafka_topic_new(rk, t->topic, NULL);
	if (rkt == NULL) {
		snprintf(errstr, errstr_size, "cannot use topic %s", t->topic);
		return -1;
	}
	err = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 &&
	    md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR)
		t->partitions = md->topics[0].partition_cnt;
	else if (err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1)
		err = md->topics[0].err;
	if (md != NULL)
		rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(rkt);
	if (t->partitions < 0) {
		snprintf(errstr, errstr_size, "cannot read the partitions of %s: %s", t->topic,
		         rd_kafka_err2str(err));
		return -1;
	}
	return t->partitions;
}

void replay_topics_free(replay_topics *ts)
{
	size_t i;

	for (i = 0; i < ts->count; i++)
		free(ts->items[i].topic);
	free(ts->items);
	ts->items = NULL;
	ts->count = 0;
}
