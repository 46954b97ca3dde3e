# Fuzzing the SQL API, bounded.
#
# 1. Every function of the extension is called with every hostile value of
#    each of its argument types (the other arguments sensible), then with
#    random combinations: NULLs, empty and over-long names, control
#    characters, deeply nested and huge JSON, malformed UUIDs, extreme
#    integers and intervals, empty, NULL-filled, huge and multi-dimensional
#    arrays.  Each call runs in its own subtransaction; its SQLSTATE is
#    recorded.
# 2. sqlsmith generates random queries over the extension's schema.
# Then: the server never crashed, no call of ours raised an internal error
# (XX000), and the data is consistent: stream versions without gaps, valid
# outbox rows and checkpoints, and amcheck finds every index intact.
#
# ES_FUZZ_SEED, ES_FUZZ_CALLS and ES_SQLSMITH_QUERIES change the run.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $seed = $ENV{ES_FUZZ_SEED} // 20261123;
my $random_calls = $ENV{ES_FUZZ_CALLS} // 3000;
my $sqlsmith_queries = $ENV{ES_SQLSMITH_QUERIES} // 5000;
srand($seed);
note "seed $seed";

my $node = PostgreSQL::Test::Cluster->new('fuzz');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'event_store'
log_line_prefix = '%m [%p] %e '
log_min_error_statement = error
log_error_verbosity = verbose
statement_timeout = '60s'
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION event_store;
CREATE EXTENSION amcheck;
-- Something for the functions to work on.
SELECT event_store.append('order-' || n, '[{"type": "Placed", "data": {}}, {"type": "Paid", "data": 1}]')
FROM generate_series(1, 20) AS n;
SELECT event_store.append_event('order-1', 'Shipped', '{}', NULL, NULL, '5a1d5c4e-0000-4000-8000-000000000001');
SELECT event_store.outbox_send('t', jsonb_build_object('n', n), 'k' || (n % 3)) FROM generate_series(1, 20) AS n;
SELECT count(*) FROM event_store.outbox_claim('t', 5);
SELECT event_store.subscription_create('sub_1', 'order', 3);
SELECT event_store.route_events('t', 'order');
SELECT event_store.relay_route('r', 'notify:r');

CREATE TABLE fuzz_results (statement text, state text, message text);
CREATE FUNCTION fuzz_batch(statements text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	s text;
	st text;
	msg text;
BEGIN
	FOREACH s IN ARRAY statements LOOP
		BEGIN
			EXECUTE s;
			INSERT INTO fuzz_results VALUES (s, '00000', NULL);
		EXCEPTION WHEN OTHERS THEN
			GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
			INSERT INTO fuzz_results VALUES (s, st, msg);
		END;
	END LOOP;
END
$$;
});

# Hostile values, by argument type; the first one of each list is sensible.
my %values = (
	'text' => [
		q{'order-1'}, 'NULL', q{''}, q{'-'}, q{'a-b-c'}, q{repeat('x', 1025)},
		q{repeat('é', 600)}, q{repeat('z', 200000)}, q{E'\\x01ctl-\\x7f'},
		q{E'tab\\there\\nnewline'}, q{'quote''s "dq" ;-- comment'},
		q{'$stream_deleted'}, q{'notify:chan'}, q{'notify:'},
		q{'https://example.invalid/x'}, q{'NOTIFY:Ch an'}, q{'ünïcödé-1'},
		q{'🙂-2'}, q{'sub_1'}, q{'Sub-1'}, q{'t'}, q{repeat('c', 64)}
	],
	'jsonb' => [
		q{'{"type": "T", "data": {}}'}, 'NULL', q{'null'}, q{'{}'}, q{'[]'},
		q{'0'}, q{'"s"'}, q{'true'}, q{'[1, 2, 3]'},
		q{'[{"type": "T", "data": 1}, {"type": "U", "data": null, "metadata": {"a": 1}, "id": "5a1d5c4e-0000-4000-8000-000000000001"}]'},
		q{'{"type": "T"}'}, q{'{"type": 1, "data": 1}'},
		q{'{"type": "T", "data": 1, "metadata": []}'},
		q{'{"type": "T", "data": 1, "id": "nope"}'},
		q{'{"type": "T", "data": 1, "unknown": 2}'},
		q{(repeat('[', 3000) || repeat(']', 3000))::jsonb},
		q{(repeat('{"a":', 3000) || '1' || repeat('}', 3000))::jsonb},
		q{(repeat('[', 200000) || repeat(']', 200000))::jsonb},
		q{jsonb_build_object('type', 'T', 'data', repeat('v', 9000000))},
		q{(SELECT jsonb_agg(jsonb_build_object('type', 'T', 'data', n)) FROM generate_series(1, 10001) AS n)},
		q{(SELECT jsonb_agg(jsonb_build_object('type', 'T', 'data', n)) FROM generate_series(1, 200) AS n)}
	],
	'bigint' => [
		'1', 'NULL', '0', '-1', '-2', '-3', '9223372036854775807',
		'(-9223372036854775807 - 1)', '42'
	],
	'integer' => [
		'10', 'NULL', '0', '1', '-1', '2', '1024', '1025', '2147483647',
		'(-2147483647 - 1)'
	],
	'boolean' => [ 'false', 'NULL', 'true' ],
	'uuid' => [
		'gen_random_uuid()', 'NULL', q{'00000000-0000-0000-0000-000000000000'},
		q{'5a1d5c4e-0000-4000-8000-000000000001'}
	],
	'interval' => [
		q{'1 second'}, 'NULL', q{'0'}, q{'-1 second'}, q{'1 microsecond'},
		q{'10 milliseconds'}, q{'-1000 years'}, q{'178000000 years'}
	],
	'uuid[]' => [
		q{ARRAY(SELECT receipt FROM event_store.outbox WHERE receipt IS NOT NULL)}, 'NULL', q{'{}'},
		q{ARRAY[NULL]::uuid[]}, q{ARRAY[gen_random_uuid()]},
		q{ARRAY(SELECT gen_random_uuid() FROM generate_series(1, 50000))},
		q{'{{00000000-0000-0001-0000-000000000001}}'::uuid[]}
	],
	'bigint[]' => [
		q{ARRAY[1, 2, 3]::bigint[]}, 'NULL', q{'{}'}, q{ARRAY[NULL]::bigint[]},
		q{ARRAY[-1]::bigint[]}, q{ARRAY[9223372036854775807]},
		q{ARRAY(SELECT generate_series(1, 50000)::bigint)},
		q{'{{1,2},{3,4}}'::bigint[]}
	],
	'event_store.subscriptions' =>
	  [ q{(SELECT s FROM event_store.subscriptions AS s LIMIT 1)}, 'NULL' ],);

# The functions and their argument types.
my @functions;
foreach my $line (
	split /\n/,
	$node->safe_psql(
		'postgres', q{
	SELECT p.proname || '|' || p.proretset || '|' || p.prorettype::regtype || '|' ||
		   coalesce(array_to_string(ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) AS t), ','), '')
	FROM pg_proc AS p WHERE p.pronamespace = 'event_store'::regnamespace ORDER BY 1}))
{
	my ($name, $setof, $rettype, $args) = split /\|/, $line, 4;
	next if $rettype eq 'trigger';
	push @functions, { name => $name, setof => $setof eq 't', args => [ split /,/, $args ] };
}
cmp_ok(scalar(@functions), '>', 40, scalar(@functions) . ' functions to fuzz');

sub call
{
	my ($f, @args) = @_;
	my $call = "event_store.$f->{name}(" . join(', ', @args) . ')';
	return $f->{setof} ? "SELECT count(*) FROM $call" : "SELECT $call";
}

sub pool
{
	my ($type) = @_;
	return $values{$type} // ['NULL'];
}

my @statements;
# Systematic: each argument through its whole pool, the others sensible.
foreach my $f (@functions)
{
	my @sensible = map { pool($_)->[0] } @{ $f->{args} };
	push @statements, call($f, @sensible);
	foreach my $i (0 .. $#{ $f->{args} })
	{
		foreach my $v (@{ pool($f->{args}[$i]) })
		{
			my @args = @sensible;
			$args[$i] = $v;
			push @statements, call($f, @args);
		}
	}
}
my $systematic = scalar(@statements);
# Random combinations.
foreach (1 .. $random_calls)
{
	my $f = $functions[ int(rand(@functions)) ];
	push @statements, call($f, map { my $p = pool($_); $p->[ int(rand(@$p)) ] } @{ $f->{args} });
}

# Run in batches, each its own transaction.
my $script = '';
while (my @batch = splice(@statements, 0, 50))
{
	$script .= 'SELECT fuzz_batch(ARRAY[' . join(', ', map { "\$fz\$$_\$fz\$" } @batch) . "]);\n";
}
my $file = $node->basedir . '/fuzz.sql';
append_to_file($file, $script);
my ($ret, $out, $err) = $node->psql('postgres', undef, extra_params => [ '-f', $file ]);
is($ret, 0, 'the fuzz run completed') or diag($err);

my $calls = $node->safe_psql('postgres', 'SELECT count(*) FROM fuzz_results');
is($calls, $systematic + $random_calls, "$calls calls were made ($systematic systematic, $random_calls random)");
diag(
	"fuzzed calls by outcome: "
	  . $node->safe_psql(
		'postgres',
		q{SELECT string_agg(state || ' ' || n, ', ' ORDER BY n DESC) FROM (SELECT state, count(*) AS n FROM fuzz_results GROUP BY state) AS s}
	  ));
# ES_FUZZ_DEBUG=SQLSTATE shows calls that ended with that SQLSTATE.
diag($node->safe_psql('postgres',
	"SELECT left(statement, 300) || ' => ' || message FROM fuzz_results WHERE state = '$ENV{ES_FUZZ_DEBUG}' LIMIT 10"))
  if $ENV{ES_FUZZ_DEBUG};
# Constraint violations mean a check of ours is missing.
is($node->safe_psql('postgres', q{SELECT count(*) FROM fuzz_results WHERE state LIKE '23%'}),
	'0', 'no bad input reached a table constraint');
is( $node->safe_psql(
		'postgres', q{SELECT count(*) FROM fuzz_results WHERE state = 'XX000' OR state LIKE 'XX%'}),
	'0', 'no internal error') or diag(
	$node->safe_psql('postgres', q{SELECT statement || ': ' || message FROM fuzz_results WHERE state LIKE 'XX%' LIMIT 10}));

# 2. sqlsmith, with a fixed seed.
# With --verbose it reports, on stderr, how many queries it ran and which
# share of them failed (most random queries are refused by the parser).  A
# random query can end sqlsmith's own session (pg_terminate_backend of its
# own pid), which ends the run early: it is started again, with the next
# seed, until it has run them all.
my ($smith_total, $smith_runs, $smith_failed_runs, $smith_error_rate) = (0, 0, 0, 1);
while ($smith_total < $sqlsmith_queries && $smith_runs < 50)
{
	my ($smith_out, $smith_err) = ('', '');
	my $left = $sqlsmith_queries - $smith_total;
	my $smith_ok = IPC::Run::run(
		[
			'sqlsmith', '--target=' . $node->connstr('postgres'), '--exclude-catalog',
			'--verbose', "--max-queries=$left", '--seed=' . ($seed + $smith_runs)
		],
		'>', \$smith_out, '2>', \$smith_err);
	$smith_runs++;
	$smith_failed_runs++ unless $smith_ok;
	my ($queries) = $smith_err =~ /^queries: (\d+)$/m;
	my ($rate) = $smith_err =~ /^error rate: ([0-9.]+)$/m;
	diag('sqlsmith reported nothing: ' . substr($smith_err, -1000)) unless defined $queries;
	$smith_total += $queries // 0;
	$smith_error_rate = $rate if defined $rate && $rate < $smith_error_rate;
}
cmp_ok($smith_total, '>=', $sqlsmith_queries,
	"sqlsmith ran $smith_total queries in $smith_runs runs");
is($smith_failed_runs, 0, 'every sqlsmith run exited successfully');
ok($smith_error_rate < 1,
	"some sqlsmith queries ran without error (lowest error rate of a run $smith_error_rate)");

ok($node->safe_psql('postgres', 'SELECT 1') eq '1', 'the server is up');
ok(!$node->log_contains(qr/terminated by signal|server process .* was terminated|PANIC/),
	'no backend crashed');

# Internal errors in the log, from statements that involve the extension.
# The verbose log gives each error's LOCATION.  A few core functions raise
# an internal error whenever a superuser calls them, whatever the rest of
# the statement does (sqlsmith finds them): those are not the extension's.
my %core_internal_by_design = (
	SetNextObjectId => 'pg_stop_making_pinned_objects() outside initdb',
	# interval(n) casts and columns of an interval with a typmod that no
	# interval type has (sqlsmith passes raw integers as typmods)
	AdjustIntervalForTypmod => 'an interval typmod with no valid range',
	intervaltypmodleastfield => 'an interval typmod with no valid range',
	intervaltypmodout => 'an interval typmod with no valid range',);
my @log = split /\n/, slurp_file($node->logfile);
my @internal;
my $not_ours = 0;
for my $i (0 .. $#log)
{
	next unless $log[$i] =~ / XX\d\d\d ERROR:/;
	my @next = @log[ $i + 1 .. ($i + 4 > $#log ? $#log : $i + 4) ];
	my ($statement) = grep { /STATEMENT:/ } @next;
	my ($function) = map { /LOCATION:\s+(\w+),/ ? $1 : () } @next;
	next unless ($statement // '') =~ /event_store/;
	if (defined $function && exists $core_internal_by_design{$function})
	{
		$not_ours++;
		next;
	}
	push @internal, "$log[$i] / " . ($statement // '');
}
note "$not_ours internal errors of core functions called directly by sqlsmith";
is(scalar(@internal), 0, 'no internal error in statements of the extension')
  or diag(join("\n", @internal[ 0 .. ($#internal < 9 ? $#internal : 9) ]));

# 3. Consistency.
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FROM (SELECT stream, count(*) AS n, min(version) AS lo, max(version) AS hi
						  FROM event_store.events GROUP BY stream) AS s
	WHERE lo <> 0 OR hi <> n - 1}),
	'0', 'stream versions start at 0 and have no gaps');
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FROM event_store.outbox
	WHERE attempts < 0 OR (receipt IS NOT NULL AND attempts < 1) OR octet_length(topic) > 255}),
	'0', 'outbox rows are valid');
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FROM event_store.subscriptions AS s
	WHERE (SELECT count(*) FROM event_store.subscription_checkpoints AS c WHERE c.subscription = s.name) <> s.group_size
	   OR EXISTS (SELECT FROM event_store.subscription_checkpoints AS c WHERE c.subscription = s.name AND c.position < 0)}),
	'0', 'every subscription has one valid checkpoint per member');
is( $node->safe_psql('postgres',
		q{SELECT event_store.feed_head() >= coalesce(max(position), 0) FROM event_store.events}),
	't', 'with nothing in flight the feed head covers every event');
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FROM (
		SELECT bt_index_parent_check(c.oid, true)
		FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid
		JOIN pg_am AS a ON a.oid = c.relam
		WHERE c.relnamespace = 'event_store'::regnamespace AND a.amname = 'btree') AS checked}),
	$node->safe_psql(
		'postgres', q{
	SELECT count(*) FROM pg_class AS c JOIN pg_am AS a ON a.oid = c.relam
	WHERE c.relnamespace = 'event_store'::regnamespace AND a.amname = 'btree'}),
	'amcheck verifies every index of the extension, with its heap');

$node->stop;
done_testing();
