# The AMQP sink against a real RabbitMQ node started by the test (Debian's
# rabbitmq-server, its own ports, node name and data directory):
#  1. keyed messages all arrive, in per-key order, with message_id = the
#     outbox id, the topic header, the routing key of the route;
#  2. the broker stopped 10 s under load and started again: nothing lost,
#     order kept; meanwhile the worker answers pg_terminate_backend and
#     relays other topics;
#  3. an unroutable route dead-letters with a clear error;
#  4. kill -9 of the worker mid-batch: every message arrives, duplicates
#     only of messages of the interrupted batch (unconfirmed);
#  5. the credentials appear nowhere: view, relay_workers, dead letters,
#     server log.
# 100,000 keyed messages in all: 60,000 at once, 10,000 while the broker
# is stopped, 30,000 around the kill -9.
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
use EventStoreTest;

if (!(-x '/usr/lib/rabbitmq/bin/rabbitmq-server'))
{
	# scripts/test.sh installs it: there, a missing broker is a failure.
	die 'rabbitmq-server is not installed' if $ENV{ES_REQUIRE_CLIENTS};
	plan skip_all => 'rabbitmq-server is not installed';
}

my $secret = 'Sup3rS3cret-pw';
my $rmq = rabbitmq_start();
rabbitmq_ctl($rmq, 'add_user', 'relay', $secret);
rabbitmq_ctl($rmq, 'set_permissions', '-p', '/', 'relay', '.*', '.*', '.*');

my $node = PostgreSQL::Test::Cluster->new('sink_amqp');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'event_store'
event_store.relay_batch_size = 500
event_store.restart_time = 1
restart_after_crash = on
});
$node->start;
# The statement that creates a sink holds its password: not logged.
$node->safe_psql('postgres', qq{
	CREATE EXTENSION event_store;
	SET log_statement = 'none';
	SELECT event_store.relay_sink_create('rabbit',
		'amqp://relay:$secret\@127.0.0.1:$rmq->{port}/%2f', '{"heartbeat": 10}');
	SELECT event_store.outbox_configure('orders', max_attempts => 1000,
		backoff_base => '100 ms', backoff_max => '1 s');
});
my $consumer = amqp_consumer_start($rmq, 'es_orders');
$node->safe_psql('postgres', q{SELECT event_store.relay_route('orders', 'rabbit', '/es_orders')});

sub send_orders
{
	my ($from, $to) = @_;
	$node->safe_psql('postgres', qq{
		SELECT count(event_store.outbox_send('orders', jsonb_build_object('n', n),
			'k' || (n % 20), jsonb_build_object('origin', 'test')))
		FROM generate_series($from, $to) AS n});
}

# Wait until the outbox has no message of the topic left (the broker
# confirmed them all), then until the consumer has every n in [1, $to];
# returns its lines.
sub wait_for_n
{
	my ($to, $seconds) = @_;
	$node->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM event_store.outbox WHERE topic = 'orders'})
	  or diag 'the outbox still has messages of topic orders';
	my $deadline = time + $seconds;
	my @lines;
	while (1)
	{
		@lines = amqp_consumer_lines($consumer);
		# Decode only once there are enough lines.
		if (scalar(@lines) >= $to || time > $deadline)
		{
			my %seen;
			$seen{ decode_json($_->[4])->{n} } = 1 foreach @lines;
			return @lines if scalar(grep { $_ <= $to } keys %seen) >= $to;
			if (time > $deadline)
			{
				my @missing = grep { !$seen{$_} } 1 .. $to;
				diag scalar(@missing) . " of $to missing, among them: "
				  . join(' ', @missing[0 .. ($#missing < 9 ? $#missing : 9)]);
				return @lines;
			}
		}
		usleep(500_000);
	}
}

# Every n of [1, $to] arrived, and each key's first deliveries are in order.
sub check_delivery
{
	my ($label, $to, @lines) = @_;
	my (%seen, %last, $disorder);
	foreach (@lines)
	{
		my $n = decode_json($_->[4])->{n};
		next if $seen{$n}++;
		my $key = 'k' . ($n % 20);
		$disorder++ if defined $last{$key} && $last{$key} > $n;
		$last{$key} = $n;
	}
	is(scalar(grep { $_ <= $to } keys %seen), $to, "$label: every message arrived");
	ok(!$disorder, "$label: per-key order at the consumer");
}

# 1. Delivery, order, properties.
my $n_first = 60000;
send_orders(1, $n_first);
my @lines = wait_for_n($n_first, 60);
check_delivery('steady', $n_first, @lines);
my ($id, $rk, undef, $headers) = @{ $lines[0] };
my $first_id = $node->safe_psql('postgres',
	q{SELECT min(id) FROM event_store.outbox_dead_letters}) || '';
like($id, qr/^\d+$/, 'message_id is the outbox id');
is($rk, 'es_orders', 'routing key of the route');
like($headers, qr/topic=orders/, 'topic header');
like($headers, qr/origin=test/, "the message's headers");
like($headers, qr/created_at=/, 'created_at header');
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM event_store.outbox WHERE topic = 'orders'}),
	'the outbox is empty');
is($node->safe_psql('postgres',
		q{SELECT connected AND delivered >= 60000 FROM event_store.relay_sinks WHERE name = 'rabbit'}),
	't', 'relay_sinks: connected, delivered counted');

# 2. The broker stops for 10 s under load, then starts again.
my $load = IPC::Run::start(
	[ 'psql', '-X', '-q', '-d', $node->connstr('postgres'), '-c', q{
		DO $$
		BEGIN
			FOR i IN 0..99 LOOP
				PERFORM event_store.outbox_send('orders', jsonb_build_object('n', n),
					'k' || (n % 20))
				FROM generate_series(60001 + i * 100, 60100 + i * 100) AS n;
				COMMIT;
				PERFORM pg_sleep(0.15);
			END LOOP;
		END
		$$} ],
	'>', \my $load_out, '2>', \my $load_err);
sleep 3;
rabbitmq_stop($rmq);
my $stopped_at = time;
# The worker answers pg_terminate_backend while the broker is down.
$node->poll_query_until('postgres',
	q{SELECT count(*) > 0 FROM event_store.relay_sinks WHERE last_error_at > now() - interval '5 s'});
my $pid = $node->safe_psql('postgres',
	q{SELECT pid FROM event_store.relay_workers WHERE kind = 'relay' AND pid IS NOT NULL});
my $t0 = time;
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
$node->poll_query_until('postgres', "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid");
my $took = time - $t0;
ok($took < 5, sprintf('the worker ended %.1f s after pg_terminate_backend', $took));
# Other topics keep flowing while the broker is down.
my $listener = start_listener($node, 'postgres', 'side');
$node->safe_psql('postgres', q{
	SELECT event_store.relay_route('side', 'notify:side');
	SELECT event_store.outbox_send('side', '{"side": 1}');
});
my @side = wait_for_lines($listener, 1, 30, 'side');
is(scalar(@side), 1, 'a NOTIFY topic is relayed while the broker is down');
stop_listener($listener);
my $errors = $node->safe_psql('postgres',
	q{SELECT last_error FROM event_store.relay_sinks WHERE name = 'rabbit'});
like($errors, qr/AMQP sink "rabbit"/, 'the sink reports its error');
sleep(10 - (time - $stopped_at)) if time - $stopped_at < 10;
rabbitmq_start($rmq);
$load->finish;
@lines = wait_for_n(70000, 120);
check_delivery('broker restarted under load', 70000, @lines);

# 3. An unroutable route dead-letters with a clear error.
$node->safe_psql('postgres', q{
	SELECT event_store.outbox_configure('lost', max_attempts => 1);
	SELECT event_store.relay_route('lost', 'rabbit', 'amq.direct/nowhere');
	SELECT event_store.outbox_send('lost', '{"x": 1}');
});
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM event_store.outbox_dead_letters WHERE topic = 'lost'}),
	'the unroutable message is a dead letter');
like($node->safe_psql('postgres',
		q{SELECT last_error FROM event_store.outbox_dead_letters WHERE topic = 'lost'}),
	qr/unroutable: 312 NO_ROUTE \(exchange "amq.direct", routing key "nowhere"\)/,
	'with the broker\'s reason');

# 4. kill -9 of the worker mid-batch.
my $before = scalar(amqp_consumer_lines($consumer));
send_orders(70001, 100000);
my $deadline = time + 120;
usleep(20_000) while scalar(amqp_consumer_lines($consumer)) < $before + 1000 && time < $deadline;
$pid = $node->safe_psql('postgres',
	q{SELECT pid FROM event_store.relay_workers WHERE kind = 'relay' AND pid IS NOT NULL});
kill 'KILL', $pid;
@lines = wait_for_n(100000, 120);
check_delivery('kill -9 mid-batch', 100000, @lines);
# Only messages sent in this phase: the broker's restart above may have
# duplicated some of its own (published, then not confirmed).
my %copies;
foreach (@lines)
{
	my ($id, undef, undef, undef, $body) = @$_;
	$copies{$id}++ if decode_json($body)->{n} > 70000;
}
my $dups = grep { $copies{$_} > 1 } keys %copies;
note "duplicates after kill -9: $dups";
ok($dups <= 500, "duplicates ($dups) at most one batch (the unconfirmed one)");

# 5. The credentials appear nowhere.
my $visible = $node->safe_psql('postgres', q{
	SELECT concat_ws(' ', (SELECT string_agg(s::text, ' ') FROM event_store.relay_sinks AS s),
		(SELECT string_agg(w::text, ' ') FROM event_store.relay_workers AS w),
		(SELECT string_agg(d.last_error, ' ') FROM event_store.outbox_dead_letters AS d))});
unlike($visible, qr/\Q$secret\E/, 'no password in relay_sinks, relay_workers, dead letters');
unlike(slurp_file($node->logfile), qr/\Q$secret\E/, 'no password in the server log');
$node->safe_psql('postgres', q{
	SET log_statement = 'none';
	SELECT event_store.relay_sink_create('wrong', 'amqp://relay:Wr0ngPassw0rd@127.0.0.1:}
	  . $rmq->{port} . q{/%2f');
	SELECT event_store.outbox_configure('wrong', max_attempts => 1);
	SELECT event_store.relay_route('wrong', 'wrong');
	SELECT event_store.outbox_send('wrong', '{}');
});
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM event_store.outbox_dead_letters WHERE topic = 'wrong'}),
	'a refused login dead-letters');
my $err = $node->safe_psql('postgres',
	q{SELECT last_error FROM event_store.outbox_dead_letters WHERE topic = 'wrong'});
like($err, qr/could not log in/, 'with the reason');
unlike($err . slurp_file($node->logfile), qr/Wr0ngPassw0rd/, 'without the password');

$node->stop('fast');
$consumer->{handle}->kill_kill;
rabbitmq_stop($rmq, 1);
done_testing();
