# The HTTP(S) webhook sink against a local receiver (test/webhook_server.py)
# that checks Standard Webhooks signatures, fails 30% of requests with 500
# or 503, and answers some only after the sink's timeout.
#  1. 100,000 keyed messages (1,000 keys) with a kill -9 of the relay
#     worker in the middle: the
#     receiver, deduplicating by webhook-id, has every one, each key in
#     order; every signature verified; nothing in the dead letters.
#  2. Retry-After is honoured.
#  3. 410 goes to the dead letters at once with the status and the start of
#     the body; an endpoint that always fails fills the dead letters after
#     max_attempts; one that never answers in time neither: and none of
#     them holds up another topic.
#  4. An endpoint slower than a batch waits (batch_wait_ms) does not hold up
#     the other topics either: they are delivered while its request still
#     runs, and the later batches of its topic take that request over
#     instead of counting an attempt or sending it again.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use JSON::PP;
use FindBin;
use IPC::Run;

my $node = PostgreSQL::Test::Cluster->new('http_sink');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'event_store'
event_store.restart_time = 1
restart_after_crash = on
});
$node->start;

# The HTTP driver plugs into the named sinks (relay_sink_create).
$node->safe_psql('postgres', 'CREATE EXTENSION event_store');
if ($node->safe_psql('postgres',
		q{SELECT to_regprocedure('event_store.relay_sink_create(text,text,jsonb)') IS NULL}) eq 't')
{
	$node->stop;
	plan skip_all => 'this build has no named sinks';
}

my $secret = 'whsec_' . 'c2VjcmV0LW9mLXRoZS10ZXN0LXJlY2VpdmVy';
my $log = $node->basedir . '/webhooks.log';
my ($cert, $key) = map { $node->basedir . "/$_" } qw(cert.pem key.pem);
system('openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost',
	'-days', '1', '-keyout', $key, '-out', $cert, '-loglevel', 'error') == 0
  or system('openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost',
	'-days', '1', '-keyout', $key, '-out', $cert) == 0
  or die 'openssl could not make a certificate';
my $port_file = $node->basedir . '/webhooks.port';
my $server = IPC::Run::start(
	[ 'python3', "$FindBin::RealBin/../webhook_server.py", '--port-file', $port_file,
	  '--log', $log, '--secret', $secret, '--fail-rate', '0.3',
	  '--slow-rate', '0.01', '--slow-seconds', '2', '--tls-cert', $cert, '--tls-key', $key ],
	'>', $node->basedir . '/webhooks.out', '2>', $node->basedir . '/webhooks.err');
foreach (1 .. 300)
{
	last if -e $port_file;
	usleep(50_000);
}
die 'the webhook receiver did not start' unless -e $port_file;
my ($port, $tls_port) = split / /, slurp_file($port_file);
my $base = "http://127.0.0.1:$port";

sub poll_until
{
	my ($check) = @_;
	foreach (1 .. $PostgreSQL::Test::Utils::timeout_default * 10)
	{
		return 1 if $check->();
		usleep(100_000);
	}
	return 0;
}

sub received
{
	my ($path) = @_;
	return () unless -e $log;
	return grep { defined $path ? $_->[1] eq $path : 1 }
	  map { [ split /\t/, $_, 5 ] } grep { length } split /\n/, slurp_file($log);
}

$node->safe_psql('postgres', qq{
	SELECT event_store.relay_sink_create('hooks', '$base/flaky',
		'{"secret": "$secret", "timeout_ms": 1000, "max_in_flight": 64,
		  "headers": {"X-Tenant": "acme"}}');
	SELECT event_store.outbox_configure('flaky', max_attempts => 1000,
		backoff_base => '10 milliseconds', backoff_max => '200 milliseconds');
	SELECT event_store.relay_route('flaky', 'hooks');
});

# 1. 100,000 keyed messages in 1,000 keys, sent in 10 transactions
# (ES_HTTP_SINK_MESSAGES sets another number, a multiple of 10,000).
my $count = $ENV{ES_HTTP_SINK_MESSAGES} // 100000;
my $part_size = $count / 10;
foreach my $part (0 .. 9)
{
	my $from = $part * $part_size + 1;
	my $to = $from + $part_size - 1;
	$node->safe_psql('postgres', qq{
		SELECT count(event_store.outbox_send('flaky',
			jsonb_build_object('k', 'k' || (n % 1000), 'n', n), 'k' || (n % 1000),
			jsonb_build_object('seq', n)))
		FROM generate_series($from, $to) AS n});
	if ($part == 4)
	{
		# kill -9 the worker while it delivers.
		$node->poll_query_until('postgres',
			q{SELECT count(*) > 0 FROM event_store.relay_workers WHERE kind = 'relay' AND pid IS NOT NULL})
		  or die;
		usleep(300_000);
		my $pid = $node->safe_psql('postgres',
			q{SELECT pid FROM event_store.relay_workers WHERE kind = 'relay' AND pid IS NOT NULL});
		ok(kill('KILL', $pid), 'kill -9 of the relay worker mid-batch');
		$node->poll_query_until('postgres', 'SELECT true') or die;
	}
}
my $t0 = time;
ok($node->poll_query_until('postgres',
		q{SELECT NOT EXISTS (SELECT FROM event_store.outbox WHERE topic = 'flaky')}, 't'),
	'every message left the outbox');
note(sprintf('delivered in %.1f s after the last send', time - $t0));
my %first;
my @order;
my $bad = 0;
foreach my $r (received())
{
	if ($r->[0] eq 'BAD')
	{
		$bad++;
		next;
	}
	next unless $r->[1] eq '/flaky';
	next if $first{ $r->[2] }++;
	push @order, decode_json($r->[4]);
}
is(scalar(keys %first), $count, "the receiver has all $count, by webhook-id");
is($bad, 0, 'every signature verified');
my %last;
my $in_order = 1;
foreach my $m (@order)
{
	$in_order = 0 if defined $last{ $m->{k} } && $m->{n} <= $last{ $m->{k} };
	$last{ $m->{k} } = $m->{n};
}
ok($in_order, 'each key in order');
is($node->safe_psql('postgres', q{SELECT count(*) FROM event_store.outbox_dead_letters}),
	'0', 'nothing in the dead letters');
my $dups = 0;
$dups += $_ - 1 foreach values %first;
note("duplicates received (timeouts, kill -9): $dups");

# 2. Retry-After: 2 on the first request of each message.
$node->safe_psql('postgres', qq{
	SELECT event_store.relay_sink_create('later', '$base/retry-after', '{"secret": "$secret"}');
	SELECT event_store.outbox_configure('later', backoff_base => '10 milliseconds',
		backoff_max => '10 milliseconds');
	SELECT event_store.relay_route('later', 'later');
	SELECT event_store.outbox_send('later', '{"later": true}');
});
ok($node->poll_query_until('postgres',
		q{SELECT NOT EXISTS (SELECT FROM event_store.outbox WHERE topic = 'later')}, 't'),
	'the message answered with Retry-After is delivered');
my ($first_try) = received('/retry-after-first');
my ($second_try) = received('/retry-after');
ok($second_try->[0] - $first_try->[0] >= 1.5,
	sprintf('its retry came after Retry-After (%.2f s)', $second_try->[0] - $first_try->[0]));

# 3. Failing endpoints, and a healthy topic next to them.
$node->safe_psql('postgres', qq{
	SELECT event_store.relay_sink_create('gone', '$base/gone', '{"secret": "$secret"}');
	SELECT event_store.relay_sink_create('down', '$base/down', '{"secret": "$secret"}');
	SELECT event_store.relay_sink_create('slow', '$base/slow',
		'{"secret": "$secret", "timeout_ms": 300}');
	SELECT event_store.relay_sink_create('ok', '$base/ok', '{"secret": "$secret"}');
	SELECT event_store.outbox_configure(t, max_attempts => 3,
		backoff_base => '10 milliseconds', backoff_max => '50 milliseconds')
	FROM unnest(ARRAY['gone', 'down', 'slow']) AS t;
	SELECT event_store.relay_route(t, t) FROM unnest(ARRAY['gone', 'down', 'slow', 'ok']) AS t;
	SELECT count(event_store.outbox_send(t, jsonb_build_object('n', n), 'k' || (n % 5)))
	FROM unnest(ARRAY['gone', 'down', 'slow']) AS t, generate_series(1, 20) AS n;
});
my $start = time;
$node->safe_psql('postgres',
	q{SELECT count(event_store.outbox_send('ok', jsonb_build_object('n', n))) FROM generate_series(1, 100) AS n});
ok($node->poll_query_until('postgres',
		q{SELECT NOT EXISTS (SELECT FROM event_store.outbox WHERE topic = 'ok')}, 't'),
	'the healthy topic is delivered next to the failing ones');
note(sprintf('healthy topic delivered in %.1f s', time - $start));
is(scalar(received('/ok')), 100, 'all of it');
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 60 FROM event_store.outbox_dead_letters WHERE topic IN ('gone', 'down', 'slow')}),
	'the failing endpoints filled the dead letters');
is($node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE attempts = 1) || ' ' || min(last_error)
	FROM event_store.outbox_dead_letters WHERE topic = 'gone'}),
	'20 sink "gone": HTTP 410: this endpoint is gone for good',
	'410: at once, with the status and the start of the body');
is($node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE attempts = 3) || ' ' || min(last_error)
	FROM event_store.outbox_dead_letters WHERE topic = 'down'}),
	'20 sink "down": HTTP 503: down', '503: after max_attempts');
like($node->safe_psql('postgres', q{
	SELECT min(last_error) FROM event_store.outbox_dead_letters WHERE topic = 'slow'}),
	qr/^sink "slow": .*timed out/i, 'a timeout is an error too');

# 4. An endpoint that answers after 120 s, with a timeout of 10 minutes: the
# batch waits batch_wait_ms (1 s by default), not the timeout.
$node->safe_psql('postgres', qq{
	SELECT event_store.relay_sink_create('hang', '$base/hang',
		'{"secret": "$secret", "timeout_ms": 600000}');
	SELECT event_store.relay_route('hang', 'hang');
	SELECT event_store.outbox_send('hang', jsonb_build_object('hang', n), 'h')
	FROM generate_series(1, 2) AS n;
});
ok(poll_until(sub { scalar(received('/hang')) >= 1 }), 'the slow endpoint has its first request');
$start = time;
$node->safe_psql('postgres', q{
	SELECT event_store.relay_route('next', 'ok');
	SELECT count(event_store.outbox_send('next', jsonb_build_object('next', n)))
	FROM generate_series(1, 50) AS n});
ok($node->poll_query_until('postgres',
		q{SELECT NOT EXISTS (SELECT FROM event_store.outbox WHERE topic = 'next')}, 't'),
	'another topic is delivered while the slow request runs');
note(sprintf('delivered in %.1f s', time - $start));
is(scalar(grep { $_->[4] =~ /"next"/ } received('/ok')), 50, 'all of it');
is($node->safe_psql('postgres', q{
	SELECT string_agg(attempts::text || coalesce(' ' || last_error, ''), ',' ORDER BY id)
	FROM event_store.outbox WHERE topic = 'hang'}),
	'0,0', 'the slow messages wait, with no attempt counted');
is(scalar(received('/hang')), 1,
	'the later batches took the running request over: it was sent once');
$node->safe_psql('postgres', q{SELECT event_store.relay_unroute('hang')});

# 5. TLS: a self-signed certificate is refused by default; accepted with
# tls_verify off, or with the certificate as ca_file.
$node->safe_psql('postgres', qq{
	SELECT event_store.relay_sink_create('tls_default', 'https://localhost:$tls_port/ok',
		'{"secret": "$secret"}');
	SELECT event_store.relay_sink_create('tls_off', 'https://localhost:$tls_port/ok',
		'{"secret": "$secret", "tls_verify": false}');
	SELECT event_store.relay_sink_create('tls_ca', 'https://localhost:$tls_port/ok',
		'{"secret": "$secret", "ca_file": "$cert"}');
	SELECT event_store.outbox_configure(t, max_attempts => 1)
	FROM unnest(ARRAY['tls_default', 'tls_off', 'tls_ca']) AS t;
	SELECT event_store.relay_route(t, t), event_store.outbox_send(t, jsonb_build_object('tls', t))
	FROM unnest(ARRAY['tls_default', 'tls_off', 'tls_ca']) AS t;
});
ok($node->poll_query_until('postgres',
		q{SELECT NOT EXISTS (SELECT FROM event_store.outbox WHERE topic LIKE 'tls%')}),
	'the TLS topics are done');
like($node->safe_psql('postgres',
		q{SELECT last_error FROM event_store.outbox_dead_letters WHERE topic = 'tls_default'}),
	qr/certificate/, 'an unverifiable certificate is refused by default');
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM event_store.outbox_dead_letters WHERE topic IN ('tls_off', 'tls_ca')}),
	'0', 'tls_verify false and ca_file deliver');

$server->kill_kill;
$node->stop;
done_testing();
