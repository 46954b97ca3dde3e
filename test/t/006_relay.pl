# The relay workers, end to end: a LISTEN client (tools/es_listen) receives
# outbox messages and feed notifications; the worker is woken by commits
# (relay_naptime is one minute here, so polling cannot explain delivery);
# it keeps per-key order, sends oversized messages as references, quotes
# odd channel names, stops on unroute, picks up a new batch size on SIGHUP,
# is restarted after it is terminated, follows DROP/CREATE EXTENSION, and
# never blocks ALTER EXTENSION, DROP DATABASE or a fast shutdown.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use JSON::PP;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use EventStoreTest;

my $node = PostgreSQL::Test::Cluster->new('relay');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'event_store'
event_store.relay_naptime = '60s'
event_store.restart_time = 1
});
$node->start;

sub relay_pid
{
	my ($db) = @_;
	return $node->safe_psql($db,
		q{SELECT coalesce(pid, 0) FROM event_store.relay_workers WHERE kind = 'relay' AND database = current_database()}
	);
}

sub wait_until
{
	my ($db, $query, $what) = @_;
	ok($node->poll_query_until($db, $query), $what);
}

$node->safe_psql('postgres', 'CREATE EXTENSION event_store');
wait_until('postgres',
	q{SELECT EXISTS (SELECT FROM event_store.relay_workers WHERE kind = 'relay' AND pid IS NOT NULL)},
	'a relay worker starts after CREATE EXTENSION');
is( $node->safe_psql('postgres',
		q{SELECT string_agg(backend_type, ',' ORDER BY backend_type) FROM pg_stat_activity WHERE backend_type LIKE 'event_store%'}
	),
	'event_store launcher,event_store relay',
	'the workers show in pg_stat_activity with their backend_type');

$node->safe_psql('postgres', q{
	SELECT event_store.relay_route('orders', 'notify:orders');
	SELECT event_store.relay_route('odd', 'notify:odd "quoted" channel; name');
	SELECT event_store.subscription_create('billing', 'order');
});
my $listener = start_listener($node, 'postgres', 'orders', 'odd "quoted" channel; name',
	'event_store_feed', 'event_store_sub_billing');

# 300 keyed messages over several transactions, and one too large for NOTIFY.
my $t0 = time;
$node->safe_psql('postgres',
	q{SELECT count(event_store.outbox_send('orders', jsonb_build_object('n', n), 'k' || (n % 5))) FROM generate_series(1, 100) AS n}
) foreach 1 .. 3;
my $big_id = $node->safe_psql('postgres',
	q{SELECT event_store.outbox_send('orders', jsonb_build_object('big', repeat('x', 10000)), 'k0')});
my @orders = wait_for_lines($listener, 301, 30, 'orders');
my $elapsed = time - $t0;
is(scalar(@orders), 301, 'the listener received every message');
cmp_ok($elapsed, '<', 10, sprintf('without polling (naptime 60 s): %.2f s', $elapsed));

my @messages = map { decode_json($_->[1]) } @orders;
my %seen;
$seen{ $_->{id} }++ foreach @messages;
is(scalar(grep { $seen{$_} != 1 } keys %seen), 0, 'each message once');
my %last_of_key;
my $out_of_order = 0;
foreach my $m (@messages)
{
	$out_of_order++ if defined $last_of_key{ $m->{key} } && $m->{id} < $last_of_key{ $m->{key} };
	$last_of_key{ $m->{key} } = $m->{id};
}
is($out_of_order, 0, 'each key in id order');
my ($reference) = grep { $_->{id} == $big_id } @messages;
ok($reference->{reference} && !exists $reference->{payload},
	'the oversized message came as a reference');
is( $node->safe_psql('postgres', "SELECT length(payload->>'big') FROM event_store.relay_fetch($big_id)"),
	'10000', 'relay_fetch resolves the reference');
my ($first) = grep { $_->{id} != $big_id } @messages;
is_deeply([ sort keys %$first ], [qw(headers id key payload topic)],
	'a notification carries id, topic, key, payload and headers');
is($node->safe_psql('postgres', q{SELECT count(*) FROM event_store.outbox}),
	'0', 'relayed messages were acknowledged');

# Odd channel names are passed as they are, never interpolated.
$node->safe_psql('postgres', q{SELECT event_store.outbox_send('odd', '{"odd": true}')});
my @odd = wait_for_lines($listener, 1, 10, 'odd "quoted" channel; name');
is(scalar(@odd), 1, 'a channel with quotes, spaces and a semicolon receives its message');

# Feed and subscription wake-ups: a commit with events for the subscription.
$t0 = time;
$node->safe_psql('postgres', q{SELECT event_store.append_event('order-1', 'Placed', '{}')});
my @sub = wait_for_lines($listener, 1, 10, 'event_store_sub_billing');
$elapsed = time - $t0;
is(scalar(@sub), 1, 'the subscription channel was notified');
cmp_ok($elapsed, '<', 5, sprintf('woken by the commit: %.3f s', $elapsed));
my $head = $node->safe_psql('postgres', 'SELECT event_store.feed_head()');
is($sub[-1]->[1], $head, 'the payload is the feed head');
ok(scalar(wait_for_lines($listener, 1, 5, 'event_store_feed')) >= 1, 'the feed channel was notified');
$node->safe_psql('postgres', q{SELECT event_store.append_event('user-1', 'Joined', '{}')});
wait_for_lines($listener, 2, 5, 'event_store_feed');
is(scalar(grep { $_->[0] eq 'event_store_sub_billing' } listener_lines($listener)),
	1, 'events of another category do not wake the subscription');

# Unroute: nothing more is relayed; the message stays.
$node->safe_psql('postgres', q{SELECT event_store.relay_unroute('orders')});
$node->safe_psql('postgres', q{SELECT event_store.outbox_send('orders', '{"after": "unroute"}')});
sleep 1;
is(scalar(grep { $_->[0] eq 'orders' } listener_lines($listener)), 301, 'unrouted: not relayed');
is($node->safe_psql('postgres', q{SELECT count(*) FROM event_store.outbox WHERE topic = 'orders'}),
	'1', 'unrouted: the message stays in the outbox');

# SIGHUP: a new batch size.
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET event_store.relay_batch_size = 7;
	SELECT pg_reload_conf();
});
sleep 1;
$node->safe_psql('postgres', q{
	SELECT event_store.relay_route('orders', 'notify:orders');
	SELECT event_store.relay_pause('orders');
	SELECT count(event_store.outbox_send('orders', jsonb_build_object('n', n))) FROM generate_series(1, 48) AS n;
});
my $batches_before = $node->safe_psql('postgres',
	q{SELECT batches FROM event_store.relay_workers WHERE kind = 'relay'});
$node->safe_psql('postgres', q{SELECT event_store.relay_resume('orders')});
wait_until('postgres', q{SELECT NOT EXISTS (SELECT FROM event_store.outbox)}, 'resumed: relayed');
is( $node->safe_psql('postgres',
		"SELECT last_batch_size <= 7 AND batches - $batches_before >= 7 FROM event_store.relay_workers WHERE kind = 'relay'"
	),
	't',
	'the reloaded batch size is used (49 messages in batches of at most 7)');

# A terminated worker is restarted when there is work (event_store.restart_time = 1 s).
my $pid = relay_pid('postgres');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok($node->poll_query_until('postgres',
		"SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $pid)"), 'the worker was terminated');
$node->safe_psql('postgres', q{SELECT event_store.outbox_send('orders', '{"after": "restart"}')});
wait_until('postgres',
	"SELECT EXISTS (SELECT FROM event_store.relay_workers WHERE kind = 'relay' AND pid IS NOT NULL AND pid <> $pid)",
	'a terminated relay worker is restarted');
ok(scalar(wait_for_lines($listener, 351, 10, 'orders')) >= 351, 'the new worker relays');

# ALTER EXTENSION and DROP EXTENSION are not blocked; the worker leaves with
# the extension and comes back with it.
$t0 = time;
$node->safe_psql('postgres', 'ALTER EXTENSION event_store UPDATE');
cmp_ok(time - $t0, '<', 5, 'ALTER EXTENSION UPDATE is not blocked');
$t0 = time;
$node->safe_psql('postgres', 'DROP EXTENSION event_store CASCADE');
cmp_ok(time - $t0, '<', 5, 'DROP EXTENSION is not blocked');
ok( $node->poll_query_until(
		'postgres',
		q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'event_store relay'}),
	'the worker leaves the database with the extension');
$node->safe_psql('postgres', 'CREATE EXTENSION event_store');
wait_until('postgres',
	q{SELECT EXISTS (SELECT FROM event_store.relay_workers WHERE kind = 'relay' AND pid IS NOT NULL)},
	'and comes back with it');

# DROP DATABASE (without FORCE) succeeds while the database has a worker.
$node->safe_psql('postgres', 'CREATE DATABASE doomed');
$node->safe_psql('doomed', 'CREATE EXTENSION event_store');
wait_until('doomed',
	q{SELECT EXISTS (SELECT FROM event_store.relay_workers WHERE database = 'doomed' AND pid IS NOT NULL)},
	'the other database has its worker');
$t0 = time;
my ($ret, $stdout, $stderr) = $node->psql('postgres', 'DROP DATABASE doomed');
is($ret, 0, 'DROP DATABASE succeeds while its relay worker runs: ' . $stderr);
cmp_ok(time - $t0, '<', 10, sprintf('within seconds (%.2f s)', time - $t0));
ok($node->poll_query_until('postgres',
		q{SELECT NOT EXISTS (SELECT FROM event_store.relay_workers WHERE database = 'doomed')}),
	'its slot is released');
ok(!$node->log_contains(qr/database "doomed" is being accessed by other users/),
	'no session was in the way');

stop_listener($listener);
$t0 = time;
$node->stop('fast');
cmp_ok(time - $t0, '<', 10, 'fast shutdown with the workers running');
done_testing();
