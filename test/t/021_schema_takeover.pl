# The extension's schema cannot be taken over.  Its SECURITY DEFINER
# functions run as the superuser who installed it and find their objects
# in schema event_store.  The owner of a database who creates that schema
# before a superuser runs CREATE EXTENSION would own the extension's
# schema: rename it, put a schema event_store of their own in its place
# with a find_subscription that makes them superuser, and call
# subscription_fetch.  The install refuses such a schema (and a schema in
# which others may create objects, or that holds their objects); the
# update from 0.1 refuses it too; the attack leaves the attacker without
# superuser; and after a superuser renames the schema, the C functions'
# statements keep using the extension's own schema.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('schema_takeover');
$node->init;
$node->start;

$node->safe_psql('postgres', q{
	CREATE ROLE mallory LOGIN;
	CREATE DATABASE shop OWNER mallory;
});

sub is_superuser
{
	return $node->safe_psql('postgres',
		q{SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'});
}

# Run SQL as mallory; errors are returned, not fatal.
sub as_mallory
{
	my ($db, $sql) = @_;
	my ($ret, $stdout, $stderr) = $node->psql($db, $sql,
		on_error_stop => 1, extra_params => [ '-U', 'mallory' ]);
	return ($stdout, $stderr);
}

# The database owner creates the schema first.
as_mallory('shop', 'CREATE SCHEMA event_store;');

my ($ret, $stdout, $stderr) = $node->psql('shop',
	"\\set VERBOSITY verbose\nCREATE EXTENSION event_store;");
isnt($ret, 0, 'CREATE EXTENSION refuses a schema the database owner created');
like(
	$stderr,
	qr/ERROR:  42501: schema "event_store" is owned by role "mallory", which is not a superuser/,
	'the error says why, with SQLSTATE 42501');
like($stderr, qr/HINT:  Drop schema "event_store" and run CREATE EXTENSION again/,
	'the hint says what to do');

# The attack, as it went when the install was accepted: a superuser lets
# the owner read subscriptions; the owner swaps the schema and calls the
# real subscription_fetch.
$node->psql('shop', 'GRANT event_store_reader TO mallory;');
as_mallory('shop', q{
	ALTER SCHEMA event_store RENAME TO es_real;
	CREATE SCHEMA event_store;
	CREATE TABLE event_store.subscriptions
		(name text, category text, group_size integer, created_at timestamptz);
	CREATE TABLE event_store.subscription_checkpoints
		(subscription text, member integer, position bigint);
	CREATE FUNCTION event_store.find_subscription(text)
	RETURNS event_store.subscriptions LANGUAGE plpgsql AS $$
	BEGIN
		ALTER ROLE mallory SUPERUSER;
		RETURN ROW($1, NULL, 1, now())::event_store.subscriptions;
	END $$;
	CREATE FUNCTION event_store.check_member(event_store.subscriptions, integer)
	RETURNS void LANGUAGE sql AS 'SELECT';
	CREATE FUNCTION event_store.read_feed(text, bigint, integer, integer, integer)
	RETURNS SETOF es_real.event LANGUAGE sql AS 'SELECT NULL::es_real.event WHERE false';
	SELECT * FROM es_real.subscription_fetch('x');
});
is(is_superuser(), 'f', 'the owner of the database did not become superuser');
is($node->safe_psql('shop',
		q{SELECT count(*) FROM pg_extension WHERE extname = 'event_store'}),
	'0', 'the extension is not installed');

# A schema a superuser owns but in which another role may create objects,
# and one that holds another role's objects, are refused as well.
$node->safe_psql('postgres', q{
	CREATE DATABASE shop2;
	\c shop2
	CREATE SCHEMA event_store;
	GRANT CREATE ON SCHEMA event_store TO mallory;
});
($ret, $stdout, $stderr) = $node->psql('shop2',
	"\\set VERBOSITY verbose\nCREATE EXTENSION event_store;");
like(
	$stderr,
	qr/ERROR:  42501: schema "event_store" grants CREATE to roles that are not superusers\n.*DETAIL:  It grants CREATE to mallory\./s,
	'a schema others may create objects in is refused');
as_mallory('shop2',
	q{CREATE FUNCTION event_store.category(text) RETURNS text LANGUAGE sql AS 'SELECT $1';
	  CREATE COLLATION event_store.mine (locale = 'C');
	  CREATE TEXT SEARCH CONFIGURATION event_store.mine (COPY = simple);});
$node->safe_psql('shop2', 'REVOKE CREATE ON SCHEMA event_store FROM mallory;');
($ret, $stdout, $stderr) = $node->psql('shop2',
	"\\set VERBOSITY verbose\nCREATE EXTENSION event_store;");
like(
	$stderr,
	qr/ERROR:  42501: schema "event_store" holds function "category" owned by a role that is not a superuser/,
	'a schema holding another role\'s objects is refused');

# Every kind of object counts, not only relations, functions, types and
# operators.
$node->safe_psql('shop2', 'DROP FUNCTION event_store.category(text);');
($ret, $stdout, $stderr) = $node->psql('shop2',
	"\\set VERBOSITY verbose\nCREATE EXTENSION event_store;");
like(
	$stderr,
	qr/ERROR:  42501: schema "event_store" holds collation "mine" owned by a role that is not a superuser/,
	'a schema holding another role\'s collation is refused');
$node->safe_psql('shop2', 'DROP COLLATION event_store.mine;');
($ret, $stdout, $stderr) = $node->psql('shop2',
	"\\set VERBOSITY verbose\nCREATE EXTENSION event_store;");
like(
	$stderr,
	qr/ERROR:  42501: schema "event_store" holds text search configuration "mine" owned by a role that is not a superuser/,
	'a schema holding another role\'s text search configuration is refused');
$node->safe_psql('shop2', 'DROP TEXT SEARCH CONFIGURATION event_store.mine;');

# A schema a superuser created beforehand, as pg_restore does, is fine.
$node->safe_psql('shop2', 'CREATE EXTENSION event_store;');
is($node->safe_psql('shop2', q{SELECT extversion FROM pg_extension WHERE extname = 'event_store'}),
	'0.2', 'a schema created by a superuser is accepted');

# 0.1 did not check: updating such an install is refused until the schema
# is made safe.
$node->safe_psql('postgres', 'CREATE DATABASE shop3 OWNER mallory;');
as_mallory('shop3', 'CREATE SCHEMA event_store;');
$node->safe_psql('shop3', q{CREATE EXTENSION event_store VERSION '0.1';});
($ret, $stdout, $stderr) = $node->psql('shop3',
	"\\set VERBOSITY verbose\nALTER EXTENSION event_store UPDATE;");
like(
	$stderr,
	qr/ERROR:  42501: schema "event_store" is owned by role "mallory", which is not a superuser/,
	'the update from 0.1 refuses a schema the database owner owns');
$node->safe_psql('shop3', q{
	ALTER SCHEMA event_store OWNER TO CURRENT_USER;
	ALTER EXTENSION event_store UPDATE;
});
is($node->safe_psql('shop3', q{SELECT extversion FROM pg_extension WHERE extname = 'event_store'}),
	'0.2', 'once a superuser owns the schema, the update goes through');

# A superuser renames the schema of a sound install; someone then creates a
# schema event_store with a look-alike outbox and receipt function.  The
# C functions' statements still use the extension's own schema.
$node->safe_psql('shop2', q{
	SELECT event_store.outbox_send('t', '{"real": true}');
	ALTER SCHEMA event_store RENAME TO es_renamed;
	GRANT CREATE ON DATABASE shop2 TO mallory;
	GRANT USAGE ON SCHEMA es_renamed TO mallory;
	GRANT event_store_writer TO mallory;
});
as_mallory('shop2', q{
	CREATE SCHEMA event_store;
	CREATE TABLE event_store.outbox (id bigint, topic text, key text, payload jsonb,
		headers jsonb, attempts integer, created_at timestamptz,
		available_at timestamptz, receipt uuid, last_error text);
	CREATE INDEX outbox_topic_id_idx ON event_store.outbox (topic, (id + 0));
	CREATE TABLE event_store.outbox_topics (topic text, max_attempts integer,
		backoff_base interval, backoff_max interval, lease interval, delivery text);
	INSERT INTO event_store.outbox (id, topic, payload, attempts, created_at, available_at)
		VALUES (1, 't', '{"planted": true}', 0, now(), now());
	CREATE FUNCTION event_store.outbox_new_receipt(bigint) RETURNS uuid
	LANGUAGE plpgsql AS $$
	BEGIN
		ALTER ROLE mallory SUPERUSER;
		RETURN gen_random_uuid();
	END $$;
	CREATE FUNCTION event_store.outbox_topic_settings(text)
	RETURNS TABLE (topic text, max_attempts integer, backoff_base interval,
		backoff_max interval, lease interval, delivery text)
	LANGUAGE plpgsql AS $$
	BEGIN
		ALTER ROLE mallory SUPERUSER;
		RETURN QUERY SELECT $1, 10, interval '1 second', interval '1 hour', interval '30 seconds', 'table';
	END $$;
});
($stdout, $stderr) = as_mallory('shop2',
	q{SELECT payload FROM es_renamed.outbox_claim('t');});
is($stdout, '{"real": true}', 'the claim takes the message of the extension\'s own outbox');
is(is_superuser(), 'f', 'the planted functions did not run as superuser');

# With the library preloaded, as the relay needs, an earlier version, whose
# script checks nothing, is not installed into a schema that exists
# already, whoever owns it; into the schema CREATE EXTENSION makes, it is.
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'event_store'");
$node->restart;
$node->safe_psql('postgres', 'CREATE DATABASE shop4 OWNER mallory;');
as_mallory('shop4', 'CREATE SCHEMA event_store;');
($ret, $stdout, $stderr) = $node->psql('shop4',
	"\\set VERBOSITY verbose\nCREATE EXTENSION event_store VERSION '0.1';");
like(
	$stderr,
	qr/ERROR:  42501: version "0\.1" of extension "event_store" cannot be installed into the existing schema "event_store"/,
	'version 0.1 is refused into a schema the database owner made');
$node->safe_psql('shop4', q{
	ALTER SCHEMA event_store OWNER TO CURRENT_USER;
	REVOKE ALL ON SCHEMA event_store FROM mallory;
});
($ret, $stdout, $stderr) = $node->psql('shop4', "CREATE EXTENSION event_store VERSION '0.1';");
like($stderr, qr/cannot be installed into the existing schema/,
	'and into one a superuser made');
$node->safe_psql('shop4', q{
	DROP SCHEMA event_store;
	CREATE EXTENSION event_store VERSION '0.1';
});
is($node->safe_psql('shop4', q{SELECT extversion FROM pg_extension WHERE extname = 'event_store'}),
	'0.1', 'version 0.1 installs into the schema CREATE EXTENSION makes');

done_testing();
