# A category subscription is woken for every one of its events, however
# the relay's cycles interleave with commits of other categories: appends of
# noise events run all along, a rare event of the category commits now and
# then, and each must bring a notification on the subscription's channel
# whose head covers it (relay_naptime is one minute, so only a wake-up
# explains one).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use IPC::Run;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use EventStoreTest;

my $node = PostgreSQL::Test::Cluster->new('wakeups');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'event_store'
event_store.relay_naptime = '60s'
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION event_store;
	SELECT event_store.subscription_create('rare', 'rare');
	SELECT event_store.subscription_create('noise', 'noise');
});
my $listener = start_listener($node, 'postgres', 'event_store_sub_rare');

my @noise;
foreach my $n (1 .. 2)
{
	my ($out, $err) = ('', '');
	push @noise, IPC::Run::start(
		[ 'psql', '-X', '-q', '-d', $node->connstr('postgres'), '-c', qq{
DO \$noise\$
BEGIN
	FOR i IN 1..100000 LOOP
		PERFORM event_store.append_event('noise-$n', 'N', '{}');
		COMMIT;
	END LOOP;
END
\$noise\$;} ],
		'>', \$out, '2>', \$err);
}

my $missed = 0;
my @waits;
foreach my $i (1 .. 80)
{
	$node->safe_psql('postgres', "SELECT event_store.append_event('rare-$i', 'R', '{}')");
	my $position = $node->safe_psql('postgres',
		"SELECT position FROM event_store.read_stream('rare-$i', 0, 1)");
	my $t0 = time;
	my $covered = 0;
	while (time - $t0 < 5)
	{
		if (grep { $_->[1] =~ /^(\d+)/ && $1 >= $position } listener_lines($listener))
		{
			$covered = 1;
			last;
		}
		usleep(10_000);
	}
	push @waits, time - $t0;
	$missed++ unless $covered;
	usleep(int(rand(50_000)));
}
$_->kill_kill foreach @noise;
my @sorted = sort { $a <=> $b } @waits;
diag(sprintf('rare events: %d missed of 80; wake-up p50 %.3f s, max %.3f s',
		$missed, $sorted[40], $sorted[-1]));
is($missed, 0, 'every event of the category woke its subscription');

stop_listener($listener);
$node->stop('fast');
done_testing();
