/*
 * fleet_table: an open-addressing table of a fleet run's requests by
 * requestId (FNV-1a, linear probing, at most half full), so that each
 * Result the reader sees finds its request in a few probes, whatever the
 * size of the fleet.
 */
#include <stdlib.h>
#include <string.h>

#include "fleet_table.h"

static uint32_t hash_id(const char *s)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	while (*s != '\0') {
		h ^= (unsigned char)*s++;
		h *= 16777619u;
	}
	return h;
}

int fleet_table_init(fleet_table *t, size_t count)
{
	size_t slots = 16;

	while (slots < count * 2)
		slots *= 2;
	t->entries = calloc(count, sizeof *t->entries);
	t->slots = calloc(slots, sizeof *t->slots);
	t->count = count;
	t->mask = slots - 1;
	return t->entries != NULL && t->slots != NULL ? 0 : -1;
}

void fleet_table_free(fleet_table *t)
{
	free(t->entries);
	free(t->slots);
}

int fleet_table_insert(fleet_table *t, size_t index)
{
	size_t i = hash_id(t->entries[index].id) & t->mask;

	while (t->slots[i] != 0) {
		if (strcmp(t->entries[t->slots[i] - 1].id, t->entries[index].id) == 0)
			return -1;
		i = (i + 1) & t->mask;
	}
	t->slots[i] = (uint32_t)index + 1;
	return 0;
}

fleet_entry *fleet_table_find(const fleet_table *t, const char *id)
{
	size_t i = hash_id(id) & t->mask;

	while (t->slots[i] != 0) {
		fleet_entry *e = &t->entries[t->slots[i] - 1];

		if (strcmp(e->id, id) == 0)
			return e;
		i = (i + 1) & t->mask;
	}
	return NULL;
}
