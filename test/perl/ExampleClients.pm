# The scenario that every client example of examples/ must pass (the
# Python, Node.js and C versions print the same lines), and its checks.
#
# On a throwaway cluster with the library preloaded and examples/setup.sql
# run in database "bank":
#  1. the example's consumer starts (LISTEN, catch-up) and stays running;
#  2. its commands run: accounts opened, withdrawals that conflict with
#     another teller's deposit and are retried, a refused overdraft;
#  3. the consumer must apply every event once, woken by notifications,
#     and the relay listener must print every event the relay published;
#  4. the consumer's connection is terminated and events are appended
#     while it is away: it must reconnect and catch up;
#  5. its outbox worker delivers every notice, nacking the failures and
#     delivering them again.
# Then the streams, the read model, the checkpoint, the outbox and every
# printed line are checked: nothing lost, nothing seen or acknowledged
# twice, no notice of a rolled-back attempt.
package ExampleClients;

use strict;
use warnings;
use Exporter 'import';
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use FindBin;

our @EXPORT = qw(run_example_scenario examples_dir);

sub examples_dir { return "$FindBin::RealBin/../../examples"; }

my $TIMEOUT = 90;    # seconds for anything the consumer should do at once

# Environment of the example's processes: libpq's variables, as a user of
# the example would set them.
sub example_env
{
	my ($node) = @_;
	return (
		PGHOST => $node->host,
		PGPORT => $node->port,
		PGDATABASE => 'bank',
		PGUSER => 'example_service',
		# Small pages, so that reading a stream and fetching from the
		# subscription take several rounds.
		ACCOUNTS_PAGE => 2);
}

sub lines_of
{
	my ($file) = @_;
	return () unless -e $file;
	return grep { length } split /\n/, slurp_file($file);
}

# Wait until $check returns true on the lines of $file, at most $TIMEOUT.
sub wait_for_output
{
	my ($file, $check) = @_;
	my $deadline = time + $TIMEOUT;
	while (time < $deadline)
	{
		return 1 if $check->(lines_of($file));
		usleep(50_000);
	}
	return $check->(lines_of($file));
}

# Positions of a kind of line ("event" or "relayed"): position => count.
sub positions
{
	my ($kind, @lines) = @_;
	my %seen;
	foreach (@lines)
	{
		$seen{$1}++ if /^$kind (\d+) account-\d+ \d+$/;
	}
	return \%seen;
}

sub account_positions
{
	my ($node) = @_;
	return [ split /\n/, $node->safe_psql('bank',
		q{SELECT position FROM event_store.events WHERE stream LIKE 'account-%' ORDER BY position}) ];
}

sub covers
{
	my ($seen, $want) = @_;
	return !grep { !$seen->{$_} } @$want;
}

# Run the scenario with the example started by @cmd (a mode is appended:
# consume, commands, work).
sub run_example_scenario
{
	my ($name, @cmd) = @_;

	my $node = PostgreSQL::Test::Cluster->new("example_$name");
	$node->init;
	$node->append_conf('postgresql.conf', "shared_preload_libraries = 'event_store'\n");
	$node->start;
	$node->safe_psql('postgres', 'CREATE DATABASE bank');
	$node->safe_psql('bank', 'CREATE EXTENSION event_store');
	$node->safe_psql('bank', slurp_file(examples_dir() . '/setup.sql'));

	my %env = example_env($node);
	my $base = $node->basedir . "/$name";

	# 1. The consumer.
	my $consumer;
	{
		local @ENV{ keys %env } = values %env;
		$consumer = IPC::Run::start([ @cmd, 'consume' ],
			'<', \undef, '>', "$base.consume.out", '2>', "$base.consume.err");
	}
	ok(wait_for_output("$base.consume.out", sub { grep { $_ eq 'ready' } @_ }),
		"$name: the consumer listens and has caught up")
	  or diag(slurp_file("$base.consume.err"));

	# 2. The commands.
	my ($out, $err) = ('', '');
	my $ok;
	{
		local @ENV{ keys %env } = values %env;
		$ok = IPC::Run::run([ @cmd, 'commands' ], '<', \undef, '>', \$out, '2>', \$err);
	}
	ok($ok, "$name: the commands run") or diag("stdout:\n$out\nstderr:\n$err");
	my @commands = grep { length } split /\n/, $out;
	is_deeply(
		[ grep { /^conflict / } @commands ],
		[ 'conflict account-1 1', 'conflict account-2 1', 'conflict account-3 1' ],
		"$name: each withdrawal conflicted once with the other teller's deposit (EV001) and was retried");
	is(scalar(grep { /^refused account-1 / } @commands), 1, "$name: the overdraft is refused");
	is_deeply(
		[ grep { /^balance / } @commands ],
		[ 'balance account-1 75 3', 'balance account-2 75 3', 'balance account-3 75 3' ],
		"$name: the balances rebuilt from read_stream");
	foreach my $i (1 .. 3)
	{
		is( $node->safe_psql('bank',
				"SELECT string_agg(type || ' ' || coalesce(data->>'amount', data->>'owner'), ', ' ORDER BY version)"
				  . " FROM event_store.read_stream('account-$i')"),
			"Opened someone, Deposited 100, Deposited 5, Withdrawn 30",
			"$name: account-$i holds each command's events once, the retried one after the deposit it raced");
	}
	my @sent = map { /^sent (\d+) account-\d+$/ ? $1 : () } @commands;
	is(scalar @sent, 9, "$name: nine notices sent, one per command that appended");

	# 3. The consumer applies everything, woken by notifications; the relay
	# listener prints everything.
	my $want = account_positions($node);
	is(scalar @$want, 12, "$name: twelve account events");
	ok( wait_for_output("$base.consume.out",
			sub { covers(positions('event', @_), $want) && covers(positions('relayed', @_), $want) }),
		"$name: the consumer applied and the relay listener received every event")
	  or diag(slurp_file("$base.consume.out") . slurp_file("$base.consume.err"));
	ok(scalar(grep { $_ eq 'woken' } lines_of("$base.consume.out")) >= 1,
		"$name: the consumer was woken by its subscription's channel");
	my $ready_at = 0;
	my @before = lines_of("$base.consume.out");
	foreach (0 .. $#before) { $ready_at = $_ if $before[$_] eq 'ready'; }
	ok(!grep({ /^event / } @before[ 0 .. $ready_at ]), "$name: nothing to apply before the commands ran");

	# 4. The subscriber's connection is lost; events are appended meanwhile.
	is( $node->safe_psql('bank',
			q{SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'accounts-subscriber'}),
		1, "$name: the subscriber's connection is terminated");
	$node->safe_psql('bank',
		q{SELECT event_store.append_event('account-' || i, 'Deposited', '{"amount": 10}') FROM generate_series(1, 3) AS i});
	$want = account_positions($node);
	ok( wait_for_output("$base.consume.out",
			sub { covers(positions('event', @_), $want) && covers(positions('relayed', @_), $want) }),
		"$name: the consumer reconnected and caught up")
	  or diag(slurp_file("$base.consume.out") . slurp_file("$base.consume.err"));
	ok(scalar(grep { /^connection-lost/ } lines_of("$base.consume.out")) >= 1,
		"$name: the consumer saw its connection lost");

	# 5. The outbox worker.
	($out, $err) = ('', '');
	{
		local @ENV{ keys %env } = values %env;
		$ok = IPC::Run::run([ @cmd, 'work' ], '<', \undef, '>', \$out, '2>', \$err);
	}
	ok($ok, "$name: the outbox worker runs") or diag("stdout:\n$out\nstderr:\n$err");
	my @work = grep { length } split /\n/, $out;
	my (%acked, %nacked);
	foreach (@work)
	{
		$acked{$1}++ if /^acked (\d+)$/;
		$nacked{$1}++ if /^nacked (\d+)$/;
	}
	is_deeply([ sort { $a <=> $b } keys %acked ], [ sort { $a <=> $b } @sent ],
		"$name: every notice sent was acknowledged, and nothing else");
	ok(!grep({ $_ != 1 } values %acked), "$name: no notice acknowledged twice");
	is(scalar keys %nacked, 3, "$name: the three withdrawal notices failed once and were nacked");
	ok(!grep({ !$acked{$_} } keys %nacked), "$name: the nacked notices were delivered again");
	ok(!grep({ /^ack-lost/ } @work), "$name: no acknowledgement lost to an expired lease");
	is( $node->safe_psql('bank',
			q{SELECT coalesce(sum(available + blocked + leased + delayed + dead), 0) FROM event_store.outbox_depth WHERE topic = 'account_notices'}),
		0, "$name: the notices' outbox is empty, no dead letters");

	$consumer->kill_kill;
	$consumer->finish;

	# Nothing lost or seen twice.
	my @lines = lines_of("$base.consume.out");
	foreach my $kind ('event', 'relayed')
	{
		my $seen = positions($kind, @lines);
		is_deeply([ sort { $a <=> $b } keys %$seen ], $want, "$name: $kind: every account event");
		is_deeply([ grep { $seen->{$_} > 1 } sort keys %$seen ], [], "$name: $kind: none twice");
	}
	ok(!grep({ /^(event|relayed) / && !/^(event|relayed) \d+ account-\d+ \d+$/ } @lines),
		"$name: positions and versions print as integers");
	is( $node->safe_psql('bank', 'SELECT account, balance, events, last_position FROM public.account_balances ORDER BY 1'),
		$node->safe_psql('bank', q{
			SELECT stream,
				   sum(CASE type WHEN 'Deposited' THEN (data->>'amount')::bigint
								 WHEN 'Withdrawn' THEN -(data->>'amount')::bigint ELSE 0 END),
				   count(*), max(position)
			FROM event_store.events WHERE stream LIKE 'account-%' GROUP BY stream ORDER BY 1}),
		"$name: the read model matches the streams (each event applied once)");
	is($node->safe_psql('bank', 'SELECT string_agg(balance::text, \',\' ORDER BY account) FROM public.account_balances'),
		'85,85,85', "$name: balances in the read model");
	is( $node->safe_psql('bank',
			q{SELECT checkpoint = (SELECT max(position) FROM event_store.events) AND pending_events = 0 FROM event_store.subscription_lag WHERE subscription = 'account_balances'}),
		't', "$name: the checkpoint is at the last event, nothing pending");

	$node->stop;
	return;
}

1;
