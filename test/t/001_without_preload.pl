# The SQL API works when the library is not in shared_preload_libraries:
# the library is loaded on first use and positions come from the fallback
# allocator.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('without_preload');
$node->init;
$node->start;

is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'), '',
	'library is not preloaded');
$node->safe_psql('postgres', 'CREATE EXTENSION event_store');

is( $node->safe_psql(
		'postgres',
		q{SELECT event_store.append('order-1', '[{"type": "Created", "data": {}}, {"type": "Paid", "data": {}}]', -1)}
	),
	'1',
	'append works');
is( $node->safe_psql(
		'postgres', q{SELECT event_store.append_event('order-1', 'Shipped', '{}', NULL, 1)}),
	'2',
	'append_event works');

my ($ret, $stdout, $stderr) = $node->psql('postgres',
	q{SELECT event_store.append_event('order-1', 'Shipped', '{}', NULL, 1)});
like($stderr, qr/wrong expected version/, 'conflicts are detected');

is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(position || ':' || version || ':' || type, ',' ORDER BY version) FROM event_store.read_stream('order-1')}
	),
	'1:0:Created,2:1:Paid,3:2:Shipped',
	'read_stream returns the events with consecutive positions');
is($node->safe_psql('postgres', q{SELECT event_store.stream_version('order-1')}),
	'2', 'stream_version works');

# Positions continue from the table after a restart, and a rolled-back
# append leaves no row behind.
$node->safe_psql('postgres',
	q{BEGIN; SELECT event_store.append_event('order-2', 'Created', '{}'); ROLLBACK;});
$node->restart;
is($node->safe_psql('postgres', q{SELECT event_store.append_event('order-2', 'Created', '{}')}),
	'0', 'append after restart');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) || ',' || (max(position) FILTER (WHERE stream = 'order-2') > 3) FROM event_store.events}
	),
	'4,true',
	'positions continue above those of committed events');

$node->stop;
done_testing();
