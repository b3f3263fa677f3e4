/*
 * check: the unit tests' few macros. A suite is a table of { name, fn };
 * main() runs each case and prints one line per case and the closing line
 * "N passed, N failed". A case fails at its first failed CHECK.
 */
#ifndef KMS_CHECK_H
#define KMS_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
	const char *name;
	int (*fn)(void); /* 0 pass, -1 fail */
} check_case;

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "    %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__,       \
			        #cond);                                                            \
			return -1;                                                                 \
		}                                                                                  \
	} while (0)

#define CHECK_STR(a, b)                                                                            \
	do {                                                                                       \
		const char *check_a_ = (a), *check_b_ = (b);                                       \
		if (check_a_ == NULL || check_b_ == NULL || strcmp(check_a_, check_b_) != 0) {     \
			fprintf(stderr, "    %s:%d: \"%s\" != \"%s\"\n", __FILE__, __LINE__,       \
			        check_a_ ? check_a_ : "(null)", check_b_ ? check_b_ : "(null)");   \
			return -1;                                                                 \
		}                                                                                  \
	} while (0)

#define CHECK_INT(a, b)                                                                            \
	do {                                                                                       \
		long long check_a_ = (long long)(a), check_b_ = (long long)(b);                    \
		if (check_a_ != check_b_) {                                                        \
			fprintf(stderr, "    %s:%d: %s == %lld, expected %lld\n", __FILE__,        \
			        __LINE__, #a, check_a_, check_b_);                                 \
			return -1;                                                                 \
		}                                                                                  \
	} while (0)

static inline int check_run(const char *suite, const check_case *cases, size_t n)
{
	size_t passed = 0, failed = 0;
	for (size_t i = 0; i < n; i++) {
		int rc = cases[i].fn();
		printf("%s %s.%s\n", rc == 0 ? "PASS" : "FAIL", suite, cases[i].name);
		if (rc == 0)
			passed++;
		else
			failed++;
	}
	printf("%zu passed, %zu failed\n", passed, failed);
	fflush(stdout);
	return failed == 0 ? 0 : 1;
}

/* Make a fresh folder named PREFIX plus six random characters under
 * $TMPDIR (default /tmp) into out (size bytes). Returns 0, or -1. */
static inline int check_tempdir(char *out, size_t size, const char *prefix)
{
	const char *tmp = getenv("TMPDIR");
	int n = snprintf(out, size, "%s/%s", tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp", prefix);
	if (n < 0 || (size_t)n + 7 > size)
		return -1;
	/* mkdtemp replaces the six trailing 'X' */
	memset(out + n, 'X', 6);
	out[n + 6] = '\0';
	return mkdtemp(out) != NULL ? 0 : -1;
}

#define CHECK_MAIN(suite, cases)                                                                   \
	int main(void)                                                                             \
	{                                                                                          \
		return check_run(suite, cases, sizeof cases / sizeof cases[0]);                    \
	}

#endif
