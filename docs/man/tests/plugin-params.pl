#!/usr/bin/perl
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-vmdkit-plugin(1) against plugins/nbdkit-vmdkit-plugin.c, both ways:
# every key the plugin's .config function accepts (strcmp (key, "NAME"))
# has an "=item B<NAME=>..." in the page's PARAMETERS section and appears
# in its SYNOPSIS, every parameter documented there is accepted, the magic
# config key is documented as optional ("[B<file=>]"), and .config_help
# names the same keys.
#   perl plugin-params.pl plugins/nbdkit-vmdkit-plugin.c nbdkit-vmdkit-plugin.pod
use strict;
use warnings;

my ($src_file, $pod_file) = @ARGV;
die "usage: plugin-params.pl PLUGIN.c PAGE.pod\n" unless defined $pod_file;

sub slurp {
  my ($f) = @_;
  open my $fh, '<', $f or die "FAIL: $f: $!\n";
  local $/;
  return scalar <$fh>;
}

my $src = slurp($src_file);
my ($config_fn) = $src =~ /\.config\s*=\s*(\w+)\s*,/;
die "FAIL: $src_file: no .config in the plugin struct\n" unless $config_fn;
my ($body) = $src =~ /\n[^\n]*\b\Q$config_fn\E\s*\([^)]*\)\s*\{(.*?)\n\}/s;
die "FAIL: $src_file: cannot find the body of $config_fn\n" unless $body;
my %keys;
$keys{$1} = 1 while $body =~ /strcmp\s*\(\s*key\s*,\s*"([^"]+)"\s*\)/g;
die "FAIL: $src_file: $config_fn compares no keys (parser out of date?)\n"
  unless %keys;
my ($magic) = $src =~ /\.magic_config_key\s*=\s*"([^"]+)"/;

my %help_keys;
if ($src =~ /\.config_help\s*=\s*((?:"(?:[^"\\]|\\.)*"\s*)+)/s) {
  my $help = join '', $1 =~ /"((?:[^"\\]|\\.)*)"/g;
  $help =~ s/\\n/\n/g;
  $help_keys{$1} = 1 while $help =~ /^([\w-]+)=/mg;
}

my $pod = slurp($pod_file);
my ($params) = $pod =~ /^=head1 PARAMETERS\n(.*?)(?=^=head1 |\z)/ms;
die "FAIL: $pod_file: no PARAMETERS section\n" unless defined $params;
my ($synopsis) = $pod =~ /^=head1 SYNOPSIS\n(.*?)(?=^=head1 |\z)/ms;
die "FAIL: $pod_file: no SYNOPSIS section\n" unless defined $synopsis;
my %documented;
for my $line (split /\n/, $params) {
  next unless $line =~ /^=item\s+(.*)$/;
  my $item = $1;
  $documented{$1} = 1 while $item =~ /B<([\w-]+)=/g;
}

my @problems;
for my $k (sort keys %keys) {
  push @problems, "parameter $k= (accepted by $config_fn) has no =item B<$k=> under PARAMETERS"
    unless $documented{$k};
  push @problems, "parameter $k= is not in the SYNOPSIS"
    unless $synopsis =~ /\b\Q$k\E=/;
  push @problems, "parameter $k= is missing from .config_help"
    if %help_keys && !$help_keys{$k};
}
for my $k (sort keys %documented) {
  push @problems, "$pod_file documents $k=, which $config_fn does not accept"
    unless $keys{$k};
}
for my $k (sort keys %help_keys) {
  push @problems, ".config_help names $k=, which $config_fn does not accept"
    unless $keys{$k};
}
if ($magic) {
  push @problems, "the magic config key $magic= is not documented as [B<$magic=>]"
    unless $params =~ /^=item\s+\[B<\Q$magic\E=>\]/m;
}

if (@problems) {
  print STDERR "FAIL: $_\n" for @problems;
  exit 1;
}
print "ok: parameters ", join(', ', map {"$_="} sort keys %keys), " documented\n";
exit 0;
