#!/usr/bin/perl
# SPDX-License-Identifier: BSD-3-Clause
# vmdkit(3) against include/vmdkit.h, both ways:
#  - every function the header declares (VMDK_API ... vmdk_NAME(...)) has
#    a "=head2" (or "=item") of its own in the page, and every vmdk_NAME a
#    heading or item names is a function, type, struct or enum of the
#    header;
#  - every vmdk_NAME the page mentions anywhere is in the header (no stale
#    or misspelt names), and so is every VMDK_/VMDKIT_ constant;
#  - every constant of the header (#define VMDK..., enum values) is
#    mentioned in the page;
#  - every member of every public struct has an "=item C<member>".
#   perl api-coverage.pl include/vmdkit.h vmdkit.3.pod
use strict;
use warnings;

my ($header, $pod_file) = @ARGV;
die "usage: api-coverage.pl HEADER POD\n" unless defined $pod_file;

sub slurp {
  my ($f) = @_;
  open my $fh, '<', $f or die "FAIL: $f: $!\n";
  local $/;
  return scalar <$fh>;
}

# ---- the header --------------------------------------------------------
my $h = slurp($header);
$h =~ s{/\*.*?\*/}{ }gs;     # comments
$h =~ s{//[^\n]*}{}g;

my %functions;
$functions{$1} = 1 while $h =~ /\bVMDK_API\b[^;{}]*?\b(vmdk_\w+)\s*\(/gs;
die "FAIL: $header: no VMDK_API functions found (parser out of date?)\n"
  unless %functions;

my %types;                   # typedefs, struct and enum tags
$types{$1} = 1 while $h =~ /\b(?:struct|enum)\s+(vmdk_\w+)/g;
$types{$1} = 1 while $h =~ /\btypedef\b[^;]*?\(\s*\*\s*(vmdk_\w+)\s*\)/gs;
$types{$1} = 1 while $h =~ /\btypedef\b[^;(]*?\b(vmdk_\w+)\s*;/gs;

my %constants;
$constants{$1} = 1 while $h =~ /^\s*#\s*define\s+(VMDK\w*)/mg;
delete @constants{qw(VMDK_API VMDKIT_H)};
while ($h =~ /\benum\s+vmdk_\w+\s*\{(.*?)\}/gs) {
  my $body = $1;
  $constants{$1} = 1 while $body =~ /\b(VMDK_\w+)\b/g;
}

my %members;                 # member => struct
while ($h =~ /\bstruct\s+(vmdk_\w+)\s*\{(.*?)\}\s*;/gs) {
  my ($struct, $body) = ($1, $2);
  for my $decl (split /;/, $body) {
    $decl =~ s/\[[^\]]*\]//g;
    next unless $decl =~ /\S/;
    my @parts = split /,/, $decl;
    my ($first) = $parts[0] =~ /(\w+)\s*$/;
    $members{$first} = $struct if defined $first;
    for my $p (@parts[1 .. $#parts]) {
      $members{$1} = $struct if $p =~ /^\s*\**\s*(\w+)\s*$/;
    }
  }
}
die "FAIL: $header: no struct members found (parser out of date?)\n"
  unless %members;

# ---- the page ------------------------------------------------------------
my $pod = slurp($pod_file);
my (%heading_names, %mentioned_lower, %mentioned_upper, %items);
for my $line (split /\n/, $pod) {
  if ($line =~ /^=(?:head\d|item)\s+(.*)$/) {
    my $text = $1;
    $heading_names{$1} = 1 while $text =~ /\b(vmdk_\w+)/g;
    $items{$1} = 1 if $line =~ /^=item\s+C<(\w+)>\s*$/;
  }
  $mentioned_lower{$1} = 1 while $line =~ /\b(vmdk_\w+)/g;
  $mentioned_upper{$1} = 1 while $line =~ /\b(VMDK(?:IT)?_[A-Z][A-Z0-9_]*)/g;
}

my @problems;
for my $f (sort keys %functions) {
  push @problems, "$f is declared in $header but has no =head2/=item in $pod_file"
    unless $heading_names{$f};
}
for my $n (sort keys %heading_names) {
  push @problems, "$pod_file documents $n (=head2/=item), which $header does not declare"
    unless $functions{$n} || $types{$n};
}
for my $n (sort keys %mentioned_lower) {
  push @problems, "$pod_file mentions $n, which is not in $header"
    unless $functions{$n} || $types{$n};
}
for my $c (sort keys %mentioned_upper) {
  # "VMDK_OPEN_*" names a family: some constant must start with it.
  my $known = $c =~ /_$/ ? grep({ index($_, $c) == 0 } keys %constants) : $constants{$c};
  push @problems, "$pod_file mentions $c, which is not in $header"
    unless $known;
}
for my $c (sort keys %constants) {
  push @problems, "$header defines $c, which $pod_file never mentions"
    unless $mentioned_upper{$c};
}
for my $m (sort keys %members) {
  push @problems, "member $m of struct $members{$m} has no =item C<$m> in $pod_file"
    unless $items{$m};
}

if (@problems) {
  print STDERR "FAIL: $_\n" for @problems;
  exit 1;
}
printf "ok: %d functions, %d types, %d constants, %d struct members documented\n",
  scalar(keys %functions), scalar(keys %types), scalar(keys %constants),
  scalar(keys %members);
exit 0;
