# More databases with the extension than event_store.max_databases has
# entries for: every one is still served.  The entry of an idle database is
# given to one that needs it, and the launcher starts workers for the
# databases that have none.  A database once left without a worker for
# good (its entry never freed) would lose every message.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use EventStoreTest;

my $node = PostgreSQL::Test::Cluster->new('relay_more_databases');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'event_store'
event_store.max_databases = 2
event_store.max_relay_workers = 2
event_store.relay_idle_timeout = 1
});
$node->start;

my @databases = map { "tenant$_" } 1 .. 5;
foreach my $db (@databases)
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, q{CREATE EXTENSION event_store});
	$node->safe_psql($db, q{SELECT event_store.relay_route('orders', 'notify:orders')});
}

# Two rounds: a message in each database in turn, each received before the
# next is sent.
foreach my $round (1 .. 2)
{
	foreach my $db (@databases)
	{
		my $listener = start_listener($node, $db, 'orders');
		$node->safe_psql($db,
			qq{SELECT event_store.outbox_send('orders', '{"round": $round}')});
		my @got = wait_for_lines($listener, 1, 30, 'orders');
		stop_listener($listener);
		is(scalar(@got), 1, "round $round: $db is served");
		is($node->safe_psql($db, q{SELECT count(*) FROM event_store.outbox}), '0',
			"round $round: the outbox of $db is empty");
	}
}

# A message sent in every database at once reaches every listener.
my %listeners = map { $_ => start_listener($node, $_, 'orders') } @databases;
$node->safe_psql($_, q{SELECT event_store.outbox_send('orders', '{"all": true}')})
  foreach @databases;
foreach my $db (@databases)
{
	my @got = wait_for_lines($listeners{$db}, 1, 60, 'orders');
	is(scalar(@got), 1, "all at once: $db is served");
	stop_listener($listeners{$db});
}

my $log = slurp_file($node->logfile);
unlike($log, qr/no room for the relay/, 'no worker went away for want of an entry');

$node->stop;
done_testing();
