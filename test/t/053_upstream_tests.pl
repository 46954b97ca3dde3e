# The stores' own test suites against the layers, when their sources are
# at hand (they are not part of this tree, nor of the npm packages):
#
#   MESSAGE_DB_REPO  a git repository of Message DB (github.com/message-db/message-db)
#   PGMQ_REPO        a git repository of pgmq (github.com/pgmq/pgmq)
#
# Message DB's test scripts (test/*.sh, at the commit of its 1.3.0
# release line below) run unchanged against event_store_message_db, as
# their own role in their own database; they print, and fail on an
# unexpected error.  Its report scripts read Message DB's summary views,
# which the layer does not have, and are left out.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $message_db_commit = '25da82b044f94416202ac3daa1866791b385badc';

plan skip_all => 'set MESSAGE_DB_REPO to a git repository of Message DB'
  unless $ENV{MESSAGE_DB_REPO};

my $tmp = PostgreSQL::Test::Utils::tempdir('upstream');
my $src = "$tmp/message-db";
mkdir $src or die $!;
system_or_bail("git --git-dir='$ENV{MESSAGE_DB_REPO}' archive $message_db_commit | tar -x -C '$src'");

# The scripts call uuidgen.
mkdir "$tmp/bin" or die $!;
open my $fh, '>', "$tmp/bin/uuidgen" or die $!;
print $fh "#!/bin/sh\ncat /proc/sys/kernel/random/uuid\n";
close $fh;
chmod 0755, "$tmp/bin/uuidgen";

my $node = PostgreSQL::Test::Cluster->new('upstream');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'event_store'");
$node->start;
$node->safe_psql('postgres', q{
CREATE DATABASE message_store;
CREATE ROLE event_store_writer NOLOGIN;
CREATE ROLE message_store LOGIN IN ROLE event_store_writer;
ALTER ROLE message_store SET search_path = message_store, public;});
$node->safe_psql('message_store', 'CREATE EXTENSION event_store_message_db CASCADE');

open my $list, '<', "$src/test.sh" or die $!;
my @scripts = grep { !m{^test/reports/} } map { m{^(test/\S+\.sh)$} ? $1 : () } <$list>;
close $list;
ok(@scripts > 40, scalar(@scripts) . ' test scripts of Message DB');
foreach my $script (@scripts)
{
	local $ENV{PATH} = "$tmp/bin:$ENV{PATH}";
	local $ENV{PGHOST} = $node->host;
	local $ENV{PGPORT} = $node->port;
	my ($stdout, $stderr);
	my $ok = IPC::Run::run([ 'bash', '-c', "cd '$src' && bash $script" ], '>', \$stdout, '2>', \$stderr);
	ok($ok, "Message DB's $script") or diag("$stdout\n$stderr");
	# The scripts that expect an error print it: the layer's must be
	# Message DB's.
	if ($script =~ m{/error} || $script =~ m{expected-version-error})
	{
		like($stderr, qr/ERROR:  (Wrong expected version|Must be|Correlation must be|Consumer group|Retrieval with SQL condition)/,
			"$script: Message DB's error") or diag($stderr);
	}
}

$node->stop;
done_testing();
