# Relay workers on demand in a cluster of many tenants: 50 databases with
# the extension and 20 without, event_store.max_relay_workers = 8.  Every
# routed message of every tenant is relayed; databases without the
# extension get no worker after the first look; no more than 8 workers run
# at once; an idle tenant (its worker stopped) is served within seconds of
# a commit and a busy one at once (the figures are printed; the machine is
# shared, so the bounds are generous); DROP DATABASE logs no FATAL and
# ALTER DATABASE RENAME has a worker back at once.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib "$FindBin::RealBin/../perl";
use EventStoreTest;

my $tenants = 50;
my $plain = 20;

my $node = PostgreSQL::Test::Cluster->new('tenants');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'event_store'
event_store.max_relay_workers = 8
event_store.relay_idle_timeout = 1
event_store.relay_naptime = '60s'
max_worker_processes = 16
max_connections = 60
});
$node->start;

# The tenants are copies of a template that has the extension and a route.
$node->safe_psql('postgres', 'CREATE DATABASE tenant_template');
$node->safe_psql('tenant_template', q{
	CREATE EXTENSION event_store;
	SELECT event_store.relay_route('orders', 'notify:orders');
});
my $t0 = time;
$node->safe_psql('postgres', "CREATE DATABASE tenant_$_ TEMPLATE tenant_template") foreach 1 .. $tenants;
$node->safe_psql('postgres', "CREATE DATABASE plain_$_") foreach 1 .. $plain;
note(sprintf('created %d databases in %.1f s', $tenants + $plain, time - $t0));

# Every tenant sends; count the workers while they relay.
my $max_workers = 0;
my $workers_query =
  q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'event_store relay'};
$t0 = time;
foreach my $i (1 .. $tenants)
{
	$node->safe_psql("tenant_$i",
		q{SELECT count(event_store.outbox_send('orders', jsonb_build_object('n', n), 'k' || (n % 3))) FROM generate_series(1, 20) AS n}
	);
	my $running = $node->safe_psql('postgres', $workers_query);
	$max_workers = $running if $running > $max_workers;
}
my $left = -1;
my $deadline = time + 300;
while (time < $deadline)
{
	$left = 0;
	foreach my $i (1 .. $tenants)
	{
		$left += $node->safe_psql("tenant_$i", 'SELECT count(*) FROM event_store.outbox');
	}
	my $running = $node->safe_psql('postgres', $workers_query);
	$max_workers = $running if $running > $max_workers;
	last if $left == 0;
	usleep(200_000);
}
is($left, 0, sprintf('every routed message of %d tenants was relayed (%.1f s)', $tenants, time - $t0));
cmp_ok($max_workers, '<=', 8, "at most 8 relay workers at once (seen: $max_workers)");
my $relayed = 0;
$relayed += $node->safe_psql("tenant_$_",
	q{SELECT messages_relayed FROM event_store.relay_workers WHERE kind = 'relay'})
  foreach 1 .. $tenants;
is($relayed, 20 * $tenants, 'relay_workers of each tenant counts its messages');
ok(!$node->log_contains(qr/has no relay slot left/), 'no database was left without a slot');

# Workers stop when idle; none runs in a database without the extension.
ok( $node->poll_query_until('postgres', "SELECT ($workers_query) = 0"),
	'idle workers exit (event_store.relay_idle_timeout = 1 s)');
is( $node->safe_psql('tenant_1',
		q{SELECT state || ',' || (pid IS NULL) FROM event_store.relay_workers WHERE kind = 'relay'}),
	'idle, no worker,true',
	'a tenant whose worker left shows in relay_workers');
is($node->safe_psql('tenant_1', q{SELECT count(*) FROM event_store.relay_workers}),
	'2', 'relay_workers shows the launcher and this database only');
# Wait for one more look at pg_database (every 10 s): the plain databases
# have been looked at once, and never get a worker again.
sleep 11;
my $plain_workers = 0;
foreach (1 .. 20)
{
	$plain_workers += $node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'event_store relay' AND datname LIKE 'plain%'});
	usleep(100_000);
}
is($plain_workers, 0, 'databases without the extension cost no worker after the first look');

# Commit to NOTIFY for an idle tenant: every message finds no worker
# (relay_idle_timeout 0 s) and is served by a newly started one.
my $bench = "$FindBin::RealBin/../../tools/es_relay_bench";
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET event_store.relay_idle_timeout = 0;
	SELECT pg_reload_conf();
});
sleep 1;
my ($stdout, $stderr);
IPC::Run::run([ $bench, '-d', $node->connstr('tenant_7'), '-t', 'orders', '-c', 'orders', '-r', '2', '-s', '10' ],
	'>', \$stdout, '2>', \$stderr);
note("idle tenant: $stdout");
my ($sent, $received, $p99) = $stdout =~ /sent=(\d+) received=(\d+) .*p99_ms=([\d.]+)/;
ok(defined $p99 && $received == $sent, "idle tenant: every message received ($stdout)");
cmp_ok($p99 // 1e9, '<', 5000, "idle tenant: p99 commit to NOTIFY under 5 s (target 2 s): $p99 ms");
diag("idle tenant commit to NOTIFY: $stdout");
ok( $node->poll_query_until('tenant_7',
		q{SELECT pid IS NULL FROM event_store.relay_workers WHERE kind = 'relay'}),
	'with relay_idle_timeout 0 the worker leaves between two messages');

# A busy tenant keeps its worker: commits wake it at once.
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET event_store.relay_idle_timeout = 10;
	SELECT pg_reload_conf();
});
sleep 1;
IPC::Run::run([ $bench, '-d', $node->connstr('tenant_3'), '-t', 'orders', '-c', 'orders', '-r', '200', '-s', '5' ],
	'>', \$stdout, '2>', \$stderr);
($sent, $received, $p99) = $stdout =~ /sent=(\d+) received=(\d+) .*p99_ms=([\d.]+)/;
ok(defined $p99 && $received == $sent, "busy tenant: every message received ($stdout)");
cmp_ok($p99 // 1e9, '<', 1000, "busy tenant: p99 commit to NOTIFY under 1 s (target 10 ms): $p99 ms");
diag("busy tenant commit to NOTIFY: $stdout");

# RENAME: served again at once.  DROP DATABASE: no FATAL, no failed worker.
$node->safe_psql('tenant_4', q{SELECT event_store.outbox_send('orders', '{}')});
ok($node->poll_query_until('tenant_4',
		q{SELECT pid IS NOT NULL FROM event_store.relay_workers WHERE kind = 'relay'}),
	'tenant_4 has a worker');
$node->safe_psql('postgres', 'ALTER DATABASE tenant_4 RENAME TO tenant_four');
$t0 = time;
ok($node->poll_query_until('tenant_four',
		q{SELECT pid IS NOT NULL FROM event_store.relay_workers WHERE kind = 'relay'}),
	'the renamed database has a worker again');
my $back = time - $t0;
cmp_ok($back, '<', 5, sprintf('within seconds of the rename (%.2f s; target 1 s)', $back));
diag(sprintf('worker back after RENAME: %.2f s', $back));
$node->safe_psql('tenant_5', q{SELECT event_store.outbox_send('orders', '{}')});
ok($node->poll_query_until('tenant_5',
		q{SELECT pid IS NOT NULL FROM event_store.relay_workers WHERE kind = 'relay'}),
	'tenant_5 has a worker');
my ($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE tenant_5');
is($ret, 0, "DROP DATABASE while its worker runs: $err");
$node->safe_psql('postgres', 'DROP DATABASE plain_1');
sleep 1;
ok(!$node->log_contains(qr/FATAL/), 'no FATAL in the log');
ok(!$node->log_contains(qr/relay worker for database \d+|for database \d+\b/),
	'log lines name databases, not OIDs');

$node->stop('fast');
done_testing();
