# pg_dump (custom and plain format), pg_restore and pg_dumpall carry every
# event, subscription, checkpoint, outbox message, dead letter, topic
# setting and route.  In the restored database the feed shows every event
# from the first read, appends continue at the right versions, and new
# positions and outbox ids are above every restored one (and above every
# head the original showed), so a consumer's read model restored with its
# last position stays consistent.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use EventStoreTest;

my $conf = q{
shared_preload_libraries = 'event_store'
event_store.restart_time = 1
};
my $node = PostgreSQL::Test::Cluster->new('backup');
$node->init;
$node->append_conf('postgresql.conf', $conf);
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql('src', q{
CREATE EXTENSION event_store;
SELECT event_store.route_events('orders-out', 'order');
SELECT event_store.relay_route('relayed', 'notify:relayed');
SELECT event_store.relay_pause('relayed');
SELECT event_store.outbox_configure('jobs', max_attempts => 2, lease => '10 minutes');
SELECT event_store.outbox_configure('fragile', max_attempts => 1);
SELECT event_store.append('order-' || g % 7,
	jsonb_build_array(jsonb_build_object('type', 'Placed', 'data', jsonb_build_object('n', g),
		'metadata', jsonb_build_object('m', g % 3))))
FROM generate_series(1, 60) AS g;
SELECT event_store.append_event('user-' || g, 'Joined', '{}', NULL, NULL,
	md5('user' || g)::uuid) FROM generate_series(1, 20) AS g;
SELECT event_store.subscription_create('billing', 'order', 2);
SELECT event_store.subscription_create('everything');
SELECT event_store.subscription_ack('billing', 30, 0);
SELECT event_store.subscription_ack('everything', 50);
SELECT event_store.outbox_send('jobs', jsonb_build_object('job', g), 'k' || g % 3,
	jsonb_build_object('h', g)) FROM generate_series(1, 12) AS g;
SELECT event_store.outbox_send('jobs', '{"later": true}', NULL, NULL, '1 day');
SELECT count(*) FROM event_store.outbox_claim('jobs', 2);
SELECT event_store.outbox_send('fragile', '{"f": 1}');
SELECT event_store.outbox_nack(array_agg(c.receipt), NULL, 'boom')
FROM event_store.outbox_claim('fragile', 1) AS c;
-- A consumer's read model, with the last position it applied.
CREATE TABLE read_model (id integer PRIMARY KEY, last_position bigint NOT NULL);
});
# A rolled back append leaves the head above the last event; the read
# model and a subscription are at that head.
$node->safe_psql('src', q{
BEGIN;
SELECT event_store.append_event('order-99', 'Placed', '{}');
ROLLBACK;});
$node->safe_psql('src', q{
SELECT event_store.subscription_create('at_head', NULL, 1, NULL);
INSERT INTO read_model VALUES (1, event_store.feed_head());});
my $src_head = $node->safe_psql('src', 'SELECT event_store.feed_head()');
cmp_ok($src_head, '>', $node->safe_psql('src', 'SELECT max(position) FROM event_store.events'),
	'the source head is above its last event');

# Everything the extension stores, one line per row or sequence.
my $fingerprint_sql = q{
SELECT string_agg(x, E'\n' ORDER BY x) FROM (
	SELECT 'event ' || e::text FROM event_store.events AS e
	UNION ALL SELECT 'subscription ' || s::text FROM event_store.subscriptions AS s
	UNION ALL SELECT 'checkpoint ' || c::text FROM event_store.subscription_checkpoints AS c
	UNION ALL SELECT 'outbox ' || o::text FROM event_store.outbox AS o
	UNION ALL SELECT 'dead ' || d::text FROM event_store.outbox_dead_letters AS d
	UNION ALL SELECT 'topic ' || t::text FROM event_store.outbox_topics AS t
	UNION ALL SELECT 'event route ' || r::text FROM event_store.event_routes AS r
	UNION ALL SELECT 'relay route ' || r::text FROM event_store.relay_routes AS r
	UNION ALL SELECT 'outbox ids ' || last_value || ' ' || is_called FROM event_store.outbox_id_seq
	UNION ALL SELECT 'high water ' || last_value || ' ' || is_called
		FROM event_store.position_high_water
	UNION ALL SELECT 'read model ' || m::text FROM public.read_model AS m
) AS f(x)};
my $fingerprint = $node->safe_psql('src', $fingerprint_sql);
my %counts = map { $_ => scalar(() = $fingerprint =~ /^$_ \(/mg) }
  ('event', 'subscription', 'checkpoint', 'outbox', 'dead', 'topic', 'event route', 'relay route');
is(join(',', map { "$_=$counts{$_}" } sort keys %counts),
	'checkpoint=4,dead=1,event=80,event route=1,outbox=73,relay route=1,subscription=3,topic=2',
	'the source holds rows of every kind');
like($fingerprint, qr/^outbox \(\d+,jobs,k\d,.*,1,"[^"]+","[^"]+",[0-9a-f-]{36},\)$/m, 'a leased message is among them');

my $src_fetch = $node->safe_psql('src',
	q{SELECT string_agg(position::text, ',') FROM event_store.subscription_fetch('billing', 100, 1)});
my $src_version = $node->safe_psql('src', q{SELECT event_store.stream_version('order-3')});
my $src_max_id = $node->safe_psql('src', q{
	SELECT greatest((SELECT max(id) FROM event_store.outbox),
					(SELECT max(id) FROM event_store.outbox_dead_letters))});

# Checks of a restored database.
sub check_restored
{
	my ($target, $db, $how) = @_;

	is($target->safe_psql($db, $fingerprint_sql), $fingerprint,
		"$how: every row and sequence is restored as it was");
	is($target->safe_psql($db, q{SELECT count(*) FROM event_store.read_all(0, 100000)}),
		'80', "$how: the feed shows every event from the first read");
	is($target->safe_psql($db,
			q{SELECT string_agg(position::text, ',') FROM event_store.subscription_fetch('billing', 100, 1)}),
		$src_fetch, "$how: a subscription member fetches what it fetched before");
	is($target->safe_psql($db,
			qq{SELECT event_store.append_event('order-3', 'Shipped', '{}', expected_version => $src_version)}),
		$src_version + 1, "$how: an append continues the stream's versions");
	$target->safe_psql($db, q{SELECT event_store.append_event('after-restore', 'New', '{}')});
	cmp_ok($target->safe_psql($db,
			q{SELECT min(position) FROM event_store.events WHERE type IN ('Shipped', 'New')}),
		'>', $src_head, "$how: new positions are above every head the original showed");
	cmp_ok($target->safe_psql($db, q{SELECT event_store.outbox_send('jobs', '{}')}),
		'>', $src_max_id, "$how: new outbox ids are above the restored ones");
	is($target->safe_psql($db, q{
			SELECT string_agg(e.stream, ',' ORDER BY e.position)
			FROM public.read_model AS m, event_store.read_all(m.last_position + 1) AS e}),
		'order-3,after-restore',
		"$how: the read model at its restored position sees exactly the new events");
	is($target->safe_psql($db,
			q{SELECT string_agg(stream, ',' ORDER BY position) FROM event_store.subscription_fetch('at_head')}),
		'order-3,after-restore', "$how: a subscription restored at the head sees exactly the new events");
	$target->safe_psql($db, q{SELECT event_store.subscription_drop('billing')});
	is($target->safe_psql($db,
			q{SELECT count(*) FROM event_store.subscription_checkpoints WHERE subscription = 'billing'}),
		'0', "$how: dropping a subscription removes its checkpoints");
}

my $dir = PostgreSQL::Test::Utils::tempdir;

# Custom format, restored in parallel (ordering of the tables' data).
command_ok([ 'pg_dump', '-Fc', '-f', "$dir/src.dump", '-d', $node->connstr('src') ],
	'pg_dump in custom format');
# The feed is read between the sections: its counter is set up on an
# empty log before the events are loaded.
$node->safe_psql('postgres', 'CREATE DATABASE restored_custom');
foreach my $section ('pre-data', 'data', 'post-data')
{
	command_ok(
		[ 'pg_restore', '-j', '2', "--section=$section", '-d',
			$node->connstr('restored_custom'), "$dir/src.dump" ],
		"pg_restore of the custom format: $section");
	$node->safe_psql('restored_custom', 'SELECT event_store.feed_head()')
	  if $section eq 'pre-data';
}
check_restored($node, 'restored_custom', 'custom format');

# Plain format, through psql, stopping at the first error.
command_ok([ 'pg_dump', '-Fp', '-f', "$dir/src.sql", '-d', $node->connstr('src') ],
	'pg_dump in plain format');
$node->safe_psql('postgres', 'CREATE DATABASE restored_plain');
command_ok(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', "$dir/src.sql",
		'-d', $node->connstr('restored_plain') ],
	'the plain dump restores without an error');
check_restored($node, 'restored_plain', 'plain format');

# pg_dumpall into a new cluster (its roles included).
command_ok([ 'pg_dumpall', '-f', "$dir/all.sql", '-d', $node->connstr('postgres') ],
	'pg_dumpall');
my $other = PostgreSQL::Test::Cluster->new('restore_target');
$other->init;
$other->append_conf('postgresql.conf', $conf);
$other->start;
# Not ON_ERROR_STOP: the dump creates the bootstrap role, which exists.
run_log([ 'psql', '-X', '-q', '-f', "$dir/all.sql", '-d', $other->connstr('postgres') ]);
check_restored($other, 'src', 'pg_dumpall');
$other->stop;

# What a dump leaves out: relayed messages parked for large NOTIFY payloads.
unlike(slurp_file("$dir/src.sql"), qr/COPY event_store\.relay_parked/,
	'parked relay messages are not in a dump');

$node->stop;
done_testing();
