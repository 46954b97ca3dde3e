# Claims that wait for messages.  A commit that sends to the topic wakes a
# waiting claim at once: each round starts a claim with a long wait, sends
# once it sleeps, and measures from just before the commit to the claim's
# return.  Then consumers in loops of waiting claims race a sender that
# commits one message at a time: every message is claimed exactly once,
# and no claim sleeps through a commit (a lost wake-up would keep it asleep
# for its whole minute).  Without the library preloaded, a waiting claim is
# refused.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $node = PostgreSQL::Test::Cluster->new('outbox_wait');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'event_store'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION event_store');

# Wake-up latency.
my @latencies;
my $all_claimed = 1;
foreach my $round (1 .. 10)
{
	my ($out, $err) = ('', '');
	my $waiter = IPC::Run::start(
		[ 'psql', '-X', '-A', '-t', '-d', $node->connstr('postgres'), '-c', q{
SELECT count(*) || ' ' || extract(epoch FROM clock_timestamp())
FROM event_store.outbox_claim('latency', 10, wait => '60 seconds')} ],
		'>', \$out, '2>', \$err);
	$node->poll_query_until('postgres', q{
SELECT count(*) = 1 FROM pg_stat_activity
WHERE wait_event_type = 'Extension' AND query LIKE '%outbox_claim(''latency''%'});
	my $before_commit = $node->safe_psql('postgres', q{
BEGIN;
SELECT event_store.outbox_send('latency', '{}') AS id \gset
SELECT extract(epoch FROM clock_timestamp()) AS epoch \gset
COMMIT;
SELECT :epoch;});
	$waiter->finish;
	my ($claimed, $returned) = split ' ', $out;
	$all_claimed &&= (defined $claimed && $claimed == 1);
	push @latencies, ($returned - $before_commit) * 1000 if defined $returned;
	$node->safe_psql('postgres', 'SELECT event_store.outbox_ack_ids(ARRAY(SELECT id FROM event_store.outbox))');
}
@latencies = sort { $a <=> $b } @latencies;
ok($all_claimed && @latencies == 10, 'each waiting claim got the message a commit sent');
my $median = $latencies[ int(@latencies / 2) ];
note sprintf('from before COMMIT to the claim\'s return: median %.1f ms, max %.1f ms',
	$median, $latencies[-1]);
# The machine may be loaded: only a margin far below the wait of a minute.
cmp_ok($median, '<', 1000, 'a commit wakes the waiting claim (not its timeout)');

# Consumers racing a sender that commits one message at a time.
$node->safe_psql('postgres', q{
CREATE TABLE consumed (id bigint, consumer int);
CREATE TABLE slow_claims (consumer int, waited interval);
CREATE PROCEDURE consume(me int) LANGUAGE plpgsql AS $$
DECLARE
	m event_store.outbox_message;
	started timestamptz;
BEGIN
	LOOP
		started := clock_timestamp();
		SELECT * INTO m FROM event_store.outbox_claim('race', 1, wait => '60 seconds');
		IF clock_timestamp() - started > interval '20 seconds' THEN
			INSERT INTO slow_claims VALUES (me, clock_timestamp() - started);
		END IF;
		IF m.id IS NOT NULL THEN
			PERFORM event_store.outbox_ack(ARRAY[m.receipt]);
			EXIT WHEN m.payload = '"stop"';
			INSERT INTO consumed VALUES (m.id, me);
		END IF;
		COMMIT;
	END LOOP;
	COMMIT;
END
$$;});
my @consumers;
foreach my $me (1 .. 2)
{
	my ($out, $err) = ('', '');
	push @consumers, IPC::Run::start(
		[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'),
		  '-c', "CALL consume($me)" ],
		'>', \$out, '2>', \$err);
}
$node->safe_psql('postgres', q{
DO $$
BEGIN
	FOR i IN 1..300 LOOP
		PERFORM event_store.outbox_send('race', to_jsonb(i));
		COMMIT;
		IF i % 7 = 0 THEN
			PERFORM event_store.outbox_send_batch('race', ARRAY[to_jsonb(-i), to_jsonb(-i - 1000)]);
			COMMIT;
		END IF;
	END LOOP;
	PERFORM event_store.outbox_send_batch('race', ARRAY['"stop"', '"stop"']::jsonb[]);
END
$$;});
$_->finish foreach @consumers;
is( $node->safe_psql('postgres',
		'SELECT count(*) || \' \' || count(DISTINCT id) FROM consumed'),
	'384 384', 'every message was claimed once');
is($node->safe_psql('postgres', 'SELECT count(*) FROM slow_claims'),
	'0', 'no waiting claim slept through a commit');
is($node->safe_psql('postgres', 'SELECT count(*) FROM event_store.outbox'),
	'0', 'the outbox is empty');
# Nobody waits any more: the slots were released.
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Extension' AND backend_type = 'client backend'}),
	'0', 'no claim is left waiting');

# A waiting claim that is cancelled leaves no trace: the next one waits and
# is woken as usual.
my ($out, $err) = ('', '');
my $cancelled = IPC::Run::start(
	[ 'psql', '-X', '-A', '-t', '-d', $node->connstr('postgres'), '-c',
	  "SELECT count(*) FROM event_store.outbox_claim('cancel', 1, wait => '60 seconds')" ],
	'>', \$out, '2>', \$err);
$node->poll_query_until('postgres', q{
SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event_type = 'Extension' AND query LIKE '%''cancel''%'});
$node->safe_psql('postgres', q{
SELECT pg_cancel_backend(pid) FROM pg_stat_activity
WHERE wait_event_type = 'Extension' AND query LIKE '%''cancel''%'});
$cancelled->finish;
like($err, qr/canceling statement/, 'a waiting claim can be cancelled');

$node->stop;

# Without the library preloaded there is no shared memory to wait in.
my $plain = PostgreSQL::Test::Cluster->new('outbox_wait_plain');
$plain->init;
$plain->start;
$plain->safe_psql('postgres', q{CREATE EXTENSION event_store;
SELECT event_store.outbox_send('jobs', '{}');});
my ($ret, $stdout, $stderr) = $plain->psql('postgres',
	"SELECT * FROM event_store.outbox_claim('jobs', 1, wait => '1 second')",
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($stderr, qr/55000: outbox_claim cannot wait: event_store is not in shared_preload_libraries/,
	'without the library preloaded, a waiting claim is refused (55000)');
is($plain->safe_psql('postgres', "SELECT count(*) FROM event_store.outbox_claim('jobs', 1)"),
	'1', 'a claim without wait works without the library preloaded');
$plain->stop;

done_testing();
