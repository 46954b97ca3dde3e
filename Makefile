# event_store: PGXS build.
#
#   make && make install      build and install into the server of pg_config
#   make installcheck         regression and isolation suites on a throwaway
#                             cluster with the library preloaded (run as a
#                             non-root user that can run initdb)
#   make installcheck-valgrind  the regression suite under valgrind
#   scripts/test.sh           every suite, with the packages it needs

# event_store, and the optional layers that give it other stores' APIs
# (each requires event_store; their sources are sql/message_db.sql and
# sql/pgmq.sql, versioned with event_store).
EXTENSION = event_store event_store_message_db event_store_pgmq
EXTVERSION = $(shell grep default_version event_store.control | sed -e "s/default_version[[:space:]]*=[[:space:]]*'\([^']*\)'/\1/")

MODULE_big = event_store
OBJS = \
	src/append.o \
	src/args.o \
	src/event_store.o \
	src/feed.o \
	src/feed_announce.o \
	src/guc.o \
	src/ids.o \
	src/launcher.o \
	src/lifecycle.o \
	src/outbox.o \
	src/outbox_claim.o \
	src/outbox_claim_start.o \
	src/outbox_topics.o \
	src/outbox_xact.o \
	src/plans.o \
	src/read.o \
	src/read_feed.o \
	src/relay.o \
	src/relay_state.o \
	src/replica.o \
	src/result_store.o \
	src/route.o \
	src/schema.o \
	src/shmem.o \
	src/sink_amqp.o \
	src/sink_config.o \
	src/sink_http.o \
	src/sink_kafka.o \
	src/sink_notify.o \
	src/stream.o \
	src/subscription.o \
	src/utility_hook.o \
	src/wakeup.o \
	src/writer.o

# The install scripts of the current version are built from their sources:
# event_store's from sql/install/, each layer's from its file in sql/.
# Released versions' scripts are frozen, upgrade scripts chain them.
DATA_built = sql/event_store--$(EXTVERSION).sql \
	sql/event_store_message_db--$(EXTVERSION).sql \
	sql/event_store_pgmq--$(EXTVERSION).sql
DATA = $(filter-out $(DATA_built),$(wildcard sql/event_store--*.sql sql/event_store_*--*.sql))
EXTRA_CLEAN = $(DATA_built)

# Regression tests run in this order, in one database; setup comes first.
# Their inputs and expected outputs are where PGXS looks: sql/ and expected/
# (beside the install scripts); their results go to test/output_regress.
REGRESS = setup append append_event read_stream delete_stream bad_input \
	read_all read_category subscriptions outbox outbox_receipts outbox_queue \
	event_routes relay relay_sinks stream_lifecycle feed_filters wal_topics
REGRESS_OPTS = --inputdir=. --outputdir=test/output_regress \
	--temp-instance=test/tmp_check_regress --temp-config=test/preload.conf \
	--load-extension=event_store

ISOLATION = $(patsubst test/specs/%.spec,%,$(sort $(wildcard test/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test --outputdir=test/output_iso \
	--temp-instance=test/tmp_check_iso --temp-config=test/preload.conf \
	--load-extension=event_store

PG_CPPFLAGS = -I$(srcdir)/src
# The Kafka and AMQP sinks (librdkafka-dev, librabbitmq-dev).
SHLIB_LINK = -lrdkafka -lrabbitmq -lcurl
PG_CFLAGS = -Wall -Wmissing-prototypes -Werror=implicit-function-declaration

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# event_store's install script: the files of sql/install/ in the order of
# their names, one concern each.
INSTALL_SOURCES = $(sort $(wildcard sql/install/*.sql))
sql/event_store--$(EXTVERSION).sql: $(INSTALL_SOURCES)
	awk 'FNR == 1 && NR > 1 { print "" } { print }' $(INSTALL_SOURCES) > $@

sql/event_store_message_db--$(EXTVERSION).sql: sql/message_db.sql
	cp $< $@

sql/event_store_pgmq--$(EXTVERSION).sql: sql/pgmq.sql
	cp $< $@

# One target per suite, so scripts/test.sh can report them separately.
PROVE_TESTS = test/t/*.pl
PROVE_FLAGS = -v

.PHONY: installcheck-regress installcheck-isolation installcheck-tap
installcheck-regress:
	$(pg_regress_installcheck) $(REGRESS_OPTS) $(REGRESS)

installcheck-isolation:
	$(pg_isolation_regress_installcheck) $(ISOLATION_OPTS) $(ISOLATION)

installcheck-tap:
	$(prove_installcheck)

# Command-line tools built from tools/ (libpq clients for tests and bench).
LIBPQ_CFLAGS = -I$(shell $(PG_CONFIG) --includedir)
LIBPQ_LIBS = -L$(shell $(PG_CONFIG) --libdir) -lpq -lpthread -lm
TOOLS = tools/es_listen tools/es_relay_bench tools/es_amqp_consume tools/es_kafka_mock \
	tools/es_filter_bench tools/es_wal_messages
EXTRA_CLEAN += $(TOOLS)

all: $(TOOLS)

tools/%: tools/%.c tools/tools_common.h
	$(CC) $(CFLAGS) -Wall -O2 $(LIBPQ_CFLAGS) -o $@ $< $(LIBPQ_LIBS)

# Test helpers of the AMQP and Kafka sinks: a queue consumer, and a host of
# librdkafka's mock Kafka cluster.
tools/es_amqp_consume: tools/es_amqp_consume.c
	$(CC) $(CFLAGS) -Wall -O2 -o $@ $< -lrabbitmq

tools/es_kafka_mock: tools/es_kafka_mock.c
	$(CC) $(CFLAGS) -Wall -O2 -o $@ $< -lrdkafka

# PGXS does not track header dependencies: every object depends on the
# shared header, so that a change of a shared struct rebuilds them all.
$(OBJS): src/compat.h src/event_store.h src/guc.h src/outbox.h src/sink.h src/sink_named.h

# The regression suite against a server under valgrind, with the build
# installed (build it with COPT=-O0 first; scripts/valgrind.sh does it all,
# as root).  About a minute on 2 cores; not part of installcheck.
.PHONY: installcheck-valgrind print-regress
installcheck-valgrind:
	bash test/valgrind.sh

# The regression tests, for test/valgrind.sh.
print-regress:
	@echo $(REGRESS)

# The PGXN release archive, built from the committed tree (META.json gives
# the version, which must match default_version of the control file).
DISTVERSION = $(shell sed -n 's/^   "version": "\([^"]*\)",$$/\1/p' META.json)
.PHONY: dist
dist:
	git archive --format zip --prefix=event_store-$(DISTVERSION)/ -o event_store-$(DISTVERSION).zip HEAD
