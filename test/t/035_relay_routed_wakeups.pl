# Only sends to routed topics wake the relay.  A database with relay routes
# whose services also send to topics they consume with claims must not wake
# its worker at every one of those commits (each wake-up is a cycle of
# statements: about half a core at 9,000 sends/s).  And no wake-up that
# matters is lost: a send to a routed topic, to a topic routed after its
# message was sent, and with more routes than the relay remembers, is
# delivered at once (relay_naptime is one minute, so only a wake-up
# explains a delivery).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use FindBin;
use lib "$FindBin::RealBin/../perl";
use EventStoreTest;

my $node = PostgreSQL::Test::Cluster->new('routed_wakeups');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'event_store'
event_store.relay_naptime = '60s'
event_store.relay_idle_timeout = 3600
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION event_store;
	SELECT event_store.relay_route('routed', 'notify:routed');
	SELECT event_store.relay_route('late', 'notify:late');
	SELECT event_store.relay_unroute('late');
});
my $listener = start_listener($node, 'postgres', 'routed', 'late', 'many_40');

# The worker served the route changes and waits.
my $pid;
foreach (1 .. 300)
{
	$pid = $node->safe_psql('postgres', q{
		SELECT pid FROM pg_stat_activity
		WHERE backend_type LIKE 'event_store relay%' AND datname = 'postgres'});
	last if $pid ne '';
	usleep(100_000);
}
isnt($pid, '', 'the relay worker runs');
sleep 1;

sub cpu_ticks
{
	my @stat = split / /, slurp_file("/proc/$pid/stat");
	return $stat[13] + $stat[14];
}

# 5,000 committed sends to a topic without route.  Each cycle of the
# worker reports its steps' activity, so its state_change tells whether one
# ran since.
my $started = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
my $before = cpu_ticks();
$node->safe_psql('postgres', q{
DO $$
BEGIN
	FOR i IN 1..5000 LOOP
		PERFORM event_store.outbox_send('claimed_only', '{}');
		COMMIT;
	END LOOP;
END
$$});
my $ticks = cpu_ticks() - $before;
note "relay worker CPU during 5,000 sends to a topic without route: $ticks ticks";
is($node->safe_psql('postgres', qq{SELECT state_change < '$started' FROM pg_stat_activity WHERE pid = $pid}),
	't', 'sends to a topic without route do not wake the relay');

# A send to the routed topic is delivered at once.
$node->safe_psql('postgres', q{SELECT event_store.outbox_send('routed', '"now"')});
is(scalar(wait_for_lines($listener, 1, 10, 'routed')), 1,
	'a send to a routed topic wakes the relay');

# A message sent before its topic was routed goes when the route commits,
# and the next one at its own commit.
$node->safe_psql('postgres', q{SELECT event_store.outbox_send('late', '"before the route"')});
$node->safe_psql('postgres', q{SELECT event_store.relay_route('late', 'notify:late')});
is(scalar(wait_for_lines($listener, 1, 10, 'late')), 1,
	'a message sent before its route is relayed when the route commits');
$node->safe_psql('postgres', q{SELECT event_store.outbox_send('late', '"after the route"')});
is(scalar(wait_for_lines($listener, 2, 10, 'late')), 2,
	'a send to a newly routed topic wakes the relay');

# More routes than the relay remembers: every send wakes it.
$node->safe_psql('postgres', q{
	SELECT event_store.relay_route('many_' || n, 'notify:many_' || n) FROM generate_series(1, 40) AS n});
sleep 1;
$node->safe_psql('postgres', q{SELECT event_store.outbox_send('many_40', '"routed 40th"')});
is(scalar(wait_for_lines($listener, 1, 10, 'many_40')), 1,
	'with 40 routes a send to the last one wakes the relay');
is($node->safe_psql('postgres', q{SELECT count(*) FROM event_store.outbox WHERE topic <> 'claimed_only'}),
	'0', 'nothing routed is left behind');

stop_listener($listener);
$node->stop;
done_testing();
