# Claims start where the last claim found the first message of the topic.
# While a transaction stays open, acknowledged rows can be neither vacuumed
# nor marked dead in the index; a claim must not step over all of them
# again (it counts index entries read, as test/sql/outbox.sql does).  And
# the start never passes a message that becomes visible later: one sent by
# a transaction that took its id before a later one committed, one sent by
# a transaction that was still taking its id, one put back by a redrive.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('outbox_claim_start');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'event_store'\nautovacuum = off\n");
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION event_store;
CREATE FUNCTION index_reads() RETURNS bigint LANGUAGE sql AS $$
	SELECT pg_stat_force_next_flush();
	SELECT idx_tup_read FROM pg_stat_user_indexes
	WHERE indexrelid = 'event_store.outbox_topic_id_idx'::regclass
$$;});

# A transaction with an xid stays open: nothing acknowledged from now on
# can be removed.
my $holder = $node->background_psql('postgres');
$holder->query_safe(q{BEGIN; SELECT event_store.append_event('held-1', 'Held', '{}')});

$node->safe_psql('postgres', q{
SELECT count(event_store.outbox_send('held', to_jsonb(n))) FROM generate_series(1, 2000) AS n;
DO $$
BEGIN
	FOR i IN 1..200 LOOP
		PERFORM event_store.outbox_ack(array_agg(receipt))
		FROM event_store.outbox_claim('held', 10);
		COMMIT;
	END LOOP;
END
$$;});
is($node->safe_psql('postgres', q{SELECT count(*) FROM event_store.outbox}), '0',
	'2,000 messages claimed and acknowledged while a transaction is open');
$node->safe_psql('postgres', q{SELECT event_store.outbox_send('held', '"last"')});
my $before = $node->safe_psql('postgres', 'SELECT index_reads()');
is($node->safe_psql('postgres', q{SELECT payload FROM event_store.outbox_claim('held', 10)}),
	'"last"', 'the claim finds the message behind 2,000 acknowledged ones');
my $reads = $node->safe_psql('postgres', 'SELECT index_reads()') - $before;
note "index entries read by the claim: $reads";
cmp_ok($reads, '<', 100,
	'the claim does not step over the acknowledged messages again');

# The same for consumes, which start where claims start and move it.
$node->safe_psql('postgres', q{
SELECT count(event_store.outbox_send('held_consume', to_jsonb(n))) FROM generate_series(1, 2000) AS n;
DO $$
BEGIN
	FOR i IN 1..200 LOOP
		PERFORM count(*) FROM event_store.outbox_consume('held_consume', 10);
		COMMIT;
	END LOOP;
END
$$;});
$node->safe_psql('postgres', q{SELECT event_store.outbox_send('held_consume', '"last"')});
$before = $node->safe_psql('postgres', 'SELECT index_reads()');
is($node->safe_psql('postgres', q{SELECT payload FROM event_store.outbox_consume('held_consume', 10)}),
	'"last"', 'the consume finds the message behind 2,000 consumed ones');
$reads = $node->safe_psql('postgres', 'SELECT index_reads()') - $before;
note "index entries read by the consume: $reads";
cmp_ok($reads, '<', 100,
	'the consume does not step over the consumed messages again');
$holder->query_safe('COMMIT');

# A sender that took its id first and commits last: its message is claimed
# at once, although claims of later messages came and went meanwhile.
my $early = $node->background_psql('postgres');
$early->query_safe(q{BEGIN; SELECT event_store.outbox_send('order', '"early"')});
$node->safe_psql('postgres', q{
SELECT event_store.outbox_send('order', to_jsonb(n)) FROM generate_series(1, 20) AS n;
SELECT event_store.outbox_ack(coalesce(array_agg(receipt), '{}')) FROM event_store.outbox_claim('order', 100);
SELECT event_store.outbox_ack(coalesce(array_agg(receipt), '{}')) FROM event_store.outbox_claim('order', 100);});
$early->query_safe('COMMIT');
is($node->safe_psql('postgres', q{SELECT string_agg(payload::text, ',') FROM event_store.outbox_claim('order', 100)}),
	'"early"', 'a message committed after later ones were claimed is claimed at once');
$early->quit;

# A redriven message comes back with its old id, below the start.
$node->safe_psql('postgres', q{
SELECT event_store.outbox_configure('redrive', max_attempts => 1);
SELECT event_store.outbox_send('redrive', '"dies"');
SELECT event_store.outbox_nack(array_agg(receipt), error => 'no')
FROM event_store.outbox_claim('redrive', 1);
SELECT event_store.outbox_send('redrive', to_jsonb(n)) FROM generate_series(1, 5) AS n;
SELECT event_store.outbox_ack(array_agg(receipt)) FROM event_store.outbox_claim('redrive', 10);
SELECT event_store.outbox_redrive_topic('redrive');});
is($node->safe_psql('postgres', q{SELECT string_agg(payload::text, ',') FROM event_store.outbox_claim('redrive', 10)}),
	'"dies"', 'a redriven message is claimed at once');

# Many senders and claimers at once: every message is claimed exactly once,
# none is left behind.
$node->safe_psql('postgres', q{CREATE TABLE seen (id bigint)});
my @workers;
foreach my $w (1 .. 3)
{
	push @workers, $node->background_psql('postgres');
}
$workers[0]->query_until(qr/started/, q{
\echo started
DO $$ BEGIN FOR i IN 1..400 LOOP PERFORM event_store.outbox_send('busy', to_jsonb(i)); COMMIT; END LOOP; END $$;
});
$workers[1]->query_until(qr/started/, q{
\echo started
DO $$ BEGIN FOR i IN 1..400 LOOP PERFORM event_store.outbox_send_batch('busy', ARRAY[to_jsonb(-i)]); COMMIT; END LOOP; END $$;
});
$workers[2]->query_until(qr/started/, q{
\echo started
DO $$
DECLARE
	acked integer;
	deadline timestamptz := clock_timestamp() + interval '120 seconds';
BEGIN
	WHILE (SELECT count(*) FROM seen) < 800 AND clock_timestamp() < deadline LOOP
		WITH c AS (SELECT * FROM event_store.outbox_claim('busy', 10)),
		     s AS (INSERT INTO seen SELECT id FROM c)
		SELECT event_store.outbox_ack(coalesce(array_agg(receipt), '{}')) INTO acked FROM c;
		COMMIT;
	END LOOP;
END $$;
});
$_->quit foreach @workers;
$node->safe_psql('postgres', q{
INSERT INTO seen SELECT id FROM event_store.outbox_claim('busy', 1000);});
is($node->safe_psql('postgres', q{SELECT count(*) || ' ' || count(DISTINCT id) FROM seen}),
	'800 800', 'concurrent senders and a claimer: every message claimed once');

$node->stop;
done_testing();
