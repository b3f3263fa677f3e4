/*
 * sla: decides whether a VAL service provider's SLAs allow a request (contract
 * rules 4 and 5). The store reads the provider, its SLAs and the VAL server
 * under the provider's row lock and hands them here; this file does no I/O.
 *
 * For each listed service the candidates are the active SLAs that cover it;
 * when the VAL server is new, only those with room for one more VAL server.
 * The request is allowed when every service has a candidate that also allows
 * its formatType. Checking all services for coverage before any limit or
 * format means a request is refused with NOT_ALLOWED_BY_SLA (rule 4) whenever
 * rule 4 fails for any service, whatever rule 5 says.
 */
#include "sla.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "utf8.h"

/* Names from a request are clipped in details so that the sentence fits. */
#define NAME_CLIP 64

/* A name for a detail: at most NAME_CLIP bytes, "..." marking a cut. */
static void clip(char out[NAME_CLIP + 4], const char *name)
{
	if (name == NULL)
		name = "";
	size_t n = utf8_copy(out, NAME_CLIP + 1, name);
	if (n < strlen(name))
		memcpy(out + n, "...", 4);
}

/* Format one sentence into detail, cut at a character boundary. The names in
 * the arguments are clipped by the caller. */
static void say(char *detail, size_t detail_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(char *detail, size_t detail_size, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	int rc = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (rc < 0)
		line[0] = '\0';
	utf8_copy(detail, detail_size, line);
}

static int sla_active(const sla_terms *t, int64_t now_ms)
{
	return !t->revoked && t->valid_from_ms <= now_ms && now_ms < t->valid_until_ms;
}

static int sla_covers(const sla_terms *t, const char *service)
{
	for (size_t i = 0; i < t->service_count; i++)
		if (strcmp(t->services[i], service) == 0)
			return 1;
	return 0;
}

static int sla_has_room(const sla_context *ctx, const sla_terms *t)
{
	return ctx->val_server_stored || ctx->val_server_count < t->max_val_servers;
}

static int sla_allows(const sla_terms *t, codec_key_format_type f)
{
	return (unsigned)f < CODEC_KF__COUNT && (t->key_formats & (1u << f)) != 0;
}

codec_cause sla_evaluate(const sla_context *ctx, const codec_val_service *services, size_t n,
                         char *detail, size_t detail_size)
{
	char vsp[NAME_CLIP + 4], svc[NAME_CLIP + 4];
	if (detail_size > 0)
		detail[0] = '\0';
	if (!ctx->provider_known) {
		clip(vsp, ctx->vsp_id);
		say(detail, detail_size, "VAL service provider '%s' has no SLA", vsp);
		return CODEC_CAUSE_NOT_ALLOWED_BY_SLA;
	}
	if (!ctx->provider_enabled) {
		clip(vsp, ctx->vsp_id);
		say(detail, detail_size, "VAL service provider '%s' is disabled", vsp);
		return CODEC_CAUSE_NOT_ALLOWED_BY_SLA;
	}

	for (size_t i = 0; i < n; i++) {
		int covered = 0;
		for (size_t k = 0; k < ctx->sla_count && !covered; k++)
			covered = sla_active(&ctx->slas[k], ctx->now_ms) &&
			          sla_covers(&ctx->slas[k], services[i].val_service_id);
		if (!covered) {
			clip(vsp, ctx->vsp_id);
			clip(svc, services[i].val_service_id);
			say(detail, detail_size,
			    "no active SLA of VAL service provider '%s' covers VAL service '%s'",
			    vsp, svc);
			return CODEC_CAUSE_NOT_ALLOWED_BY_SLA;
		}
	}

	if (ctx->val_server_stored && ctx->val_server_other_provider) {
		say(detail, detail_size,
		    "the VAL server is registered with another VAL service provider");
		return CODEC_CAUSE_NOT_ALLOWED_BY_SLA;
	}

	for (size_t i = 0; i < n; i++) {
		int room = 0;
		for (size_t k = 0; k < ctx->sla_count && !room; k++) {
			const sla_terms *t = &ctx->slas[k];
			room = sla_active(t, ctx->now_ms) &&
			       sla_covers(t, services[i].val_service_id) && sla_has_room(ctx, t);
		}
		if (!room) {
			clip(vsp, ctx->vsp_id);
			clip(svc, services[i].val_service_id);
			say(detail, detail_size,
			    "VAL service provider '%s' has reached the VAL server limit of its "
			    "SLA for VAL service '%s'",
			    vsp, svc);
			return CODEC_CAUSE_NOT_ALLOWED_BY_SLA;
		}
	}

	for (size_t i = 0; i < n; i++) {
		int allowed = 0;
		for (size_t k = 0; k < ctx->sla_count && !allowed; k++) {
			const sla_terms *t = &ctx->slas[k];
			allowed = sla_active(t, ctx->now_ms) &&
			          sla_covers(t, services[i].val_service_id) &&
			          sla_has_room(ctx, t) && sla_allows(t, services[i].format_type);
		}
		if (!allowed) {
			const char *name = codec_key_format_type_name(services[i].format_type);
			clip(svc, services[i].val_service_id);
			say(detail, detail_size,
			    "key format %s is not allowed by the SLA for VAL service '%s'",
			    name != NULL ? name : "(unknown)", svc);
			return CODEC_CAUSE_KEY_FORMAT_NOT_ALLOWED;
		}
	}
	return CODEC_CAUSE_NONE;
}
