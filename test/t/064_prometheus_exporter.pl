# monitoring/queries.yaml under prometheus-postgres-exporter: the exporter
# runs on a loopback port against a cluster with two databases using the
# extension and one without, some load is produced (appends, a held-back
# feed, subscriptions behind, outbox messages in every state, dead letters,
# relayed messages), /metrics is scraped, and every event_store metric is
# compared with the views it comes from and with what the load should
# have left.  Skipped when the exporter is not installed, unless
# ES_REQUIRE_CLIENTS is set (scripts/test.sh sets it).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use IPC::Run;
use Time::HiRes qw(usleep);
use FindBin;

my $exporter = $ENV{ES_PG_EXPORTER} // '/usr/bin/prometheus-postgres-exporter';
unless (-x $exporter)
{
	die "$exporter is not installed" if $ENV{ES_REQUIRE_CLIENTS};
	plan skip_all => "$exporter is not installed";
}
my $queries = "$FindBin::RealBin/../../monitoring/queries.yaml";

my $node = PostgreSQL::Test::Cluster->new('exporter');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'event_store'
event_store.relay_naptime = '200ms'
});
$node->start;

foreach my $db ('shop', 'billing')
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, 'CREATE EXTENSION event_store');
}

# Load.  shop: two categories; a subscription on one of them, acknowledged
# part of the way; a two-member subscription on the whole feed, one member
# acknowledged to the end; outbox messages available, blocked, leased,
# delayed and dead; a relayed topic.
$node->safe_psql('shop', q{
	SELECT event_store.subscription_create('invoices', 'order');
	SELECT event_store.subscription_create('audit', NULL, 2);
	SELECT event_store.append('order-' || i,
		jsonb_build_array(jsonb_build_object('type', 'Placed', 'data', jsonb_build_object('n', i)),
						  jsonb_build_object('type', 'Paid', 'data', jsonb_build_object('n', i))), -1)
	FROM generate_series(1, 5) AS i;
	SELECT event_store.append_event('customer-' || i, 'Registered', '{}', expected_version => -1)
	FROM generate_series(1, 3) AS i;
});
$node->safe_psql('shop', q{
	BEGIN;
	SELECT count(*) FROM event_store.subscription_fetch('invoices', 4);
	SELECT event_store.subscription_ack('invoices', (SELECT max(position) FROM event_store.read_category('order', 0, 4)));
	COMMIT;
	BEGIN;
	SELECT count(*) FROM event_store.subscription_fetch('audit', 100, 1);
	SELECT event_store.subscription_ack('audit', event_store.feed_head(), 1);
	COMMIT;
});
$node->safe_psql('shop', q{
	SELECT event_store.outbox_configure('emails', max_attempts => 1, backoff_base => NULL, backoff_max => NULL, lease => NULL);
	SELECT event_store.outbox_send('emails', jsonb_build_object('n', i)) FROM generate_series(1, 6) AS i;
	SELECT event_store.outbox_send('emails', '{}', key => 'k');
	SELECT event_store.outbox_send('emails', '{}', key => 'k');
	SELECT event_store.outbox_send('emails', '{}', delay => '1 hour');
	SELECT event_store.outbox_send('sms', '{}');
});
# Two of "emails" leased (their lease is long), one dead letter (one
# attempt allowed, nacked).
$node->safe_psql('shop', q{
	SELECT count(*) FROM event_store.outbox_claim('emails', 2, '1 hour');
});
$node->safe_psql('shop', q{
	SELECT event_store.outbox_nack(ARRAY(SELECT receipt FROM event_store.outbox_claim('emails', 1)), error => 'boom');
});
$node->safe_psql('shop', q{
	SELECT event_store.relay_route('notices', 'notify:notices');
	SELECT event_store.outbox_send('notices', jsonb_build_object('n', i)) FROM generate_series(1, 7) AS i;
});
ok( $node->poll_query_until('shop',
		q{SELECT NOT EXISTS (SELECT FROM event_store.outbox_depth WHERE topic = 'notices' AND available + blocked + leased + delayed > 0)}),
	'the relay worker moved the routed messages');

# billing: a few events, nothing else.
$node->safe_psql('billing', q{
	SELECT event_store.append_event('invoice-' || i, 'Issued', '{}') FROM generate_series(1, 4) AS i;
});

# A transaction that appended and stays open holds the feed back: the two
# events appended after it wait above the safe head.
my $open = $node->background_psql('shop');
$open->query_safe(q{BEGIN; SELECT event_store.append_event('order-99', 'Placed', '{}')});
$node->safe_psql('shop', q{SELECT event_store.append_event('customer-' || i, 'Registered', '{}') FROM generate_series(4, 5) AS i});

# The exporter, on a free loopback port, reading shop (its DSN) and the
# other databases it discovers, except postgres, which has no extension.
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $dsn = sprintf('host=%s port=%d user=%s dbname=shop sslmode=disable',
	$node->host, $node->port, scalar getpwuid($<));
my ($out, $err) = ('', '');
my $handle = IPC::Run::start(
	[
		$exporter, '--auto-discover-databases', '--exclude-databases=postgres',
		"--extend.query-path=$queries", "--web.listen-address=127.0.0.1:$port",
		'--disable-settings-metrics'
	],
	'>', \$out, '2>', \$err,
	init => sub { $ENV{DATA_SOURCE_NAME} = $dsn });

my $http = HTTP::Tiny->new(timeout => 30);
my $body;
foreach (1 .. 300)
{
	my $res = $http->get("http://127.0.0.1:$port/metrics");
	if ($res->{success})
	{
		$body = $res->{content};
		last;
	}
	usleep(100_000);
}
ok(defined $body, 'the exporter serves /metrics') or diag($err);
$body //= '';

# name{labels} -> value, labels in sorted order without the server label.
my %m;
foreach my $line (split /\n/, $body)
{
	next if $line =~ /^#/;
	next unless $line =~ /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/;
	my ($name, $labels, $value) = ($1, $2 // '', $3);
	my %l = $labels =~ /(\w+)="((?:[^"\\]|\\.)*)"/g;
	delete $l{server};
	my $key = $name . '{' . join(',', map { "$_=$l{$_}" } sort keys %l) . '}';
	$m{$key} = $value;
}

is($m{'pg_up{}'}, 1, 'pg_up is 1');
is($m{'pg_exporter_last_scrape_error{}'}, 0, 'no query of the file failed in any database');

sub metric
{
	my ($name, %labels) = @_;
	my $key = $name . '{' . join(',', map { "$_=$labels{$_}" } sort keys %labels) . '}';
	return $m{$key};
}

sub rows
{
	my ($db, $sql) = @_;
	return map { [ split /\|/, $_, -1 ] } grep { length } split /\n/, $node->safe_psql($db, $sql);
}

# Every series of a query has a row in its view, and the other way round.
sub series_count
{
	my ($prefix) = @_;
	return scalar grep { index($_, $prefix . '{') == 0 } keys %m;
}

# The feed.
is_deeply(
	[ rows('shop', 'SELECT head, last_position, held_back_events FROM event_store.feed_status') ],
	[ [ 13, 16, 2 ] ],
	'shop: the load left the expected feed (head behind the open transaction, two held back)');
foreach my $db ('shop', 'billing')
{
	my ($f) = rows($db, 'SELECT head, coalesce(last_position, 0), held_back_events, state FROM event_store.feed_status');
	my %l = (datname => $db, state => $f->[3]);
	is(metric('event_store_feed_head_position', %l), $f->[0], "$db: feed head");
	is(metric('event_store_feed_last_position', %l), $f->[1], "$db: last position");
	is(metric('event_store_feed_held_back_events', %l), $f->[2], "$db: held-back events");
}
is(metric('event_store_feed_held_back_events', datname => 'shop', state => 'primary'), 2,
	'shop: the open appending transaction shows as two held-back events');
is(metric('event_store_feed_head_position', datname => 'billing', state => 'primary'), 4,
	'billing: its own feed head');
is(series_count('event_store_feed_head_position'), 2, 'one feed series per database with the extension');

# Categories.
my @cats = rows('shop', 'SELECT category, streams, events, last_position FROM event_store.categories')
  ;
push @cats, map { [ 'billing:' . $_->[0], @$_[ 1 .. 3 ] ] }
  rows('billing', 'SELECT category, streams, events, last_position FROM event_store.categories');
is(scalar @cats, 3, 'three categories in the views');
foreach my $c (@cats)
{
	my ($db, $cat) = $c->[0] =~ /^billing:(.*)/ ? ('billing', $1) : ('shop', $c->[0]);
	is(metric('event_store_category_streams', datname => $db, category => $cat), $c->[1], "$db/$cat: streams");
	is(metric('event_store_category_events_total', datname => $db, category => $cat), $c->[2], "$db/$cat: events");
	is(metric('event_store_category_last_position', datname => $db, category => $cat), $c->[3],
		"$db/$cat: last position");
}
is(metric('event_store_category_events_total', datname => 'shop', category => 'order'), 10,
	'shop/order: the ten committed order events (the open one not yet)');
is(metric('event_store_category_streams', datname => 'shop', category => 'customer'), 5, 'shop/customer: five streams');
is(series_count('event_store_category_streams'), 3, 'one series per category');

# Subscriptions, per member.
my @subs = rows('shop', q{
	SELECT subscription, coalesce(category, ''), member, checkpoint, pending_events,
		   extract(epoch FROM oldest_pending_age), extract(epoch FROM now() - acked_at)
	FROM event_store.subscription_lag ORDER BY 1, 3});
is(scalar @subs, 3, 'three subscription members');
foreach my $s (@subs)
{
	my %l = (datname => 'shop', subscription => $s->[0], category => $s->[1], member => $s->[2]);
	my $what = "$s->[0]/$s->[2]";
	is(metric('event_store_subscription_checkpoint_position', %l), $s->[3], "$what: checkpoint");
	is(metric('event_store_subscription_pending_events', %l), $s->[4], "$what: pending events");
	my $age = metric('event_store_subscription_oldest_pending_age_seconds', %l);
	if ($s->[5] eq '')
	{
		is($age, 0, "$what: nothing pending, age 0");
	}
	else
	{
		# The view was read after the scrape: the age it shows is a little
		# larger.
		ok($age > 0 && $age <= $s->[5], "$what: oldest pending age $age <= $s->[5]");
	}
	my $ack_age = metric('event_store_subscription_last_ack_age_seconds', %l);
	ok(defined $ack_age && $ack_age >= 0 && $ack_age <= $s->[6], "$what: last ack age");
}
is(metric('event_store_subscription_pending_events', datname => 'shop', subscription => 'invoices', category => 'order', member => 0),
	6, 'invoices: six order events pending after four were acknowledged');
is(metric('event_store_subscription_pending_events', datname => 'shop', subscription => 'audit', category => '', member => 1),
	0, 'audit member 1: caught up');
is(metric('event_store_subscription_oldest_pending_age_seconds', datname => 'shop', subscription => 'audit', category => '', member => 1),
	0, 'audit member 1: no pending age');
is(series_count('event_store_subscription_pending_events'), 3, 'one series per member');

# The outbox, per topic and state.
my @depth = rows('shop', q{
	SELECT topic, available, blocked, leased, delayed, dead,
		   extract(epoch FROM oldest_available_age), extract(epoch FROM oldest_message_age)
	FROM event_store.outbox_depth ORDER BY topic});
foreach my $d (@depth)
{
	my %l = (datname => 'shop', topic => $d->[0]);
	my $i = 1;
	foreach my $state ('available', 'blocked', 'leased', 'delayed')
	{
		is(metric('event_store_outbox_messages', %l, state => $state), $d->[ $i++ ], "$d->[0]: $state");
	}
	is(metric('event_store_outbox_topic_dead_letters', %l), $d->[5], "$d->[0]: dead letters");
	my $age = metric('event_store_outbox_topic_oldest_available_age_seconds', %l);
	ok(($d->[6] eq '' ? $age == 0 : $age > 0 && $age <= $d->[6]), "$d->[0]: oldest available age");
	$age = metric('event_store_outbox_topic_oldest_message_age_seconds', %l);
	ok(($d->[7] eq '' ? $age == 0 : $age > 0 && $age <= $d->[7]), "$d->[0]: oldest message age");
}
is_deeply(
	[ map { metric('event_store_outbox_messages', datname => 'shop', topic => 'emails', state => $_) } qw(available blocked leased delayed) ],
	[ 4, 1, 2, 1 ],
	'emails: 4 available, 1 blocked behind its key, 2 leased, 1 delayed');
is(metric('event_store_outbox_topic_dead_letters', datname => 'shop', topic => 'emails'), 1, 'emails: one dead letter');
is(metric('event_store_outbox_messages', datname => 'shop', topic => 'sms', state => 'available'), 1, 'sms: one available');
is(series_count('event_store_outbox_topic_dead_letters'), scalar @depth, 'one series per topic');

# The relay workers.
foreach my $db ('shop', 'billing')
{
	my ($w) = rows($db, q{
		SELECT state, messages_relayed, batches, feed_notifications,
			   extract(epoch FROM now() - last_batch_at), extract(epoch FROM now() - last_error_at)
		FROM event_store.relay_workers WHERE kind = 'relay' AND database = current_database()});
	is(metric('event_store_relay_worker_running', datname => $db, state => $w->[0]), 1, "$db: the relay worker runs ($w->[0])");
	# Counters may have moved between the scrape and this read (feed
	# notifications): the scrape is not ahead of the view.
	my $relayed = metric('event_store_relay_messages_relayed_total', datname => $db);
	is($relayed, $w->[1], "$db: messages relayed");
	my $batches = metric('event_store_relay_batches_total', datname => $db);
	ok(defined $batches && $batches <= $w->[2], "$db: batches ($batches <= $w->[2])");
	my $notes = metric('event_store_relay_feed_notifications_total', datname => $db);
	ok(defined $notes && $notes <= $w->[3], "$db: feed notifications ($notes <= $w->[3])");
	is(metric('event_store_relay_last_error_age_seconds', datname => $db), 'NaN', "$db: no relay error");
}
is(metric('event_store_relay_messages_relayed_total', datname => 'shop'), 7, 'shop: the seven routed messages were relayed');
is(metric('event_store_relay_messages_relayed_total', datname => 'billing'), 0, 'billing: nothing relayed');
ok(metric('event_store_relay_last_batch_age_seconds', datname => 'shop') >= 0, 'shop: age of the last batch');
ok(!grep({ /^event_store_.*datname=postgres/ } keys %m), 'nothing from the database without the extension');

# Every metric that the alert rules and README.md name is one the file
# gives.
my %names = map { /^([^{]+)/ ? ($1 => 1) : () } keys %m;
my $readme = slurp_file("$FindBin::RealBin/../../README.md");
my ($monitoring) = $readme =~ /^## Monitoring\n(.*?)^## /ms;
foreach my $source ([ 'monitoring/alerts.yml', slurp_file("$FindBin::RealBin/../../monitoring/alerts.yml") ],
	[ 'README.md, Monitoring', $monitoring // '' ])
{
	my %used = map { $_ => 1 } $source->[1] =~ /\b((?:event_store_(?:feed|category|subscription|outbox|relay)_|pg_exporter_)[a-z_]+)/g;
	ok(scalar keys %used >= 5, "$source->[0] names metrics");
	is_deeply([ grep { !$names{$_} } sort keys %used ], [], "$source->[0] names only metrics the exporter gives");
}

# After the open transaction commits, the next scrape shows the feed
# caught up.
$open->query_safe('COMMIT');
$open->quit;
my $res = $http->get("http://127.0.0.1:$port/metrics");
like($res->{content} // '',
	qr/^event_store_feed_held_back_events\{datname="shop",server="[^"]*",state="primary"\} 0$/m,
	'shop: nothing held back once the appending transaction commits');
like($res->{content} // '',
	qr/^event_store_feed_head_position\{datname="shop",server="[^"]*",state="primary"\} 16$/m,
	'shop: the head moves to the last position');

$handle->kill_kill;
$handle->finish;
$node->stop;
done_testing();
