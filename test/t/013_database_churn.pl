# Shared memory is reclaimed: creating a database, installing the
# extension, appending and dropping the database 500 times works with room
# for only 3 databases' feed state (two sessions run the cycles), and so do DROP/CREATE EXTENSION cycles
# in one database.  A database that keeps appending meanwhile loses its
# entry to the others whenever it is idle, and its positions still only
# rise.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use IPC::Run;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use EventStoreTest;

my $node = PostgreSQL::Test::Cluster->new('database_churn');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'event_store'
event_store.max_databases = 3
# Relay workers only for postgres: the churn is about the feed's state.
event_store.databases = 'postgres'
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION event_store');

# Two psql sessions run the cycles, half each; each stops at its first
# error.
my $cycles = 500;
my @sessions;
foreach my $session (0, 1)
{
	my $script = '';
	for (my $i = 1 + $session; $i <= $cycles; $i += 2)
	{
		$script .= qq{CREATE DATABASE churn_$i;
\\c churn_$i
CREATE EXTENSION event_store;
SELECT event_store.append_event('churn-1', 'Created', '{}');
SELECT 'cycle $i ' || position FROM event_store.read_stream('churn-1');
\\c postgres
DROP DATABASE churn_$i;
SELECT event_store.append_event('keep-1', 'Cycle', jsonb_build_object('i', $i));
};
	}
	my $file = $node->basedir . "/churn_$session.sql";
	PostgreSQL::Test::Utils::append_to_file($file, $script);
	my %run = (out => '', err => '');
	$run{handle} = IPC::Run::start(
		[ 'psql', '-X', '-At', '-v', 'ON_ERROR_STOP=1', '-f', $file, '-d', $node->connstr('postgres') ],
		'>', \$run{out}, '2>', \$run{err});
	push @sessions, \%run;
}
my $ok = 1;
my ($stdout, $stderr) = ('', '');
foreach my $run (@sessions)
{
	$ok = 0 unless $run->{handle}->finish;
	$stdout .= $run->{out};
	$stderr .= $run->{err};
}
ok($ok, "$cycles cycles of CREATE DATABASE, CREATE EXTENSION, append, DROP DATABASE")
  or diag($stderr);
# A new database's feed starts at 1.  Its entry can also be taken over
# between its set-up and its first reservation (max_databases is 3 and two
# sessions churn); it is then set up again above the high-water mark its
# earlier set-up raised, a chunk of 1,000 positions higher each time.  So
# every first position is 1 or a few chunks above, and nearly all are 1.
my @firsts = $stdout =~ /^cycle \d+ (\d+)$/mg;
my @at_one = grep { $_ == 1 } @firsts;
my @above = grep { $_ != 1 } @firsts;
my @out_of_range = grep { $_ < 1 || $_ > 3 * 1001 } @firsts;
ok( @firsts == $cycles && !@out_of_range && @at_one >= $cycles * 0.9,
	"every new database's first event is at position 1 ("
	  . scalar(@at_one)
	  . ") or, its entry taken over, a few chunks above ("
	  . scalar(@above) . ")")
  or diag("first positions other than 1: @above");
note("first positions other than 1: @above") if @above;

is( $node->safe_psql('postgres', q{
		SELECT count(*) || ' ' || bool_and(position > previous)
		FROM (SELECT position, lag(position) OVER (ORDER BY version) AS previous
			  FROM event_store.events WHERE stream = 'keep-1') AS k
		WHERE previous IS NOT NULL}),
	($cycles - 1) . ' true',
	'the database appending throughout got rising positions in version order');
is($node->safe_psql('postgres', 'SELECT count(*) FROM event_store.read_all(0, 10000)'),
	$cycles, 'its feed shows every one of its events');

# DROP/CREATE EXTENSION in one database: the entry is reset each time.
$node->safe_psql('postgres', 'CREATE DATABASE recreated');
my $ext_script = '';
foreach my $i (1 .. 50)
{
	$ext_script .= qq{CREATE EXTENSION event_store;
SELECT event_store.append_event('ext-1', 'Created', '{}');
SELECT event_store.append_event('ext-1', 'Again', '{}');
SELECT 'round $i ' || string_agg(position::text, ',' ORDER BY position) FROM event_store.read_all();
DROP EXTENSION event_store;
};
}
my $file = $node->basedir . '/extension.sql';
PostgreSQL::Test::Utils::append_to_file($file, $ext_script);
$ok = IPC::Run::run(
	[ 'psql', '-X', '-At', '-v', 'ON_ERROR_STOP=1', '-f', $file, '-d', $node->connstr('recreated') ],
	'>', \$stdout, '2>', \$stderr);
ok($ok, '50 cycles of CREATE EXTENSION, append, DROP EXTENSION') or diag($stderr);
is(scalar(() = $stdout =~ /^round \d+ 1,2$/mg), 50,
	'each new install of the extension starts its feed at position 1');

$node->stop;
done_testing();
