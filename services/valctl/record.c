/*
 * valctl record: a topic's messages to a file, one JSON object per line
 * (topic, partition, offset, timestamp, and key, header values and value in
 * base64, null kept apart from empty), for valctl replay and valctl diff
 * (recording.c reads the lines back).
 *
 * A recording must survive the recorder being stopped at any moment. Each
 * batch of messages is turned into whole lines in memory and handed to the
 * kernel in one write(2), never through stdio's buffer (which flushes
 * whenever it fills, mid-line), so SIGINT, which ends the loop after the
 * batch in hand, leaves whole lines. SIGKILL needs more: the kernel stops a
 * write of several pages between two pages when the process is killed, so
 * the file can end mid-line whatever the writer does. A guard process,
 * forked before anything else runs, waits for the recorder to go (its end
 * of a pipe closes with it) and then cuts the file back to its last whole
 * line. Only a SIGKILL of both leaves a cut last line, which replay and
 * diff report and skip.
 *
 * The reader is valctl's tail (kafka.c) with isolation.level=read_committed:
 * a Result from an aborted Kafka transaction is not a Result.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "cli.h"
#include "commands.h"
#include "kafka.h"
#include "num.h"
#include "util.h"

#define READ_BATCH 256

static const char record_help[] =
    "Usage: valctl record --topic T --out FILE [OPTIONS]\n"
    "\n"
    "Write each message of topic T as one JSON line: topic, partition, offset,\n"
    "timestamp (ms), key, headers [{name, value}] and value, the bytes in base64\n"
    "(null stays null). Without --from-beginning only messages produced after\n"
    "the start are written. Stops at --count, after --idle-exit, or on SIGINT.\n"
    "Reads committed messages only (isolation.level=read_committed; -X\n"
    "isolation.level=read_uncommitted to see aborted ones too). Each line\n"
    "reaches the file whole, so a recorder stopped at any moment leaves whole\n"
    "lines.\n"
    "\n"
    "  --topic T             the topic\n"
    "  --out FILE            where the lines go ('-': stdout)\n"
    "  --from-beginning      start at the oldest message instead of the end\n"
    "  --count N             stop after N messages\n"
    "  --idle-exit SECONDS   stop after SECONDS without a message\n"
    "  -h, --help            this help\n"
    "\n";

enum { OPT_TOPIC = VALCTL_OPT_FIRST_FREE, OPT_OUT, OPT_FROM_BEGINNING, OPT_COUNT, OPT_IDLE_EXIT };

/* base64 of bytes as a JSON string, or JSON null for NULL. */
static json_t *bytes_json(const void *data, size_t len)
{
	char *b64;
	json_t *j;

	if (data == NULL)
		return json_null();
	b64 = valctl_base64_encode(data, len);
	if (b64 == NULL)
		return NULL;
	j = json_string(b64);
	free(b64);
	return j;
}

static json_t *message_json(const rd_kafka_message_t *m)
{
	rd_kafka_timestamp_type_t tstype;
	rd_kafka_headers_t *h = NULL;
	const char *name;
	const void *value;
	size_t size, i;
	json_t *headers;
	int64_t ts = rd_kafka_message_timestamp(m, &tstype);

	headers = json_array();
	if (headers == NULL)
		return NULL;
	if (rd_kafka_message_headers((rd_kafka_message_t *)(uintptr_t)m, &h) ==
	        RD_KAFKA_RESP_ERR_NO_ERROR &&
	    h != NULL) {
		for (i = 0; rd_kafka_header_get_all(h, i, &name, &value, &size) ==
		            RD_KAFKA_RESP_ERR_NO_ERROR;
		     i++) {
			if (json_array_append_new(headers,
			                          json_pack("{s:s, s:o}", "name", name, "value",
			                                    bytes_json(value, size))) != 0) {
				json_decref(headers);
				return NULL;
			}
		}
	}
	return json_pack("{s:s, s:i, s:I, s:I, s:o, s:o, s:o}", "topic",
	                 rd_kafka_topic_name(m->rkt), "partition", (int)m->partition, "offset",
	                 (json_int_t)m->offset, "timestamp", (json_int_t)ts, "key",
	                 bytes_json(m->key, m->key_len), "headers", headers, "value",
	                 bytes_json(m->payload, m->len));
}

/* Lines of one batch, before they go out in one write. */
typedef struct {
	char *data;
	size_t len, cap;
} linebuf;

/* Append the message as one line; 0, or -1 when out of memory. */
static int linebuf_add(linebuf *b, const rd_kafka_message_t *m)
{
	json_t *j = message_json(m);
	size_t need;
	char *grown;
	int rc = -1;

	if (j == NULL)
		return -1;
	need = json_dumpb(j, NULL, 0, JSON_COMPACT);
	if (need == 0)
		goto done;
	if (b->cap - b->len < need + 1) {
		size_t cap = b->cap > 0 ? b->cap : 65536;

		while (cap - b->len < need + 1)
			cap *= 2;
		grown = realloc(b->data, cap);
		if (grown == NULL)
			goto done;
		b->data = grown;
		b->cap = cap;
	}
	if (json_dumpb(j, b->data + b->len, need, JSON_COMPACT) != need)
		goto done;
	b->len += need;
	b->data[b->len++] = '\n';
	rc = 0;
done:
	json_decref(j);
	return rc;
}

/* Write everything, across short writes and interrupted calls. */
static int write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Cut the file after its last newline (to nothing without one). */
static void cut_to_last_line(int fd)
{
	char buf[4096];
	struct stat st;
	off_t end, pos;
	ssize_t n, i;

	if (fstat(fd, &st) != 0 || st.st_size == 0)
		return;
	end = st.st_size;
	while (end > 0) {
		pos = end > (off_t)sizeof buf ? end - (off_t)sizeof buf : 0;
		n = pread(fd, buf, (size_t)(end - pos), pos);
		if (n <= 0)
			return;
		for (i = n - 1; i >= 0; i--) {
			if (buf[i] == '\n') {
				if (pos + i + 1 < st.st_size)
					(void)!ftruncate(fd, pos + i + 1);
				return;
			}
		}
		end = pos;
	}
	(void)!ftruncate(fd, 0);
}

/* Fork the guard of fd: it waits until the pipe's other end, kept by the
 * recorder, closes (the recorder finished or died), then cuts the file
 * back to its last whole line. The guard ignores the signals a terminal
 * sends to its whole group: the recorder ends on them, the guard must not.
 * Returns the guard's pid and *pipe_w, or -1 with errstr filled. */
static pid_t guard_start(int fd, int *pipe_w, char *errstr, size_t errstr_size)
{
	int p[2];
	pid_t pid;
	char c;

	if (pipe(p) != 0) {
		snprintf(errstr, errstr_size, "cannot make a pipe: %s", strerror(errno));
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		snprintf(errstr, errstr_size, "cannot fork: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		signal(SIGINT, SIG_IGN);
		signal(SIGTERM, SIG_IGN);
		signal(SIGHUP, SIG_IGN);
		/* Nothing to say, and a pipe on stderr must close with the
		 * recorder, not wait for the guard. */
		close(STDIN_FILENO);
		close(STDOUT_FILENO);
		close(STDERR_FILENO);
		close(p[1]);
		while (read(p[0], &c, 1) != 0 && errno == EINTR)
			;
		cut_to_last_line(fd);
		_exit(0);
	}
	close(p[0]);
	(void)fcntl(p[1], F_SETFD, FD_CLOEXEC);
	*pipe_w = p[1];
	return pid;
}

typedef struct {
	const char *topic, *out_path;
	int from_beginning;
	int64_t count; /* -1: no limit */
	double idle_s; /* 0: no limit */
} record_opts;

static int record_option(void *ctx, const char *sub, int opt, const char *arg)
{
	record_opts *o = ctx;

	switch (opt) {
	case OPT_TOPIC:
		o->topic = arg;
		break;
	case OPT_OUT:
		o->out_path = arg;
		break;
	case OPT_FROM_BEGINNING:
		o->from_beginning = 1;
		break;
	case OPT_COUNT:
		if (num_parse_i64(arg, 1, INT64_MAX, &o->count) != 0)
			return valctl_usage(sub, "--count needs a number >= 1, got '%s'", arg);
		break;
	case OPT_IDLE_EXIT:
		return valctl_parse_seconds(sub, "--idle-exit", arg, &o->idle_s);
	default:
		return VALCTL_NOT_MINE;
	}
	return VALCTL_GO_ON;
}

int valctl_cmd_record(int argc, char **argv)
{
	static const struct option opts[] = {
	    VALCTL_COMMON_LONGOPTS,
	    {"topic", required_argument, NULL, OPT_TOPIC},
	    {"out", required_argument, NULL, OPT_OUT},
	    {"from-beginning", no_argument, NULL, OPT_FROM_BEGINNING},
	    {"count", required_argument, NULL, OPT_COUNT},
	    {"idle-exit", required_argument, NULL, OPT_IDLE_EXIT},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0}};
	const char *sub = "record";
	record_opts o = {NULL, NULL, 0, -1, 0};
	valctl_common common;
	valctl_tail *tail = NULL;
	rd_kafka_message_t *msgs[READ_BATCH];
	linebuf lines = {NULL, 0, 0};
	int64_t written = 0, pending = 0, last_us;
	size_t n, i;
	char errstr[512];
	int fd = -1, guard_w = -1, r, oom = 0, rc = VALCTL_EXIT_RUNTIME;
	pid_t guard = -1;

	valctl_common_init(&common);
	r = valctl_parse(&common, sub, record_help, opts, record_option, &o, 0, argc, argv);
	if (r != VALCTL_GO_ON) {
		rc = r;
		goto done;
	}
	if (o.topic == NULL || o.out_path == NULL) {
		rc = valctl_usage(sub, "--topic and --out are required");
		goto done;
	}

	/* Read and write: the guard reads the file's end. */
	fd = strcmp(o.out_path, "-") == 0
	         ? STDOUT_FILENO
	         : open(o.out_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		valctl_err(sub, "cannot create %s: %s", o.out_path, strerror(errno));
		goto done;
	}
	/* Before librdkafka starts its threads: the guard is a plain copy. A
	 * pipe or terminal on stdout cannot be cut, and needs no guard. */
	if (fd != STDOUT_FILENO && (guard = guard_start(fd, &guard_w, errstr, sizeof errstr)) < 0) {
		valctl_err(sub, "%s", errstr);
		goto done;
	}
	tail = valctl_tail_new(&common, o.topic, o.from_beginning, 30000, errstr, sizeof errstr);
	if (tail == NULL) {
		valctl_err(sub, "%s", errstr);
		goto done;
	}
	/* From here on nothing produced to the topic is missed: say so, for
	 * whoever waits to produce until the recording runs. */
	fprintf(stderr, "valctl record: reading %s (%d partitions) from the %s\n", o.topic,
	        valctl_tail_partition_count(tail), o.from_beginning ? "beginning" : "end");
	last_us = valctl_mono_us();
	while (valctl_run && (o.count < 0 || written < o.count)) {
		n = valctl_tail_poll(tail, 100, msgs, READ_BATCH);
		lines.len = 0;
		pending = 0;
		for (i = 0; i < n; i++) {
			if (msgs[i]->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
				valctl_err(sub, "reading %s: %s", o.topic,
				           rd_kafka_message_errstr(msgs[i]));
			} else if (!oom && (o.count < 0 || written + pending < o.count)) {
				if (linebuf_add(&lines, msgs[i]) != 0)
					oom = 1;
				else
					pending++;
				last_us = valctl_mono_us();
			}
			rd_kafka_message_destroy(msgs[i]);
		}
		if (oom) {
			valctl_err(sub, "out of memory");
			goto done;
		}
		if (lines.len > 0 && write_all(fd, lines.data, lines.len) != 0) {
			valctl_err(sub, "cannot write %s: %s", o.out_path, strerror(errno));
			goto done;
		}
		written += pending;
		if (o.idle_s > 0 && valctl_mono_us() - last_us >= (int64_t)(o.idle_s * 1e6))
			break;
	}
	fprintf(stderr, "valctl record: %lld messages of %s written to %s\n", (long long)written,
	        o.topic, o.out_path);
	rc = VALCTL_EXIT_SUCCESS;
done:
	valctl_tail_destroy(tail);
	if (fd >= 0 && fd != STDOUT_FILENO && close(fd) != 0 && rc == VALCTL_EXIT_SUCCESS) {
		valctl_err(sub, "cannot write %s: %s", o.out_path, strerror(errno));
		rc = VALCTL_EXIT_RUNTIME;
	}
	/* The file ends with a whole line: the guard has nothing to cut, and
	 * is waited for so that the file is final when record returns. */
	if (guard > 0) {
		close(guard_w);
		while (waitpid(guard, NULL, 0) < 0 && errno == EINTR)
			;
	}
	free(lines.data);
	valctl_common_free(&common);
	return rc;
}
