# The SQL API works when the library is not in shared_preload_libraries:
# the library is loaded on first use and positions come from the fallback
# allocator.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use EventStoreTest;

my $node = PostgreSQL::Test::Cluster->new('without_preload');
$node->init;
$node->append_conf('postgresql.conf', 'max_prepared_transactions = 2');
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

# The feed is gap-safe without shared memory too: a slow appender holding a
# lower position holds back readers until it ends.
my $head = $node->safe_psql('postgres', 'SELECT event_store.feed_head()');
my $slow = $node->background_psql('postgres');
$slow->query_safe(q{BEGIN; SELECT event_store.append_event('slow-1', 'T', '{}')});
$node->safe_psql('postgres', q{SELECT event_store.append_event('fast-1', 'T', '{}')});
is( $node->safe_psql('postgres', q{SELECT count(*) FROM event_store.events WHERE stream = 'fast-1'}),
	'1', 'the fast event is committed');
is($node->safe_psql('postgres', "SELECT count(*) FROM event_store.read_all($head + 1)"),
	'0', 'read_all shows nothing past the open appender');
is($node->safe_psql('postgres', q{SELECT event_store.feed_head()}),
	$head, 'feed_head stays below the open appender');
my $rr = $node->background_psql('postgres');
$rr->query_safe(q{BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1});
$slow->query_safe('COMMIT');
is( $node->safe_psql('postgres',
		"SELECT string_agg(stream, ',' ORDER BY position) FROM event_store.read_all($head + 1)"),
	'slow-1,fast-1', 'after the commit both events show, in position order');
is($rr->query_safe("SELECT count(*) FROM event_store.read_all($head + 1)"),
	'0', 'a REPEATABLE READ snapshot from before the commit shows neither');
$rr->query_safe('COMMIT');

$head = $node->safe_psql('postgres', 'SELECT event_store.feed_head()');
$slow->query_safe(q{BEGIN; SELECT event_store.append_event('slow-2', 'T', '{}')});
$node->safe_psql('postgres', q{SELECT event_store.append_event('fast-2', 'T', '{}')});
is($node->safe_psql('postgres', "SELECT count(*) FROM event_store.read_all($head + 1)"),
	'0', 'held back again by a second open appender');
$slow->query_safe('ROLLBACK');
is( $node->safe_psql('postgres',
		"SELECT string_agg(stream, ',' ORDER BY position) FROM event_store.read_all($head + 1)"),
	'fast-2', 'an abort releases the feed at once');
$slow->quit;
$rr->quit;

($ret, $stdout, $stderr) = $node->psql('postgres',
	q{BEGIN; SELECT event_store.append_event('prepared-1', 'T', '{}'); PREPARE TRANSACTION 'p1';});
like($stderr, qr/cannot PREPARE a transaction that appended events/,
	'PREPARE TRANSACTION of an appending transaction is refused');

ok(other_database_does_not_hold_back($node),
	'an open appender in another database does not hold the feed back');

# The relay: relay_workers says why there is no worker; relay_route warns.
is( $node->safe_psql('postgres',
		q{SELECT kind || ' ' || state || ': ' || last_error FROM event_store.relay_workers}),
	'launcher library not loaded: event_store is not in shared_preload_libraries: no relay worker runs',
	'relay_workers says the library is not loaded');
($ret, $stdout, $stderr) = $node->psql('postgres', q{SELECT event_store.relay_route('t', 'notify:t')});
like($stderr, qr/WARNING:  the relay workers are not running/, 'relay_route warns');

$node->stop;
done_testing();
