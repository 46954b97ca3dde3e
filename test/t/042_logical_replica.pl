# Logical replication of the events table to a database that has the
# extension: a read-only replica of the store.  Replicated events read by
# stream; the feed is refused there (the apply worker applies transactions
# in the publisher's commit order, not position order, so a reader could
# skip), and so are local appends (their positions would collide with the
# publisher's and stop the apply worker), each with a clear error; the
# apply worker keeps up.  Once the subscription is dropped (and the server
# restarted), the database is a primary of its own, positions continuing
# above the replicated ones.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $publisher = PostgreSQL::Test::Cluster->new('logical_publisher');
$publisher->init(allows_streaming => 'logical');
$publisher->append_conf('postgresql.conf', "shared_preload_libraries = 'event_store'");
$publisher->start;
my $subscriber = PostgreSQL::Test::Cluster->new('logical_subscriber');
$subscriber->init;
$subscriber->append_conf('postgresql.conf', "shared_preload_libraries = 'event_store'");
$subscriber->start;

$publisher->safe_psql('postgres', q{
CREATE EXTENSION event_store;
SELECT event_store.append_event('order-' || i, 'Placed', to_jsonb(i)) FROM generate_series(1, 5) AS i;
CREATE PUBLICATION es_pub FOR TABLE event_store.events;
});
$subscriber->safe_psql('postgres', q{
CREATE EXTENSION event_store;
CREATE FUNCTION public.outcome(statement text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	message text;
BEGIN
	EXECUTE statement;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS message = MESSAGE_TEXT;
	RETURN SQLSTATE || ': ' || message;
END
$$;
SELECT event_store.subscription_create('local');
});
my $connstr = $publisher->connstr . ' dbname=postgres';
$subscriber->safe_psql('postgres',
	"CREATE SUBSCRIPTION es_sub CONNECTION '$connstr' PUBLICATION es_pub");
$subscriber->wait_for_subscription_sync($publisher, 'es_sub');

is($subscriber->safe_psql('postgres', q{SELECT string_agg(type || ':' || data, ',') FROM event_store.read_stream('order-3')}),
	'Placed:3', 'replicated events read by stream');
is($subscriber->safe_psql('postgres', 'SELECT event_store.feed_state()'),
	'logical replica', 'feed_state says logical replica');

my %refused = (
	'SELECT * FROM event_store.read_all()' =>
	  '55000: the feed cannot be read on a logical replica',
	q{SELECT * FROM event_store.read_category('order')} =>
	  '55000: the feed cannot be read on a logical replica',
	'SELECT event_store.feed_head()' =>
	  '55000: the feed cannot be read on a logical replica',
	q{SELECT * FROM event_store.subscription_fetch('local')} =>
	  '55000: the feed cannot be read on a logical replica',
	q{SELECT event_store.append_event('order-1', 'Paid', '{}')} =>
	  '25006: cannot append events on a logical replica',
	q{SELECT event_store.append('order-99', '[{"type": "Placed", "data": {}}]')} =>
	  '25006: cannot append events on a logical replica',
	q{SELECT event_store.delete_stream('order-2')} =>
	  '25006: cannot append events on a logical replica');
foreach my $statement (sort keys %refused)
{
	my $quoted = $statement =~ s/'/''/gr;
	is($subscriber->safe_psql('postgres', "SELECT public.outcome('$quoted')"),
		$refused{$statement}, "refused on the logical replica: $statement");
}
my ($ret, $stdout, $stderr) = $subscriber->psql('postgres',
	q{SELECT event_store.append_event('order-1', 'Paid', '{}')});
like($stderr, qr/replicated by subscription "es_sub"/, 'the error names the subscription');

is($subscriber->safe_psql('postgres',
		q{SELECT coalesce(head::text, 'null'), coalesce(held_back_events::text, 'null'), state FROM event_store.feed_status}),
	'null|null|logical replica', 'feed_status on the logical replica: no head');
is($subscriber->safe_psql('postgres', q{SELECT coalesce(head::text, 'null'), coalesce(pending_events::text, 'null') FROM event_store.subscription_lag}),
	'null|null', 'subscription_lag on the logical replica: no head');

# The apply worker is not disturbed: later appends on the publisher,
# single and batched, arrive.
$publisher->safe_psql('postgres', q{
SELECT event_store.append_event('order-1', 'Paid', '{}');
SELECT event_store.append('order-6', '[{"type": "Placed", "data": 6}, {"type": "Paid", "data": 6}]', -1);
});
$publisher->wait_for_catchup('es_sub');
is($subscriber->safe_psql('postgres', 'SELECT count(*), max(position) FROM event_store.events'),
	$publisher->safe_psql('postgres', 'SELECT count(*), max(position) FROM event_store.events'),
	'later events replicate');
is($subscriber->safe_psql('postgres', q{SELECT string_agg(version || type, ',') FROM event_store.read_stream('order-1')}),
	'0Placed,1Paid', 'in stream order');

# Without the subscription, and after a restart, the database is a primary
# of its own: positions continue above the replicated ones.
$subscriber->safe_psql('postgres', 'DROP SUBSCRIPTION es_sub');
is($subscriber->safe_psql('postgres', 'SELECT event_store.feed_state()'),
	'primary', 'feed_state is primary once the subscription is dropped');
$subscriber->restart;
is($subscriber->safe_psql('postgres', q{SELECT event_store.append_event('order-1', 'Shipped', '{}')}),
	'2', 'appends work again');
is($subscriber->safe_psql('postgres',
		q{SELECT position FROM event_store.read_stream('order-1', 2)}),
	'9', 'at a position above the replicated ones');
is($subscriber->safe_psql('postgres', 'SELECT count(*) FROM event_store.read_all()'),
	'9', 'and the feed reads');

$subscriber->stop;
$publisher->stop;
done_testing();
