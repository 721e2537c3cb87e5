# The installed para_sync.so exports only what PostgreSQL looks up: _PG_init,
# the magic block, the publisher's entry (bgw_function_name) and each C
# function that an installed install or upgrade script names, with its
# pg_finfo_ record.  PostgreSQL loads libraries RTLD_GLOBAL, so any other
# global name (a NATS helper, a MessagePack writer) could clash with one of
# another preloaded library.  The expected list is read from the installed
# scripts, independently of the Makefile's version script.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;

my $pg_config = $ENV{PG_CONFIG} // 'pg_config';
chomp(my $libdir = `$pg_config --pkglibdir`);
chomp(my $sharedir = `$pg_config --sharedir`);
my $lib = "$libdir/para_sync.so";
ok(-f $lib, "para_sync.so is installed in $libdir");

my %expected = map { $_ => 1 } qw(_PG_init Pg_magic_func para_sync_worker_main);
my @scripts = glob("$sharedir/extension/para_sync--*.sql");
ok(@scripts >= 1, 'install scripts found');
for my $script (@scripts)
{
	for (split /\n/, slurp_file($script))
	{
		next unless /'MODULE_PATHNAME',\s*'(\w+)'/;
		$expected{$1} = 1;
		$expected{"pg_finfo_$1"} = 1;
	}
}

my %exported;
for (split /\n/, `nm -D --defined-only '$lib'`)
{
	my ($addr, $type, $name) = split ' ';
	# code and data (initialised, zeroed, read-only); not the linker's own
	next unless defined $name && $type =~ /^[TDBRVW]$/;
	next if $name =~ /^(_init|_fini|_edata|_end|__bss_start)$/;
	$exported{$name} = 1;
}
ok(scalar(keys %exported) > 0, 'nm lists the library\'s symbols');

my @extra = sort grep { !$expected{$_} } keys %exported;
my @missing = sort grep { !$exported{$_} } keys %expected;
is(join(' ', @extra), '', 'no internal symbol is exported');
is(join(' ', @missing), '', 'every entry point PostgreSQL looks up is exported');

done_testing();
