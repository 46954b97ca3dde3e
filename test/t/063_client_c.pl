# examples/c/accounts.c (libpq) through the scenario of
# test/perl/ExampleClients.pm.  Built here with its Makefile; skipped when
# libpq's headers are missing, unless ES_REQUIRE_CLIENTS is set
# (scripts/test.sh sets it).
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use ExampleClients;

my $dir = examples_dir() . '/c';
my $pg_config = $ENV{PG_CONFIG} // 'pg_config';
my $includedir = `$pg_config --includedir`;
chomp $includedir;
unless (-e "$includedir/libpq-fe.h")
{
	die "libpq-fe.h is not in $includedir (libpq-dev)" if $ENV{ES_REQUIRE_CLIENTS};
	plan skip_all => "libpq-fe.h is not in $includedir (libpq-dev)";
}
my ($ok, $out) = (system('make', '-s', '-B', '-C', $dir, "PG_CONFIG=$pg_config", 'accounts') == 0);
ok($ok, 'the C example builds');
BAIL_OUT('the C example does not build') unless $ok;

run_example_scenario('c', "$dir/accounts");
done_testing();
