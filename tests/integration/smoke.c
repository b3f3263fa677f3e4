/*
 * smoke: the stack's libraries against the real servers. Produces with lz4
 * and the idempotent producer, consumes in a consumer group with manual
 * offset store and commit, checks that headers round-trip, checks that the
 * committed offset is what was stored; then a libpq round trip with a
 * parameterized statement. Reads KMS_BOOTSTRAP and KMS_DSN. Prints one line
 * per check and "N passed, N failed".
 */
#include <librdkafka/rdkafka.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int passed, failed;

static void check(int ok, const char *what)
{
	printf("%s smoke.%s\n", ok ? "PASS" : "FAIL", what);
	if (ok)
		passed++;
	else
		failed++;
}

static int delivered;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	(void)opaque;
	if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
		delivered++;
}

static int kafka_smoke(const char *bootstrap)
{
	char errstr[512], topic[64], group[64];
	snprintf(topic, sizeof topic, "smoke.%ld.%d", (long)time(NULL), (int)getpid());
	snprintf(group, sizeof group, "smoke-group-%d", (int)getpid());

	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, sizeof errstr) ||
	    rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, sizeof errstr) ||
	    rd_kafka_conf_set(conf, "compression.codec", "lz4", errstr, sizeof errstr)) {
		fprintf(stderr, "producer conf: %s\n", errstr);
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
	if (p == NULL) {
		fprintf(stderr, "producer: %s\n", errstr);
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	const int n = 10;
	for (int i = 0; i < n; i++) {
		char value[32];
		snprintf(value, sizeof value, "value-%d", i);
		rd_kafka_headers_t *h = rd_kafka_headers_new(2);
		rd_kafka_header_add(h, "smoke-index", -1, value + 6, -1);
		rd_kafka_header_add(h, "smoke-bin", -1, "\x00\xff\x01", 3);
		if (rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY("k", 1),
		                      RD_KAFKA_V_VALUE(value, strlen(value)),
		                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
		                      RD_KAFKA_V_HEADERS(h),
		                      RD_KAFKA_V_END) != RD_KAFKA_RESP_ERR_NO_ERROR)
			rd_kafka_headers_destroy(h);
	}
	rd_kafka_flush(p, 30000);
	check(delivered == n, "idempotent_lz4_produce_delivered_10");
	rd_kafka_destroy(p);

	conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, sizeof errstr) ||
	    rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof errstr) ||
	    rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, sizeof errstr) ||
	    rd_kafka_conf_set(conf, "enable.auto.offset.store", "false", errstr, sizeof errstr) ||
	    rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof errstr)) {
		fprintf(stderr, "consumer conf: %s\n", errstr);
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
	if (c == NULL) {
		fprintf(stderr, "consumer: %s\n", errstr);
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	rd_kafka_poll_set_consumer(c);
	rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
	rd_kafka_subscribe(c, sub);
	rd_kafka_topic_partition_list_destroy(sub);

	int got = 0, headers_ok = 0;
	int64_t last_offset = -1;
	time_t until = time(NULL) + 60;
	while (got < n && time(NULL) < until) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 500);
		if (m == NULL)
			continue;
		if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
			rd_kafka_headers_t *h = NULL;
			const void *v;
			size_t len;
			if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR &&
			    rd_kafka_header_get_last(h, "smoke-bin", &v, &len) ==
			        RD_KAFKA_RESP_ERR_NO_ERROR &&
			    len == 3 && memcmp(v, "\x00\xff\x01", 3) == 0 &&
			    rd_kafka_header_get_last(h, "smoke-index", &v, &len) ==
			        RD_KAFKA_RESP_ERR_NO_ERROR &&
			    len == (size_t)(m->len - 6) &&
			    memcmp(v, (const char *)m->payload + 6, len) == 0)
				headers_ok++;
			rd_kafka_topic_partition_list_t *one = rd_kafka_topic_partition_list_new(1);
			rd_kafka_topic_partition_list_add(one, topic, m->partition)->offset =
			    m->offset + 1;
			rd_kafka_offsets_store(c, one);
			rd_kafka_topic_partition_list_destroy(one);
			last_offset = m->offset;
			got++;
		}
		rd_kafka_message_destroy(m);
	}
	check(got == n, "group_consume_10");
	check(headers_ok == n, "headers_round_trip");
	check(rd_kafka_commit(c, NULL, 0) == RD_KAFKA_RESP_ERR_NO_ERROR, "manual_commit");

	rd_kafka_topic_partition_list_t *committed = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(committed, topic, 0);
	int committed_ok = rd_kafka_committed(c, committed, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR &&
	                   committed->elems[0].offset == last_offset + 1;
	check(committed_ok, "committed_offset_is_stored_offset");
	rd_kafka_topic_partition_list_destroy(committed);
	rd_kafka_consumer_close(c);
	rd_kafka_destroy(c);
	return 0;
}

static void pg_smoke(const char *dsn)
{
	PGconn *conn = PQconnectdb(dsn);
	check(PQstatus(conn) == CONNECTION_OK, "pg_connect");
	const char *params[2] = {"O'Brien \\ %", "\xf0\x9f\x94\x91"};
	PGresult *r = PQexecParams(conn, "SELECT $1::text || $2::text, version()", 2, NULL, params,
	                           NULL, NULL, 0);
	int ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
	         strcmp(PQgetvalue(r, 0, 0), "O'Brien \\ %\xf0\x9f\x94\x91") == 0;
	check(ok, "pg_parameterized_round_trip");
	if (PQresultStatus(r) == PGRES_TUPLES_OK)
		printf("server: %s\n", PQgetvalue(r, 0, 1));
	check(PQresultStatus(r) == PGRES_TUPLES_OK &&
	          strstr(PQgetvalue(r, 0, 1), "PostgreSQL 15") != NULL,
	      "pg_server_is_15");
	PQclear(r);
	PQfinish(conn);
}

int main(void)
{
	const char *bootstrap = getenv("KMS_BOOTSTRAP");
	const char *dsn = getenv("KMS_DSN");
	if (bootstrap == NULL || dsn == NULL) {
		fprintf(stderr, "smoke: set KMS_BOOTSTRAP and KMS_DSN (scripts/stack env)\n");
		return 2;
	}
	printf("librdkafka %s\n", rd_kafka_version_str());
	if (kafka_smoke(bootstrap) != 0)
		failed++;
	pg_smoke(dsn);
	printf("%d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
