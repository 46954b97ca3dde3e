# A claim waiting for a topic is woken when the message that holds back the
# next message of its key leaves: by an ack (by receipt or by id), by a
# nack that puts it back at once, or by the commit of an outbox_consume.
# Each round: the first message of key k is leased (or consumed in an open
# transaction), the second one is blocked behind it, a claim waits; the
# step that frees the key commits, and the waiting claim must return the
# freed message long before its wait of a minute ends.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time);

my $node = PostgreSQL::Test::Cluster->new('outbox_key_wakeup');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'event_store'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION event_store');

# Start a claim of topic that waits a minute; returns the handle and the
# scalar its output goes to.
sub start_waiter
{
	my ($topic) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-A', '-t', '-d', $node->connstr('postgres'), '-c',
		  "SELECT string_agg(payload::text, ',') FROM event_store.outbox_claim('$topic', 10, wait => '60 seconds')" ],
		'>', \$out, '2>', \$err);
	$node->poll_query_until('postgres', qq{
SELECT count(*) = 1 FROM pg_stat_activity
WHERE wait_event_type = 'Extension' AND query LIKE '%outbox_claim(''$topic''%'});
	return ($h, \$out, \$err);
}

# Run the step that frees the key, then wait for the claim; returns what it
# claimed and how long it took after the step.
sub free_and_claim
{
	my ($topic, $step) = @_;
	my ($h, $out, $err) = start_waiter($topic);
	my $start = time;
	$node->safe_psql('postgres', $step);
	$h->finish;
	my $took = time - $start;
	chomp $$out;
	note "$topic: $$err" if $$err ne '';
	return ($$out, $took);
}

foreach my $case (
	[ 'ack by receipt', 'ack_receipt',
	  "SELECT event_store.outbox_ack(ARRAY(SELECT receipt FROM first))" ],
	[ 'ack by id', 'ack_id',
	  "SELECT event_store.outbox_ack_ids(ARRAY(SELECT id FROM first))" ],
	[ 'nack at once', 'nack',
	  "SELECT event_store.outbox_nack(ARRAY(SELECT receipt FROM first), retry_in => '0 seconds')" ])
{
	my ($name, $topic, $free) = @$case;
	$node->safe_psql('postgres', qq{
SELECT event_store.outbox_send('$topic', '"first"', key => 'k');
SELECT event_store.outbox_send('$topic', '"second"', key => 'k');
CREATE TABLE first AS SELECT * FROM event_store.outbox_claim('$topic', 10, lease => '1 hour');});
	is($node->safe_psql('postgres', 'SELECT payload FROM first'), '"first"',
		"$name: the first message of the key is leased, the second one is blocked");
	my ($claimed, $took) = free_and_claim($topic, $free);
	my $expected = $name eq 'nack at once' ? '"first"' : '"second"';
	is($claimed, $expected, "$name wakes the claim waiting for the key's next message");
	# A loaded machine: only a margin far below the wait of a minute.
	cmp_ok($took, '<', 30, "$name: woken by the commit, not by the end of its wait");
	$node->safe_psql('postgres', qq{DROP TABLE first;
SELECT event_store.outbox_ack_ids(ARRAY(SELECT id FROM event_store.outbox WHERE topic = '$topic'));});
}

# outbox_consume: its transaction holds the first message of the key
# (deleted, locked) while the claim starts waiting; its commit frees the
# second one.
{
	$node->safe_psql('postgres', q{
SELECT event_store.outbox_send('consume2', '"first"', key => 'k');
SELECT event_store.outbox_send('consume2', '"second"', key => 'k');});
	my $consumer = $node->background_psql('postgres');
	$consumer->query_safe(q{BEGIN});
	is($consumer->query_safe(q{SELECT payload FROM event_store.outbox_consume('consume2', 10)}),
		'"first"', 'outbox_consume takes the first message of the key');
	my ($h, $out, $err) = start_waiter('consume2');
	my $start = time;
	$consumer->query_safe('COMMIT');
	$h->finish;
	my $took = time - $start;
	chomp $$out;
	is($$out, '"second"', 'the commit of outbox_consume wakes the claim waiting for the next message of the key');
	cmp_ok($took, '<', 30, 'outbox_consume: woken by the commit, not by the end of its wait');
	$consumer->quit;
}

$node->stop;
done_testing();
