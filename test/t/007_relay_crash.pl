# Crash safety of the relay.  A relay batch is one transaction (lock,
# NOTIFY, acknowledge), so a crash never loses or half-publishes one.
#  1. kill -9 the relay worker in the middle of a batch (it deleted the
#     messages and queued their NOTIFYs, uncommitted): the server restarts,
#     nothing of that batch was published or acknowledged, and afterwards
#     every message is delivered once and acknowledged.
#  2. kill -9 the postmaster with messages pending: after recovery they are
#     delivered.
# NOTIFY reaches only connected listeners, and the crash disconnects ours
# for a moment; the route is paused before each crash so that nothing is
# relayed until the listener is back, then resumed.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use JSON::PP;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use EventStoreTest;

my $node = PostgreSQL::Test::Cluster->new('relay_crash');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'event_store'
event_store.relay_batch_size = 2000
event_store.restart_time = 1
restart_after_crash = on
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION event_store;
	SELECT event_store.relay_route('jobs', 'notify:jobs');
});
ok($node->poll_query_until('postgres',
		q{SELECT EXISTS (SELECT FROM event_store.relay_workers WHERE kind = 'relay' AND pid IS NOT NULL)}),
	'the relay worker runs');

my $listener = start_listener($node, 'postgres', 'jobs');

sub received_ids
{
	my %ids;
	$ids{ decode_json($_->[1])->{id} }++ foreach listener_lines($listener);
	return \%ids;
}

# 1. Catch the relay in the middle of a batch: the 1,000th message is too
# large for NOTIFY, so the relay copies it to relay_parked after queueing
# the NOTIFYs of the 999 before it.  A session holding an exclusive lock on
# relay_parked makes it wait there, inside the batch's transaction.
my $blocker = $node->background_psql('postgres');
$blocker->query_safe(q{BEGIN; LOCK TABLE event_store.relay_parked IN ACCESS EXCLUSIVE MODE});
$node->safe_psql('postgres', q{
	SELECT count(event_store.outbox_send('jobs',
		CASE WHEN n = 1000 THEN jsonb_build_object('n', n, 'big', repeat('x', 10000))
			 ELSE jsonb_build_object('n', n) END))
	FROM generate_series(1, 5000) AS n;
});
my $sent = 5000;
ok( $node->poll_query_until(
		'postgres', q{
	SELECT EXISTS (SELECT FROM pg_locks AS l JOIN event_store.relay_workers AS w ON w.pid = l.pid
				   WHERE NOT l.granted)}),
	'the relay waits inside its batch transaction');
is($node->safe_psql('postgres', q{SELECT count(*) FROM event_store.outbox}),
	'5000', 'its batch is not committed: every message is still there for others');
$node->safe_psql('postgres', q{SELECT event_store.relay_pause('jobs')});
my $pid = $node->safe_psql('postgres',
	q{SELECT pid FROM event_store.relay_workers WHERE kind = 'relay'});
kill 'KILL', $pid;

ok($node->poll_query_until('postgres',
		q{SELECT EXISTS (SELECT FROM event_store.relay_workers WHERE kind = 'relay' AND pid IS NOT NULL)}),
	'after kill -9 of the relay, the server and the relay worker are back');
is(scalar(listener_lines($listener)), 0,
	'nothing of the interrupted batch was published (NOTIFY goes out at commit)');
is($node->safe_psql('postgres', q{SELECT count(*) FROM event_store.outbox}),
	'5000', 'nothing of it was acknowledged');

# The listener reconnects by itself; wait for it, then resume.
usleep(500_000);
$node->safe_psql('postgres', q{SELECT event_store.relay_resume('jobs')});
ok($node->poll_query_until('postgres', q{SELECT NOT EXISTS (SELECT FROM event_store.outbox)}),
	'every message was acknowledged');
wait_for_lines($listener, $sent, 60);
my $ids = received_ids();
is(scalar(keys %$ids), $sent, "every message was delivered ($sent)");
is(scalar(grep { $ids->{$_} > 1 } keys %$ids), 0, 'none twice');
eval { $blocker->quit; };

# 2. kill -9 the postmaster with messages pending.
$node->safe_psql('postgres', q{SELECT event_store.relay_pause('jobs')});
$node->safe_psql('postgres',
	q{SELECT count(event_store.outbox_send('jobs', jsonb_build_object('pending', n))) FROM generate_series(1, 500) AS n}
);
my $first_pending = $node->safe_psql('postgres', q{SELECT min(id) FROM event_store.outbox});
crash_and_restart($node);
is($node->safe_psql('postgres', q{SELECT count(*) FROM event_store.outbox}),
	'500', 'the pending messages survived the crash');
ok($node->poll_query_until('postgres',
		q{SELECT EXISTS (SELECT FROM event_store.relay_workers WHERE kind = 'relay' AND pid IS NOT NULL)}),
	'the relay worker is back after recovery');
usleep(500_000);
$node->safe_psql('postgres', q{SELECT event_store.relay_resume('jobs')});
ok($node->poll_query_until('postgres', q{SELECT NOT EXISTS (SELECT FROM event_store.outbox)}),
	'they are relayed after recovery');
wait_for_lines($listener, $sent + 500, 30);
$ids = received_ids();
is(scalar(grep { $_ >= $first_pending } keys %$ids), 500, 'and the listener received all of them');

stop_listener($listener);
$node->stop;
done_testing();
