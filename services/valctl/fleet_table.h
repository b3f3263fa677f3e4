/*
 * fleet_table: the requests of a valctl fleet run, found by requestId.
 * Made whole before the run starts and never resized, so that the sender
 * and the reader thread can share it without a lock (see fleet.c).
 */
#ifndef VALCTL_FLEET_TABLE_H
#define VALCTL_FLEET_TABLE_H

#include <stddef.h>
#include <stdint.h>

#define FLEET_ID_SIZE 37 /* a UUID's text and its NUL */

/* One request. The sender writes sent_us and delivery_failed; the reader
 * writes the rest but id, server and seq, which are fixed before either
 * starts. */
typedef struct {
	char id[FLEET_ID_SIZE];
	uint32_t server;
	uint32_t seq;
	int64_t sent_us; /* monotonic; 0: not sent */
	int delivery_failed;
	int64_t recv_us; /* monotonic; 0: no Result yet */
	int result;      /* codec_result of the first Result */
	int cause;       /* codec_cause of the first Result */
} fleet_entry;

typedef struct {
	fleet_entry *entries;
	size_t count;
	uint32_t *slots; /* index + 1 into entries; 0 is empty */
	size_t mask;     /* slot count - 1, a power of two minus one */
} fleet_table;

/* count zeroed entries and their slots; 0, or -1 when out of memory (free
 * with fleet_table_free() either way). */
int fleet_table_init(fleet_table *t, size_t count) __attribute__((warn_unused_result));
void fleet_table_free(fleet_table *t);
/* Put entries[index], its id set, in its slot; 0, or -1 if its id is there
 * already. */
int fleet_table_insert(fleet_table *t, size_t index) __attribute__((warn_unused_result));
/* The entry of id, borrowed from t, or NULL. */
fleet_entry *fleet_table_find(const fleet_table *t, const char *id);

#endif
