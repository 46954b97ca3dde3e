# The Message DB layer against Message DB itself: Message DB 1.3's own SQL,
# from the @eventide/message-db package of the npm registry (pinned in
# test/npm/package.json), is installed into one database of the cluster
# and event_store_message_db into another; the same calls go to both and
# must give the same results and the same errors: stream name functions,
# writes with expected versions, stream and category reads, correlation,
# consumer groups (the assignment of streams to members) and conditions.
use strict;
use warnings;
use File::Copy;
use FindBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

plan skip_all => 'npm is not installed' unless system('npm --version >/dev/null 2>&1') == 0;

# npm ci into a scratch directory: nothing of Message DB is in the tree.
my $npm = PostgreSQL::Test::Utils::tempdir('npm');
copy("$FindBin::RealBin/../npm/$_", "$npm/$_") or die "$_: $!"
  foreach qw(package.json package-lock.json);
system_or_bail('npm', 'ci', '--prefix', $npm, '--no-audit', '--no-fund', '--loglevel=error',
	"--cache=$npm/.cache");
my $mdb = "$npm/node_modules/\@eventide/message-db/database";
ok(-f "$mdb/functions/write-message.sql", 'Message DB 1.3 is installed from npm');

my $node = PostgreSQL::Test::Cluster->new('message_db');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'event_store'");
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE mdb');
$node->safe_psql('postgres', 'CREATE DATABASE es');

# Message DB, as its install script lays it out (its objects are found
# through the search path of its role; here, of its database).
$node->safe_psql('mdb', 'CREATE SCHEMA message_store');
$node->safe_psql('mdb', 'ALTER DATABASE mdb SET search_path = message_store, public');
my @files = ("$mdb/types/message.sql", "$mdb/tables/messages.sql",
	sort(glob("$mdb/functions/*.sql")), sort(glob("$mdb/indexes/*.sql")));
foreach my $f (@files)
{
	$node->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('mdb'), '-f', $f ],
		"Message DB: $f" =~ s{.*/database/}{}r);
}
$node->safe_psql('es', 'CREATE EXTENSION event_store_message_db CASCADE');
is($node->safe_psql('es', 'SELECT message_store.message_store_version()'),
	$node->safe_psql('mdb', 'SELECT message_store.message_store_version()'),
	'the same version');

# Run the SQL in both; compare what psql prints (errors with SQLSTATE).
sub both
{
	my ($sql, $what) = @_;
	my %out;
	foreach my $db ('mdb', 'es')
	{
		my ($ret, $stdout, $stderr) = $node->psql($db,
			"\\set SHOW_CONTEXT never\nSET search_path = message_store, public;\n$sql",
			extra_params => [ '-v', 'VERBOSITY=verbose' ]);
		$stderr =~ s/^psql:<stdin>:\d+: //mg;
		$stderr =~ s/^(LOCATION|CONTEXT|HINT|DETAIL):.*(\n|\z)//mg;
		$out{$db} = "$stdout\n$stderr";
	}
	is($out{es}, $out{mdb}, $what);
	return $out{es};
}

# Stream names: id, cardinal id, category, is_category and the 64-bit hash.
both(q{
SELECT v, hash_64(v), id(v), cardinal_id(v), category(v), is_category(v)
FROM unnest(ARRAY['', 'a', 'a-b', 'a-b-c', 'a-b+c', 'a-+', 'a-+b', '-x', 'x-', 'a:b-c+d+e',
				  'ö-ü', 'account-123', 'account:command-123+456+abc', 'a b-c d', NULL]) AS v},
	'stream name functions');
both(q{
SELECT sum(hash_64(v) % 1000003), count(DISTINCT hash_64(v)),
	   string_agg(cardinal_id(v) || category(v), ',' ORDER BY i)
FROM (SELECT i, 'cat' || (i % 7) || '-' || md5(i::text) || '+' || i AS v
	  FROM generate_series(1, 5000) AS i) AS s},
	'hash_64 and cardinal_id over 5,000 names');

# The same writes to both.  Ids are fixed; time differs and is left out.
my $writes = join("\n", map {
	my ($i, $stream, $type, $expected) = @$_;
	my $corr = $i % 3 == 0 ? q{'{"correlationStreamName": "other-7"}'} : 'NULL';
	sprintf(q{SELECT write_message('%s', '%s', '%s', '{"i": %d}', %s, %s);},
		sprintf('00000000-0000-4000-8000-%012d', $i), $stream, $type, $i, $corr, $expected // 'NULL')
} (map { [ $_, 'account-' . ($_ % 9) . ($_ % 4 == 0 ? '+extra' : ''), $_ % 2 ? 'Deposited' : 'Withdrawn', undef ] } 1 .. 60),
  [ 61, 'account-100', 'Opened', -1 ],
  [ 62, 'account-100', 'Deposited', 0 ],
  [ 63, 'account-101', 'Opened', undef ],
  [ 64, 'transfer-1', 'Started', undef ],
  [ 65, 'transfer-2', 'Started', undef ]);
both($writes, 'write_message returns the same positions');

my $cols = 'id, stream_name, type, position, global_position, data, metadata';
both(qq{
SELECT $cols FROM get_stream_messages('account-1');
SELECT $cols FROM get_stream_messages('account-1', 2, 3);
SELECT $cols FROM get_stream_messages('account-1', NULL, NULL);
SELECT $cols FROM get_stream_messages('account-1', 0, -1);
SELECT $cols FROM get_stream_messages('account-nothing');
SELECT $cols FROM get_last_stream_message('account-1');
SELECT $cols FROM get_last_stream_message('account-1', 'Withdrawn');
SELECT $cols FROM get_last_stream_message('account-1', 'Nothing');
SELECT stream_version('account-1'), stream_version('account-100'), stream_version('account-nothing');},
	'stream reads');
both(qq{
SELECT $cols FROM get_category_messages('account');
SELECT $cols FROM get_category_messages('account', 30, 5);
SELECT $cols FROM get_category_messages('account', NULL, -1);
SELECT $cols FROM get_category_messages('transfer', 0);
SELECT $cols FROM get_category_messages('nothing');
SELECT $cols FROM get_category_messages('account', 1, 100, 'other');
SELECT $cols FROM get_category_messages('account', 10, 4, 'other');},
	'category reads and correlation');

foreach my $size (1 .. 5)
{
	both(join("\n", map {
		qq{SELECT $_ AS member, string_agg(global_position::text, ',' ORDER BY global_position)
		   FROM get_category_messages('account', 1, 1000, NULL, $_, $size);
		   SELECT $_ AS member, string_agg(global_position::text, ',' ORDER BY global_position)
		   FROM get_category_messages('account', 5, 3, 'other', $_, $size);}
	} 0 .. $size - 1), "consumer groups of $size: the same streams go to the same members")
	  =~ /\d+,\d+/ or fail("consumer groups of $size return messages");
}

# Errors: the same texts and SQLSTATEs.
like(both(q{SELECT write_message('00000000-0000-4000-8000-000000000099', 'account-100', 'Late', '{}', NULL, 0);},
		'wrong expected version'),
	qr/ERROR:  P0001: Wrong expected version: 0 \(Stream: account-100, Stream Version: 1\)/,
	'raised as P0001 with Message DB\'s text');
both(q{SELECT write_message('00000000-0000-4000-8000-000000000099', 'account-new', 'Late', '{}', NULL, 3);},
	'wrong expected version of a stream that does not exist');
both(q{SELECT write_message('00000000-0000-4000-8000-000000000099', 'account-100', 'Late', '{}', NULL, -2);},
	'an expected version below -1');
both(q{SELECT write_message('not a uuid', 'account-100', 'Late', '{}');}, 'an id that is not a uuid');
both(q{SELECT * FROM get_stream_messages('account');}, 'a category is not a stream name');
both(q{SELECT * FROM get_stream_messages('account-1', 0, -5);}, 'a negative batch size');
both(q{SELECT * FROM get_category_messages('account-1');}, 'a stream name is not a category');
both(q{SELECT * FROM get_category_messages('account', 1, 10, 'other-1');}, 'correlation must be a category');
both(q{SELECT * FROM get_category_messages('account', 1, 10, NULL, 0);}, 'a member without a size');
both(q{SELECT * FROM get_category_messages('account', 1, 10, NULL, NULL, 2);}, 'a size without a member');
both(q{SELECT * FROM get_category_messages('account', 1, 10, NULL, 0, 0);}, 'a size below 1');
both(q{SELECT * FROM get_category_messages('account', 1, 10, NULL, -1, 2);}, 'a member below 0');
both(q{SELECT * FROM get_category_messages('account', 1, 10, NULL, 2, 2);}, 'a member beyond the size');
both(q{SELECT * FROM get_stream_messages('account-1', 0, 10, 'position > 1');},
	'conditions are refused unless activated (stream)');
both(q{SELECT * FROM get_category_messages('account', 1, 10, NULL, NULL, NULL, 'position > 1');},
	'conditions are refused unless activated (category)');

# Conditions, once an administrator activates them.
both(qq{SET message_store.sql_condition = on;
SELECT $cols FROM get_stream_messages('account-1', 0, 2, 'messages.position > 1');
SELECT $cols FROM get_category_messages('account', 1, 5, NULL, NULL, NULL, 'type = ''Withdrawn''');
SELECT $cols FROM get_category_messages('account', 1, 5, 'other', 1, 2, 'data->>''i'' > ''20''');},
	'conditions');

# Written through one API, read through the other.
$node->safe_psql('es', q{SELECT event_store.append_event('account-200', 'Opened', '{"native": true}')});
is($node->safe_psql('es', q{SELECT type, data, position FROM message_store.get_stream_messages('account-200')}),
	qq(Opened|{"native": true}|0), 'an event appended natively is a message');
is($node->safe_psql('es', q{SELECT type, data, version FROM event_store.read_stream('account-100')}),
	qq(Opened|{"i": 61}|0\nDeposited|{"i": 62}|1), 'a message is an event');

# Category reads are gap-safe, filtered or not: while a writer holds a
# lower global position open, nothing above it is returned.
my $slow = $node->background_psql('es');
$slow->query_safe(q{BEGIN; SELECT message_store.write_message(gen_random_uuid()::text, 'gap-1', 'Slow', '{}')});
$node->safe_psql('es', q{SELECT message_store.write_message(gen_random_uuid()::text, 'gap-2', 'Fast', '{}')});
is($node->safe_psql('es', q{
SELECT count(*) FROM message_store.get_category_messages('gap');
SELECT count(*) FROM message_store.get_category_messages('gap', 1, 10, NULL, 0, 1);
SELECT count(*) FROM message_store.messages WHERE stream_name = 'gap-2'}),
	"0\n0\n1", 'a committed message behind an open writer is not returned yet');
$slow->query_safe('COMMIT');
$slow->quit;
is($node->safe_psql('es', q{
SELECT string_agg(type, ',' ORDER BY global_position) FROM message_store.get_category_messages('gap');
SELECT string_agg(type, ',' ORDER BY global_position) FROM message_store.get_category_messages('gap', 1, 10, NULL, 0, 1)}),
	"Slow,Fast\nSlow,Fast", 'both, in order, once the writer commits');

# A writer that lost a race gets Message DB's text under READ COMMITTED
# (it waits for the winner, then checks); under REPEATABLE READ its
# snapshot cannot see the winner, and the append's own check answers.
$node->safe_psql('es', q{SELECT message_store.write_message(gen_random_uuid()::text, 'race-1', 'A', '{}')});
my $rr = $node->background_psql('es', on_error_stop => 0);
$rr->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1');
$node->safe_psql('es', q{SELECT message_store.write_message(gen_random_uuid()::text, 'race-1', 'B', '{}', NULL, 0)});
my ($rr_ret, $rr_out, $rr_err) = $node->psql('es', q{SELECT message_store.write_message(gen_random_uuid()::text, 'race-1', 'C', '{}', NULL, 0)});
like($rr_err, qr/Wrong expected version: 0 \(Stream: race-1, Stream Version: 1\)/, 'READ COMMITTED: Message DB\'s text');
$rr->query('\set VERBOSITY verbose');
$rr->query(q{SELECT message_store.write_message(gen_random_uuid()::text, 'race-1', 'C', '{}', NULL, 0)});
like($rr->{stderr}, qr/ERROR:  EV001: wrong expected version/, 'REPEATABLE READ, the winner committed after the snapshot: EV001');
$rr->quit;

# A consumer group member whose streams are far apart still gets a full
# batch: the read goes on past pages without messages for it.
$node->safe_psql('es', q{
SELECT event_store.append('sparse-a', (SELECT jsonb_agg(jsonb_build_object('type', 'Filler', 'data', '{}')) FROM generate_series(1, 2500)));
SELECT message_store.write_message(gen_random_uuid()::text, 'sparse-c', 'Wanted', '{}');});
my $member = $node->safe_psql('es', q{SELECT mod(@message_store.hash_64('c'), 2)});
isnt($node->safe_psql('es', q{SELECT mod(@message_store.hash_64('a'), 2)}), $member,
	'(sparse-a and sparse-c belong to different members)');
is($node->safe_psql('es', qq{
SELECT string_agg(stream_name || ':' || type, ',') FROM message_store.get_category_messages('sparse', 1, 1, NULL, $member, 2)}),
	'sparse-c:Wanted', 'a member gets its message behind 2,500 of another member');

# Privileges: the event_store roles.
$node->safe_psql('es', q{
CREATE ROLE md_reader LOGIN IN ROLE event_store_reader;
CREATE ROLE md_writer LOGIN IN ROLE event_store_writer;
CREATE ROLE md_stranger LOGIN;});
is($node->safe_psql('es', q{SELECT count(*) > 0 FROM message_store.get_category_messages('account')},
		extra_params => [ '-U', 'md_reader' ]), 't', 'a reader reads');
my ($ret, $stdout, $stderr) = $node->psql('es',
	q{SELECT message_store.write_message(gen_random_uuid()::text, 'account-9', 'T', '{}')},
	extra_params => [ '-U', 'md_reader' ]);
like($stderr, qr/permission denied for function write_message/, 'a reader does not write');
is($node->safe_psql('es', q{SELECT message_store.write_message(gen_random_uuid()::text, 'account-900', 'T', '{}')},
		extra_params => [ '-U', 'md_writer' ]), '0', 'a writer writes');
($ret, $stdout, $stderr) = $node->psql('es', q{SELECT * FROM message_store.get_stream_messages('account-1')},
	extra_params => [ '-U', 'md_stranger' ]);
like($stderr, qr/permission denied for schema message_store/, 'other roles do nothing');

$node->stop;
done_testing();
