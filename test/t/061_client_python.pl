# examples/python/accounts.py (psycopg 3, Debian's python3-psycopg) through
# the scenario of test/perl/ExampleClients.pm.  Skipped when psycopg is not
# installed, unless ES_REQUIRE_CLIENTS is set (scripts/test.sh sets it).
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use ExampleClients;

# Debian's interpreter, where python3-psycopg installs.
my $python = $ENV{ES_PYTHON} // '/usr/bin/python3';
if (system($python, '-c', 'import psycopg') != 0)
{
	die "psycopg is not installed for $python" if $ENV{ES_REQUIRE_CLIENTS};
	plan skip_all => "psycopg is not installed for $python";
}

run_example_scenario('python', $python, examples_dir() . '/python/accounts.py');
done_testing();
