# The feed on a hot standby, under load.  A standby cannot know which
# positions the primary has reserved for rows not yet replayed (a large,
# TOASTed event reaches the WAL well after its reservation), so every feed
# read there is refused with 55000 instead of skipping events: read_all,
# read_category, feed_head, subscription_fetch.  The views stay readable
# and say so (NULL head, state 'standby').  read_stream works and its
# versions have no gaps.  On the primary, a consumer reading by checkpoint
# under the same load misses nothing.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep time);

my $primary = PostgreSQL::Test::Cluster->new('standby_feed_primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', "shared_preload_libraries = 'event_store'");
$primary->start;
$primary->safe_psql('postgres', 'CREATE EXTENSION event_store');
# The outcome of a statement as its SQLSTATE ('ok' when it succeeds).
$primary->safe_psql('postgres', q{
CREATE FUNCTION public.outcome(statement text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE statement;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END
$$;
SELECT event_store.subscription_create('audit');
SELECT event_store.subscription_create('orders', 'order', 2);
});

$primary->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('standby_feed_standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->start;

# Three writers for a few seconds: small events, 100 kB events (TOASTed,
# hardly compressible) and batches, each with random pauses, some rolled
# back.
my $seconds = 6;
my @writers;
foreach my $kind ('small', 'large', 'batch')
{
	my $event = $kind eq 'large'
	  ? q{jsonb_build_object('blob', (SELECT string_agg(md5(random()::text || g), '') FROM generate_series(1, 3200) AS g))}
	  : q{jsonb_build_object('n', i)};
	my $append = $kind eq 'batch'
	  ? qq{PERFORM event_store.append('$kind-' || (i % 7),
			(SELECT jsonb_agg(jsonb_build_object('type', 'T', 'data', $event)) FROM generate_series(1, 5)))}
	  : qq{PERFORM event_store.append_event('$kind-' || (i % 7), 'T', $event)};
	my $sql = qq{
DO \$\$
DECLARE
	i integer := 0;
	stop timestamptz := clock_timestamp() + interval '$seconds seconds';
BEGIN
	WHILE clock_timestamp() < stop LOOP
		i := i + 1;
		BEGIN
			$append;
			IF random() < 0.1 THEN
				RAISE EXCEPTION 'roll back';
			END IF;
		EXCEPTION WHEN raise_exception THEN
			NULL;
		END;
		COMMIT;
		PERFORM pg_sleep(random() * 0.01);
	END LOOP;
END
\$\$;};
	my $writer = { err => '' };
	$writer->{handle} = IPC::Run::start(
		[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $primary->connstr('postgres'), '-c', $sql ],
		'>', \my $out, '2>', \$writer->{err});
	push @writers, $writer;
}

# Meanwhile: a consumer on the primary reads by checkpoint; the standby is
# asked for the feed again and again.
my $standby_probe = q{
SELECT string_agg(outcome, ',') FROM (VALUES
	(public.outcome('SELECT * FROM event_store.read_all(1, 1000)')),
	(public.outcome($s$SELECT * FROM event_store.read_category('large', 1)$s$)),
	(public.outcome('SELECT event_store.feed_head()')),
	(public.outcome($s$SELECT * FROM event_store.subscription_fetch('audit', 1000)$s$)),
	(public.outcome($s$SELECT * FROM event_store.subscription_fetch('orders', 10, 1)$s$))) AS o(outcome)};
my %seen;
my $checkpoint = 0;
my $skips_or_twice = 0;
my %standby_outcomes;
my $deadline = time + $seconds + 2;
while (time < $deadline)
{
	my $rows = $primary->safe_psql('postgres',
		"SELECT string_agg(position::text, ',' ORDER BY position) FROM event_store.read_all($checkpoint + 1, 500)");
	foreach my $p (split /,/, $rows)
	{
		$skips_or_twice++ if $seen{$p}++;
		$checkpoint = $p;
	}
	$standby_outcomes{ $standby->safe_psql('postgres', $standby_probe) }++;
}
my @finished = map { $_->{handle}->finish ? 'ok' : $_->{err} } @writers;
is("@finished", 'ok ok ok', 'the writers ran');

# Catch the primary consumer up, then compare with every committed event.
while (1)
{
	my $rows = $primary->safe_psql('postgres',
		"SELECT string_agg(position::text, ',' ORDER BY position) FROM event_store.read_all($checkpoint + 1, 5000)");
	last if $rows eq '';
	foreach my $p (split /,/, $rows)
	{
		$skips_or_twice++ if $seen{$p}++;
		$checkpoint = $p;
	}
}
my $committed = $primary->safe_psql('postgres', 'SELECT count(*) FROM event_store.events');
cmp_ok($committed, '>', 50, "the load appended events ($committed)");
is(scalar(keys %seen), $committed, 'the consumer on the primary saw every committed event');
is($skips_or_twice, 0, 'and none twice');
is( $primary->safe_psql('postgres',
		q{SELECT count(*) FROM event_store.events WHERE pg_column_size(data) > 8000}) > 0 ? 'yes' : 'no',
	'yes', 'large events were stored out of line');

cmp_ok(scalar(map { $_ } values %standby_outcomes), '>', 0, 'the standby was probed');
is(join(' ', sort keys %standby_outcomes), '55000,55000,55000,55000,55000',
	'every feed read on the standby under load was refused with 55000');

$primary->wait_for_catchup($standby);
my ($ret, $stdout, $stderr) = $standby->psql('postgres', 'SELECT * FROM event_store.read_all()');
like($stderr, qr/the feed cannot be read on a hot standby/, 'the error says why');
like($stderr, qr/read_stream works on a standby/, 'and what works');

# The standby has every stream, gap-free, as the primary.
my $streams_sql = q{
SELECT string_agg(s.stream || ':' || v.versions, ' ' ORDER BY s.stream)
FROM (SELECT DISTINCT stream FROM event_store.events) AS s,
	 LATERAL (SELECT count(*) || '/' || coalesce(max(version), -1) || '/' ||
					 bool_and(version = ordinality - 1) AS versions
			  FROM event_store.read_stream(s.stream, 0, 100000) WITH ORDINALITY) AS v};
my $on_primary = $primary->safe_psql('postgres', $streams_sql);
is($standby->safe_psql('postgres', $streams_sql), $on_primary,
	'read_stream on the standby: every stream, no gaps, as on the primary');
unlike($on_primary, qr/false/, 'stream versions have no gaps');

# The views are honest: no head on a standby.
is($standby->safe_psql('postgres',
		'SELECT coalesce(head::text, \'null\'), coalesce(held_back_events::text, \'null\'), state, last_position FROM event_store.feed_status'),
	"null|null|standby|" . $primary->safe_psql('postgres', 'SELECT max(position) FROM event_store.events'),
	'feed_status on the standby: no head, state standby');
is($standby->safe_psql('postgres',
		q{SELECT count(*), count(head), count(pending_events) FROM event_store.subscription_lag}),
	'3|0|0', 'subscription_lag on the standby: no head, no pending count');

# With position 1 of a new transaction open on the primary and a later one
# committed, the primary holds its head below the open one.
my $slow = $primary->background_psql('postgres');
$slow->query_safe(q{BEGIN; SELECT event_store.append_event('slow-1', 'T', '{}')});
$primary->safe_psql('postgres', q{SELECT event_store.append_event('fast-1', 'T', '{}')});
is( $primary->safe_psql('postgres',
		q{SELECT head < (SELECT position FROM event_store.events WHERE stream = 'fast-1'),
				 held_back_events FROM event_store.feed_status}),
	't|1', 'the primary holds its head below the open appender');
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', q{SELECT coalesce(head::text, 'null'), state FROM event_store.feed_status}),
	'null|standby', 'the standby shows no head rather than a wrong one');
$slow->query_safe('COMMIT');
$slow->quit;

$standby->stop;
$primary->stop;
done_testing();
