# A hot standby: events replicate and read_stream shows them; the feed is
# refused there (test/t/041_standby_feed.pl tests it under load); appends
# are refused as any write is.
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

# The feed is refused on the standby (it cannot know the primary's
# reservations); read_stream works, and the events are there.
my ($ret, $stdout, $stderr) = $standby->psql('postgres', 'SELECT count(*) FROM event_store.read_all()');
like($stderr, qr/the feed cannot be read on a hot standby/, 'read_all is refused on the standby');
($ret, $stdout, $stderr) = $standby->psql('postgres', 'SELECT event_store.feed_head()');
like($stderr, qr/the feed cannot be read on a hot standby/, 'feed_head is refused on the standby');
is($standby->safe_psql('postgres', q{SELECT count(*) FROM event_store.read_stream('order-3')}),
	'1', 'read_stream works on the standby');

$primary->safe_psql('postgres', q{SELECT event_store.append_event('order-6', 'Placed', '{}')});
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', q{SELECT version FROM event_store.read_stream('order-6')}),
	'0', 'events appended later show on the standby');
is($standby->safe_psql('postgres', q{SELECT coalesce(head::text, 'null'), state FROM event_store.feed_status}),
	'null|standby', 'feed_status on the standby has no head');

# Appending on a standby is refused as any write is.
($ret, $stdout, $stderr) = $standby->psql('postgres',
	q{SELECT event_store.append_event('order-9', 'Placed', '{}')});
like($stderr, qr/cannot execute append_event in a read-only transaction/,
	'appends on the standby are refused with a clear error');

$standby->stop;
$primary->stop;
done_testing();
