/*
 * valctl replay: the messages of a recording (valctl record's lines) sent
 * again, in the file's order: key, headers and value byte for byte, and on
 * request the original timestamp (as CreateTime) and partition; paced at a
 * fixed rate, at a multiple of the recorded pace, or as fast as the broker
 * takes them; filtered by key; and, for a staging KM-S, with each request's
 * access token re-minted by a development key (resign.c).
 *
 * A broken recording produces nothing: a file is read twice, once to check
 * every line (and learn what --keep-partitions needs of the topics:
 * replay_topics.c), then to send, so a bad line at the end does not leave
 * half a replay behind. Only stdin, which cannot be read twice, is sent as
 * it is read. --skip-bad sends the good lines and counts the others. A last
 * line without its newline that does not parse is what a recorder killed
 * mid-write leaves: it is reported and skipped, never an error.
 */
#include <errno.h>
#include <getopt.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "cli.h"
#include "codec.h"
#include "commands.h"
#include "kafka.h"
#include "num.h"
#include "recording.h"
#include "replay_topics.h"
#include "resign.h"
#include "util.h"
#include "wire.h"

/* Bad lines named one by one before only their count is given. */
#define BAD_LINES_SHOWN 10
/* Room for a recorded record of any size a broker takes by default and
 * more: the broker, not the client, says what a topic refuses. */
#define REPLAY_MAX_MESSAGE "message.max.bytes=67108864"

static const char replay_help[] =
    "Usage: valctl replay --in FILE [--topic T] [OPTIONS]\n"
    "\n"
    "Produce the key, headers and value of each line of a file written by\n"
    "'valctl record' again, in the file's order, and wait for their delivery.\n"
    "Values go byte for byte unless --resign is given. A file is checked whole\n"
    "before anything is sent: a bad line (not JSON, a member missing, base64\n"
    "that does not decode) stops the replay with exit 2 and nothing sent\n"
    "(stdin is sent as it is read: the lines before a bad one are sent). A\n"
    "last line cut short is reported and skipped. Ends with a summary line on\n"
    "stderr; shows progress there when it is a terminal.\n"
    "\n"
    "  --in FILE             the recording ('-': stdin)\n"
    "  --topic T             produce to T (default: each line's own topic)\n"
    "  --keep-timestamps     give each message its recorded timestamp (CreateTime)\n"
    "  --keep-partitions     send each message to its recorded partition (the\n"
    "                        topic must have as many partitions)\n"
    "  --rate N              at most N messages per second\n"
    "  --speed X             X times the recorded pace, from the timestamps\n"
    "                        (default, without --rate: as fast as possible)\n"
    "  --key K               only messages whose key is K (repeatable)\n"
    "  --grep REGEX          only messages whose key matches REGEX (POSIX ERE);\n"
    "                        with --key: messages that pass either\n"
    "  --skip-bad            send the good lines, skip and count the bad ones\n"
    "  --resign KEY.pem      re-mint each request's access token with this\n"
    "                        (development) private key: same claims, iss set to\n"
    "                        --iss, iat/nbf/exp moved by the time since the\n"
    "                        recording; the rest of the request unchanged\n"
    "  --iss ISS             issuer of the re-minted tokens (with --resign)\n"
    "  --kid K               key id of the re-minted tokens (default: none)\n"
    "  --verify-issuers F    re-mint only tokens that verify against the issuers\n"
    "                        file F (the KM-S's format); others go as they were\n"
    "  --timeout SECONDS     wait for each delivery at most this long (default 30)\n"
    "  -h, --help            this help\n"
    "\n"
    "With --framing (a shared option), every value that is a request (in either\n"
    "framing) is written again in that framing, after --resign, the schema id\n"
    "looked up under <topic>-value; other values go as they are.\n"
    "\n";

enum {
	OPT_IN = VALCTL_OPT_FIRST_FREE,
	OPT_TOPIC,
	OPT_TIMEOUT,
	OPT_KEEP_TIMESTAMPS,
	OPT_KEEP_PARTITIONS,
	OPT_RATE,
	OPT_SPEED,
	OPT_KEY,
	OPT_GREP,
	OPT_SKIP_BAD,
	OPT_RESIGN,
	OPT_ISS,
	OPT_KID,
	OPT_VERIFY_ISSUERS
};

typedef struct {
	const char *in_path;
	const char *topic;
	double timeout_s;
	int keep_timestamps, keep_partitions, skip_bad;
	double rate, speed;
	const char **keys;
	size_t key_count;
	const char *grep;
	const char *resign_key, *iss, *kid, *verify_issuers;
} replay_opts;

typedef struct {
	const replay_opts *o;
	const char *sub;
	rd_kafka_t *rk;
	valctl_resigner *resigner;
	codec *cod;       /* with --framing */
	valctl_wire wire; /* with --framing */
	int have_wire;
	regex_t re;
	int have_re;
	unsigned need;
	replay_topics topics; /* with --keep-partitions */
	/* counts */
	int checked;        /* the first pass ran: the file is known good */
	size_t lines_seen;  /* the last line number the first pass read */
	size_t lines_total; /* lines to send, from the first pass; 0 if unknown */
	size_t lines_done;
	size_t sent, filtered, bad, truncated;
	size_t resigned, not_request, token_kept;
	/* delivery reports */
	size_t delivered, failed;
	rd_kafka_resp_err_t first_err;
	/* pacing and progress */
	int64_t start_us, pace_start_us, first_ts, last_progress_us;
	int progress_shown, tty;
} replay_run;

static void on_delivery(const rd_kafka_message_t *m, void *user)
{
	replay_run *s = user;

	if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		s->delivered++;
	} else {
		if (s->failed++ == 0)
			s->first_err = m->err;
	}
}

static double elapsed_s(const replay_run *s)
{
	return (double)(valctl_mono_us() - s->start_us) / 1e6;
}

/* The progress line, at most five times a second, on a terminal only. */
static void progress(replay_run *s, int force)
{
	int64_t now = valctl_mono_us();
	double t;

	if (!s->tty || (!force && now - s->last_progress_us < 200000))
		return;
	s->last_progress_us = now;
	t = elapsed_s(s);
	if (s->lines_total > 0)
		fprintf(
		    stderr,
		    "\r\033[Kvalctl replay: %zu of %zu (%.0f%%), %zu produced, %zu failed, %.0f/s",
		    s->sent, s->lines_total, 100.0 * (double)s->sent / (double)s->lines_total,
		    s->delivered, s->failed, t > 0 ? (double)s->delivered / t : 0.0);
	else
		fprintf(stderr, "\r\033[Kvalctl replay: %zu sent, %zu produced, %zu failed, %.0f/s",
		        s->sent, s->delivered, s->failed, t > 0 ? (double)s->delivered / t : 0.0);
	s->progress_shown = 1;
}

static void progress_clear(replay_run *s)
{
	if (s->progress_shown)
		fputs("\r\033[K", stderr);
	s->progress_shown = 0;
}

/* Serve delivery reports until target_us (monotonic). */
static void wait_until(replay_run *s, int64_t target_us)
{
	int64_t now, wait;

	while (valctl_run && (now = valctl_mono_us()) < target_us) {
		wait = target_us - now;
		if (wait >= 1000) {
			rd_kafka_poll(s->rk, (int)(wait / 1000 < 100 ? wait / 1000 : 100));
		} else {
			struct timespec ts = {0, (long)wait * 1000L};

			rd_kafka_poll(s->rk, 0);
			nanosleep(&ts, NULL);
		}
		progress(s, 0);
	}
}

static int key_selected(const replay_run *s, const valctl_recline *l)
{
	size_t i;

	if (s->o->key_count == 0 && !s->have_re)
		return 1;
	if (l->key_null)
		return 0;
	for (i = 0; i < s->o->key_count; i++) {
		if (strlen(s->o->keys[i]) == l->key_len &&
		    memcmp(s->o->keys[i], l->key, l->key_len) == 0)
			return 1;
	}
	/* The decoded key is NUL-terminated; a key with a NUL inside is not
	 * text and matches no expression. */
	return s->have_re && strlen((const char *)l->key) == l->key_len &&
	       regexec(&s->re, (const char *)l->key, 0, NULL, 0) == 0;
}

/* The outcome of looking at one line. */
typedef enum {
	LINE_OK,     /* sent, filtered out, or (dry) fit to send */
	LINE_BAD,    /* the line is broken: errstr says how */
	LINE_MISUSE, /* the line cannot go where the options say */
	LINE_FATAL   /* the broker or memory failed: errstr */
} line_status;

/* Produce one line's message (or, when dry, only check it). */
static line_status one_line(replay_run *s, const char *text, size_t len, size_t line_no, int dry,
                            char *errstr, size_t errstr_size)
{
	valctl_recline l;
	rd_kafka_headers_t *headers = NULL;
	rd_kafka_resp_err_t err;
	unsigned char *resigned = NULL, *framed = NULL;
	const unsigned char *value;
	size_t value_len, i;
	const char *topic, *why;
	replay_topic *t;
	int64_t deadline_us, shift_s;
	line_status rc = LINE_FATAL;

	if (valctl_recline_parse(text, len, s->need, &l, errstr, errstr_size) != 0)
		return LINE_BAD;
	if (!key_selected(s, &l)) {
		if (!dry)
			s->filtered++;
		rc = LINE_OK;
		goto done;
	}
	topic = s->o->topic != NULL ? s->o->topic : l.topic;
	if (s->o->keep_partitions) {
		t = replay_topics_get(&s->topics, topic);
		if (t == NULL) {
			snprintf(errstr, errstr_size, "out of memory");
			goto done;
		}
		if (l.partition > t->max_used) {
			t->max_used = l.partition;
			t->first_line = line_no;
		}
		/* Streaming: each line is checked as it comes. */
		if (!dry && !s->checked) {
			int32_t n = replay_topics_partitions(
			    t, s->rk, (int)(s->o->timeout_s * 1000), errstr, errstr_size);

			if (n < 0)
				goto done;
			if (l.partition >= n) {
				snprintf(errstr, errstr_size,
				         "%s:%zu: --keep-partitions: %s has %d partitions, the "
				         "recording uses partition %d",
				         s->o->in_path, line_no, topic, (int)n, (int)l.partition);
				rc = LINE_MISUSE;
				goto done;
			}
		}
	}
	if (dry) {
		s->lines_total++;
		rc = LINE_OK;
		goto done;
	}

	/* pacing: the k-th message at k/rate, or at its recorded offset from
	 * the first one divided by the speed */
	if (s->o->rate > 0) {
		wait_until(s, s->pace_start_us + (int64_t)((double)s->sent * 1e6 / s->o->rate));
	} else if (s->o->speed > 0) {
		if (s->sent == 0)
			s->first_ts = l.timestamp;
		wait_until(s, s->pace_start_us + (int64_t)((double)(l.timestamp - s->first_ts) *
		                                           1000.0 / s->o->speed));
	}
	if (!valctl_run) {
		rc = LINE_OK;
		goto done;
	}

	value = l.value;
	value_len = l.value_len;
	if (s->resigner != NULL && l.value_null) {
		s->not_request++;
	} else if (s->resigner != NULL) {
		shift_s = (valctl_now_ms() - l.timestamp) / 1000;
		switch (valctl_resign_value(s->resigner, l.value, l.value_len, shift_s, &resigned,
		                            &value_len, &why, errstr, errstr_size)) {
		case VALCTL_RESIGN_DONE:
			value = resigned;
			s->resigned++;
			break;
		case VALCTL_RESIGN_NOT_REQUEST:
			value_len = l.value_len;
			s->not_request++;
			break;
		case VALCTL_RESIGN_TOKEN_KEPT:
			value_len = l.value_len;
			s->token_kept++;
			break;
		default:
			goto done;
		}
	}
	if (s->have_wire && !l.value_null) {
		size_t framed_len = 0;
		if (valctl_wire_reframe(&s->wire, value, value_len, &framed, &framed_len, errstr,
		                        errstr_size) != 0)
			goto done;
		value = framed;
		value_len = framed_len;
	}
	if (l.header_count > 0) {
		headers = rd_kafka_headers_new(l.header_count);
		if (headers == NULL) {
			snprintf(errstr, errstr_size, "out of memory");
			goto done;
		}
		for (i = 0; i < l.header_count; i++) {
			const valctl_recheader *h = &l.headers[i];

			if (rd_kafka_header_add(headers, h->name, -1, h->value,
			                        h->is_null ? 0 : (ssize_t)h->len) !=
			    RD_KAFKA_RESP_ERR_NO_ERROR) {
				snprintf(errstr, errstr_size, "cannot add header %s", h->name);
				goto done;
			}
		}
	}
	deadline_us = valctl_mono_us() + (int64_t)(s->o->timeout_s * 1e6);
	for (;;) {
		/* The const casts: with RD_KAFKA_MSG_F_COPY librdkafka only
		 * reads these. A timestamp of 0 means now. */
		err = rd_kafka_producev(
		    s->rk, RD_KAFKA_V_TOPIC(topic),
		    RD_KAFKA_V_PARTITION(s->o->keep_partitions ? l.partition
		                                               : RD_KAFKA_PARTITION_UA),
		    RD_KAFKA_V_KEY(l.key_null ? NULL : l.key, l.key_len),
		    RD_KAFKA_V_VALUE(l.value_null ? NULL : (void *)(uintptr_t)value, value_len),
		    RD_KAFKA_V_TIMESTAMP(s->o->keep_timestamps ? l.timestamp : 0),
		    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(headers),
		    RD_KAFKA_V_END);
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || valctl_mono_us() >= deadline_us ||
		    !valctl_run)
			break;
		/* The local queue is full: serve delivery reports until there
		 * is room. */
		rd_kafka_poll(s->rk, 10);
		progress(s, 0);
	}
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(errstr, errstr_size, "line %zu: cannot produce to %s: %s", line_no, topic,
		         rd_kafka_err2str(err));
		goto done;
	}
	headers = NULL; /* now owned by the message */
	s->sent++;
	rd_kafka_poll(s->rk, 0);
	progress(s, 0);
	rc = LINE_OK;
done:
	if (headers != NULL)
		rd_kafka_headers_destroy(headers);
	free(resigned);
	free(framed);
	valctl_recline_clear(&l);
	return rc;
}

/* Say why a line is bad; with --skip-bad only the first few. */
static void report_bad(replay_run *s, size_t line_no, const char *why)
{
	progress_clear(s);
	if (!s->o->skip_bad)
		valctl_err(s->sub, "%s:%zu: %s", s->o->in_path, line_no, why);
	else if (s->bad <= BAD_LINES_SHOWN)
		valctl_err(s->sub, "%s:%zu: %s (skipped)", s->o->in_path, line_no, why);
}

/* One pass over the file. Returns an exit code, or -1 to go on. */
static int pass(replay_run *s, valctl_lines *in, int dry, size_t max_lines)
{
	char *text;
	size_t len, line_no = 0;
	int complete, r;
	char errstr[512];

	while (valctl_run && (max_lines == 0 || line_no < max_lines) &&
	       (r = valctl_lines_next(in, &text, &len, &line_no, &complete)) != 0) {
		line_status st;

		if (r < 0) {
			progress_clear(s);
			valctl_err(s->sub, "cannot read %s: %s", s->o->in_path, strerror(errno));
			return VALCTL_EXIT_RUNTIME;
		}
		if (dry)
			s->lines_seen = line_no;
		if (len == 0)
			continue;
		st = one_line(s, text, len, line_no, dry, errstr, sizeof errstr);
		if (st == LINE_OK)
			continue;
		if (st == LINE_MISUSE) {
			progress_clear(s);
			valctl_err(s->sub, "%s", errstr);
			return VALCTL_EXIT_USAGE;
		}
		if (st == LINE_FATAL) {
			progress_clear(s);
			valctl_err(s->sub, "%s", errstr);
			return VALCTL_EXIT_RUNTIME;
		}
		/* A bad line without its newline is the last one: what a
		 * recorder stopped mid-write leaves. */
		if (!complete) {
			if (dry || !s->checked) {
				progress_clear(s);
				valctl_err(s->sub,
				           "%s:%zu: the last line is cut short (%s): skipped",
				           s->o->in_path, line_no, errstr);
				s->truncated++;
			}
			continue;
		}
		/* The second pass meets the bad lines the first one counted. */
		if (!dry && s->checked)
			continue;
		s->bad++;
		report_bad(s, line_no, errstr);
		if (!s->o->skip_bad)
			return VALCTL_EXIT_USAGE;
	}
	return -1;
}

/* After the first pass: every topic has the partitions the lines use. */
static int check_partitions(replay_run *s)
{
	char errstr[512];
	size_t i;

	for (i = 0; i < s->topics.count; i++) {
		replay_topic *t = &s->topics.items[i];
		int32_t n = replay_topics_partitions(t, s->rk, (int)(s->o->timeout_s * 1000),
		                                     errstr, sizeof errstr);

		if (n < 0) {
			valctl_err(s->sub, "%s", errstr);
			return VALCTL_EXIT_RUNTIME;
		}
		if (t->max_used >= n) {
			valctl_err(s->sub,
			           "%s:%zu: --keep-partitions: %s has %d partitions, the recording "
			           "uses partition %d; nothing sent",
			           s->o->in_path, t->first_line, t->topic, (int)n,
			           (int)t->max_used);
			return VALCTL_EXIT_USAGE;
		}
	}
	return -1;
}

static void summary(replay_run *s)
{
	double t = elapsed_s(s);
	size_t unacked = s->sent - s->delivered - s->failed;

	progress_clear(s);
	fprintf(stderr,
	        "valctl replay: %zu produced, %zu failed, %zu unacknowledged in %.2f s (%.0f/s); "
	        "%zu filtered out, %zu bad lines skipped, %zu cut short",
	        s->delivered, s->failed, unacked, t, t > 0 ? (double)s->delivered / t : 0.0,
	        s->filtered, s->bad, s->truncated);
	if (s->resigner != NULL)
		fprintf(stderr, "; %zu tokens re-signed, %zu kept, %zu values not requests",
		        s->resigned, s->token_kept, s->not_request);
	fputc('\n', stderr);
}

/* The shared options, with replay's own default first so that -X wins. */
static int with_default_max_message(valctl_common *c, const char ***mine)
{
	const char **x = malloc((c->xprop_count + 1) * sizeof *x);

	if (x == NULL)
		return -1;
	x[0] = REPLAY_MAX_MESSAGE;
	if (c->xprop_count > 0)
		memcpy(x + 1, c->xprops, c->xprop_count * sizeof *x);
	*mine = x;
	return 0;
}

static int run(valctl_common *common, const replay_opts *o)
{
	const char *sub = "replay";
	replay_run s;
	valctl_kctx kctx;
	valctl_lines *in = NULL;
	valctl_common pc;
	const char **xprops = NULL;
	int64_t deadline_us;
	char errstr[512];
	int r, rc = VALCTL_EXIT_RUNTIME;

	memset(&s, 0, sizeof s);
	s.o = o;
	s.sub = sub;
	s.tty = isatty(STDERR_FILENO);
	s.start_us = valctl_mono_us();
	s.last_progress_us = s.start_us;
	s.need =
	    (o->topic == NULL ? VALCTL_RECLINE_TOPIC : 0) |
	    (o->keep_partitions ? VALCTL_RECLINE_PARTITION : 0) |
	    (o->keep_timestamps || o->speed > 0 || o->resign_key != NULL ? VALCTL_RECLINE_TIMESTAMP
	                                                                 : 0);
	if (o->grep != NULL) {
		if (regcomp(&s.re, o->grep, REG_EXTENDED | REG_NOSUB) != 0) {
			rc = valctl_usage(sub, "--grep: '%s' is not a regular expression", o->grep);
			goto done;
		}
		s.have_re = 1;
	}
	in = valctl_lines_open(o->in_path, errstr, sizeof errstr);
	if (in == NULL) {
		valctl_err(sub, "%s", errstr);
		goto done;
	}
	if (o->resign_key != NULL) {
		s.resigner = valctl_resigner_new(o->resign_key, o->iss, o->kid, o->verify_issuers,
		                                 errstr, sizeof errstr);
		if (s.resigner == NULL) {
			valctl_err(sub, "--resign: %s", errstr);
			goto done;
		}
	}
	if (common->framing_set) {
		codec_limits limits;
		valctl_common wc = *common;
		codec_limits_default(&limits);
		s.cod = codec_new(&limits, errstr, sizeof errstr);
		if (s.cod == NULL) {
			valctl_err(sub, "cannot load the schemas: %s", errstr);
			goto done;
		}
		if (o->topic != NULL)
			wc.requests_topic = o->topic;
		r = valctl_wire_open(&s.wire, &wc, s.cod, sub);
		if (r != 0) {
			rc = r;
			goto done;
		}
		s.have_wire = 1;
	}
	pc = *common;
	if (with_default_max_message(&pc, &xprops) != 0) {
		valctl_err(sub, "out of memory");
		goto done;
	}
	pc.xprops = xprops;
	pc.xprop_count = common->xprop_count + 1;
	memset(&kctx, 0, sizeof kctx);
	kctx.verbose = common->verbose;
	kctx.on_delivery = on_delivery;
	kctx.user = &s;
	s.rk = valctl_producer_new(&pc, &kctx, (int)(o->timeout_s * 1000.0), errstr, sizeof errstr);
	if (s.rk == NULL) {
		valctl_err(sub, "%s", errstr);
		goto done;
	}

	/* First pass: check every line, count what will be sent. */
	if (valctl_lines_seekable(in)) {
		r = pass(&s, in, 1, 0);
		if (r >= 0) {
			rc = r;
			goto done;
		}
		if (o->keep_partitions && (r = check_partitions(&s)) >= 0) {
			rc = r;
			goto done;
		}
		if (!valctl_run) {
			valctl_err(sub, "interrupted before anything was sent");
			goto done;
		}
		if (valctl_lines_rewind(in) != 0) {
			valctl_err(sub, "cannot read %s again", o->in_path);
			goto done;
		}
		s.checked = 1;
		/* The file may grow (a recorder still writing): send what was
		 * checked, no more. An empty file sends nothing. */
		if (s.lines_seen == 0)
			goto flush;
	}
	s.pace_start_us = valctl_mono_us();
	r = pass(&s, in, 0, s.lines_seen);
	if (r >= 0) {
		rc = r;
		goto flush;
	}
	if (!valctl_run) {
		progress_clear(&s);
		valctl_err(sub, "interrupted after %zu messages", s.sent);
		goto flush;
	}
	rc = VALCTL_EXIT_SUCCESS;
flush:
	deadline_us = valctl_mono_us() + (int64_t)(o->timeout_s * 1e6);
	while (valctl_run && s.delivered + s.failed < s.sent && valctl_mono_us() < deadline_us) {
		rd_kafka_poll(s.rk, 50);
		progress(&s, 0);
	}
	summary(&s);
	if (rc == VALCTL_EXIT_SUCCESS && s.failed > 0) {
		valctl_err(sub, "%zu of %zu messages were not delivered: %s", s.failed, s.sent,
		           rd_kafka_err2str(s.first_err));
		rc = VALCTL_EXIT_RUNTIME;
	} else if (rc == VALCTL_EXIT_SUCCESS && s.delivered < s.sent) {
		valctl_err(sub, "%zu of %zu messages not delivered within %g s",
		           s.sent - s.delivered, s.sent, o->timeout_s);
		rc = VALCTL_EXIT_TIMEOUT;
	}
done:
	if (s.rk != NULL) {
		rd_kafka_flush(s.rk, 1000);
		rd_kafka_destroy(s.rk);
	}
	valctl_resigner_destroy(s.resigner);
	if (s.have_wire)
		valctl_wire_close(&s.wire);
	codec_destroy(s.cod);
	replay_topics_free(&s.topics);
	if (s.have_re)
		regfree(&s.re);
	free(xprops);
	valctl_lines_close(in);
	return rc;
}

static int replay_option(void *ctx, const char *sub, int opt, const char *arg)
{
	replay_opts *o = ctx;

	switch (opt) {
	case OPT_IN:
		o->in_path = arg;
		break;
	case OPT_TOPIC:
		if (arg[0] == '\0')
			return valctl_usage(sub, "--topic must not be empty");
		o->topic = arg;
		break;
	case OPT_TIMEOUT:
		return valctl_parse_seconds(sub, "--timeout", arg, &o->timeout_s);
	case OPT_KEEP_TIMESTAMPS:
		o->keep_timestamps = 1;
		break;
	case OPT_KEEP_PARTITIONS:
		o->keep_partitions = 1;
		break;
	case OPT_RATE:
		if (num_parse_double(arg, 0.001, 1e7, &o->rate) != 0)
			return valctl_usage(sub, "--rate needs messages per second > 0, got '%s'",
			                    arg);
		break;
	case OPT_SPEED:
		if (num_parse_double(arg, 0.001, 1e6, &o->speed) != 0)
			return valctl_usage(sub, "--speed needs a factor > 0, got '%s'", arg);
		break;
	case OPT_KEY:
		o->keys[o->key_count++] = arg;
		break;
	case OPT_GREP:
		o->grep = arg;
		break;
	case OPT_SKIP_BAD:
		o->skip_bad = 1;
		break;
	case OPT_RESIGN:
		o->resign_key = arg;
		break;
	case OPT_ISS:
		if (arg[0] == '\0')
			return valctl_usage(sub, "--iss must not be empty");
		o->iss = arg;
		break;
	case OPT_KID:
		o->kid = arg;
		break;
	case OPT_VERIFY_ISSUERS:
		o->verify_issuers = arg;
		break;
	default:
		return VALCTL_NOT_MINE;
	}
	return VALCTL_GO_ON;
}

int valctl_cmd_replay(int argc, char **argv)
{
	static const struct option opts[] = {
	    VALCTL_COMMON_LONGOPTS,
	    {"in", required_argument, NULL, OPT_IN},
	    {"topic", required_argument, NULL, OPT_TOPIC},
	    {"timeout", required_argument, NULL, OPT_TIMEOUT},
	    {"keep-timestamps", no_argument, NULL, OPT_KEEP_TIMESTAMPS},
	    {"keep-partitions", no_argument, NULL, OPT_KEEP_PARTITIONS},
	    {"rate", required_argument, NULL, OPT_RATE},
	    {"speed", required_argument, NULL, OPT_SPEED},
	    {"key", required_argument, NULL, OPT_KEY},
	    {"grep", required_argument, NULL, OPT_GREP},
	    {"skip-bad", no_argument, NULL, OPT_SKIP_BAD},
	    {"resign", required_argument, NULL, OPT_RESIGN},
	    {"iss", required_argument, NULL, OPT_ISS},
	    {"kid", required_argument, NULL, OPT_KID},
	    {"verify-issuers", required_argument, NULL, OPT_VERIFY_ISSUERS},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0}};
	const char *sub = "replay";
	valctl_common common;
	replay_opts o;
	int r, rc = VALCTL_EXIT_USAGE;

	valctl_common_init(&common);
	memset(&o, 0, sizeof o);
	o.timeout_s = 30;
	/* Every --key fits in argc slots. */
	o.keys = calloc((size_t)argc + 1, sizeof *o.keys);
	if (o.keys == NULL) {
		valctl_err(sub, "out of memory");
		return VALCTL_EXIT_RUNTIME;
	}
	r = valctl_parse(&common, sub, replay_help, opts, replay_option, &o, 0, argc, argv);
	if (r != VALCTL_GO_ON) {
		rc = r;
		goto done;
	}
	if (o.in_path == NULL) {
		rc = valctl_usage(sub, "--in is required");
		goto done;
	}
	if (o.rate > 0 && o.speed > 0) {
		rc = valctl_usage(sub, "--rate and --speed exclude each other");
		goto done;
	}
	if (o.resign_key == NULL && (o.iss != NULL || o.kid != NULL || o.verify_issuers != NULL)) {
		rc = valctl_usage(sub, "--iss, --kid and --verify-issuers go with --resign");
		goto done;
	}
	if (o.resign_key != NULL && o.iss == NULL) {
		rc = valctl_usage(sub, "--resign needs --iss");
		goto done;
	}
	rc = run(&common, &o);
done:
	free(o.keys);
	valctl_common_free(&common);
	return rc;
}
