# The relay worker of one database: blocked messages never starve eligible
# ones (100,000 of them, in the relay and in outbox_claim); a message that
# cannot be published goes through its topic's backoff to the dead letters
# with its error while the rest flows; a large message is published as a
# reference without being loaded; a fresh worker never misses its first
# wake-up; DROP and CREATE EXTENSION start the feed announcements afresh;
# consumer group members are woken for their own streams; relay_workers
# shows this database only, and relay_route warns when no worker can start.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use JSON::PP;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use EventStoreTest;

my $node = PostgreSQL::Test::Cluster->new('isolation');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'event_store'
event_store.relay_naptime = '60s'
event_store.restart_time = 1
event_store.max_message_size = '256MB'
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION event_store');

# --- Head-of-line blocking: one keyed message delayed an hour, 100,000 of
# its key behind it, then one without a key.
$node->safe_psql('postgres', q{
	SELECT event_store.relay_route('hol', 'notify:hol');
	SELECT event_store.relay_pause('hol');
	SELECT event_store.outbox_send('hol', '{"first": true}', 'k', NULL, '1 hour');
	SELECT event_store.outbox_send('claimed', '{"first": true}', 'k', NULL, '1 hour');
	INSERT INTO event_store.outbox (id, topic, key, payload, created_at, available_at)
	SELECT nextval('event_store.outbox_id_seq'), t, 'k', jsonb_build_object('n', n), now(), now()
	FROM generate_series(1, 100000) AS n, unnest(ARRAY['hol', 'claimed']) AS t;
	SELECT event_store.outbox_send('hol', '{"free": true}');
	SELECT event_store.outbox_send('claimed', '{"free": true}');
	ANALYZE event_store.outbox;
});
my $listener = start_listener($node, 'postgres', 'hol', 'iso', 'other', 'event_store_feed',
	'event_store_sub_grp');
my $t0 = time;
$node->safe_psql('postgres', q{SELECT event_store.relay_resume('hol')});
my @hol = wait_for_lines($listener, 1, 60, 'hol');
my $elapsed = time - $t0;
is(scalar(@hol), 1, 'the relay published the unkeyed message behind 100,000 blocked ones');
is(@hol ? decode_json($hol[0][1])->{payload}{free} : undef, JSON::PP::true, 'and only it');
cmp_ok($elapsed, '<', 30, sprintf('at once, not after the hour (%.2f s)', $elapsed));
diag(sprintf('relay: unkeyed message behind 100,000 blocked published in %.2f s', $elapsed));
$t0 = time;
is($node->safe_psql('postgres',
		q{SELECT string_agg(payload::text, ',') FROM event_store.outbox_claim('claimed', 10)}),
	'{"free": true}', 'outbox_claim returns the unkeyed message behind 100,000 blocked ones');
diag(sprintf('claim behind 100,000 blocked: %.2f s', time - $t0));
$node->safe_psql('postgres', q{
	SELECT event_store.relay_unroute('hol');
	DELETE FROM event_store.outbox;
});

# --- A message that cannot be published: its backoff, then its dead
# letter with the error; other keys and topics keep flowing.
$node->safe_psql('postgres', q{
	CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF NEW.payload ? 'poison' THEN
			RAISE EXCEPTION 'the broker refused message %', NEW.id;
		END IF;
		RETURN NEW;
	END $$;
	CREATE TRIGGER refuse_poison BEFORE INSERT ON event_store.relay_parked
		FOR EACH ROW EXECUTE FUNCTION refuse_poison();
	SELECT event_store.outbox_configure('iso', max_attempts => 3,
		backoff_base => '200 milliseconds', backoff_max => '1 second');
	SELECT event_store.relay_route('iso', 'notify:iso');
	SELECT event_store.relay_route('other', 'notify:other');
});
my $poison = $node->safe_psql('postgres', q{
	SELECT event_store.outbox_send('iso', jsonb_build_object('poison', repeat('p', 20000)), 'k1');
});
$node->safe_psql('postgres', q{
	SELECT event_store.outbox_send('iso', '{"after_poison": true}', 'k1');
	SELECT event_store.outbox_send('iso', '{"other_key": true}', 'k2');
	SELECT event_store.outbox_send('other', '{"other_topic": true}');
});
my @iso = wait_for_lines($listener, 1, 30, 'iso');
my @other = wait_for_lines($listener, 1, 30, 'other');
is(scalar(@other), 1, 'another topic flows while a message fails');
ok((grep { decode_json($_->[1])->{payload}{other_key} } @iso), 'another key of the topic flows');
ok( $node->poll_query_until('postgres',
		"SELECT EXISTS (SELECT FROM event_store.outbox_dead_letters WHERE id = $poison)"),
	'the failing message reaches the dead letters');
is( $node->safe_psql('postgres',
		"SELECT attempts || ' ' || last_error FROM event_store.outbox_dead_letters WHERE id = $poison"),
	"3 could not publish a message too large for NOTIFY: the broker refused message $poison",
	'after the topic\'s max_attempts, with its error');
@iso = wait_for_lines($listener, 2, 30, 'iso');
my @order = map { join(',', sort keys %{ decode_json($_->[1])->{payload} }) } @iso;
is_deeply(\@order, [ 'other_key', 'after_poison' ],
	'the message behind it on its key waited for it, then went');
like($node->safe_psql('postgres', q{SELECT last_error FROM event_store.relay_workers WHERE kind = 'relay'}),
	qr/message $poison of topic "iso": could not publish/, 'relay_workers shows the error');
$node->safe_psql('postgres', 'DROP TRIGGER refuse_poison ON event_store.relay_parked');

# A large message goes as a reference, copied inside the server.
my $big = $node->safe_psql('postgres',
	q{SELECT event_store.outbox_send('other', jsonb_build_object('big', repeat('b', 50 * 1024 * 1024)))});
@other = wait_for_lines($listener, 2, 120, 'other');
ok(decode_json($other[-1][1])->{reference}, 'a 50 MB message is published as a reference');
is($node->safe_psql('postgres', "SELECT length(payload->>'big') FROM event_store.relay_fetch($big)"),
	50 * 1024 * 1024, 'relay_fetch resolves it');
$node->safe_psql('postgres', 'DELETE FROM event_store.relay_parked');

# --- Consumer groups: a member is woken for its own streams only.
$node->safe_psql('postgres', q{SELECT event_store.subscription_create('grp', 'acct', 4)});
my $member = $node->safe_psql('postgres', q{SELECT event_store.consumer_group_member('acct-1', 4)});
$node->safe_psql('postgres', q{SELECT event_store.append_event('acct-1', 'Opened', '{}')});
my $head = $node->safe_psql('postgres', 'SELECT event_store.feed_head()');
my @grp = wait_for_lines($listener, 1, 10, 'event_store_sub_grp');
is($grp[-1][1], "$head $member", 'the payload is the head and the members with new events');

# --- DROP and CREATE EXTENSION at once: announcements start afresh.
$node->safe_psql('postgres', q{SELECT count(event_store.append_event('s-' || n, 'E', '{}')) FROM generate_series(1, 50) AS n});
wait_for_lines($listener, 1, 10, 'event_store_feed');
$node->safe_psql('postgres', q{
	DROP EXTENSION event_store CASCADE;
	CREATE EXTENSION event_store;
	SELECT event_store.subscription_create('again', NULL);
});
my $before = scalar(listener_lines($listener));
$node->safe_psql('postgres', q{SELECT event_store.append_event('fresh-1', 'E', '{}')});
$t0 = time;
my @feed;
while (time - $t0 < 10)
{
	@feed = grep { $_->[0] eq 'event_store_feed' } (listener_lines($listener))[ $before .. scalar(listener_lines($listener)) - 1 ];
	last if @feed;
	usleep(50_000);
}
is(scalar(@feed) ? $feed[-1][1] : 'none', '1', 'the new instance\'s head 1 is announced at once');
stop_listener($listener);

# --- A fresh worker never misses its first wake-up: new database, worker
# up, route, send at once (naptime 60 s: only a wake-up explains delivery).
my @fresh;
foreach my $i (1 .. 5)
{
	$node->safe_psql('postgres', "CREATE DATABASE fresh_$i");
	$node->safe_psql("fresh_$i", 'CREATE EXTENSION event_store');
	$node->poll_query_until("fresh_$i",
		q{SELECT pid IS NOT NULL FROM event_store.relay_workers WHERE kind = 'relay'});
	my $l = start_listener($node, "fresh_$i", 'fresh');
	$t0 = time;
	$node->safe_psql("fresh_$i", q{
		SELECT event_store.relay_route('fresh', 'notify:fresh');
		SELECT event_store.outbox_send('fresh', '{}');
	});
	my @got = wait_for_lines($l, 1, 30, 'fresh');
	push @fresh, @got ? time - $t0 : 999;
	stop_listener($l);
}
diag('fresh worker, route then send: ' . join(' ', map { sprintf('%.3f s', $_) } @fresh));
is(scalar(grep { $_ > 5 } @fresh), 0, 'every first send after a route is relayed at once');

# --- relay_workers shows only this database.
is($node->safe_psql('fresh_1', q{SELECT string_agg(coalesce(database, '-'), ',' ORDER BY kind) FROM event_store.relay_workers}),
	'-,fresh_1', 'relay_workers shows the launcher and this database, no other');

# --- No worker can start (no background worker slot): relay_route warns.
my $small = PostgreSQL::Test::Cluster->new('no_slots');
$small->init;
$small->append_conf('postgresql.conf', q{
shared_preload_libraries = 'event_store'
max_worker_processes = 2
});
$small->start;
$small->safe_psql('postgres', 'CREATE EXTENSION event_store');
ok($small->poll_query_until('postgres',
		q{SELECT state = 'waiting for a worker' FROM event_store.relay_workers WHERE kind = 'relay'}),
	'relay_workers says the database waits for a worker');
my ($ret, $stdout, $stderr) = $small->psql('postgres', q{SELECT event_store.relay_route('t', 'notify:t')});
like($stderr, qr/WARNING:  relay workers could not start in the last minute: no background worker slot was free/,
	'relay_route warns that no worker can serve the database');
ok($small->log_contains(qr/could not start a relay worker for database "postgres"/),
	'the log names the database');
$small->stop('fast');

$node->stop('fast');
done_testing();
