# Stress test of the gap-safe feed.
#
# pgbench writers append to random streams, sleep a random time inside their
# transactions and roll back one transaction in ten, so positions commit out
# of order all the time.  Meanwhile consumers tail the feed by checkpoint,
# each batch in its own transaction:
#   - read_all under READ COMMITTED and under REPEATABLE READ,
#   - read_category with a consumer group of three members,
#   - and, as a control, a naive consumer that reads the table in position
#     order (what a bigserial-ordered store does).
# Every gap-safe consumer must see every committed event exactly once, in
# position order; the group members must split the category without overlap
# and without splitting a stream.  The naive consumer's misses are reported:
# they show the test can catch the bug it guards against.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use IPC::Run;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use EventStoreTest;

my $duration = $ENV{ES_STRESS_SECONDS} // 15;

my $node = PostgreSQL::Test::Cluster->new('feed_stress');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'event_store'");
$node->append_conf('postgresql.conf', "max_connections = 40");
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION event_store;
CREATE TABLE stress_control (stop boolean NOT NULL);
INSERT INTO stress_control VALUES (false);
CREATE TABLE consumed (
	consumer text NOT NULL,
	seq bigserial,
	position bigint NOT NULL,
	stream text NOT NULL,
	recorded_at timestamptz NOT NULL,
	consumed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- A consumer: read a batch after the checkpoint, record it, move the
-- checkpoint to the last position seen, commit; until told to stop, then
-- drain what is left.
-- Its isolation level is the session's default_transaction_isolation.
CREATE PROCEDURE consume(consumer text, mode text, member integer DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
	checkpoint bigint := 0;
	last bigint;
	progressed boolean;
	stopping boolean := false;
BEGIN
	COMMIT;
	LOOP
		progressed := false;
		-- Two batches per transaction, so that REPEATABLE READ readers also
		-- read on from a checkpoint with an old snapshot.
		FOR i IN 1..2 LOOP
			IF mode = 'all' THEN
				WITH batch AS (
					INSERT INTO consumed (consumer, position, stream, recorded_at)
					SELECT consume.consumer, e.position, e.stream, e.recorded_at
					FROM event_store.read_all(checkpoint + 1, 50) AS e
					RETURNING position)
				SELECT max(position) INTO last FROM batch;
			ELSIF mode = 'category' THEN
				WITH batch AS (
					INSERT INTO consumed (consumer, position, stream, recorded_at)
					SELECT consume.consumer, e.position, e.stream, e.recorded_at
					FROM event_store.read_category('order', checkpoint + 1, 50, member, 3) AS e
					RETURNING position)
				SELECT max(position) INTO last FROM batch;
			ELSE
				WITH batch AS (
					INSERT INTO consumed (consumer, position, stream, recorded_at)
					SELECT consume.consumer, e.position, e.stream, e.recorded_at
					FROM event_store.events AS e
					WHERE e.position > checkpoint ORDER BY e.position LIMIT 50
					RETURNING position)
				SELECT max(position) INTO last FROM batch;
			END IF;
			EXIT WHEN last IS NULL;
			checkpoint := last;
			progressed := true;
		END LOOP;
		-- Once the writers have stopped, drain until a batch comes back empty.
		EXIT WHEN stopping AND NOT progressed;
		IF NOT stopping THEN
			SELECT stop INTO stopping FROM stress_control;
		END IF;
		PERFORM pg_sleep(0.001);
		COMMIT;
	END LOOP;
END
$$;
});

ok(other_database_does_not_hold_back($node),
	'an open appender in another database does not hold the feed back');

my $script = $node->basedir . '/writer.sql';
PostgreSQL::Test::Utils::append_to_file($script, q{
\set s random(1, 300)
\set n random(1, 3)
\set d random(0, 20)
\set r random(1, 10)
BEGIN;
SELECT event_store.append(CASE WHEN :s % 3 = 0 THEN 'user-' ELSE 'order-' END || :s,
	(SELECT jsonb_agg(jsonb_build_object('type', 'Happened', 'data', i)) FROM generate_series(1, :n) AS i));
\sleep :d ms
\if :r = 1
ROLLBACK;
\else
COMMIT;
\endif
});

my @consumers = (
	[ 'all_rc',   'all',      'read committed',  'NULL' ],
	[ 'all_rr',   'all',      'repeatable read', 'NULL' ],
	[ 'member_0', 'category', 'read committed',  0 ],
	[ 'member_1', 'category', 'read committed',  1 ],
	[ 'member_2', 'category', 'repeatable read', 2 ],
	[ 'naive',    'naive',    'read committed',  'NULL' ],);
my %sessions;
foreach my $c (@consumers)
{
	my ($name, $mode, $isolation, $member) = @$c;
	my $session = $node->background_psql('postgres');
	$session->query_until(qr/started/,
		"SET default_transaction_isolation = '$isolation';\n"
		  . "\\echo started\nCALL consume('$name', '$mode', $member);\n");
	$sessions{$name} = $session;
}

my ($out, $err) = ('', '');
my $pgbench = IPC::Run::start(
	[
		'pgbench', '-n', '-c', '6', '-j', '2', '-T', $duration, '-f', $script,
		'-h', $node->host, '-p', $node->port, 'postgres'
	],
	'>', \$out, '2>', \$err);
$pgbench->finish;
like($out, qr/number of transactions actually processed: [1-9]/, 'writers ran');
diag(join("\n", grep { /^(tps|number of transactions)/ } split /\n/, $out));

$node->safe_psql('postgres', 'UPDATE stress_control SET stop = true');
$_->quit foreach values %sessions;

my $committed = $node->safe_psql('postgres', 'SELECT count(*) FROM event_store.events');
cmp_ok($committed, '>', 100, "writers committed events ($committed)");

foreach my $name ('all_rc', 'all_rr')
{
	is( $node->safe_psql(
			'postgres', qq{
		SELECT count(*) FILTER (WHERE c.position IS NULL) || ' missed, ' ||
			   count(*) FILTER (WHERE e.position IS NULL) || ' phantom, ' ||
			   (SELECT count(*) - count(DISTINCT position) FROM consumed WHERE consumer = '$name') || ' duplicated'
		FROM (SELECT position FROM consumed WHERE consumer = '$name') AS c
		FULL JOIN event_store.events AS e USING (position)}),
		'0 missed, 0 phantom, 0 duplicated',
		"$name saw every committed event exactly once");
	is( $node->safe_psql(
			'postgres', qq{
		SELECT count(*) FROM (SELECT position, lag(position) OVER (ORDER BY seq) AS previous
							  FROM consumed WHERE consumer = '$name') AS s
		WHERE position <= previous}),
		'0',
		"$name saw events in position order");
}

is( $node->safe_psql(
		'postgres', q{
	SELECT (SELECT count(*) FROM event_store.events WHERE event_store.category(stream) = 'order') || ' in category, ' ||
		   count(DISTINCT position) || ' delivered, ' ||
		   (count(*) - count(DISTINCT position)) || ' delivered twice'
	FROM consumed WHERE consumer LIKE 'member_%'}),
	$node->safe_psql('postgres',
		q{SELECT count(*) || ' in category, ' || count(*) || ' delivered, 0 delivered twice' FROM event_store.events WHERE event_store.category(stream) = 'order'}
	),
	'the three members together saw the category exactly once');
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FROM (SELECT stream FROM consumed WHERE consumer LIKE 'member_%'
						  GROUP BY stream HAVING count(DISTINCT consumer) > 1) AS s}),
	'0',
	'no stream was split between members');
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FROM (SELECT consumer, position, lag(position) OVER (PARTITION BY consumer ORDER BY seq) AS previous
						  FROM consumed WHERE consumer LIKE 'member_%') AS s
	WHERE position <= previous}),
	'0',
	'each member saw its events in position order');

# The control: what a position-ordered read without the gap-safe head missed.
my $naive_missed = $node->safe_psql(
	'postgres', q{
	SELECT count(*) FROM event_store.events AS e
	WHERE NOT EXISTS (SELECT FROM consumed AS c WHERE c.consumer = 'naive' AND c.position = e.position)});
diag("naive position-ordered consumer missed $naive_missed of $committed committed events");

# Consumer lag: from append (recorded_at, before the writer's sleep and
# commit) to the moment the consumer read the event.
diag(
	$node->safe_psql(
		'postgres', q{
	SELECT format('lag of %s: p50 %s ms, p99 %s ms, max %s ms', consumer,
		round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
		round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1),
		round(max(ms)::numeric, 1))
	FROM (SELECT consumer, extract(epoch FROM consumed_at - recorded_at) * 1000 AS ms
		  FROM consumed WHERE consumer IN ('all_rc', 'all_rr', 'member_0')) AS l
	GROUP BY consumer ORDER BY consumer}));

$node->stop;
done_testing();
