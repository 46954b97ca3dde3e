# The Kafka sink against librdkafka's mock cluster (3 brokers, hosted by
# tools/es_kafka_mock), consumed with kcat:
#  1. keyed messages all arrive, in per-key order, the message key as the
#     Kafka key, headers event_store_id, topic, created_at and the
#     message's own; a route's destination names the Kafka topic;
#  2. request errors and leader changes injected under load: retries,
#     never loss or reordering;
#  3. a broker down for 10 s under load: nothing lost, order kept;
#  4. unreachable brokers hold up neither DROP DATABASE nor another
#     database.
# 100,000 keyed messages in all (60,000 at once, then 20,000 under each
# kind of failure); after each phase every message sent so far must be in
# the Kafka topic, read back from its beginning.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use JSON::PP;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use EventStoreBrokers;

if (system('kcat -V >/dev/null 2>&1') != 0)
{
	# scripts/test.sh installs it: there, a missing kcat is a failure.
	die 'kcat is not installed' if $ENV{ES_REQUIRE_CLIENTS};
	plan skip_all => 'kcat is not installed';
}

my $kafka = kafka_mock_start(3);
# Eight partitions: the mock keeps at most 5 MB per partition.
is(kafka_mock_command($kafka, 'topic orders 8'), 'ok', 'topic orders');
is(kafka_mock_command($kafka, 'topic payments.v1 2'), 'ok', 'topic payments.v1');

my $node = PostgreSQL::Test::Cluster->new('sink_kafka');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'event_store'
event_store.relay_batch_size = 1000
});
$node->start;
$node->safe_psql('postgres', qq{
	CREATE EXTENSION event_store;
	SELECT event_store.relay_sink_create('kafka1', 'kafka://$kafka->{bootstrap}',
		'{"message.timeout.ms": 5000}');
	SELECT event_store.outbox_configure('orders', max_attempts => 1000,
		backoff_base => '100 ms', backoff_max => '1 s');
	SELECT event_store.relay_route('orders', 'kafka1');
	SELECT event_store.relay_route('payments', 'kafka1', 'payments.v1');
});

sub send_orders
{
	my ($from, $to) = @_;
	$node->safe_psql('postgres', qq{
		SELECT count(event_store.outbox_send('orders', jsonb_build_object('n', n),
			'k' || (n % 20), jsonb_build_object('origin', 'test')))
		FROM generate_series($from, $to) AS n});
}

# Wait until the outbox is empty (the broker acknowledged every message),
# then read the topic from its beginning until the first $to messages are
# there (reading again a few times: the leader of a partition may have just
# moved); on a loss, say which are missing and where the relay has them.
sub wait_for_n
{
	my ($to, $seconds) = @_;
	ok($node->poll_query_until('postgres',
			q{SELECT count(*) = 0 FROM event_store.outbox WHERE topic = 'orders'}),
		"the outbox is empty after $to messages")
	  or diag $node->safe_psql('postgres',
		q{SELECT count(*), min(attempts), max(attempts), max(last_error)
		  FROM event_store.outbox WHERE topic = 'orders'});
	my @msgs;
	my %seen;
	foreach (1 .. 5)
	{
		@msgs = kafka_consume($kafka, 'orders');
		%seen = ();
		$seen{ decode_json($_->[2])->{n} } = 1 foreach @msgs;
		return @msgs if scalar(grep { $_ <= $to } keys %seen) >= $to;
		sleep 1;
	}
	my @missing = grep { !$seen{$_} } 1 .. $to;
	my @some = @missing[0 .. ($#missing < 9 ? $#missing : 9)];
	diag scalar(@missing) . " of $to missing, among them: @some";
	diag $node->safe_psql('postgres', qq{
		SELECT 'outbox', id, attempts, last_error, payload FROM event_store.outbox
		WHERE (payload->>'n')::int IN (@{[join(',', @some)]})
		UNION ALL
		SELECT 'dead', id, attempts, last_error, payload FROM event_store.outbox_dead_letters
		WHERE (payload->>'n')::int IN (@{[join(',', @some)]})});
	diag $node->safe_psql('postgres', 'SELECT * FROM event_store.relay_sinks');
	return @msgs;
}

sub check_delivery
{
	my ($label, $to, @msgs) = @_;
	my (%seen, %last, $disorder, $wrong_key);
	foreach (@msgs)
	{
		my ($key, $headers, $value) = @$_;
		my $n = decode_json($value)->{n};
		$wrong_key++ if $key ne 'k' . ($n % 20);
		next if $seen{$n}++;
		$disorder++ if defined $last{$key} && $last{$key} > $n;
		$last{$key} = $n;
	}
	is(scalar(grep { $_ <= $to } keys %seen), $to, "$label: every message arrived");
	ok(!$disorder, "$label: per-key order at the consumer");
	ok(!$wrong_key, "$label: the message key is the Kafka key");
}

# 1. Delivery, order, headers, destination.
send_orders(1, 60000);
my @msgs = wait_for_n(60000);
check_delivery('steady', 60000, @msgs);
like($msgs[0][1], qr/event_store_id=\d+/, 'header event_store_id');
like($msgs[0][1], qr/topic=orders/, 'header topic');
like($msgs[0][1], qr/created_at=\d{4}-/, 'header created_at');
like($msgs[0][1], qr/origin=test/, "the message's headers");
$node->safe_psql('postgres', q{SELECT event_store.outbox_send('payments', '{"p": 1}', 'acct-1')});
my @payments;
foreach (1 .. 60)
{
	@payments = kafka_consume($kafka, 'payments.v1');
	last if @payments;
	sleep 1;
}
is(scalar(@payments), 1, 'the destination names the Kafka topic');
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM event_store.outbox}), 'the outbox is empty');
is($node->safe_psql('postgres',
		q{SELECT connected AND delivered >= 60001 FROM event_store.relay_sinks WHERE name = 'kafka1'}),
	't', 'relay_sinks: connected, delivered counted');

# 2. Request errors and leader changes under load: 100 transactions of 200
# messages.
my $load = sub {
	my ($from, $batches) = @_;
	return IPC::Run::start(
		[ 'psql', '-X', '-q', '-d', $node->connstr('postgres'), '-c', qq{
		DO \$\$
		BEGIN
			FOR i IN 0..@{[$batches - 1]} LOOP
				PERFORM event_store.outbox_send('orders', jsonb_build_object('n', n),
					'k' || (n % 20))
				FROM generate_series($from + i * 200, $from + 199 + i * 200) AS n;
				COMMIT;
				PERFORM pg_sleep(0.1);
			END LOOP;
		END
		\$\$} ],
		'>', \my $out, '2>', \my $err);
};
my $h = $load->(60001, 100);
sleep 1;
is(kafka_mock_command($kafka, 'errors 50'), 'ok', 'request errors injected');
sleep 1;
is(kafka_mock_command($kafka, 'leader orders 0 2'), 'ok', 'leader change');
is(kafka_mock_command($kafka, 'leader orders 1 3'), 'ok', 'leader change');
sleep 1;
kafka_mock_command($kafka, 'errors 50');
sleep 2;
is(kafka_mock_command($kafka, 'leader orders 0 1'), 'ok', 'leader change back');
kafka_mock_command($kafka, 'errors 50');
$h->finish;
@msgs = wait_for_n(80000);
check_delivery('request errors and leader changes', 80000, @msgs);

# 3. A broker down for 10 s under load.
$h = $load->(80001, 100);
sleep 2;
is(kafka_mock_command($kafka, 'down 1'), 'ok', 'broker 1 down');
sleep 10;
is(kafka_mock_command($kafka, 'up 1'), 'ok', 'broker 1 up');
$h->finish;
@msgs = wait_for_n(100000);
check_delivery('broker down 10 s', 100000, @msgs);

# 4. A database whose Kafka brokers are unreachable: DROP DATABASE is not
# held up by its worker waiting for delivery reports, nor is the other
# database's relay.
$node->safe_psql('postgres', 'CREATE DATABASE dead_broker');
$node->safe_psql('dead_broker', q{
	CREATE EXTENSION event_store;
	SELECT event_store.relay_sink_create('nowhere', 'kafka://127.0.0.1:1');
	SELECT event_store.relay_route('t', 'nowhere');
	SELECT event_store.outbox_send('t', '{}', 'k');
});
ok($node->poll_query_until('dead_broker',
		q{SELECT count(*) > 0 FROM pg_stat_activity
		  WHERE backend_type = 'event_store relay' AND datname = 'dead_broker'}),
	'a worker serves the database with unreachable brokers');
send_orders(100001, 100100);
@msgs = wait_for_n(100100);
check_delivery('beside a dead broker', 100100, @msgs);
my $t0 = time;
$node->safe_psql('postgres', 'DROP DATABASE dead_broker');
my $took = time - $t0;
ok($took < 5, sprintf('DROP DATABASE took %.1f s', $took));

$node->stop('fast');
$kafka->{handle}->kill_kill;
done_testing();
