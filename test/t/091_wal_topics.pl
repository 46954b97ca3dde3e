# Topics delivered through the WAL: outbox_send and event routes to such a
# topic emit transactional logical decoding messages, received by
# pg_recvlogical with test_decoding and by a pgoutput client with messages
# on (tools/es_wal_messages): every committed message once, in commit
# order, nothing from rolled-back transactions or subtransactions, and no
# outbox rows.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use JSON::PP;

my $node = PostgreSQL::Test::Cluster->new('wal_topics');
$node->init(allows_streaming => 'logical');
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'event_store'\n");
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION event_store;
	SELECT event_store.outbox_configure('cdc', delivery => 'wal');
	SELECT event_store.route_events('cdc', 'order');
	CREATE PUBLICATION es_messages;
	SELECT pg_create_logical_replication_slot('td', 'test_decoding');
	SELECT pg_create_logical_replication_slot('po', 'pgoutput');
});

# The sends: committed, rolled back, in a rolled-back subtransaction,
# by event routes, and from concurrent sessions that commit in another
# order than they sent.
$node->safe_psql('postgres', q{
	SELECT event_store.outbox_send('cdc', '{"n": 1}', 'k1', '{"h": "x"}');
	BEGIN;
	SELECT event_store.outbox_send('cdc', '{"rolled_back": true}', 'k1');
	ROLLBACK;
	BEGIN;
	SELECT event_store.outbox_send('cdc', '{"n": 2}', 'k1');
	SAVEPOINT s;
	SELECT event_store.outbox_send('cdc', '{"rolled_back": true}', 'k1');
	ROLLBACK TO SAVEPOINT s;
	SELECT event_store.outbox_send('cdc', '{"n": 3}');
	COMMIT;
	SELECT event_store.append_event('order-7', 'Placed', '{"n": 4}', '{"m": 1}');
	SELECT event_store.append_event('user-7', 'Joined', '{"not": "routed"}');
	SELECT event_store.outbox_send('plain', '{"n": "table"}');
});
# A batch send to a WAL topic is published the same way (n 7 and 8).
my $batch_sent = $node->safe_psql('postgres',
	q{SELECT event_store.outbox_send_batch('cdc', ARRAY['{"n": 7}', '{"n": 8}']::jsonb[])})
  =~ /^\{\d+,\d+\}$/;

# Session a sends first, session b second; b commits first.
my $a = $node->background_psql('postgres');
my $b = $node->background_psql('postgres');
$a->query_safe(q{BEGIN; SELECT event_store.outbox_send('cdc', '{"n": 6}', 'late')});
$b->query_safe(q{BEGIN; SELECT event_store.outbox_send('cdc', '{"n": 5}', 'early')});
$b->query_safe('COMMIT');
$a->query_safe('COMMIT');
$a->quit;
$b->quit;

# Load from several clients at once: 4 x 250 transactions, keyed by client.
my $script = $node->basedir . '/send.sql';
open my $fh, '>', $script or die;
print $fh "SELECT event_store.outbox_send('cdc', jsonb_build_object('client', :client_id, 'load', true), 'c' || :client_id);\n";
close $fh;
$node->command_ok(
	[ 'pgbench', '-n', '-c', '4', '-j', '2', '-t', '250', '-f', $script,
	  '-d', $node->connstr('postgres') ],
	'concurrent sends to a WAL topic');

# Nothing went to the outbox table for the WAL topic.
is($node->safe_psql('postgres',
	"SELECT string_agg(topic, ',') FROM event_store.outbox"), 'plain',
	'only the table topic has outbox rows');

my $endpos = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
# Something past endpos, so that both clients see the stream pass it.
$node->safe_psql('postgres', "SELECT pg_logical_emit_message(true, 'other', 'after')");

# test_decoding, through pg_recvlogical.
my $td_out = $node->basedir . '/td.out';
$node->command_ok(
	[ 'pg_recvlogical', '-d', $node->connstr('postgres'), '-S', 'td',
	  '--start', '--endpos', $endpos, '-o', 'include-xids=0', '-f', $td_out, '--no-loop' ],
	'pg_recvlogical reads the slot up to endpos');
my @td;
foreach my $line (split /\n/, slurp_file($td_out))
{
	next unless $line =~ /^message: transactional: (\d) prefix: (\S+), sz: \d+ content:(.*)$/;
	push @td, [ $1, $2, $3 ];
}

# pgoutput with messages on.
my ($stdout, $stderr);
my $ok = IPC::Run::run(
	[ "$FindBin::RealBin/../../tools/es_wal_messages", '-d', $node->connstr('postgres'),
	  '-S', 'po', '-P', 'es_messages', '-E', $endpos ],
	'>', \$stdout, '2>', \$stderr);
ok($ok, 'the pgoutput client reads the slot up to endpos') or diag($stderr);
my @po = map { [ split /\t/, $_, 3 ] } grep { length } split /\n/, $stdout;

foreach my $client ([ 'test_decoding', \@td ], [ 'pgoutput', \@po ])
{
	my ($name, $lines) = @$client;
	my @messages = map { decode_json($_->[2]) } @$lines;
	is(scalar(grep { $_->[0] ne '1' || $_->[1] ne 'event_store' } @$lines), 0,
		"$name: every message is transactional, with prefix event_store");
	is(scalar(@messages), 1008, "$name: every committed message");
	my %ids = map { $_->{id} => 1 } @messages;
	is(scalar(keys %ids), 1008, "$name: each once");
	is(scalar(grep { $_->{payload}{rolled_back} } @messages), 0,
		"$name: nothing rolled back");
	is_deeply([ map { $_->{payload}{n} } @messages[0 .. 7] ], [ 1, 2, 3, 4, 7, 8, 5, 6 ],
		"$name: in commit order");
	is_deeply([ sort keys %{ $messages[0] } ], [qw(headers id key payload topic)],
		"$name: the message's fields");
	is_deeply([ @{ $messages[0] }{qw(topic key)}, $messages[0]{headers}{h} ],
		[ 'cdc', 'k1', 'x' ], "$name: topic, key and headers");
	ok(!defined $messages[2]{key} && !defined $messages[2]{headers},
		"$name: no key and no headers are null");
	is_deeply([ $messages[3]{key}, $messages[3]{headers}{type},
			$messages[3]{headers}{version}, $messages[3]{headers}{metadata}{m} ],
		[ 'order-7', 'Placed', 0, 1 ], "$name: a routed event");
	# Per client, the load's messages come in send order.
	my (%last, $ordered);
	$ordered = 1;
	foreach my $m (grep { $_->{payload}{load} } @messages)
	{
		$ordered = 0 if defined $last{ $m->{key} } && $m->{id} <= $last{ $m->{key} };
		$last{ $m->{key} } = $m->{id};
	}
	ok($ordered && keys %last == 4, "$name: each session's messages in order");
}
ok($batch_sent, 'a batch send to a WAL topic returns its ids');
is_deeply([ map { decode_json($_->[2])->{id} } @po ],
	[ map { decode_json($_->[2])->{id} } @td ], 'both clients see the same sequence');

# Ids of WAL and table topics come from one sequence.
my $max_id = $node->safe_psql('postgres', 'SELECT max(id) FROM event_store.outbox');
ok(!grep({ decode_json($_->[2])->{id} == $max_id } @td), 'ids are not shared with table topics');

$node->stop;
done_testing();
