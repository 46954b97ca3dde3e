# The release files agree with each other: META.json is a valid PGXN
# document whose version is the control file's default_version, the
# changelog has an entry for it, and every released install script has an
# upgrade path to it.  No server is needed.
use strict;
use warnings;
use Test::More;
use JSON::PP;
use FindBin;

my $root = "$FindBin::RealBin/../..";

sub slurp
{
	my ($path) = @_;
	open my $fh, '<', "$root/$path" or die "$path: $!";
	local $/;
	return <$fh>;
}

my ($control_version) = slurp('event_store.control') =~ /^default_version = '([^']+)'$/m;
ok(defined $control_version, "the control file gives a default_version");

my $meta = eval { decode_json(slurp('META.json')) };
ok($meta, 'META.json is valid JSON') or diag($@);

# The keys the PGXN meta spec 1.0.0 requires, and the forms it gives them.
foreach my $key (qw(name abstract maintainer version license provides meta-spec))
{
	ok(exists $meta->{$key}, "META.json has $key");
}
is($meta->{'meta-spec'}{version}, '1.0.0', 'META.json follows meta spec 1.0.0');
like($meta->{version}, qr/^\d+\.\d+\.\d+$/, 'the distribution version is a semantic version');
is($meta->{version}, "$control_version.0",
	'the distribution version is the extension version');
my $provided = $meta->{provides}{event_store};
ok($provided, 'META.json provides event_store');
is($provided->{version}, "$control_version.0", 'the provided extension has that version');
ok(-f "$root/$provided->{file}", "the provided file $provided->{file} exists");
ok(-f "$root/$provided->{docfile}", "the doc file $provided->{docfile} exists");
ok(grep({ $meta->{license} eq $_ }
		qw(agpl_3 apache_1_1 apache_2_0 artistic_1 artistic_2 bsd gpl_1 gpl_2 gpl_3
		  lgpl_2_1 lgpl_3_0 mit mozilla_1_0 mozilla_1_1 openssl perl_5 postgresql qpl_1_0
		  ssleay sun zlib open_source restricted unrestricted unknown)),
	"the license '$meta->{license}' is one the spec names");
ok(-f "$root/LICENSE", 'LICENSE exists');

like(slurp('CHANGELOG.md'), qr/^## $control_version\b/m,
	"CHANGELOG.md has an entry for $control_version");

# Every released version reaches the current one through upgrade scripts.
opendir my $dir, "$root/sql" or die $!;
my @files = readdir $dir;
my %edges;
foreach (@files)
{
	$edges{$1} = $2 if /^event_store--([\d.]+)--([\d.]+)\.sql$/;
}
foreach my $released (map { /^event_store--([\d.]+)\.sql$/ ? $1 : () } @files)
{
	next if $released eq $control_version;
	my ($version, $steps) = ($released, 0);
	$version = $edges{$version}, $steps++ while exists $edges{$version} && $steps < 100;
	is($version, $control_version, "$released updates to $control_version");
}

done_testing();
