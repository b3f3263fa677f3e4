/*
 * valctl: the command line of a VAL server, for development, tests and
 * benchmarks of the KM-S. This header joins its files: the exit codes, the
 * options every Kafka subcommand shares, the Kafka helpers (kafka.c), small
 * utilities (util.c) and one entry point per subcommand.
 */
#ifndef VALCTL_H
#define VALCTL_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "codec.h"
#include "file.h"
#include "jwt.h"
#include "registry.h"

/* Exit codes of every subcommand. */
typedef enum {
	VALCTL_EXIT_SUCCESS = 0, /* done; for provision: the Result is SUCCESS */
	VALCTL_EXIT_FAILURE = 1, /* the Result is FAILURE; fleet: a Result is missing */
	VALCTL_EXIT_USAGE = 2,   /* misuse of the command line */
	VALCTL_EXIT_TIMEOUT = 3, /* no answer in time */
	VALCTL_EXIT_RUNTIME = 4  /* broker, file or library error */
} valctl_exit;

#define VALCTL_DEFAULT_BOOTSTRAP      "127.0.0.1:19092"
#define VALCTL_DEFAULT_REQUESTS_TOPIC "seal.km.provisioning.requests"
#define VALCTL_DEFAULT_REPLY_TOPIC    "seal.km.provisioning.results"
#define VALCTL_REQUEST_CE_TYPE        "org.threegpp.seal.km.provisioning.request.v1"

/* Cleared by SIGINT and SIGTERM; loops poll it. The program's only global. */
extern volatile sig_atomic_t valctl_run;

/* ---- options shared by the Kafka subcommands ---- */

/* Strings are borrowed from argv or the environment. */
typedef struct {
	const char *bootstrap;
	const char **xprops; /* "key=value" items of -X, in order */
	size_t xprop_count;
	const char *requests_topic;
	const char *reply_topic;
	int verbose;              /* -v: librdkafka's logs on stderr */
	codec_framing framing;    /* --framing: how requests are written */
	int framing_set;          /* --framing was given */
	const char *registry_url; /* --registry, else KMS_REGISTRY_URL; may be NULL */
} valctl_common;

/* Long-option values of the shared options (short ones use their letter). */
enum {
	VALCTL_OPT_REQUESTS_TOPIC = 1000,
	VALCTL_OPT_REPLY_TOPIC,
	VALCTL_OPT_FRAMING,
	VALCTL_OPT_REGISTRY,
	VALCTL_OPT_FIRST_FREE
};

/* Short options and long-option entries to put in each subcommand's table. */
#define VALCTL_COMMON_SHORTOPTS "b:X:v"
#define VALCTL_COMMON_LONGOPTS                                                                     \
	{"bootstrap", required_argument, NULL, 'b'},                                               \
	    {"requests-topic", required_argument, NULL, VALCTL_OPT_REQUESTS_TOPIC},                \
	    {"reply-topic", required_argument, NULL, VALCTL_OPT_REPLY_TOPIC},                      \
	    {"framing", required_argument, NULL, VALCTL_OPT_FRAMING},                              \
	    {"registry", required_argument, NULL, VALCTL_OPT_REGISTRY},                            \
	{                                                                                          \
		"verbose", no_argument, NULL, 'v'                                                  \
	}

/* The help text of the shared options. */
extern const char valctl_common_help[];

/* Defaults: bootstrap from KMS_BOOTSTRAP, else VALCTL_DEFAULT_BOOTSTRAP. */
void valctl_common_init(valctl_common *c);
void valctl_common_free(valctl_common *c); /* frees xprops only */
/* Apply one option from getopt_long: 1 if it was a shared option, 0 if not
 * ours, -1 on misuse (the hint was printed). */
int valctl_common_option(valctl_common *c, const char *sub, int opt, const char *arg);
/* The end of every subcommand's option switch: -h/--help (prints help and
 * the shared options' help), a shared option, or misuse. Returns -1 when the
 * option was taken and parsing goes on, else the exit code to return. */
int valctl_other_option(valctl_common *c, const char *sub, const char *help, int opt,
                        const char *arg, char *const argv[]);

/* ---- framing ---- */

/* How one thread writes requests and reads Results: in the framing of
 * --framing (single-object by default), through the schema registry of
 * --registry when Confluent-framed. A Result is read in whichever framing it
 * comes. */
typedef struct {
	codec_frame frame;
	registry *reg; /* NULL without a registry */
	const codec *cod;
} valctl_wire;

/* Open a wire for codec cod (borrowed). With Confluent framing, the request
 * schema's id is looked up under <requests topic>-value, and registered
 * there when missing, as a registry-aware serializer does. Returns 0, or an
 * exit code with the error printed. */
int valctl_wire_open(valctl_wire *w, const valctl_common *c, const codec *cod, const char *sub);
void valctl_wire_close(valctl_wire *w);
int valctl_wire_encode(valctl_wire *w, const codec_request *r, unsigned char **out, size_t *out_len,
                       char *errstr, size_t errstr_size);
codec_status valctl_wire_decode_response(valctl_wire *w, const void *value, size_t len,
                                         codec_response_owned **out, char *errstr,
                                         size_t errstr_size);
/* A request value in the wire's framing: decoded (either framing) and
 * encoded again; a value that is not a request is returned as it is.
 * Returns 0 and a malloc'd *out, or -1 with errstr filled. */
int valctl_wire_reframe(valctl_wire *w, const void *value, size_t len, unsigned char **out,
                        size_t *out_len, char *errstr, size_t errstr_size);

/* ---- command line helpers ---- */

/* Print "valctl SUB: MESSAGE (try 'valctl SUB --help')" on stderr; returns
 * VALCTL_EXIT_USAGE. */
int valctl_usage(const char *sub, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The hint for getopt_long's '?' (unknown option) or ':' (missing value). */
int valctl_getopt_error(const char *sub, int opt, char *const argv[]);
/* Print "valctl SUB: MESSAGE" on stderr. */
void valctl_err(const char *sub, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- utilities ---- */

int64_t valctl_now_ms(void);  /* wall clock, ms since the epoch */
int64_t valctl_mono_us(void); /* monotonic clock, microseconds */
/* Fill buf from OpenSSL's generator; 0, or -1 with errstr filled. */
int valctl_random(void *buf, size_t len, char *errstr, size_t errstr_size);
/* A random (version 4) UUID in lower-case text; 0, or -1 with errstr filled. */
int valctl_uuid_v4(char out[37], char *errstr, size_t errstr_size);
/* Lower-case hex of data into out (2 * len + 1 bytes). */
void valctl_hex(const void *data, size_t len, char *out);

/* Create or truncate path with the given mode and write data; 0, or -1 with
 * errstr filled. */
int valctl_write_file(const char *path, const void *data, size_t len, mode_t mode, char *errstr,
                      size_t errstr_size);

/* Standard base64 with padding. encode returns a malloc'd string; decode a
 * malloc'd buffer (NUL-terminated beyond *out_len) and *out_len. Both return
 * NULL on bad input or no memory. Caller frees. */
char *valctl_base64_encode(const void *data, size_t len);
unsigned char *valctl_base64_decode(const char *text, size_t *out_len);

/* Print a JSON value on one line to out, followed by a newline; 0 or -1. */
int valctl_print_json(FILE *out, const json_t *value);
/* s as a quoted, escaped JSON string (malloc'd; caller frees) or NULL. */
char *valctl_quote(const char *s);

/* ---- Kafka ---- */

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
                                char *errstr, size_t errstr_size);

/* Load the metadata of topic into the producer, so that the first message
 * to it leaves at once rather than at librdkafka's next periodic refresh;
 * also fails early when no broker answers. 0, or -1 with errstr filled. */
int valctl_producer_prepare(rd_kafka_t *rk, const char *topic, int timeout_ms, char *errstr,
                            size_t errstr_size);

/* Produce one message (value and key copied) with the given headers, whose
 * ownership passes to the message on success. On -1 the headers are still
 * the caller's. When the local queue is full it polls and retries until
 * deadline_us (monotonic). msg_opaque reaches the delivery callback. */
int valctl_produce(rd_kafka_t *rk, const char *topic, int32_t partition, const void *key,
                   size_t key_len, const void *value, size_t value_len, rd_kafka_headers_t *headers,
                   void *msg_opaque, int64_t deadline_us, char *errstr, size_t errstr_size);

/* The headers of a request: kafka_replyTopic (when reply_topic is not NULL),
 * kafka_correlationId, kafka_replyPartition (when >= 0), and the CloudEvents
 * binary-mode headers with ce_id = request_id and ce_source =
 * valctl/<requester>. Caller owns the result. */
rd_kafka_headers_t *valctl_request_headers(const char *reply_topic, const void *correlation_id,
                                           size_t correlation_len, int32_t reply_partition,
                                           const char *request_id, const char *requester);

/* A reader of every partition of one topic, without a consumer group,
 * starting at the high watermarks read when it is made (or at the beginning):
 * whatever is produced to the topic after valctl_tail_new() returns is seen. */
typedef struct valctl_tail valctl_tail;

valctl_tail *valctl_tail_new(const valctl_common *c, const char *topic, int from_beginning,
                             int timeout_ms, char *errstr, size_t errstr_size);
/* Up to max messages, waiting at most timeout_ms for the first; returns the
 * count. Caller destroys each with rd_kafka_message_destroy(). Messages that
 * are errors are returned too (m->err != 0). */
size_t valctl_tail_poll(valctl_tail *t, int timeout_ms, rd_kafka_message_t **msgs, size_t max);
int valctl_tail_partition_count(const valctl_tail *t);
/* The last error librdkafka reported for the reader, "" if none. */
const char *valctl_tail_last_error(const valctl_tail *t);
void valctl_tail_destroy(valctl_tail *t); /* NULL is a no-op */

/* The value of the last header named name, or -1 if absent. */
int valctl_header_get(const rd_kafka_message_t *m, const char *name, const void **value,
                      size_t *len);

/* ---- subcommands: argv[0] is the subcommand's name ---- */

int valctl_cmd_token(int argc, char **argv);
int valctl_cmd_keygen(int argc, char **argv);
int valctl_cmd_provision(int argc, char **argv);
int valctl_cmd_fleet(int argc, char **argv);
int valctl_cmd_record(int argc, char **argv);
int valctl_cmd_replay(int argc, char **argv);
int valctl_cmd_diff(int argc, char **argv);

/* ---- recordings: the lines of valctl record read back (recording.c) ---- */

/* The lines of a file ('-': stdin), one at a time. */
typedef struct valctl_lines valctl_lines;

/* NULL with errstr filled when the file cannot be opened. */
valctl_lines *valctl_lines_open(const char *path, char *errstr, size_t errstr_size);
/* The next line without its line end: 1 with *line (borrowed until the
 * next call), *len, *line_no (from 1) and *complete (0 when the file ended
 * without a newline: a line cut short, or a file written by hand); 0 at the
 * end; -1 on a read error (errno). */
int valctl_lines_next(valctl_lines *r, char **line, size_t *len, size_t *line_no, int *complete);
/* 1 when the file can be read twice (a regular file, not stdin or a pipe). */
int valctl_lines_seekable(const valctl_lines *r);
/* Back to the first line; 0, or -1 when the file cannot be read again. */
int valctl_lines_rewind(valctl_lines *r);
void valctl_lines_close(valctl_lines *r); /* NULL is a no-op */

typedef struct {
	char *name;
	unsigned char *value; /* NULL for a null value */
	size_t len;
	int is_null;
} valctl_recheader;

/* One recorded message. Owned; free with valctl_recline_clear(). Absent
 * numbers are -1; the buffers of key and value are NUL-terminated beyond
 * their length (NULL when null). */
typedef struct {
	char *topic; /* NULL when absent */
	int32_t partition;
	int64_t offset;
	int64_t timestamp; /* ms since the epoch */
	unsigned char *key;
	size_t key_len;
	int key_null;
	unsigned char *value;
	size_t value_len;
	int value_null;
	valctl_recheader *headers;
	size_t header_count;
} valctl_recline;

/* Members a line must have besides key, value and headers. */
enum {
	VALCTL_RECLINE_TOPIC = 1u << 0,
	VALCTL_RECLINE_PARTITION = 1u << 1,
	VALCTL_RECLINE_TIMESTAMP = 1u << 2
};

/* Parse one line: 0 and *out, or -1 with errstr saying what is wrong (not
 * JSON, a member missing or of the wrong type, base64 that does not
 * decode) and *out empty. */
int valctl_recline_parse(const char *text, size_t len, unsigned need, valctl_recline *out,
                         char *errstr, size_t errstr_size);
void valctl_recline_clear(valctl_recline *l); /* frees the members; NULL ok */

/* ---- re-signing the access token of a recorded request (resign.c) ---- */

typedef struct valctl_resigner valctl_resigner;

/* Re-mint tokens with the private key in key_file under issuer iss and key
 * id kid (NULL: no kid). verify_file (NULL: none) is an issuers file as the
 * KM-S reads it: when given, only tokens whose signature verifies against
 * it are re-minted. NULL with errstr filled. */
valctl_resigner *valctl_resigner_new(const char *key_file, const char *iss, const char *kid,
                                     const char *verify_file, char *errstr, size_t errstr_size);
void valctl_resigner_destroy(valctl_resigner *r); /* NULL is a no-op */

typedef enum {
	VALCTL_RESIGN_DONE = 0,    /* *out holds the value with a new token */
	VALCTL_RESIGN_NOT_REQUEST, /* not a request that decodes: kept as it is */
	VALCTL_RESIGN_TOKEN_KEPT,  /* a request whose token is not re-minted */
	VALCTL_RESIGN_ERROR = -1   /* out of memory or signing failed: errstr */
} valctl_resign_result;

/* The value with its access token re-minted: the same header members but
 * alg and kid, the same claims but iss (= the resigner's) and the time
 * claims iat, nbf and exp moved by shift_s seconds, signed with the key;
 * every other byte of the value as it was (the token is replaced where it
 * lies in the Avro datum, in either framing). On VALCTL_RESIGN_DONE *out
 * is malloc'd (caller frees); otherwise *out is NULL and *why says why the
 * value is kept (a static string). */
valctl_resign_result valctl_resign_value(const valctl_resigner *r, const unsigned char *value,
                                         size_t len, int64_t shift_s, unsigned char **out,
                                         size_t *out_len, const char **why, char *errstr,
                                         size_t errstr_size);

/* ---- shared by token and fleet (token.c) ---- */

typedef struct {
	const char *iss;
	const char *client_id;
	const char *vsp_id;
	const char *scope; /* space-separated */
	int64_t ttl_s;
	int skeyprov; /* 1: SKeyProv true; 0: no SKeyProv claim */
} valctl_token_claims;

/* The payload of an access token as a new JSON object (iat, nbf = now,
 * exp = now + ttl, a random jti); NULL with errstr filled. Caller decrefs. */
json_t *valctl_token_payload(const valctl_token_claims *tc, char *errstr, size_t errstr_size);

/* Sign payload with key_pem; a malloc'd token or NULL with errstr filled. */
char *valctl_token_sign(const char *key_pem, jwt_alg alg, const char *kid, const json_t *payload,
                        char *errstr, size_t errstr_size);

#endif
