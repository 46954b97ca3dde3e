# The compatibility layers as extensions: versioned with event_store,
# installed only on top of it, never over a real Message DB or pgmq or into
# a schema another role controls, dropped and created again cleanly, and
# carried by pg_dump/pg_restore.
use strict;
use warnings;
use FindBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $root = "$FindBin::RealBin/../..";
sub default_version
{
	my ($control) = @_;
	open my $fh, '<', "$root/$control" or die "$control: $!";
	local $/;
	return (<$fh> =~ /^default_version = '([^']+)'$/m)[0];
}
my $version = default_version('event_store.control');
foreach my $layer (qw(event_store_message_db event_store_pgmq))
{
	is(default_version("$layer.control"), $version, "$layer is versioned with event_store");
}

my $node = PostgreSQL::Test::Cluster->new('layers');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'event_store'");
$node->start;

my ($ret, $stdout, $stderr) = $node->psql('postgres', 'CREATE EXTENSION event_store_pgmq');
like($stderr, qr/required extension "event_store" is not installed/, 'a layer requires event_store');
$node->safe_psql('postgres', 'CREATE EXTENSION event_store_message_db CASCADE; CREATE EXTENSION event_store_pgmq');
is($node->safe_psql('postgres',
		q{SELECT string_agg(extname || ' ' || extversion || ' ' || extnamespace::regnamespace, ', ' ORDER BY extname) FROM pg_extension WHERE extname LIKE 'event_store%'}),
	"event_store $version event_store, event_store_message_db $version message_store, event_store_pgmq $version pgmq",
	'each layer in its own schema, at the same version');
($ret, $stdout, $stderr) = $node->psql('postgres', 'DROP EXTENSION event_store');
like($stderr, qr/cannot drop extension event_store because other objects depend on it/,
	'event_store is not dropped from under a layer');

# Drop and create again, with data in between.
$node->safe_psql('postgres', q{
SELECT message_store.write_message(gen_random_uuid()::text, 'order-1', 'Placed', '{}');
SELECT pgmq.create('jobs'); SELECT pgmq.send('jobs', '{}');});
$node->safe_psql('postgres', 'DROP EXTENSION event_store_message_db; DROP EXTENSION event_store_pgmq');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM pg_class WHERE relnamespace IN ('message_store'::regnamespace, 'pgmq'::regnamespace)
UNION ALL
SELECT count(*) FROM pg_proc WHERE pronamespace IN ('message_store'::regnamespace, 'pgmq'::regnamespace)}),
	"0\n0", 'dropping the layers drops their objects (the schemas stay, as CREATE EXTENSION made them)');
is($node->safe_psql('postgres', q{SELECT count(*) FROM event_store.read_stream('order-1')}), '1',
	'the events written through a layer stay in the store');
$node->safe_psql('postgres', 'CREATE EXTENSION event_store_message_db; CREATE EXTENSION event_store_pgmq');
is($node->safe_psql('postgres', q{SELECT type FROM message_store.get_stream_messages('order-1')}), 'Placed',
	'and are read again through it');

# A database with the real Message DB or pgmq (here, objects of theirs in
# their schemas) is not touched.
$node->safe_psql('postgres', q{
CREATE DATABASE real_stores;});
$node->safe_psql('real_stores', q{
CREATE EXTENSION event_store;
CREATE SCHEMA message_store;
CREATE TYPE message_store.message AS (id varchar);
CREATE SCHEMA pgmq;
CREATE TABLE pgmq.meta (queue_name varchar);
INSERT INTO pgmq.meta VALUES ('theirs');});
($ret, $stdout, $stderr) = $node->psql('real_stores', 'CREATE EXTENSION event_store_message_db');
like($stderr, qr/type "message" already exists/, 'Message DB in the database: the layer is not installed');
($ret, $stdout, $stderr) = $node->psql('real_stores', 'CREATE EXTENSION event_store_pgmq');
like($stderr, qr/relation "meta" already exists/, 'pgmq in the database: the layer is not installed');
is($node->safe_psql('real_stores', q{SELECT queue_name FROM pgmq.meta}), 'theirs', 'and pgmq\'s data is untouched');

# A schema that a role other than a superuser owns or may create in is
# refused: the pgmq layer's functions run as the superuser.
$node->safe_psql('postgres', q{
CREATE DATABASE takeover;
CREATE ROLE mallory LOGIN;});
$node->safe_psql('takeover', q{
CREATE EXTENSION event_store;
CREATE SCHEMA pgmq AUTHORIZATION mallory;
CREATE SCHEMA message_store;
GRANT CREATE ON SCHEMA message_store TO mallory;});
($ret, $stdout, $stderr) = $node->psql('takeover', 'CREATE EXTENSION event_store_pgmq',
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($stderr, qr/ERROR:  42501: schema "pgmq" is owned by a role that is not a superuser/,
	'a schema pgmq of another owner is refused');
($ret, $stdout, $stderr) = $node->psql('takeover', 'CREATE EXTENSION event_store_message_db',
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($stderr, qr/ERROR:  42501: schema "message_store" grants CREATE to roles that are not superusers: mallory/,
	'a schema message_store others may create in is refused');

# pg_dump / pg_restore: the layers come back with their queues.
my $dump = PostgreSQL::Test::Utils::tempdir() . '/layers.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-d', $node->connstr('postgres'), '-f', $dump ], 'pg_dump');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '-d', $node->connstr('restored'), $dump ], 'pg_restore');
is($node->safe_psql('restored',
		q{SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension WHERE extname LIKE 'event_store_%'}),
	'event_store_message_db,event_store_pgmq', 'the layers are restored');
is($node->safe_psql('restored', q{SELECT message_store.hash_64('a')}),
	$node->safe_psql('postgres', q{SELECT message_store.hash_64('a')}), 'and work');

# ALTER EXTENSION ... UPDATE: the layers are at the current version.
($ret, $stdout, $stderr) = $node->psql('postgres', 'ALTER EXTENSION event_store_pgmq UPDATE');
like($stderr, qr/version "$version" of extension "event_store_pgmq" is already installed/,
	'the pgmq layer is current');

$node->stop;
done_testing();
