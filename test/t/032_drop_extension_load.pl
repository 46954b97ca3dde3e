# DROP EXTENSION and CREATE EXTENSION, 20 times, under mixed load: appends,
# sends, claims with acks, reads, and the relay publishing.  The callers
# racing a drop get clean errors (the extension or its functions are gone),
# never XX000; DROP EXTENSION never fails with a deadlock (40P01), against
# the callers or the relay worker; ALTER EXTENSION UPDATE neither.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use IPC::Run;

my $node = PostgreSQL::Test::Cluster->new('dropload');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'event_store'
event_store.relay_naptime = '100ms'
deadlock_timeout = '100ms'
lock_timeout = 0
});
$node->start;

my $setup = q{
	CREATE EXTENSION IF NOT EXISTS event_store;
	SELECT event_store.relay_route('load', 'notify:load');
	SELECT event_store.subscription_create('sub', NULL);
};
$node->safe_psql('postgres', $setup);

# A load loop: one statement per transaction, errors caught and printed
# with their SQLSTATE.
# The loops stop when the cycles are done (cancelled); this bounds them.
my $seconds = 180;
my %loops = (
	appends => q{PERFORM event_store.append_event('s-' || (random() * 20)::int, 'E', '{}')},
	sends => q{PERFORM event_store.outbox_send('load', '{"a": 1}', 'k' || (random() * 5)::int)},
	claims => q{PERFORM event_store.outbox_ack(coalesce(array_agg(c.receipt), '{}')) FROM event_store.outbox_claim('work', 10) AS c;
				PERFORM event_store.outbox_send('work', '{}')},
	reads => q{PERFORM count(*) FROM event_store.read_all(0, 50);
			   PERFORM count(*) FROM event_store.read_stream('s-1')},
);
my @runs;
foreach my $name (sort keys %loops)
{
	my $sql = qq{
DO \$load\$
DECLARE
	stop timestamptz := clock_timestamp() + interval '$seconds seconds';
BEGIN
	WHILE clock_timestamp() < stop LOOP
		BEGIN
			$loops{$name};
		EXCEPTION WHEN OTHERS THEN
			RAISE NOTICE 'caught % %', SQLSTATE, SQLERRM;
			PERFORM pg_sleep(0.01);
		END;
		COMMIT;
		PERFORM pg_sleep(0.002);
	END LOOP;
END
\$load\$;
};
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-q', '-d', $node->connstr('postgres'), '-c', $sql ],
		'>', \$out, '2>', \$err);
	push @runs, { name => $name, handle => $h, out => \$out, err => \$err };
}

my @drop_errors;
my $cycles = 0;
my $t0 = time;
foreach my $i (1 .. 20)
{
	usleep(300_000);
	my ($ret, $stdout, $stderr) = $node->psql('postgres', 'DROP EXTENSION event_store CASCADE',
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	push @drop_errors, "drop $i: $stderr" if $ret != 0;
	($ret, $stdout, $stderr) = $node->psql('postgres', $setup);
	push @drop_errors, "create $i: $stderr" if $ret != 0;
	if ($i % 5 == 0)
	{
		# ALTER EXTENSION UPDATE under the same load (nothing to update: it
		# still takes its locks).
		($ret, $stdout, $stderr) = $node->psql('postgres', 'ALTER EXTENSION event_store UPDATE');
		push @drop_errors, "alter $i: $stderr" if $ret != 0;
	}
	$cycles++;
}
note(sprintf('%d drop/create cycles in %.1f s', $cycles, time - $t0));
is($cycles, 20, 'twenty DROP/CREATE EXTENSION cycles under load');
is(join("\n", @drop_errors), '', 'DROP, CREATE and ALTER EXTENSION never failed (no 40P01)');

foreach my $run (@runs)
{
	$run->{handle}->signal('INT');
	$run->{handle}->finish;
}
my %codes;
foreach my $run (@runs)
{
	foreach my $line (split /\n/, ${ $run->{err} })
	{
		next unless $line =~ /caught (\w{5}) (.*)/;
		$codes{$1}++;
		diag("$run->{name}: $line") if $1 eq 'XX000';
	}
}
note('caller errors by SQLSTATE: ' . join(', ', map { "$_=$codes{$_}" } sort keys %codes));
ok(!exists $codes{XX000}, 'no caller got XX000');
ok(!exists $codes{'40P01'}, 'no caller got a deadlock');
ok(!$node->log_contains(qr/deadlock detected/), 'no deadlock in the log');

# The relay still delivers after the last CREATE.
$node->safe_psql('postgres', q{SELECT event_store.outbox_send('load', '{"last": true}')});
ok($node->poll_query_until('postgres',
		q{SELECT NOT EXISTS (SELECT FROM event_store.outbox WHERE topic = 'load')}),
	'the relay serves the last instance of the extension');

$node->stop('fast');
done_testing();
