# SEAL KM-S provisioning service.
#
#   make                      build every binary into build/
#   make SANITIZE=address,undefined   the same with sanitizers, into build/san/
#   make test                 install what is missing, start the stack, run
#                             every test layer, stop the stack (a stack that
#                             was already running is left running)
#   make unit                 the C unit tests (no I/O, no stack)
#   make integration          the C integration suites, against the stack
#   make run / make stop      the service and a demo on the local stack
#   make bench                the benchmark
#   make fuzz FUZZ_SECONDS=N  each libFuzzer target for N seconds
#   make golden               regenerate the golden corpus (tests/fixtures/golden)
#   make format-check         clang-format, without changing anything

CC ?= cc
SANITIZE ?=
ifeq ($(SANITIZE),)
BUILD ?= build
else
BUILD ?= build/san
endif
OBJ := $(BUILD)/obj
GEN := $(BUILD)/gen

PKGS := rdkafka avro-c jansson libpq libmicrohttpd openssl libcurl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null | sed 's/-I/-isystem /g')
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN := -std=c11 -Wall -Wextra -Wpedantic -Wshadow -Wformat=2 -Wstrict-prototypes \
	-Wmissing-prototypes -Wvla -Werror
CPPFLAGS += -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Iservices/common -Iservices/kms
CFLAGS ?= -O2 -g
ALL_CFLAGS := $(WARN) $(CFLAGS) $(PKG_CFLAGS) -MMD -MP
LDLIBS += $(PKG_LIBS) -lm -lpthread
ifneq ($(SANITIZE),)
ALL_CFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=$(SANITIZE)
endif

# kms_build_info: the project's version from git, avro-c's from pkg-config
# (avro-c has no call that tells it).
KMS_VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo unknown)
AVRO_C_VERSION := $(shell pkg-config --modversion avro-c 2>/dev/null || echo unknown)

COMMON_SRC := $(wildcard services/common/*.c)
KMS_LIB_SRC := $(filter-out services/kms/main.c,$(wildcard services/kms/*.c))
CORE_SRC := $(COMMON_SRC) $(KMS_LIB_SRC)
CORE_OBJ := $(CORE_SRC:%.c=$(OBJ)/%.o) $(OBJ)/gen/schemas.o $(OBJ)/gen/migrations.o \
	$(OBJ)/gen/batch_sql.o
CORE_LIB := $(BUILD)/libkmscore.a

SCHEMAS := $(sort $(wildcard schemas/*.avsc))
MIGRATIONS := $(sort $(wildcard services/kms/migrations/*.sql))
BATCH_SQL := $(sort $(wildcard services/kms/sql/*.sql))

PROGRAMS := $(BUILD)/kms $(BUILD)/kmsctl $(BUILD)/valctl $(BUILD)/tests/smoke \
	$(BUILD)/tests/kms-failpoints $(BUILD)/tests/resolve_tool
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
UNIT_HELPER_OBJ := $(patsubst %.c,$(OBJ)/%.o,$(filter-out $(UNIT_SRC),$(wildcard tests/unit/*.c)))
# C suites that need the stack (run by scripts/test.sh's integration layer).
INTEGRATION_SRC := $(wildcard tests/integration/test_*.c)
INTEGRATION_BIN := $(INTEGRATION_SRC:tests/integration/%.c=$(BUILD)/tests/integration/%)

.PHONY: all test unit integration run stop bench fuzz golden format format-check clean
all: $(PROGRAMS) $(UNIT_BIN) $(INTEGRATION_BIN)

$(OBJ)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -c $< -o $@

$(GEN)/schemas.c: $(SCHEMAS) scripts/embed.sh
	@mkdir -p $(dir $@)
	sh scripts/embed.sh embedded_schemas $(SCHEMAS) > $@.tmp && mv $@.tmp $@

$(GEN)/migrations.c: $(MIGRATIONS) scripts/embed.sh
	@mkdir -p $(dir $@)
	sh scripts/embed.sh embedded_migrations $(MIGRATIONS) > $@.tmp && mv $@.tmp $@

$(GEN)/batch_sql.c: $(BATCH_SQL) scripts/embed.sh
	@mkdir -p $(dir $@)
	sh scripts/embed.sh embedded_batch_sql $(BATCH_SQL) > $@.tmp && mv $@.tmp $@

$(OBJ)/gen/%.o: $(GEN)/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -c $< -o $@

$(OBJ)/services/kms/metrics.o: CPPFLAGS += -DKMS_VERSION='"$(KMS_VERSION)"' \
	-DKMS_AVRO_C_VERSION='"$(AVRO_C_VERSION)"'

$(CORE_LIB): $(CORE_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/kms: $(OBJ)/services/kms/main.o $(CORE_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The KM-S of the crash tests: every file with a failpoint (the ones that
# test KMS_FAILPOINTS) built with -DKMS_FAILPOINTS, so that
# KMS_FAILPOINT=NAME kills the process at that point. Linked from objects
# only, those in place of their normal builds: with the archive, a normal
# build could be pulled in beside them. The production binary has no
# failpoint.
FAILPOINT_SRC := $(shell grep -l KMS_FAILPOINTS $(CORE_SRC))
FAILPOINT_OBJ := $(FAILPOINT_SRC:%.c=$(OBJ)/failpoints/%.o)
$(OBJ)/failpoints/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -DKMS_FAILPOINTS $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/tests/kms-failpoints: $(OBJ)/services/kms/main.o $(FAILPOINT_OBJ) \
		$(filter-out $(FAILPOINT_SRC:%.c=$(OBJ)/%.o),$(CORE_OBJ))
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/kmsctl: $(patsubst %.c,$(OBJ)/%.o,$(wildcard services/kmsctl/*.c)) $(CORE_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/valctl: $(patsubst %.c,$(OBJ)/%.o,$(wildcard services/valctl/*.c)) $(CORE_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Every unit test links the tests' shared helpers: the files of tests/unit
# that are not suites (testkeys.c, testcodec.c).
$(BUILD)/tests/%: $(OBJ)/tests/unit/%.o $(UNIT_HELPER_OBJ) $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# test_oom fails allocations on demand: the linker sends the project's calls
# to these functions to the test's wrappers (__wrap_malloc, ...), so no test
# hook is needed in the code itself.
comma := ,
OOM_WRAP := malloc calloc realloc strdup strndup
$(BUILD)/tests/test_oom: LDFLAGS += $(addprefix -Wl$(comma)--wrap=,$(OOM_WRAP))

# The integration suites share the unit tests' check.h.
$(OBJ)/tests/integration/%.o: CPPFLAGS += -Itests/unit
$(BUILD)/tests/integration/%: $(OBJ)/tests/integration/%.o $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The smoke test of the stack's libraries (run by the integration layer).
$(BUILD)/tests/smoke: $(OBJ)/tests/integration/smoke.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The resolve module on the command line, for the round trips against fastavro.
$(BUILD)/tests/resolve_tool: $(OBJ)/tests/integration/resolve_tool.o $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# C unit tests only (no stack needed).
unit: $(UNIT_BIN)
	@scripts/run-unit.sh $(UNIT_BIN)

# The C integration suites, against the stack of `eval "$(scripts/stack env)"`.
integration: $(INTEGRATION_BIN)
	@scripts/run-unit.sh $(INTEGRATION_BIN)

test:
	@scripts/test.sh

run:
	@scripts/run.sh

stop:
	@scripts/run.sh stop

bench: all
	@scripts/bench.sh

golden: all
	@scripts/golden.sh

FUZZ_SECONDS ?= 60
fuzz:
	@scripts/fuzz.sh $(FUZZ_SECONDS)

FORMAT_SRC = $(wildcard services/*/*.c services/*/*.h tests/unit/*.c tests/unit/*.h tests/fuzz/*.c \
	tests/integration/*.c)
format:
	clang-format -i $(FORMAT_SRC)

format-check:
	@clang-format --dry-run --Werror $(FORMAT_SRC)

clean:
	rm -rf build

-include $(shell find $(OBJ) -name '*.d' 2>/dev/null)
