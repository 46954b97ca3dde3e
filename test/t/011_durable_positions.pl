# Positions never go backwards: no position at or below a head the feed
# ever showed is handed out again, across a clean restart after VACUUM
# removed the rows of a rolled back tail, across crashes (kill -9 of the
# postmaster or of the WAL writer right after a rolled back append) and
# across the promotion of a standby.
# With the library preloaded (shared counter) and without (fallback).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use FindBin;
use lib "$FindBin::RealBin/../perl";
use EventStoreTest;

# The steps of a subscription created at the head of a feed whose last
# append rolled back: after VACUUM and a restart, the next event must be
# above that head, and the subscription must see it.
sub rolled_back_tail
{
	my ($node, $mode) = @_;
	$node->safe_psql('postgres', q{SELECT event_store.append_event('order-1', 'Placed', '{}')});
	$node->safe_psql('postgres', q{
		BEGIN;
		SELECT event_store.append_event('order-2', 'Placed', '{}');
		ROLLBACK;});
	my $head = $node->safe_psql('postgres', 'SELECT event_store.feed_head()');
	my $last = $node->safe_psql('postgres', 'SELECT max(position) FROM event_store.events');
	cmp_ok($head, '>', $last, "$mode: the head ($head) passed the last event ($last)");
	$node->safe_psql('postgres',
		q{SELECT event_store.subscription_create('newsub', NULL, 1, NULL)});
	is($node->safe_psql('postgres',
			q{SELECT position FROM event_store.subscription_checkpoints WHERE subscription = 'newsub'}),
		$head, "$mode: the subscription starts at the head");
	$node->safe_psql('postgres', 'VACUUM event_store.events');
	$node->restart;

	cmp_ok($node->safe_psql('postgres', 'SELECT event_store.feed_head()'),
		'>=', $head, "$mode: after the restart the head is not below $head");
	$node->safe_psql('postgres', q{SELECT event_store.append_event('order-3', 'Placed', '{}')});
	cmp_ok($node->safe_psql('postgres',
			q{SELECT position FROM event_store.events WHERE stream = 'order-3'}),
		'>', $head, "$mode: the next event is above the head shown before");
	is($node->safe_psql('postgres',
			q{SELECT string_agg(stream, ',') FROM event_store.subscription_fetch('newsub')}),
		'order-3', "$mode: the subscription created at the head sees the next event");
}

my $node = PostgreSQL::Test::Cluster->new('durable_positions');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'event_store'
event_store.restart_time = 1
restart_after_crash = on
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION event_store');
rolled_back_tail($node, 'preloaded');

# Raising the high-water mark is invisible to the session: lastval() still
# answers for the caller's own sequence.
is( $node->safe_psql('postgres', q{
		CREATE SEQUENCE my_ids START WITH 42;
		SELECT nextval('my_ids') \g /dev/null
		SELECT event_store.append('bulk-1',
			(SELECT jsonb_agg(jsonb_build_object('type', 'T', 'data', '{}'::jsonb))
			 FROM generate_series(1, 2500))) \g /dev/null
		SELECT lastval();}),
	'42', 'lastval() is not changed by appends that raise the high-water mark');

# kill -9 right after a rolled back append, 20 times: the postmaster (the
# test restarts it) or the WAL writer (the postmaster restarts everything).
# The rolled back append takes a varying number of positions, so that the
# counter often crosses into a new range of the high-water mark just before
# the crash.
my $backwards = 0;
my $appended_above = 0;
foreach my $round (1 .. 20)
{
	my $count = 1 + ($round * 397) % 2200;
	$node->safe_psql('postgres', qq{
		SELECT event_store.append_event('crash-$round', 'Kept', '{}');
		BEGIN;
		SELECT event_store.append('gone-$round',
			(SELECT jsonb_agg(jsonb_build_object('type', 'Gone', 'data', '{}'::jsonb))
			 FROM generate_series(1, $count)));
		ROLLBACK;});
	my $head = $node->safe_psql('postgres', 'SELECT event_store.feed_head()');
	if ($round % 2)
	{
		crash_and_restart($node);
	}
	else
	{
		my $walwriter = $node->safe_psql('postgres',
			q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'walwriter'});
		kill 'KILL', $walwriter;
		foreach (1 .. 600)
		{
			last if process_gone($walwriter);
			usleep(50_000);
		}
		# The postmaster reinitialises; wait until it accepts connections
		# with a new WAL writer.
		$node->poll_query_until('postgres',
			qq{SELECT count(*) = 1 FROM pg_stat_activity
			   WHERE backend_type = 'walwriter' AND pid <> $walwriter})
		  or die "the server did not come back after the WAL writer was killed";
	}
	my $after = $node->safe_psql('postgres', 'SELECT event_store.feed_head()');
	$node->safe_psql('postgres', qq{SELECT event_store.append_event('after-$round', 'Kept', '{}')});
	my $position = $node->safe_psql('postgres',
		qq{SELECT position FROM event_store.events WHERE stream = 'after-$round'});
	$backwards++ if $after < $head;
	$appended_above++ if $position > $head;
	note("round $round: $count rolled back, head $head before, $after after, next event $position");
}
is($backwards, 0, 'after 20 crashes the head was never below the head seen before');
is($appended_above, 20, 'after 20 crashes the next event was always above the head seen before');
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM event_store.events
		WHERE stream LIKE 'crash-%' OR stream LIKE 'after-%'}),
	'40', 'the committed events survived every crash');
$node->stop;

# Promotion of a standby: the head the primary showed, above a rolled back
# tail that VACUUM removed, is below the promoted server's first position.
my $primary = PostgreSQL::Test::Cluster->new('durable_positions_primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', "shared_preload_libraries = 'event_store'");
$primary->start;
$primary->safe_psql('postgres', 'CREATE EXTENSION event_store');
$primary->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('durable_positions_standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->start;
$primary->safe_psql('postgres', q{SELECT event_store.append_event('order-1', 'Placed', '{}')});
$primary->safe_psql('postgres', q{
	BEGIN;
	SELECT event_store.append('order-2',
		(SELECT jsonb_agg(jsonb_build_object('type', 'Gone', 'data', '{}'::jsonb))
		 FROM generate_series(1, 1500)));
	ROLLBACK;});
my $primary_head = $primary->safe_psql('postgres', 'SELECT event_store.feed_head()');
$primary->safe_psql('postgres', 'VACUUM event_store.events');
$primary->wait_for_catchup($standby);
$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()')
  or die "the standby was not promoted";
$standby->safe_psql('postgres', q{SELECT event_store.append_event('order-3', 'Placed', '{}')});
cmp_ok($standby->safe_psql('postgres',
		q{SELECT position FROM event_store.events WHERE stream = 'order-3'}),
	'>', $primary_head, "the promoted standby's first position is above the primary's head ($primary_head)");
$standby->stop;
$primary->stop;

# The same without the library preloaded.
my $plain = PostgreSQL::Test::Cluster->new('durable_positions_fallback');
$plain->init;
$plain->start;
$plain->safe_psql('postgres', 'CREATE EXTENSION event_store');
rolled_back_tail($plain, 'fallback');
$plain->stop;

done_testing();
