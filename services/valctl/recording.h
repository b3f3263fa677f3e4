/*
 * recording: the lines of valctl record read back, for replay and diff.
 */
#ifndef VALCTL_RECORDING_H
#define VALCTL_RECORDING_H

#include <stddef.h>
#include <stdint.h>

/* The lines of a file ('-': stdin), one at a time. */
typedef struct valctl_lines valctl_lines;

/* NULL with errstr filled when the file cannot be opened. */
valctl_lines *valctl_lines_open(const char *path, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));
/* The next line without its line end: 1 with *line (borrowed until the
 * next call), *len, *line_no (from 1) and *complete (0 when the file ended
 * without a newline: a line cut short, or a file written by hand); 0 at the
 * end; -1 on a read error (errno). */
int valctl_lines_next(valctl_lines *r, char **line, size_t *len, size_t *line_no, int *complete)
    __attribute__((warn_unused_result));
/* 1 when the file can be read twice (a regular file, not stdin or a pipe). */
int valctl_lines_seekable(const valctl_lines *r);
/* Back to the first line; 0, or -1 when the file cannot be read again. */
int valctl_lines_rewind(valctl_lines *r) __attribute__((warn_unused_result));
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
                         char *errstr, size_t errstr_size) __attribute__((warn_unused_result));
void valctl_recline_clear(valctl_recline *l); /* frees the members; NULL ok */

#endif
