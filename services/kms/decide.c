/*
 * decide: the decision of a batch over plain structs (see decide.h).
 *
 * The state is a handful of hash tables over an arena: every string the
 * store hands in is copied once into the arena, and the tables only point
 * into it, so a batch costs a few large allocations rather than one per row.
 * Deciding a message adds its effects to the same tables (its audit row, its
 * decision, its VAL server, its key-format versions, its admission), which is
 * how a later message of the batch sees them.
 *
 * Key-format contents are compared as canonical JSON text (compact, keys
 * sorted): the stored map and the request's map are equal exactly when
 * PostgreSQL's jsonb would call them equal, since both are maps of strings
 * with distinct keys.
 */
#include "decide.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"
#include "validate.h"

static const char GENERIC_ERROR_DETAIL[] = "the KM-S could not record the request";
static const char CONFLICT_DETAIL[] = "requestId was already used with other content";

/* ---- arena ---- */

#define ARENA_CHUNK (64 * 1024)

typedef struct chunk {
	struct chunk *next;
	size_t used, size;
	max_align_t data[];
} chunk;

typedef struct {
	chunk *head;
} arena;

static void *arena_alloc(arena *a, size_t size)
{
	size = (size + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
	if (a->head == NULL || a->head->size - a->head->used < size) {
		size_t want = size > ARENA_CHUNK ? size : ARENA_CHUNK;
		chunk *c = malloc(sizeof *c + want);
		if (c == NULL)
			return NULL;
		c->next = a->head;
		c->used = 0;
		c->size = want;
		a->head = c;
	}
	void *p = (char *)a->head->data + a->head->used;
	a->head->used += size;
	return p;
}

static const char *arena_strdup(arena *a, const char *s)
{
	if (s == NULL)
		return NULL;
	size_t n = strlen(s) + 1;
	char *p = arena_alloc(a, n);
	if (p != NULL)
		memcpy(p, s, n);
	return p;
}

static void arena_free(arena *a)
{
	while (a->head != NULL) {
		chunk *c = a->head;
		a->head = c->next;
		free(c);
	}
}

/* ---- a hash table of (string, string, int, int) keys ---- */

typedef struct {
	const char *a, *b; /* b may be NULL */
	int64_t i, j;
	uint64_t hash;
	void *value; /* NULL: the slot is free */
} slot;

typedef struct {
	slot *slots;
	size_t cap, count; /* cap is a power of two */
} table;

static uint64_t hash_str(uint64_t h, const char *s)
{
	/* FNV-1a, then a terminator so that ("ab", "c") differs from ("a", "bc") */
	for (; s != NULL && *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211u;
	return (h ^ 0xff) * 1099511628211u;
}

static uint64_t hash_key(const char *a, const char *b, int64_t i, int64_t j)
{
	uint64_t h = hash_str(14695981039346656037u, a);
	h = hash_str(h, b);
	h = (h ^ (uint64_t)i) * 1099511628211u;
	h = (h ^ (uint64_t)j) * 1099511628211u;
	return h ^ (h >> 29);
}

static int str_eq(const char *x, const char *y)
{
	if (x == NULL || y == NULL)
		return x == y;
	return strcmp(x, y) == 0;
}

static slot *table_find(const table *t, const char *a, const char *b, int64_t i, int64_t j)
{
	if (t->cap == 0)
		return NULL;
	uint64_t h = hash_key(a, b, i, j);
	for (size_t k = h & (t->cap - 1);; k = (k + 1) & (t->cap - 1)) {
		slot *s = &t->slots[k];
		if (s->value == NULL)
			return NULL;
		if (s->hash == h && s->i == i && s->j == j && str_eq(s->a, a) && str_eq(s->b, b))
			return s;
	}
}

static void *table_get(const table *t, const char *a, const char *b, int64_t i, int64_t j)
{
	slot *s = table_find(t, a, b, i, j);
	return s != NULL ? s->value : NULL;
}

static int table_grow(table *t)
{
	size_t cap = t->cap ? t->cap * 2 : 64;
	slot *slots = calloc(cap, sizeof *slots);
	if (slots == NULL)
		return -1;
	for (size_t k = 0; k < t->cap; k++) {
		slot *s = &t->slots[k];
		if (s->value == NULL)
			continue;
		size_t at = s->hash & (cap - 1);
		while (slots[at].value != NULL)
			at = (at + 1) & (cap - 1);
		slots[at] = *s;
	}
	free(t->slots);
	t->slots = slots;
	t->cap = cap;
	return 0;
}

/* Set the value of a key whose strings live as long as the table. Returns
 * 0, or -1 when out of memory. */
static int table_put(table *t, const char *a, const char *b, int64_t i, int64_t j, void *value)
{
	slot *s = table_find(t, a, b, i, j);
	if (s != NULL) {
		s->value = value;
		return 0;
	}
	if ((t->count + 1) * 2 > t->cap && table_grow(t) != 0)
		return -1;
	uint64_t h = hash_key(a, b, i, j);
	size_t k = h & (t->cap - 1);
	while (t->slots[k].value != NULL)
		k = (k + 1) & (t->cap - 1);
	t->slots[k] = (slot){.a = a, .b = b, .i = i, .j = j, .hash = h, .value = value};
	t->count++;
	return 0;
}

static void table_free(table *t)
{
	free(t->slots);
	memset(t, 0, sizeof *t);
}

/* ---- the state ---- */

typedef struct {
	const char *requester_identity;
	int has_hash;
	unsigned char hash[32];
	decide_outcome out;
} decision_rec;

typedef struct {
	int64_t version;
	const char *format_type;
	const char *format_version; /* NULL for none */
	const char *content;        /* canonical JSON */
} key_format_rec;

typedef struct {
	int enabled;
	int64_t val_server_count;
	int64_t admitted; /* by this batch */
	sla_terms *slas;
	size_t nslas, slas_cap;
} provider_rec;

struct decide_state {
	arena mem;
	table audits;      /* (topic, -, partition, offset) -> decide_outcome */
	table decisions;   /* (requestId) -> decision_rec */
	table val_servers; /* (identity) -> vsp_id (char) */
	table key_formats; /* (identity, service) -> key_format_rec */
	table providers;   /* (vsp_id) -> provider_rec */
};

decide_state *decide_state_new(void)
{
	return calloc(1, sizeof(decide_state));
}

void decide_state_destroy(decide_state *st)
{
	if (st == NULL)
		return;
	table_free(&st->audits);
	table_free(&st->decisions);
	table_free(&st->val_servers);
	table_free(&st->key_formats);
	for (size_t k = 0; k < st->providers.cap; k++) {
		provider_rec *p = st->providers.slots[k].value;
		if (p != NULL)
			free(p->slas);
	}
	table_free(&st->providers);
	arena_free(&st->mem);
	free(st);
}

/* Copy an outcome's strings into the arena. */
static int outcome_copy(arena *a, decide_outcome *dst, const decide_outcome *src)
{
	*dst = *src;
	dst->detail = arena_strdup(a, src->detail != NULL ? src->detail : "");
	dst->kms_id = arena_strdup(a, src->kms_id != NULL ? src->kms_id : "");
	return dst->detail != NULL && dst->kms_id != NULL ? 0 : -1;
}

int decide_state_add_audit(decide_state *st, const char *topic, int32_t partition, int64_t offset,
                           const decide_outcome *o)
{
	decide_outcome *rec = arena_alloc(&st->mem, sizeof *rec);
	const char *t = arena_strdup(&st->mem, topic != NULL ? topic : "");
	if (rec == NULL || t == NULL || outcome_copy(&st->mem, rec, o) != 0)
		return -1;
	return table_put(&st->audits, t, NULL, partition, offset, rec);
}

int decide_state_add_decision(decide_state *st, const char *request_id,
                              const char *requester_identity, const unsigned char content_hash[32],
                              const decide_outcome *o)
{
	decision_rec *rec = arena_alloc(&st->mem, sizeof *rec);
	const char *id = arena_strdup(&st->mem, request_id);
	if (rec == NULL || id == NULL)
		return -1;
	memset(rec, 0, sizeof *rec);
	rec->requester_identity =
	    arena_strdup(&st->mem, requester_identity ? requester_identity : "");
	rec->has_hash = content_hash != NULL;
	if (content_hash != NULL)
		memcpy(rec->hash, content_hash, sizeof rec->hash);
	if (rec->requester_identity == NULL || outcome_copy(&st->mem, &rec->out, o) != 0)
		return -1;
	return table_put(&st->decisions, id, NULL, 0, 0, rec);
}

int decide_state_add_val_server(decide_state *st, const char *requester_identity,
                                const char *vsp_id)
{
	const char *id = arena_strdup(&st->mem, requester_identity);
	const char *vsp = arena_strdup(&st->mem, vsp_id != NULL ? vsp_id : "");
	if (id == NULL || vsp == NULL)
		return -1;
	return table_put(&st->val_servers, id, NULL, 0, 0, (void *)vsp);
}

/* Canonical JSON text of a JSON object, into the arena. json_dumpb() into a
 * buffer of the exact size, not json_dumps(): jansson's growing buffer
 * drops a key when it cannot grow, and returns the text as a success. */
static const char *canonical(arena *a, const json_t *obj)
{
	const size_t flags = JSON_COMPACT | JSON_SORT_KEYS;
	size_t n = json_dumpb(obj, NULL, 0, flags);
	if (n == 0)
		return NULL;
	char *text = arena_alloc(a, n + 1);
	if (text == NULL || json_dumpb(obj, text, n, flags) != n)
		return NULL;
	text[n] = '\0';
	return text;
}

int decide_state_add_key_format(decide_state *st, const char *requester_identity,
                                const char *val_service_id, int64_t version,
                                const char *format_type, const char *format_version,
                                const char *content_json)
{
	key_format_rec *rec = arena_alloc(&st->mem, sizeof *rec);
	const char *id = arena_strdup(&st->mem, requester_identity);
	const char *svc = arena_strdup(&st->mem, val_service_id);
	if (rec == NULL || id == NULL || svc == NULL)
		return -1;
	json_t *content = json_loads(content_json != NULL ? content_json : "", 0, NULL);
	rec->version = version;
	rec->format_type = arena_strdup(&st->mem, format_type != NULL ? format_type : "");
	rec->format_version = arena_strdup(&st->mem, format_version);
	rec->content = content != NULL ? canonical(&st->mem, content) : NULL;
	json_decref(content);
	if (rec->format_type == NULL || (format_version != NULL && rec->format_version == NULL) ||
	    rec->content == NULL)
		return -1;
	return table_put(&st->key_formats, id, svc, 0, 0, rec);
}

int decide_state_add_provider(decide_state *st, const char *vsp_id, int enabled,
                              int64_t val_server_count)
{
	provider_rec *rec = arena_alloc(&st->mem, sizeof *rec);
	const char *id = arena_strdup(&st->mem, vsp_id);
	if (rec == NULL || id == NULL)
		return -1;
	memset(rec, 0, sizeof *rec);
	rec->enabled = enabled;
	rec->val_server_count = val_server_count;
	return table_put(&st->providers, id, NULL, 0, 0, rec);
}

int decide_state_add_sla(decide_state *st, const char *vsp_id, const sla_terms *terms)
{
	provider_rec *p = table_get(&st->providers, vsp_id, NULL, 0, 0);
	if (p == NULL)
		return -1; /* the provider comes first */
	if (p->nslas == p->slas_cap) {
		size_t cap = p->slas_cap ? p->slas_cap * 2 : 4;
		sla_terms *s = realloc(p->slas, cap * sizeof *s);
		if (s == NULL)
			return -1;
		p->slas = s;
		p->slas_cap = cap;
	}
	sla_terms t = *terms;
	const char **names = arena_alloc(&st->mem, (terms->service_count + 1) * sizeof *names);
	if (names == NULL)
		return -1;
	for (size_t k = 0; k < terms->service_count; k++)
		if ((names[k] = arena_strdup(&st->mem, terms->services[k])) == NULL)
			return -1;
	t.services = names;
	p->slas[p->nslas++] = t;
	return 0;
}

/* ---- items ---- */

const char *decide_request_id(const store_item *it)
{
	return it->req != NULL ? it->req->request_id : it->request_id;
}

const char *decide_identity(const store_item *it)
{
	return it->req != NULL ? it->req->requester_identity : it->requester_identity;
}

int decide_has_decision_key(const store_item *it)
{
	const char *id = decide_request_id(it);
	return id != NULL && validate_uuid(id);
}

int decide_needs_provider(const store_item *it)
{
	return !it->dlq && it->pre_cause == CODEC_CAUSE_NONE && it->req != NULL &&
	       it->vsp_id != NULL;
}

const char *decide_outcome_name(store_outcome o)
{
	switch (o) {
	case STORE_OUTCOME_DECIDED:
		return "DECIDED";
	case STORE_OUTCOME_REPLAYED:
		return "REPLAYED";
	case STORE_OUTCOME_CONFLICT:
		return "CONFLICT";
	case STORE_OUTCOME_DLQ:
		return "DLQ";
	case STORE_OUTCOME_ERROR:
		return "ERROR";
	case STORE_OUTCOME_REDELIVERED:
		break;
	}
	return "ERROR";
}

void decide_item_reset(store_item *it)
{
	it->outcome = STORE_OUTCOME_ERROR;
	it->has_result = 0;
	it->result = CODEC_RESULT_FAILURE;
	it->cause = CODEC_CAUSE_NONE;
	it->detail[0] = '\0';
	it->kms_id[0] = '\0';
	it->processed_at = 0;
}

/* A new decision of ours. */
static void item_set(store_item *it, store_outcome o, codec_result result, codec_cause cause,
                     const char *detail, const char *kms_id, int64_t now_ms)
{
	it->outcome = o;
	it->result = result;
	it->cause = result == CODEC_RESULT_SUCCESS ? CODEC_CAUSE_NONE : cause;
	utf8_copy(it->detail, sizeof it->detail, detail != NULL ? detail : "");
	utf8_copy(it->kms_id, sizeof it->kms_id, kms_id);
	it->processed_at = now_ms;
}

/* A decision recorded before (the Result is sent again as it was). */
static void item_from(store_item *it, const decide_outcome *o)
{
	it->result = o->result;
	it->cause = o->result == CODEC_RESULT_SUCCESS ? CODEC_CAUSE_NONE : o->cause;
	utf8_copy(it->detail, sizeof it->detail, o->detail != NULL ? o->detail : "");
	utf8_copy(it->kms_id, sizeof it->kms_id, o->kms_id != NULL ? o->kms_id : "");
	it->processed_at = o->processed_at;
}

/* The outcome an item now carries, pointing into the item. */
static decide_outcome outcome_of(const store_item *it)
{
	return (decide_outcome){.has_result = it->has_result,
	                        .result = it->result,
	                        .cause = it->cause,
	                        .detail = it->detail,
	                        .kms_id = it->kms_id,
	                        .processed_at = it->processed_at};
}

void decide_internal_error(store_item *it, const char *kms_id, int64_t now_ms)
{
	if (kms_id == NULL)
		kms_id = "";
	decide_item_reset(it);
	item_set(it, STORE_OUTCOME_ERROR, CODEC_RESULT_FAILURE, CODEC_CAUSE_INTERNAL_ERROR,
	         GENERIC_ERROR_DETAIL, kms_id, now_ms);
	it->has_result = decide_request_id(it) != NULL && decide_identity(it) != NULL;
}

/* ---- the batch ---- */

typedef struct {
	arena mem;
	table val_server_rows; /* identity -> index + 1 in plan->val_servers */
	table provider_rows;   /* vsp_id -> decide_provider_row */
} plan_mem;

/* The request's content map of one service, as canonical JSON. */
static const char *request_content(arena *a, const codec_val_service *sv)
{
	json_t *obj = json_object();
	const char *text = NULL;
	if (obj == NULL)
		return NULL;
	for (size_t k = 0; k < sv->content_count; k++) {
		/* the decoder checked that keys and values are UTF-8 */
		json_t *v = json_string_nocheck(sv->content[k].value);
		if (v == NULL || json_object_set_new_nocheck(obj, sv->content[k].key, v) != 0)
			goto done;
	}
	text = canonical(a, obj);
done:
	json_decref(obj);
	return text;
}

/* Record the decision an item makes, for the messages after it. */
static int remember_decision(decide_state *st, decide_plan *plan, const store_item *it,
                             size_t index)
{
	plan->decisions[plan->ndecisions++] = index;
	decision_rec *rec = arena_alloc(&st->mem, sizeof *rec);
	if (rec == NULL)
		return -1;
	memset(rec, 0, sizeof *rec);
	const char *identity = decide_identity(it);
	rec->requester_identity = identity != NULL ? identity : "";
	rec->has_hash = it->req != NULL;
	if (rec->has_hash)
		memcpy(rec->hash, it->content_hash, sizeof rec->hash);
	rec->out = outcome_of(it);
	return table_put(&st->decisions, decide_request_id(it), NULL, 0, 0, rec);
}

static int key_format_differs(const key_format_rec *cur, const char *type, const char *fversion,
                              const char *content)
{
	return cur == NULL || strcmp(cur->format_type, type) != 0 ||
	       !str_eq(cur->format_version, fversion) || strcmp(cur->content, content) != 0;
}

/* The writes of a granted request. */
static int provision(decide_state *st, decide_plan *plan, plan_mem *pm, const store_item *it,
                     size_t index, int admits)
{
	const codec_request *r = it->req;
	for (size_t k = 0; k < r->service_count; k++) {
		const codec_val_service *sv = &r->services[k];
		const char *type = codec_key_format_type_name(sv->format_type);
		const char *content = request_content(&st->mem, sv);
		if (type == NULL || content == NULL)
			return -1;
		key_format_rec *cur =
		    table_get(&st->key_formats, r->requester_identity, sv->val_service_id, 0, 0);
		if (!key_format_differs(cur, type, sv->format_version, content))
			continue;
		key_format_rec *next = arena_alloc(&st->mem, sizeof *next);
		if (next == NULL)
			return -1;
		*next = (key_format_rec){.version = cur != NULL ? cur->version + 1 : 1,
		                         .format_type = type,
		                         .format_version = sv->format_version,
		                         .content = content};
		if (table_put(&st->key_formats, r->requester_identity, sv->val_service_id, 0, 0,
		              next) != 0)
			return -1;
		plan->key_formats[plan->nkey_formats++] = (decide_key_format_row){
		    .item = index, .service = k, .version = next->version, .content = content};
	}

	/* one row per VAL server: the batch's last request of it wins */
	size_t *row = table_get(&pm->val_server_rows, r->requester_identity, NULL, 0, 0);
	if (row != NULL) {
		plan->val_servers[*row] = index;
	} else {
		row = arena_alloc(&pm->mem, sizeof *row);
		if (row == NULL)
			return -1;
		*row = plan->nval_servers;
		plan->val_servers[plan->nval_servers++] = index;
		if (table_put(&pm->val_server_rows, r->requester_identity, NULL, 0, 0, row) != 0)
			return -1;
	}

	if (!admits)
		return 0;
	if (table_put(&st->val_servers, r->requester_identity, NULL, 0, 0, (void *)it->vsp_id) != 0)
		return -1;
	provider_rec *p = table_get(&st->providers, it->vsp_id, NULL, 0, 0);
	if (p != NULL)
		p->admitted++;
	decide_provider_row *pr = table_get(&pm->provider_rows, it->vsp_id, NULL, 0, 0);
	if (pr == NULL) {
		pr = &plan->providers[plan->nproviders++];
		*pr = (decide_provider_row){.vsp_id = it->vsp_id, .added = 0};
		if (table_put(&pm->provider_rows, it->vsp_id, NULL, 0, 0, pr) != 0)
			return -1;
	}
	pr->added++;
	return 0;
}

/* Decide one item. Returns 0, or -1 when out of memory. */
static int decide_one(decide_state *st, decide_plan *plan, plan_mem *pm, store_item *it,
                      size_t index, const char *kms_id, int64_t now_ms)
{
	const char *topic = it->topic != NULL ? it->topic : "";
	decide_item_reset(it);

	/* (a) this very message was handled before */
	const decide_outcome *seen = table_get(&st->audits, topic, NULL, it->partition, it->offset);
	if (seen != NULL) {
		it->outcome = STORE_OUTCOME_REDELIVERED;
		it->has_result = seen->has_result;
		item_from(it, seen);
		return 0;
	}

	/* (b) undecodable */
	if (it->dlq) {
		item_set(it, STORE_OUTCOME_DLQ, CODEC_RESULT_FAILURE, CODEC_CAUSE_INVALID_REQUEST,
		         it->pre_detail, kms_id, now_ms);
		it->has_result = it->request_id != NULL && it->requester_identity != NULL;
		goto audit;
	}

	/* (c) the requestId was decided before */
	const decision_rec *d = decide_has_decision_key(it)
	                            ? table_get(&st->decisions, decide_request_id(it), NULL, 0, 0)
	                            : NULL;
	if (d != NULL) {
		const char *identity = decide_identity(it);
		it->has_result = identity != NULL;
		if (it->req != NULL && d->has_hash &&
		    memcmp(d->hash, it->content_hash, sizeof d->hash) == 0 &&
		    strcmp(d->requester_identity, identity) == 0) {
			it->outcome = STORE_OUTCOME_REPLAYED;
			item_from(it, &d->out);
		} else {
			item_set(it, STORE_OUTCOME_CONFLICT, CODEC_RESULT_FAILURE,
			         CODEC_CAUSE_REQUEST_ID_CONFLICT, CONFLICT_DETAIL, kms_id, now_ms);
		}
		goto audit;
	}

	it->has_result = decide_request_id(it) != NULL && decide_identity(it) != NULL;

	/* (d) refused by the pure checks */
	if (it->pre_cause != CODEC_CAUSE_NONE || it->req == NULL) {
		int pre = it->pre_cause != CODEC_CAUSE_NONE;
		item_set(it, STORE_OUTCOME_DECIDED, CODEC_RESULT_FAILURE,
		         pre ? it->pre_cause : CODEC_CAUSE_INVALID_REQUEST,
		         pre ? it->pre_detail : "the request could not be read", kms_id, now_ms);
		goto decision;
	}

	/* (e) the SLA, over what is stored and what the batch did before */
	const provider_rec *p =
	    it->vsp_id != NULL ? table_get(&st->providers, it->vsp_id, NULL, 0, 0) : NULL;
	const char *stored_vsp =
	    table_get(&st->val_servers, it->req->requester_identity, NULL, 0, 0);
	sla_context ctx = {.vsp_id = it->vsp_id, .now_ms = now_ms};
	if (p != NULL) {
		ctx.provider_known = 1;
		ctx.provider_enabled = p->enabled;
		ctx.val_server_count = p->val_server_count + p->admitted;
		ctx.slas = p->slas;
		ctx.sla_count = p->nslas;
	}
	ctx.val_server_stored = stored_vsp != NULL;
	ctx.val_server_other_provider =
	    stored_vsp != NULL && (it->vsp_id == NULL || strcmp(stored_vsp, it->vsp_id) != 0);
	char detail[256];
	codec_cause cause =
	    sla_evaluate(&ctx, it->req->services, it->req->service_count, detail, sizeof detail);
	if (cause != CODEC_CAUSE_NONE) {
		item_set(it, STORE_OUTCOME_DECIDED, CODEC_RESULT_FAILURE, cause, detail, kms_id,
		         now_ms);
		goto decision;
	}
	item_set(it, STORE_OUTCOME_DECIDED, CODEC_RESULT_SUCCESS, CODEC_CAUSE_NONE, NULL, kms_id,
	         now_ms);
	if (provision(st, plan, pm, it, index, !ctx.val_server_stored) != 0)
		return -1;

decision:
	if (decide_has_decision_key(it) && remember_decision(st, plan, it, index) != 0)
		return -1;
audit:
	plan->audits[plan->naudits++] = index;
	decide_outcome *mine = arena_alloc(&st->mem, sizeof *mine);
	if (mine == NULL)
		return -1;
	*mine = outcome_of(it);
	return table_put(&st->audits, topic, NULL, it->partition, it->offset, mine);
}

void decide_plan_free(decide_plan *plan)
{
	if (plan == NULL)
		return;
	plan_mem *pm = plan->mem_;
	if (pm != NULL) {
		table_free(&pm->val_server_rows);
		table_free(&pm->provider_rows);
		arena_free(&pm->mem);
		free(pm);
	}
	free(plan->audits);
	free(plan->decisions);
	free(plan->val_servers);
	free(plan->key_formats);
	free(plan->providers);
	memset(plan, 0, sizeof *plan);
}

int decide_batch(decide_state *st, store_item *items, size_t n, const char *kms_id, int64_t now_ms,
                 decide_plan *plan)
{
	memset(plan, 0, sizeof *plan);
	if (kms_id == NULL)
		kms_id = "";
	size_t services = 0;
	for (size_t i = 0; i < n; i++)
		if (items[i].req != NULL)
			services += items[i].req->service_count;
	plan->mem_ = calloc(1, sizeof(plan_mem));
	plan->audits = malloc((n + 1) * sizeof *plan->audits);
	plan->decisions = malloc((n + 1) * sizeof *plan->decisions);
	plan->val_servers = malloc((n + 1) * sizeof *plan->val_servers);
	plan->key_formats = malloc((services + 1) * sizeof *plan->key_formats);
	plan->providers = malloc((n + 1) * sizeof *plan->providers);
	if (plan->mem_ == NULL || plan->audits == NULL || plan->decisions == NULL ||
	    plan->val_servers == NULL || plan->key_formats == NULL || plan->providers == NULL)
		goto fail;
	for (size_t i = 0; i < n; i++)
		if (decide_one(st, plan, plan->mem_, &items[i], i, kms_id, now_ms) != 0)
			goto fail;
	return 0;
fail:
	for (size_t i = 0; i < n; i++)
		decide_item_reset(&items[i]);
	return -1;
}
