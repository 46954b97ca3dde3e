# Crash safety of the event log and the feed: kill -9 the postmaster while
# appenders are in flight and a subscription consumer is acknowledging.
# After recovery:
#   - every append the clients saw succeed is in the log;
#   - events of transactions open at the crash are not;
#   - positions keep rising above every position used before the crash;
#   - the consumer resumes from its stored checkpoint and, having recorded
#     events and acknowledged them in one transaction, ends with every event
#     exactly once.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use IPC::Run;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use EventStoreTest;

my $node = PostgreSQL::Test::Cluster->new('feed_crash');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'event_store'");
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION event_store;
SELECT event_store.subscription_create('crash_consumer');
CREATE TABLE consumed (position bigint NOT NULL, stream text NOT NULL);

-- Fetch, record and acknowledge in one transaction, until told how many
-- empty batches to accept before returning (NULL: never).
CREATE PROCEDURE consume(empty_batches_to_stop integer)
LANGUAGE plpgsql AS $$
DECLARE
	last bigint;
	empty integer := 0;
BEGIN
	LOOP
		WITH batch AS (
			INSERT INTO consumed
			SELECT e.position, e.stream FROM event_store.subscription_fetch('crash_consumer', 20) AS e
			RETURNING position)
		SELECT max(position) INTO last FROM batch;
		IF last IS NULL THEN
			empty := empty + 1;
			EXIT WHEN empty >= empty_batches_to_stop;
		ELSE
			PERFORM event_store.subscription_ack('crash_consumer', last);
		END IF;
		COMMIT;
		PERFORM pg_sleep(0.002);
	END LOOP;
END
$$;
});

# Writers: autocommit appends with known ids.  psql prints a line once the
# server has answered, that is once the commit is durable.
my @writers;
foreach my $w (1 .. 4)
{
	my $script = '';
	foreach my $k (1 .. 20000)
	{
		my $id = sprintf('%08d-0000-4000-8000-%012d', $w, $k);
		$script .=
		  "SELECT '$id' FROM event_store.append_event('crash-$w-" . ($k % 25) . "', 'T', '{}', NULL, NULL, '$id');\n";
	}
	my $base = $node->basedir . "/writer_$w";
	PostgreSQL::Test::Utils::append_to_file("$base.sql", $script);
	my $h = IPC::Run::start(
		[
			'psql', '-X', '-At', '-v', 'ON_ERROR_STOP=1', '-h', $node->host,
			'-p', $node->port, '-d', 'postgres', '-f', "$base.sql"
		],
		'>', "$base.out", '2>', "$base.err");
	push @writers, [ $h, "$base.out" ];
}

# Transactions open at the crash: their events must not survive.
my $open = $node->background_psql('postgres');
$open->query_safe(
	q{BEGIN; SELECT event_store.append_event('open-1', 'T', '{}', NULL, NULL, 'ffffffff-0000-4000-8000-000000000001');}
);

my $consumer = $node->background_psql('postgres');
$consumer->query_until(qr/started/, "\\echo started\nCALL consume(NULL);\n");

# Let work pile up, then crash.
$node->poll_query_until('postgres',
	q{SELECT count(*) >= 500 FROM event_store.events}) or die "writers did not start";
$node->poll_query_until('postgres', q{SELECT count(*) >= 100 FROM consumed})
  or die "consumer did not start";
my $before = $node->safe_psql('postgres', 'SELECT max(position) FROM event_store.events');
crash_and_restart($node);

foreach my $w (@writers)
{
	eval { $w->[0]->finish; };
}
eval { $open->quit; };
eval { $consumer->quit; };

my @acknowledged =
  map { grep { /^\d{8}-0000-4000-8000-\d{12}$/ } split /\n/, slurp_file($_->[1]) } @writers;
cmp_ok(scalar(@acknowledged), '>', 0, scalar(@acknowledged) . ' appends were acknowledged before the crash');
cmp_ok(scalar(@acknowledged), '<', 80000, 'the crash came while the writers were still appending');
my $id_list = join(',', map { "'$_'" } @acknowledged);
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM unnest(ARRAY[$id_list]::uuid[]) AS a(id)
		 WHERE NOT EXISTS (SELECT FROM event_store.events AS e WHERE e.id = a.id)"),
	'0',
	'every acknowledged append survived the crash');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM event_store.events WHERE stream = 'open-1'}),
	'0',
	'the append of a transaction open at the crash is gone');
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FROM (SELECT stream, version, lag(version) OVER (PARTITION BY stream ORDER BY version) AS previous
						  FROM event_store.events) AS s
	WHERE previous IS NOT NULL AND version <> previous + 1}),
	'0',
	'stream versions have no gaps');

my $checkpoint = $node->safe_psql('postgres',
	q{SELECT checkpoint FROM event_store.subscription_lag WHERE subscription = 'crash_consumer'});
cmp_ok($checkpoint, '>', 0, "the consumer's checkpoint survived ($checkpoint)");

# Positions keep rising.
my $max_before_restart = $node->safe_psql('postgres', 'SELECT max(position) FROM event_store.events');
$node->safe_psql('postgres',
	q{SELECT event_store.append_event('after-' || i, 'T', '{}') FROM generate_series(1, 10) AS i});
is( $node->safe_psql(
		'postgres',
		"SELECT min(position) > $max_before_restart AND min(position) > $before FROM event_store.events WHERE stream LIKE 'after-%'"
	),
	't',
	'positions after the crash are above every position used before it');

# The consumer resumes from its checkpoint and drains the feed.
$node->safe_psql('postgres', 'CALL consume(3)');
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FILTER (WHERE c.position IS NULL) || ' missed, ' ||
		   count(*) FILTER (WHERE e.position IS NULL) || ' phantom, ' ||
		   (SELECT count(*) - count(DISTINCT position) FROM consumed) || ' duplicated'
	FROM consumed AS c FULL JOIN event_store.events AS e USING (position)}),
	'0 missed, 0 phantom, 0 duplicated',
	'after resuming, the consumer has every event exactly once');

$node->stop;
done_testing();
