# The pgmq layer driven by a published pgmq client: pgmq-js from the npm
# registry (pinned in test/npm/package.json, installed with npm ci into a
# scratch directory) runs a queue's whole life cycle, unchanged
# (test/npm/pgmq_life_cycle.js).  Then the layer's own edges: errors,
# per-group order through the x-pgmq-group header, and privileges.
use strict;
use warnings;
use File::Copy;
use FindBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

plan skip_all => 'npm is not installed' unless system('npm --version >/dev/null 2>&1') == 0;

my $npm = PostgreSQL::Test::Utils::tempdir('npm');
copy("$FindBin::RealBin/../npm/$_", "$npm/$_") or die "$_: $!"
  foreach qw(package.json package-lock.json pgmq_life_cycle.js);
system_or_bail('npm', 'ci', '--prefix', $npm, '--no-audit', '--no-fund', '--loglevel=error',
	"--cache=$npm/.cache");

my $node = PostgreSQL::Test::Cluster->new('pgmq_js');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'event_store'");
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE app');
$node->safe_psql('app', 'CREATE EXTENSION event_store_pgmq CASCADE');

# pgmq-js connects over the socket as the test's user.
{
	local $ENV{PGHOST} = $node->host;
	local $ENV{PGPORT} = $node->port;
	local $ENV{PGDATABASE} = 'app';
	local $ENV{PGUSER} = scalar getpwuid($<);
	my ($stdout, $stderr);
	my $ok = IPC::Run::run([ 'node', "$npm/pgmq_life_cycle.js" ], '>', \$stdout, '2>', \$stderr);
	note($stdout);
	ok($ok, 'pgmq-js runs the life cycle: create, send, send_batch, read, the timeout expires, read_with_poll, set_vt, archive, delete, pop, metrics, purge, drop')
	  or diag($stderr);
	like($stdout, qr/^ok 10 - purge, drop$/m, 'every step passed');
}

# Errors.
my ($ret, $stdout, $stderr) = $node->psql('app', q{SELECT pgmq.send('missing', '{}')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($stderr, qr/ERROR:  42P01: queue "missing" does not exist/, 'a queue that does not exist: 42P01');
($ret, $stdout, $stderr) = $node->psql('app', q{SELECT pgmq.create(repeat('q', 48))});
like($stderr, qr/ERROR:  queue name is too long, maximum length is 47 characters/, 'pgmq\'s limit on names');
$node->safe_psql('app', q{SELECT pgmq.create('jobs')});
($ret, $stdout, $stderr) = $node->psql('app', q{SELECT * FROM pgmq.read('jobs', 30, 1, '{"kind": "a"}')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($stderr, qr/ERROR:  0A000: conditional reads are not supported/, 'conditional reads: 0A000');
($ret, $stdout, $stderr) = $node->psql('app', q{SELECT pgmq.drop_queue('missing')});
is($stdout, 'f', 'dropping a queue that does not exist returns false');
like($stderr, qr/NOTICE:  pgmq queue `missing` does not exist/, 'with a notice');

# read_with_poll never sleeps past the end of its polling.
$node->safe_psql('app', q{SELECT pgmq.create('empty')});
is($node->safe_psql('app', q{
SET statement_timeout = '60s';
SELECT count(*) FROM pgmq.read_with_poll('empty', 30, 1, 1, 3600000)}),
	'0', 'read_with_poll with an hour\'s interval returns after its second');
($ret, $stdout, $stderr) = $node->psql('app', q{SELECT pgmq._create('bad', NULL)});
is($ret, 0, 'a NULL is_unlogged is false, not a constraint violation');

# The x-pgmq-group header is the key: a group's next message is not read
# while an earlier one is unacknowledged; other groups go on.
$node->safe_psql('app', q{
SELECT pgmq.send('jobs', '{"n": 1}', '{"x-pgmq-group": "a"}'::jsonb);
SELECT pgmq.send('jobs', '{"n": 2}', '{"x-pgmq-group": "a"}'::jsonb);
SELECT pgmq.send('jobs', '{"n": 3}', '{"x-pgmq-group": "b"}'::jsonb);});
is($node->safe_psql('app', q{SELECT string_agg(message->>'n', ',' ORDER BY msg_id) FROM pgmq.read('jobs', 30, 10)}),
	'1,3', 'one message per group at a time');
is($node->safe_psql('app', q{SELECT key FROM event_store.outbox WHERE topic = 'jobs' ORDER BY id LIMIT 1}),
	'a', 'the group is the outbox key');

# Deletes touch only the named queue: ids are the outbox's, shared by
# every topic.
my $native = $node->safe_psql('app', q{SELECT event_store.outbox_send('native', '{}')});
is($node->safe_psql('app', qq{SELECT pgmq.delete('jobs', ${native}::bigint)}), 'f',
	'a message of another topic is not deleted through a queue');
is($node->safe_psql('app', q{SELECT count(*) FROM event_store.outbox WHERE topic = 'native'}), '1',
	'it is still there');
($ret, $stdout, $stderr) = $node->psql('app', qq{SELECT pgmq.delete('native', ${native}::bigint)});
like($stderr, qr/queue "native" does not exist/, 'a topic that is not a queue is not reached');

# Privileges: writers use queues, only admins drop or purge them.
$node->safe_psql('app', q{
CREATE ROLE app_writer LOGIN IN ROLE event_store_writer;
CREATE ROLE app_stranger LOGIN;});
is($node->safe_psql('app', q{SELECT count(*) FROM pgmq.send_batch('jobs', ARRAY['{}', '{}']::jsonb[])},
		extra_params => [ '-U', 'app_writer' ]),
	'2', 'a writer sends');
($ret, $stdout, $stderr) = $node->psql('app', q{SELECT pgmq.purge_queue('jobs')},
	extra_params => [ '-U', 'app_writer' ]);
like($stderr, qr/permission denied for function purge_queue/, 'a writer does not purge');
($ret, $stdout, $stderr) = $node->psql('app', q{SELECT pgmq.send('jobs', '{}')},
	extra_params => [ '-U', 'app_stranger' ]);
like($stderr, qr/permission denied for schema pgmq/, 'a role without the event_store roles does nothing');
# The archive keeps payloads: writers read it, readers do not.
$node->safe_psql('app', q{CREATE ROLE app_reader LOGIN IN ROLE event_store_reader});
($ret, $stdout, $stderr) = $node->psql('app', q{SELECT count(*) FROM pgmq.archived_messages},
	extra_params => [ '-U', 'app_reader' ]);
like($stderr, qr/permission denied for table archived_messages/, 'a reader does not read archived payloads');
is($node->safe_psql('app', q{SELECT count(*) >= 0 FROM pgmq.archived_messages},
		extra_params => [ '-U', 'app_writer' ]),
	't', 'a writer does');
is($node->safe_psql('app', q{SELECT queue_length >= 0 FROM pgmq.metrics('jobs')},
		extra_params => [ '-U', 'app_reader' ]),
	't', 'a reader reads metrics');

# A writer who makes a queue of a topic an admin configured does not
# change its settings (outbox_configure is an admin's).
$node->safe_psql('app', q{SELECT event_store.outbox_configure('configured', max_attempts => 3)});
$node->safe_psql('app', q{SELECT pgmq.create('configured')},
	extra_params => [ '-U', 'app_writer' ]);
is($node->safe_psql('app', q{SELECT max_attempts FROM event_store.outbox_topic_settings('configured')}),
	'3', 'a queue made of a configured topic keeps its settings');
$node->safe_psql('app', q{SELECT pgmq.create('unconfigured')},
	extra_params => [ '-U', 'app_writer' ]);
is($node->safe_psql('app', q{SELECT max_attempts FROM event_store.outbox_topic_settings('unconfigured')}),
	'2147483647', 'a new queue never gives up on a message, as in pgmq');

# pg_dump carries the queues and their archive (the messages are the
# outbox's, which event_store itself dumps).
$node->safe_psql('app', q{SELECT pgmq.archive('jobs', (SELECT max(msg_id) FROM pgmq.read('jobs', 30, 10)))});
my $dump = "$npm/app.dump";
$node->command_ok([ 'pg_dump', '-Fc', '-d', $node->connstr('app'), '-f', $dump ], 'pg_dump');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '-d', $node->connstr('restored'), $dump ], 'pg_restore');
is($node->safe_psql('restored', q{SELECT string_agg(queue_name, ',' ORDER BY queue_name) FROM pgmq.list_queues()}), 'bad,configured,empty,jobs,unconfigured',
	'the queues are restored');
is($node->safe_psql('restored', q{SELECT count(*) FROM pgmq.archived_messages}), '1',
	'and the archive');

$node->stop;
done_testing();
