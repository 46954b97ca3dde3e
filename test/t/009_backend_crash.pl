# kill -9 of a backend in the middle of its work; the postmaster restarts
# every backend and recovers.
#  - A batch append killed half-way through its inserts: none of its events
#    exist afterwards, and the store carries on (positions rising, versions
#    without gaps, the feed head covering everything).
#  - A claim whose transaction was still open: rolled back, the message is
#    available at once and the attempt does not count.
#  - A committed claim whose consumer dies: the message stays leased until
#    the lease expires, then goes to the next claimer with one more attempt.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('backend_crash');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'event_store'
restart_after_crash = on
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION event_store;
	SELECT event_store.append('batch-1', '[{"type": "Opened", "data": {}}]');
});

sub wait_until_waiting
{
	my ($pid) = @_;
	return $node->poll_query_until('postgres',
		"SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $pid");
}

sub recovered
{
	# The postmaster kills every backend, then restarts; wait for it.
	usleep(200_000);
	return $node->poll_query_until('postgres', 'SELECT true');
}

# --- A batch append killed half-way.
# Another session holds an uncommitted event with the id that the batch's
# 5,000th event reuses: the batch inserts 4,999 events, then waits on the
# unique index for that session.  It is killed while waiting.
my $holder = $node->background_psql('postgres');
$holder->query_safe(
	q{BEGIN; SELECT event_store.append_event('holder-1', 'T', '{}', NULL, NULL, 'dddddddd-0000-4000-8000-000000000001')}
);
my $appender = $node->background_psql('postgres');
my $appender_pid = $appender->query_safe('SELECT pg_backend_pid()');
$appender->query_until(
	qr/started/, q{\echo started
SELECT event_store.append('batch-1', (
	SELECT jsonb_agg(CASE WHEN n = 5000
		THEN jsonb_build_object('type', 'Item', 'data', n, 'id', 'dddddddd-0000-4000-8000-000000000001')
		ELSE jsonb_build_object('type', 'Item', 'data', n) END ORDER BY n)
	FROM generate_series(1, 10000) AS n), 0);
});
ok(wait_until_waiting($appender_pid), 'the batch append is waiting half-way through');
is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE pid = } . $appender_pid . q{ AND state = 'active'}),
	'1', 'inside its statement');
my $before = $node->safe_psql('postgres', 'SELECT max(position) FROM event_store.events');

kill 'KILL', $appender_pid;
ok(recovered(), 'the server recovered from kill -9 of the appending backend');
eval { $appender->quit; };
eval { $holder->quit; };

is($node->safe_psql('postgres', q{SELECT event_store.stream_version('batch-1')}),
	'0', 'none of the batch was written');
is($node->safe_psql('postgres', q{SELECT count(*) FROM event_store.events WHERE stream = 'holder-1'}),
	'0', 'the uncommitted event of the other session is gone too');
is( $node->safe_psql('postgres',
		q{SELECT event_store.append('batch-1', '[{"type": "Item", "data": 1}, {"type": "Item", "data": 2}]', 0)}),
	'2', 'the stream takes the next append at the right version');
is( $node->safe_psql('postgres',
		"SELECT min(position) > $before FROM event_store.events WHERE stream = 'batch-1' AND version > 0"),
	't', 'positions keep rising');
is( $node->safe_psql('postgres',
		q{SELECT string_agg(version::text, ',' ORDER BY version) FROM event_store.read_stream('batch-1')}),
	'0,1,2', 'versions have no gaps');
is( $node->safe_psql('postgres',
		q{SELECT event_store.feed_head() = max(position) FROM event_store.events}),
	't', 'the feed head covers every event: no reservation survived the crash');
is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM event_store.read_all()}),
	$node->safe_psql('postgres', q{SELECT count(*) FROM event_store.events}),
	'read_all shows every committed event');

# --- A claim whose transaction was still open.
$node->safe_psql('postgres', q{SELECT event_store.outbox_send('jobs', '{"n": 1}')});
my $consumer = $node->background_psql('postgres');
my $consumer_pid = $consumer->query_safe('SELECT pg_backend_pid()');
$consumer->query_safe(q{BEGIN; SELECT count(*) FROM event_store.outbox_claim('jobs', 10, '1 hour')});
kill 'KILL', $consumer_pid;
ok(recovered(), 'the server recovered from kill -9 of a consumer inside its claim');
eval { $consumer->quit; };
is( $node->safe_psql('postgres', q{SELECT attempts FROM event_store.outbox WHERE topic = 'jobs'}),
	'0', 'the uncommitted claim was rolled back: the attempt does not count');

# --- A committed claim whose consumer dies holding its lease.  A claim
# commits asynchronously; another session's durable commit flushes it
# before the crash (README, "Claims and crashes").
$consumer = $node->background_psql('postgres');
$consumer_pid = $consumer->query_safe('SELECT pg_backend_pid()');
is($consumer->query_safe(q{SELECT attempts FROM event_store.outbox_claim('jobs', 10, '2 seconds')}),
	'1', 'available at once, the message is claimed by a new consumer');
$node->safe_psql('postgres', q{SELECT event_store.outbox_send('other', '{}')});
kill 'KILL', $consumer_pid;
ok(recovered(), 'the server recovered from kill -9 of a consumer holding a lease');
eval { $consumer->quit; };
is($node->safe_psql('postgres', q{SELECT count(*) FROM event_store.outbox_claim('jobs', 10)}),
	'0', 'the message stays leased after the crash');
sleep 2;
is($node->safe_psql('postgres', q{SELECT attempts FROM event_store.outbox_claim('jobs', 10)}),
	'2', 'once the lease expired, the next claim gets it, with one more attempt');

$node->stop;
done_testing();
