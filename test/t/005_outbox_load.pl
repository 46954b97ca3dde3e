# Load test of the outbox: 4 producers (pgbench, 1,500 messages/s in all,
# a rate the consumers keep up with) send keyed messages while
# 4 consumers claim batches, nack one message in ten (exponential backoff,
# dead letter after the topic's maximum attempts) and acknowledge the rest,
# for ES_LOAD_SECONDS (default 60).  Each consumer logs its acks in the ack's
# own transaction, so a message acknowledged twice would be logged twice.
# Afterwards: every message was acknowledged exactly once or dead-lettered;
# each key's messages were acknowledged in send order; the outbox table
# stayed small (its dead rows are reclaimed) while about a hundred thousand
# messages went through it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use IPC::Run;
use Time::HiRes qw(time usleep);
use Test::More;

my $duration = $ENV{ES_LOAD_SECONDS} // 60;

my $node = PostgreSQL::Test::Cluster->new('outbox_load');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'event_store'
max_connections = 40
autovacuum_naptime = 1s
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION event_store;
SELECT event_store.outbox_configure('load', max_attempts => 3,
	backoff_base => '20 milliseconds', backoff_max => '200 milliseconds');
CREATE TABLE acked (seq bigserial, id bigint NOT NULL, key text NOT NULL, consumer int NOT NULL);
CREATE TABLE control (stop boolean NOT NULL);
INSERT INTO control VALUES (false);

-- Claim a batch (commit: the claim is the consumer's lease), then handle
-- each message: nack about one in ten, ack and log the rest, commit.  Once
-- told to stop, drain until the outbox is empty.
CREATE PROCEDURE consume(me int)
LANGUAGE plpgsql AS $$
DECLARE
	stopping boolean := false;
	message record;
	batch event_store.outbox_message[];
BEGIN
	COMMIT;
	LOOP
		SELECT array_agg(c) INTO batch FROM event_store.outbox_claim('load', 10, '10 seconds') AS c;
		COMMIT;
		IF batch IS NULL THEN
			SELECT stop INTO stopping FROM control;
			EXIT WHEN stopping AND NOT EXISTS (SELECT FROM event_store.outbox);
			PERFORM pg_sleep(0.005);
			COMMIT;
			CONTINUE;
		END IF;
		FOREACH message IN ARRAY batch LOOP
			IF random() < 0.1 THEN
				PERFORM event_store.outbox_nack(ARRAY[message.receipt], NULL, 'random failure');
			ELSIF event_store.outbox_ack(ARRAY[message.receipt]) = 1 THEN
				INSERT INTO acked (id, key, consumer) VALUES (message.id, message.key, me);
			END IF;
		END LOOP;
		COMMIT;
	END LOOP;
END
$$;
});

# Each producer owns its keys, so a key's send order is its id order.
my $script = $node->basedir . '/producer.sql';
append_to_file($script, q{
\set k random(1, 25)
SELECT event_store.outbox_send('load', jsonb_build_object('client', :client_id, 'k', :k), 'p' || :client_id || '-' || :k);
});

my @consumers;
foreach my $c (1 .. 4)
{
	my $session = $node->background_psql('postgres');
	$session->query_until(qr/started/, "\\echo started\nCALL consume($c);\n");
	push @consumers, $session;
}

my ($out, $err) = ('', '');
my $started = time;
my $producers = IPC::Run::start(
	[
		'pgbench', '-n', '-c', '4', '-j', '2', '-R', '1500', '-T', $duration, '-f', $script,
		'-h', $node->host, '-p', $node->port, 'postgres'
	],
	'>', \$out, '2>', \$err);

# Sample the outbox's size while the load runs.
my @sizes;
while ($producers->pumpable)
{
	$producers->pump_nb;
	push @sizes,
	  $node->safe_psql('postgres',
		q{SELECT pg_total_relation_size('event_store.outbox') || ' ' || (SELECT count(*) FROM event_store.outbox) || ' heap=' || pg_relation_size('event_store.outbox') || ' pk=' || pg_relation_size('event_store.outbox_pkey') || ' tid=' || pg_relation_size('event_store.outbox_topic_id_idx') || ' key=' || pg_relation_size('event_store.outbox_topic_key_id_idx') || ' toast=' || coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0) FROM pg_class AS c WHERE oid = 'event_store.outbox'::regclass});
	sleep 5;
}
$producers->finish;
my $sent = $node->safe_psql('postgres', q{SELECT last_value FROM event_store.outbox_id_seq});
my $send_seconds = time - $started;

$node->safe_psql('postgres', 'UPDATE control SET stop = true');
$_->quit foreach @consumers;
my $total_seconds = time - $started;

cmp_ok($sent, '>', 1000, "producers sent $sent messages");
my $dead = $node->safe_psql('postgres', q{SELECT count(*) FROM event_store.outbox_dead_letters});
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FILTER (WHERE a.id IS NULL AND d.id IS NULL) || ' lost, ' ||
		   count(*) FILTER (WHERE a.id IS NOT NULL AND d.id IS NOT NULL) || ' both acked and dead'
	FROM generate_series(1, (SELECT last_value FROM event_store.outbox_id_seq)) AS s(id)
	LEFT JOIN (SELECT DISTINCT id FROM acked) AS a USING (id)
	LEFT JOIN event_store.outbox_dead_letters AS d USING (id)}),
	'0 lost, 0 both acked and dead',
	"every message was acknowledged or dead-lettered ($dead dead letters)");
is($node->safe_psql('postgres', q{SELECT count(*) - count(DISTINCT id) FROM acked}),
	'0', 'no message was acknowledged twice');
is($node->safe_psql('postgres', q{SELECT count(*) FROM event_store.outbox}),
	'0', 'the outbox is empty');
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FROM (SELECT id, lag(id) OVER (PARTITION BY key ORDER BY seq) AS previous FROM acked) AS a
	WHERE id < previous}),
	'0', 'each key was acknowledged in send order');
is( $node->safe_psql(
		'postgres', q{SELECT count(*) FROM event_store.outbox_dead_letters WHERE attempts <> 3 OR last_error <> 'random failure'}),
	'0', 'dead letters used all their attempts and keep their last error');
cmp_ok($dead, '>', 0, 'some messages ran out of attempts');

my @bytes = map { (split / /)[0] } @sizes;
my $max_size = (sort { $b <=> $a } @bytes)[0];
diag(sprintf(
	"sent %d messages in %.0f s (%.0f/s sent), all handled in %.0f s (%.0f/s)",
	$sent, $send_seconds, $sent / $send_seconds, $total_seconds, $sent / $total_seconds));
diag("outbox every 5 s (bytes, rows, per relation):\n  " . join("\n  ", @sizes));
# Without reclaiming, the table would hold every message that went through
# it (some 25 MB a minute at this rate); reclaimed, it holds the backlog
# plus the dead rows between two passes of autovacuum or page pruning.
cmp_ok($max_size, '<', 8 * 1024 * 1024,
	sprintf('the outbox stayed under 8 MB (largest %.1f MB)', $max_size / 1048576));
# Flat, not creeping: the second half of the run may add a step (the heap
# grows when a short backlog meets a late autovacuum pass) but not double.
my $halfway = $bytes[ int(@bytes / 2) ];
cmp_ok($bytes[-1], '<=', 2 * $halfway,
	sprintf('its size levels off (%.1f MB at half time, %.1f MB at the end)',
		$halfway / 1048576, $bytes[-1] / 1048576));
$node->safe_psql('postgres', 'VACUUM event_store.outbox');
diag('after the run and a VACUUM: '
	  . $node->safe_psql('postgres', q{SELECT pg_size_pretty(pg_total_relation_size('event_store.outbox'))}));

$node->stop;
done_testing();
