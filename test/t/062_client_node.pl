# examples/node/accounts.js (node-postgres, installed by `npm ci` from its
# lockfile) through the scenario of test/perl/ExampleClients.pm.  Skipped
# when Node.js or the installed pg package is missing, unless
# ES_REQUIRE_CLIENTS is set (scripts/test.sh installs both and sets it).
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use ExampleClients;

my $dir = examples_dir() . '/node';
my $node_js = $ENV{ES_NODE} // 'node';
my $missing =
	system("$node_js --version >/dev/null 2>&1") != 0 ? "$node_js is not installed"
  : !-e "$dir/node_modules/pg/package.json" ? "pg is not installed in $dir (npm ci)"
  :                                             undef;
if ($missing)
{
	die $missing if $ENV{ES_REQUIRE_CLIENTS};
	plan skip_all => $missing;
}

run_example_scenario('node', $node_js, "$dir/accounts.js");
done_testing();
