# Helpers shared by the TAP tests of event_store.
package EventStoreTest;

use strict;
use warnings;
use Exporter 'import';
use FindBin;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(usleep time);

our @EXPORT = qw(crash_and_restart process_gone other_database_does_not_hold_back
  start_listener listener_lines wait_for_lines stop_listener);

my $listener_count = 0;

# Start tools/es_listen on $node's database $db for the given channels; it
# keeps listening across server restarts.  Returns once it listens.
sub start_listener
{
	my ($node, $db, @channels) = @_;
	my $base = $node->basedir . '/listener_' . (++$listener_count);
	my $tool = "$FindBin::RealBin/../../tools/es_listen";
	unlink "$base.ready";
	my $handle = IPC::Run::start(
		[ $tool, '-d', $node->connstr($db), '-i', '600000', '-r', "$base.ready", @channels ],
		'>', "$base.out", '2>', "$base.err");
	foreach (1 .. 300)
	{
		last if -e "$base.ready";
		usleep(50_000);
	}
	die "listener did not start: " . slurp_file("$base.err") unless -e "$base.ready";
	return { handle => $handle, out => "$base.out" };
}

# What the listener received so far: a list of [channel, payload].
sub listener_lines
{
	my ($listener) = @_;
	return () unless -e $listener->{out};
	return map { [ split /\t/, $_, 2 ] } grep { length } split /\n/, slurp_file($listener->{out});
}

# Wait until the listener received at least $count notifications (on
# $channel, if given), at most $seconds.  Returns them.
sub wait_for_lines
{
	my ($listener, $count, $seconds, $channel) = @_;
	my $deadline = time + $seconds;
	my @lines;
	while (1)
	{
		@lines = grep { !defined $channel || $_->[0] eq $channel } listener_lines($listener);
		last if @lines >= $count || time > $deadline;
		usleep(20_000);
	}
	return @lines;
}

sub stop_listener
{
	my ($listener) = @_;
	$listener->{handle}->kill_kill;
	$listener->{handle}->finish;
}

# Whether process $pid has exited (or is a zombie nobody reaped yet).
sub process_gone
{
	my ($pid) = @_;
	return 1 unless kill(0, $pid);
	if (open my $stat, '<', "/proc/$pid/stat")
	{
		my $line = <$stat>;
		close $stat;
		return 1 if defined $line && $line =~ /^\d+ \(.*\) Z/;
	}
	return 0;
}

# kill -9 the postmaster of $node, wait until it and all its children are
# gone, and start the node again (crash recovery).
sub crash_and_restart
{
	my ($node) = @_;
	my $pidfile = $node->data_dir . '/postmaster.pid';
	my $postmaster = (split /\n/, slurp_file($pidfile))[0];
	my $name = $node->name;

	$node->kill9;
	foreach (1 .. 300)
	{
		last if process_gone($postmaster);
		usleep(100_000);
	}
	die "postmaster $postmaster did not exit" unless process_gone($postmaster);

	# Backends notice the postmaster's death and exit; wait for them, since
	# the shared memory they hold would stop the new postmaster.
	foreach (1 .. 300)
	{
		# The bracket keeps the pattern from matching the shell running it.
		my $left = `pgrep -f '[p]ostgres: $name: ' | wc -l`;
		last if $left == 0;
		usleep(100_000);
	}
	# A killed postmaster can stay a zombie for a while here; its lock files
	# would make the new one think it still runs.
	unlink $pidfile;
	unlink $node->host . '/.s.PGSQL.' . $node->port . '.lock';
	$node->start;
}

# An appender that stays open in another database must not hold back the
# feed of database postgres.  Returns whether read_all in postgres showed an
# event committed after the other database's appender took its position.
sub other_database_does_not_hold_back
{
	my ($node) = @_;
	$node->safe_psql('postgres', 'CREATE DATABASE other_db');
	$node->safe_psql('other_db', 'CREATE EXTENSION event_store');
	my $head = $node->safe_psql('postgres', 'SELECT event_store.feed_head()');
	my $other = $node->background_psql('other_db');
	$other->query_safe(q{BEGIN; SELECT event_store.append_event('elsewhere-1', 'T', '{}')});
	$node->safe_psql('postgres', q{SELECT event_store.append_event('here-1', 'T', '{}')});
	my $shown = $node->safe_psql('postgres',
		"SELECT string_agg(stream, ',') FROM event_store.read_all($head + 1)");
	$other->query_safe('ROLLBACK');
	$other->quit;
	$node->safe_psql('postgres', 'DROP DATABASE other_db');
	return $shown eq 'here-1';
}

1;
