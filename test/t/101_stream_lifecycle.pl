# Stream lifecycle under a crash, and erasure down to the files.
#
# Scavenging through a crash: writers append to streams with retention and
# to streams without, a scavenger removes what retention covers in small
# transactions, and a filtered subscription consumer records what it gets,
# when the postmaster is killed.  After recovery every acknowledged event
# that retention does not cover is there, versions continue, positions
# rise above every position used before, the consumer has every event of
# its filter exactly once, and scavenging finishes the job.
#
# Erasure: after erase_stream, VACUUM and scavenge, a marker string that
# was in an event's data and metadata, and in the outbox message and the
# dead letter routed from it, is in none of the tables' files.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use IPC::Run;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use EventStoreTest;

my $node = PostgreSQL::Test::Cluster->new('stream_lifecycle');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'event_store'");
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION event_store;
SELECT event_store.set_stream_metadata('log-' || i, max_count => 5)
FROM generate_series(1, 10) AS i;
SELECT event_store.subscription_create('keeper', event_types => '{Keep}');
CREATE TABLE consumed (position bigint NOT NULL, id uuid NOT NULL);

CREATE PROCEDURE consume(empty_batches_to_stop integer)
LANGUAGE plpgsql AS $$
DECLARE
	last bigint;
	empty integer := 0;
BEGIN
	LOOP
		WITH batch AS (
			INSERT INTO consumed
			SELECT e.position, e.id FROM event_store.subscription_fetch('keeper', 20) AS e
			RETURNING position)
		SELECT max(position) INTO last FROM batch;
		IF last IS NULL THEN
			empty := empty + 1;
			EXIT WHEN empty >= empty_batches_to_stop;
		ELSE
			PERFORM event_store.subscription_ack('keeper', last);
		END IF;
		COMMIT;
		PERFORM pg_sleep(0.002);
	END LOOP;
END
$$;

CREATE PROCEDURE scavenge_forever()
LANGUAGE plpgsql AS $$
BEGIN
	LOOP
		PERFORM event_store.scavenge(50);
		COMMIT;
		PERFORM pg_sleep(0.005);
	END LOOP;
END
$$;
});

# Writers: autocommit appends with known ids; psql prints the id once the
# commit is durable.  Half the events go to streams with retention (type
# Log), half to streams without (type Keep).
my @writers;
foreach my $w (1 .. 2)
{
	my $script = '';
	foreach my $k (1 .. 20000)
	{
		my $id = sprintf('%08d-0000-4000-8000-%012d', $w, $k);
		my ($stream, $type) =
		  $k % 2 ? ('log-' . ($k % 10 + 1), 'Log') : ("keep-$w-" . ($k % 7), 'Keep');
		$script .=
		  "SELECT '$id' FROM event_store.append_event('$stream', '$type', '{}', NULL, NULL, '$id');\n";
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

my $consumer = $node->background_psql('postgres');
$consumer->query_until(qr/started/, "\\echo started\nCALL consume(NULL);\n");
my $scavenger = $node->background_psql('postgres');
$scavenger->query_until(qr/started/, "\\echo started\nCALL scavenge_forever();\n");

# A soft-deleted stream whose events the scavenger removes entirely.
$node->safe_psql('postgres', q{
SELECT event_store.append_event('gone-1', 'Log', '{}') FROM generate_series(1, 3);
SELECT event_store.delete_stream('gone-1', soft => true);
});

$node->poll_query_until('postgres',
	q{SELECT count(*) >= 1000 FROM event_store.events}) or die "writers did not start";
$node->poll_query_until('postgres', q{SELECT count(*) >= 100 FROM consumed})
  or die "consumer did not start";
$node->poll_query_until('postgres',
	q{SELECT removed_through = 2 FROM event_store.stream_settings WHERE stream = 'gone-1'})
  or die "scavenger did not remove the soft-deleted stream";
my $before = $node->safe_psql('postgres', q{SELECT event_store.feed_head()});
my %version_before = split /[|\n]/, $node->safe_psql('postgres',
	q{SELECT stream, event_store.stream_version(stream) FROM event_store.stream_settings WHERE stream LIKE 'log-%'});
crash_and_restart($node);

foreach my $w (@writers)
{
	eval { $w->[0]->finish; };
}
eval { $consumer->quit; };
eval { $scavenger->quit; };

my @acknowledged =
  map { grep { /^\d{8}-0000-4000-8000-\d{12}$/ } split /\n/, slurp_file($_->[1]) } @writers;
cmp_ok(scalar(@acknowledged), '>', 0, scalar(@acknowledged) . ' appends were acknowledged before the crash');
cmp_ok(scalar(@acknowledged), '<', 40000, 'the crash came while the writers were still appending');
my @kept = grep { /(\d+)$/ && $1 % 2 == 0 } @acknowledged;
my $id_list = join(',', map { "'$_'" } @kept);
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM unnest(ARRAY[$id_list]::uuid[]) AS a(id)
		 WHERE NOT EXISTS (SELECT FROM event_store.events AS e WHERE e.id = a.id)"),
	'0',
	'every acknowledged event without retention survived the crash');
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FROM (SELECT stream, version, lag(version) OVER (PARTITION BY stream ORDER BY version) AS previous
						  FROM event_store.events) AS s
	WHERE previous IS NOT NULL AND version <> previous + 1}),
	'0',
	'what retention leaves of each stream has no gaps');

# Versions continue, also for the stream the scavenger emptied.
my $ok = 1;
foreach my $stream (sort keys %version_before)
{
	my $v = $node->safe_psql('postgres', "SELECT event_store.stream_version('$stream')");
	$ok = 0 if $v < $version_before{$stream};
}
ok($ok, 'no stream with retention went back in version');
is($node->safe_psql('postgres',
		q{SELECT event_store.append_event('gone-1', 'Log', '{}', expected_version => -1)}),
	'3', 'the emptied soft-deleted stream continues at its next version');

my $max_before_restart = $node->safe_psql('postgres', 'SELECT max(position) FROM event_store.events');
$node->safe_psql('postgres',
	q{SELECT event_store.append_event('after-' || i, 'Keep', '{}') FROM generate_series(1, 10) AS i});
is( $node->safe_psql(
		'postgres',
		"SELECT min(position) > $max_before_restart AND min(position) > $before FROM event_store.events WHERE stream LIKE 'after-%'"
	),
	't',
	'positions after the crash are above every position used before it');

# Scavenging finishes the job; the filtered consumer drains its events.
$node->safe_psql('postgres', 'SELECT event_store.scavenge()');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM (SELECT stream FROM event_store.events WHERE stream LIKE 'log-%'
								GROUP BY stream HAVING count(*) > 5) AS s}),
	'0',
	'after scavenging, streams with max_count 5 keep at most 5 events');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM event_store.read_stream('log-2')}),
	'5', 'read_stream shows the last 5');
$node->safe_psql('postgres', 'CALL consume(3)');
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FILTER (WHERE c.position IS NULL) || ' missed, ' ||
		   count(*) FILTER (WHERE e.position IS NULL) || ' phantom, ' ||
		   (SELECT count(*) - count(DISTINCT position) FROM consumed) || ' duplicated'
	FROM consumed AS c
	FULL JOIN (SELECT * FROM event_store.events WHERE type = 'Keep') AS e USING (position)}),
	'0 missed, 0 phantom, 0 duplicated',
	'the filtered consumer has every event of its filter exactly once');

# Erasure down to the files, in a database of its own (a table that
# starts empty, so that the rows lie where this test puts them: the erased
# row is the last of a full page, and its new version goes to another page,
# which is the case where VACUUM leaves the old bytes in the page).
$node->safe_psql('postgres', 'CREATE DATABASE gdpr');
$node->safe_psql('gdpr', q{
CREATE EXTENSION event_store;
SELECT event_store.route_events('users', 'user');
SELECT max_attempts FROM event_store.outbox_configure('users', max_attempts => 1);
SELECT event_store.append_event('other-1', 'X', jsonb_build_object('pad', repeat('x', 300)))
FROM generate_series(1, 19);
SELECT event_store.append_event('user-1', 'Registered',
	jsonb_build_object('email', 'MARKER-a7f3@example.com', 'pad', repeat('x', 300)),
	'{"ip": "MARKER-a7f3"}');
SELECT event_store.append_event('user-1', 'Renamed', '{"name": "MARKER-a7f3"}');
-- The first message dies: a dead letter; the second stays in the outbox.
SELECT event_store.outbox_nack(array_agg(receipt), error => 'failed')
FROM event_store.outbox_claim('users', 1);
});

my @tables = ('events', 'outbox', 'outbox_dead_letters');
sub marker_files
{
	$node->safe_psql('gdpr', 'CHECKPOINT');
	my @found;
	foreach my $table (@tables)
	{
		my $path = $node->data_dir . '/'
		  . $node->safe_psql('gdpr', "SELECT pg_relation_filepath('event_store.$table')");
		foreach my $file (glob("$path $path.*"))
		{
			next unless -f $file;
			my $bytes = slurp_file($file);
			push @found, $table if index($bytes, 'MARKER-a7f3') >= 0;
		}
	}
	return join(',', @found);
}

is(marker_files(), 'events,outbox,outbox_dead_letters',
	'before erasure the marker is in the files of the log, the outbox and the dead letters');
is($node->safe_psql('gdpr', q{SELECT event_store.erase_stream('user-1')}),
	'2', 'erase_stream erases the two events');
$node->safe_psql('gdpr',
	'VACUUM event_store.events, event_store.outbox, event_store.outbox_dead_letters');
note('after VACUUM alone the marker is in: ' . marker_files());
$node->safe_psql('gdpr', 'SELECT event_store.scavenge()');
is($node->safe_psql('gdpr', 'SELECT count(*) FROM event_store.erased_pages'),
	'0', 'scavenge wiped every page the erasure left');
is(marker_files(), '', 'after VACUUM and scavenge the marker is in no file');
is( $node->safe_psql(
		'gdpr',
		q{SELECT string_agg(version || ':' || type || ':' || data::text || ':' || coalesce(metadata::text, '-'), ' ' ORDER BY version)
		  FROM event_store.read_stream('user-1')}),
	'0:Registered:null:- 1:Renamed:null:-',
	'the erased events keep their versions and types');

# The relay workers scavenge on their schedule.
$node->safe_psql('postgres', q{
SELECT event_store.append_event('auto-1', 'Log', '{}') FROM generate_series(1, 30);
SELECT event_store.set_stream_metadata('auto-1', max_count => 3);
ALTER SYSTEM SET event_store.scavenge_interval = '1s';
ALTER SYSTEM SET event_store.scavenge_batch = 10;
SELECT pg_reload_conf();
});
ok( $node->poll_query_until(
		'postgres', q{SELECT count(*) = 3 FROM event_store.events WHERE stream = 'auto-1'}),
	'the relay workers scavenge on their schedule, in batches');

# A restart replays the wiped pages from their full-page images.
crash_and_restart($node);
is(marker_files(), '', 'after crash recovery the marker is in no file');

$node->stop;
done_testing();
