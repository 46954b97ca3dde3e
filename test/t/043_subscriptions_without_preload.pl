# Subscriptions without shared_preload_libraries: creating one warns that
# its channel will not fire (no relay worker runs to announce it); fetch
# and acknowledge work, fenced as with the library preloaded.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('subscriptions_without_preload');
$node->init;
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION event_store');
$node->safe_psql('postgres',
	q{SELECT event_store.append_event('order-' || i, 'Placed', '{}') FROM generate_series(1, 3) AS i});

my ($ret, $stdout, $stderr) = $node->psql('postgres',
	q{SELECT event_store.subscription_create('billing', 'order')});
is($ret, 0, 'the subscription is created');
like($stderr, qr/WARNING:  the relay workers are not running/, 'with a warning');
like($stderr, qr/LISTEN event_store_sub_billing will not fire/, 'naming the channel that will not fire');

($ret, $stdout, $stderr) = $node->psql('postgres',
	q{SELECT event_store.subscription_create('billing', 'order', if_not_exists => true)});
like($stderr, qr/NOTICE:  subscription "billing" already exists, skipping/,
	'if_not_exists skips an existing subscription');

is( $node->safe_psql('postgres', q{
SELECT event_store.subscription_ack('billing', max(position)) FROM event_store.subscription_fetch('billing', 2);
SELECT count(*) FROM event_store.subscription_fetch('billing')}),
	"2\n1", 'fetch and ack work');

$node->stop;
done_testing();
