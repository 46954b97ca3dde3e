# Between the installation of a new release's files and ALTER EXTENSION
# UPDATE, the library refuses the old SQL objects: a relay worker serving
# such a database fails at every step, says so in the log, and must not
# take the server down (a failed step once freed the error it was about to
# log).  After the update, the same worker relays.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use FindBin;
use lib "$FindBin::RealBin/../perl";
use EventStoreTest;

my $node = PostgreSQL::Test::Cluster->new('relay_before_update');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'event_store'
event_store.restart_time = 1
# Idle workers leave after a second: leaving looks up the next due message,
# the step that failed badly.
event_store.relay_idle_timeout = 1
});
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE old');
$node->safe_psql('old', q{CREATE EXTENSION event_store VERSION '0.1'});
my $log_start = -s $node->logfile;
# 0.1's relay_route wakes the launcher, which starts a worker for the
# database: its steps fail on the 0.1 objects.
$node->safe_psql('old', q{SELECT event_store.relay_route('waiting', 'notify:waiting')});

my $failed_at_next_due = 0;
foreach (1 .. 300)
{
	my $log = slurp_file($node->logfile, $log_start);
	if ($log =~ /relay worker for database "old" failed at next due message: extension "event_store" is at version "0\.1"/)
	{
		$failed_at_next_due = 1;
		last;
	}
	usleep(100_000);
}
ok($failed_at_next_due, 'the worker logs that it cannot look up the next due message on 0.1 objects');

# Two more idle cycles, each failing the same way.
sleep 3;
my $log = slurp_file($node->logfile, $log_start);
unlike($log, qr/terminated by signal/, 'no process of the server crashed');
unlike($log, qr/all server processes terminated; reinitializing/,
	'the server did not restart');
is($node->safe_psql('old', 'SELECT 1'), '1', 'the server accepts connections');

# After the update the database's worker relays.
my $listener = start_listener($node, 'old', 'waiting');
$node->safe_psql('old', 'ALTER EXTENSION event_store UPDATE');
$node->safe_psql('old', q{SELECT event_store.outbox_send('waiting', '{"n": 1}')});
$node->safe_psql('old', q{SELECT event_store.outbox_send('waiting', '{"n": 2}')});
my @got = wait_for_lines($listener, 2, 30, 'waiting');
is(scalar(@got), 2, 'after the update the relay delivers the route 0.1 made');
stop_listener($listener);

$node->stop;
done_testing();
