# ALTER EXTENSION event_store UPDATE from every released version, on a
# database full of data with the relay running: the updated catalog equals
# a fresh install's (test/upgrade/catalog.sql), the data is intact, appends
# continue, and the relay delivers what was waiting.  Before the update,
# the library refuses to work on the old SQL objects.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use EventStoreTest;

my $catalog_sql = "$FindBin::RealBin/../upgrade/catalog.sql";

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'event_store'
event_store.restart_time = 1
});
$node->start;

sub catalog
{
	my ($db) = @_;
	return $node->safe_psql($db, slurp_file($catalog_sql));
}

# Fill a 0.1 install the way 0.1 left its tables: the library of this
# release refuses the 0.1 functions, so the rows are written as 0.1 wrote
# them.
sub fill_0_1
{
	my ($db) = @_;
	$node->safe_psql($db, q{
		INSERT INTO event_store.events
			(position, stream, version, type, data, metadata, id, recorded_at)
		SELECT g, 'order-' || (g % 3), (g - 1) / 3, 'Placed',
			jsonb_build_object('n', g), CASE WHEN g % 2 = 0 THEN '{"m": 1}'::jsonb END,
			md5(g::text)::uuid, '2026-01-01'::timestamptz + g * interval '1 s'
		FROM generate_series(1, 30) g;
		INSERT INTO event_store.subscriptions (name, category, group_size)
			VALUES ('billing', 'order', 2), ('all', NULL, 1), ('ahead', NULL, 1);
		-- 'ahead' checkpointed a head above the last event (rolled back tail)
		INSERT INTO event_store.subscription_checkpoints (subscription, member, position)
			VALUES ('billing', 0, 12), ('billing', 1, 9), ('all', 0, 30), ('ahead', 0, 33);
		SELECT setval('event_store.outbox_id_seq', 5);
		INSERT INTO event_store.outbox
			(id, topic, key, payload, headers, attempts, created_at, available_at)
			VALUES (4, 'upg', 'k1', '{"a": 4}', '{"h": "x"}', 2, now(), now()),
			       (5, 'upg', NULL, '{"a": 5}', NULL, 0, now(), now());
		INSERT INTO event_store.outbox_dead_letters
			(id, topic, key, payload, headers, attempts, created_at, last_error)
			VALUES (3, 'upg', 'k0', '{"a": 3}', NULL, 10, now(), 'boom');
		INSERT INTO event_store.outbox_topics (topic, max_attempts, lease)
			VALUES ('upg', 3, '5 seconds');
		INSERT INTO event_store.event_routes (category, event_type, topic)
			VALUES ('order', NULL, 'orders-out');
		INSERT INTO event_store.relay_routes (topic, sink) VALUES ('upg', 'notify:upg');
	});
}

# Released versions: each is installed, filled and updated to the current
# one, in a database of its own.
my @released = ('0.1');

$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION event_store');
my $current = $node->safe_psql('fresh',
	q{SELECT extversion FROM pg_extension WHERE extname = 'event_store'});
my $fresh_catalog = catalog('fresh');
like($fresh_catalog, qr/^function event_store\.append_event/m,
	'the catalog description lists the functions');

foreach my $version (@released)
{
	my $db = "from_$version";
	$db =~ s/\./_/g;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, "CREATE EXTENSION event_store VERSION '$version'");
	fill_0_1($db);

	my ($ret, $stdout, $stderr) = $node->psql($db,
		q{SELECT event_store.append_event('order-9', 'Placed', '{}')});
	isnt($ret, 0, "$version: the library refuses the $version objects");
	like($stderr,
		qr/extension "event_store" is at version "$version" but its library is version "$current".*HINT:  Run ALTER EXTENSION event_store UPDATE/s,
		"$version: the refusal says what to run");

	my $listener = start_listener($node, $db, 'upg');
	$node->safe_psql($db, 'ALTER EXTENSION event_store UPDATE');
	is($node->safe_psql($db,
			q{SELECT extversion FROM pg_extension WHERE extname = 'event_store'}),
		$current, "$version: updated to $current");

	is(catalog($db), $fresh_catalog,
		"$version: the updated catalog equals a fresh install's");

	is( $node->safe_psql($db, q{
			SELECT count(*) || ' ' || sum(position) || ' ' || max(version) || ' ' ||
				count(metadata) || ' ' || min(recorded_at)
			FROM event_store.events}),
		'30 465 9 15 2026-01-01 00:00:01+00',
		"$version: the events are intact");
	is( $node->safe_psql($db, q{
			SELECT string_agg(subscription || ':' || member || '=' || position, ','
				ORDER BY subscription, member)
			FROM event_store.subscription_checkpoints}),
		'ahead:0=33,all:0=30,billing:0=12,billing:1=9',
		"$version: the checkpoints are intact");
	is( $node->safe_psql($db, q{
			SELECT (SELECT string_agg(id || '/' || topic, ',') FROM event_store.outbox_dead_letters) || ' ' ||
				(SELECT max_attempts FROM event_store.outbox_topics WHERE topic = 'upg') || ' ' ||
				(SELECT count(*) FROM event_store.event_routes)}),
		'3/upg 3 1',
		"$version: dead letters, topic settings and event routes are intact");

	is($node->safe_psql($db,
			q{SELECT last_value || ' ' || is_called FROM event_store.position_high_water}),
		'33 true', "$version: the high-water mark of positions starts at the largest position or checkpoint");

	is($node->safe_psql($db,
			q{SELECT event_store.append_event('order-1', 'Shipped', '{}', expected_version => 9)}),
		'10', "$version: an append continues the stream's versions");
	cmp_ok($node->safe_psql($db,
			q{SELECT max(position) FROM event_store.events WHERE stream = 'order-1'}),
		'>', 33, "$version: a new position is above every position and checkpoint of $version");
	is($node->safe_psql($db,
			q{SELECT count(*) FROM event_store.read_all(0, 1000)}),
		'31', "$version: the feed shows every event");
	is($node->safe_psql($db, q{
			SELECT event_store.outbox_ack(ARRAY[event_store.outbox_send('by_id', '{}')])}),
		'1', "$version: an operator's acknowledgement by id, as $version wrote it, still works");

	$node->safe_psql($db, q{SELECT event_store.subscription_drop('ahead')});
	is($node->safe_psql($db,
			q{SELECT count(*) FROM event_store.subscription_checkpoints WHERE subscription = 'ahead'}),
		'0', "$version: dropping a subscription still removes its checkpoints");

	my @got = wait_for_lines($listener, 2, 30, 'upg');
	is(scalar(@got), 2, "$version: the relay delivers the messages that waited");
	stop_listener($listener);
}

done_testing();
