# Error messages that quote the start of an over-long or bad name cut it on
# a character boundary.  A cut inside a multibyte character gave UTF-8
# clients an invalid message, and LATIN1 clients 22021 (the message could
# not be converted) instead of the error the contract names.
use strict;
use warnings;
use Encode qw(encode decode);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('client_encoding');
$node->init;
$node->start;
$node->safe_psql('postgres',
	q{CREATE DATABASE u8 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0});
$node->safe_psql('u8', 'CREATE EXTENSION event_store');

# Names of an ASCII letter then e-acute (two bytes in UTF-8), so that a cut
# after an even number of bytes falls inside a character.
my $e = "\x{e9}";
my @cases = (
	[
		'stream name',
		q{SELECT event_store.append_event('a' || repeat(chr(233), 600), 'T', '{}')},
		'54000', 'stream name "a' . ($e x 15) . '..." is too long'
	],
	[
		'event type',
		q{SELECT event_store.append_event('s-1', 'a' || repeat(chr(233), 600), '{}')},
		'54000', 'event type "a' . ($e x 15) . '..." is too long'
	],
	[
		'topic',
		q{SELECT event_store.outbox_send('a' || repeat(chr(233), 200), '{}')},
		'54000', 'topic "a' . ($e x 15) . '..." is too long'
	],
	[
		'message key',
		q{SELECT event_store.outbox_send('t', '{}', 'a' || repeat(chr(233), 600))},
		'54000', 'message key "a' . ($e x 15) . '..." is too long'
	],
	[
		'unknown event key',
		q{SELECT event_store.append('s-1', jsonb_build_object('type', 'T', 'data', 1, 'a' || repeat(chr(233), 40), 1))},
		'22023', 'unknown event key "a' . ($e x 31) . '"'
	],
	[
		'event id',
		q{SELECT event_store.append('s-1', jsonb_build_object('type', 'T', 'data', 1, 'id', 'a' || repeat(chr(233), 40)))},
		'22P02', 'invalid event id "a' . ($e x 31) . '"'
	]);

foreach my $encoding ('LATIN1', 'UTF8')
{
	foreach my $case (@cases)
	{
		my ($what, $sql, $sqlstate, $message) = @$case;
		my ($ret, $stdout, $stderr) = $node->psql('u8',
			"\\set VERBOSITY verbose\nSET client_encoding = '$encoding';\n$sql;");
		my $expected = encode($encoding eq 'UTF8' ? 'UTF-8' : 'latin1',
			"ERROR:  $sqlstate: $message");
		ok(index($stderr, $expected) >= 0,
			"$encoding client, $what: $sqlstate and the name cut on a character")
		  or diag("stderr: $stderr");
		if ($encoding eq 'UTF8')
		{
			my $copy = $stderr;
			ok(eval { decode('UTF-8', $copy, Encode::FB_CROAK); 1 },
				"UTF8 client, $what: the message is valid UTF-8");
		}
	}
}

done_testing();
