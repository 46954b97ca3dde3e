# The feed on a hot standby: events replicate and read_all shows them; an
# appender still open on the primary, whose rows have reached the standby,
# holds back standby readers exactly as on the primary.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', "shared_preload_libraries = 'event_store'");
$primary->start;
$primary->safe_psql('postgres', 'CREATE EXTENSION event_store');
$primary->safe_psql('postgres',
	q{SELECT event_store.append_event('order-' || i, 'Placed', '{}') FROM generate_series(1, 5) AS i});

$primary->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);

is($standby->safe_psql('postgres', 'SELECT count(*) FROM event_store.read_all()'),
	'5', 'the standby reads the replicated feed');

# The standby's head follows replay.
$primary->safe_psql('postgres', q{SELECT event_store.append_event('order-6', 'Placed', '{}')});
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', 'SELECT count(*) FROM event_store.read_all()'),
	'6', 'events appended later show on the standby');
is($standby->safe_psql('postgres', 'SELECT event_store.feed_head()'),
	'6', 'feed_head follows replay');

# An appender open on the primary holds back the standby's readers.
my $slow = $primary->background_psql('postgres');
$slow->query_safe(q{BEGIN; SELECT event_store.append_event('slow-1', 'T', '{}')});
$primary->safe_psql('postgres', q{SELECT event_store.append_event('fast-1', 'T', '{}')});
$primary->wait_for_catchup($standby);
is( $standby->safe_psql('postgres',
		q{SELECT count(*) FROM event_store.events WHERE stream = 'fast-1'}),
	'1', 'the fast event reached the standby');
is($standby->safe_psql('postgres', 'SELECT count(*) FROM event_store.read_all(7)'),
	'0', 'read_all on the standby does not show it past the open appender');
$slow->query_safe('COMMIT');
$slow->quit;
$primary->wait_for_catchup($standby);
is( $standby->safe_psql('postgres',
		q{SELECT string_agg(stream, ',' ORDER BY position) FROM event_store.read_all(7)}),
	'slow-1,fast-1', 'after the commit both show, in order');

# Appending on a standby is refused as any write is.
my ($ret, $stdout, $stderr) = $standby->psql('postgres',
	q{SELECT event_store.append_event('order-9', 'Placed', '{}')});
like($stderr, qr/cannot execute append_event in a read-only transaction/,
	'appends on the standby are refused with a clear error');

$standby->stop;
$primary->stop;
done_testing();
