#!/usr/bin/perl
# SPDX-License-Identifier: BSD-3-Clause
# Splice generated text into a POD page at build time (docs/man/CMakeLists.txt).
#
#   perl splice.pl --in SRC.pod --out OUT.pod --key KEY --verbatim FILE
#   perl splice.pl --in SRC.pod --out OUT.pod --key KEY
#                  [--require-commands CLI] --pod-from CMD [ARG...]
#
# SRC.pod holds the marker paragraph "=for vmdkit-splice KEY" exactly once
# (valid POD that formatters ignore); OUT.pod is SRC.pod with the marker
# replaced by
#  --verbatim FILE    FILE as a POD verbatim block: every line indented by
#                     one space, tabs expanded, empty lines left empty;
#  --pod-from CMD...  the standard output of CMD (everything after
#                     --pod-from), which must exit 0 and print POD made of
#                     "=head2" sections (no "=head1", no "=encoding").
# --require-commands CLI: the commands `CLI --help` lists must each have a
# "=head2 vmdkit COMMAND" section in what CMD printed -- so a page without
# its commands is never made.
#
# Any problem is an error (exit 1, OUT.pod not written): a missing or
# repeated marker, a command that fails or prints nothing usable.
use strict;
use warnings;

my ($in, $out, $key, $verbatim, $require_cli, @cmd);
while (@ARGV) {
  my $a = shift @ARGV;
  if    ($a eq '--in')               { $in = shift @ARGV; }
  elsif ($a eq '--out')              { $out = shift @ARGV; }
  elsif ($a eq '--key')              { $key = shift @ARGV; }
  elsif ($a eq '--verbatim')         { $verbatim = shift @ARGV; }
  elsif ($a eq '--require-commands') { $require_cli = shift @ARGV; }
  elsif ($a eq '--pod-from')         { @cmd = @ARGV; @ARGV = (); }
  else                               { die "splice.pl: unknown argument '$a'\n"; }
}
die "splice.pl: --in, --out and --key are required\n"
  unless defined $in && defined $out && defined $key;
die "splice.pl: give exactly one of --verbatim FILE and --pod-from CMD\n"
  unless defined($verbatim) xor @cmd;
die "splice.pl: --require-commands goes with --pod-from\n"
  if defined $require_cli && !@cmd;

sub slurp {
  my ($file) = @_;
  open my $fh, '<:raw', $file or die "splice.pl: $file: $!\n";
  local $/;
  my $text = <$fh>;
  close $fh;
  return $text;
}

# Run a command (no shell); its stdout, or die saying how it failed.
sub run {
  my @argv = @_;
  my $pid = open my $fh, '-|';
  die "splice.pl: cannot fork: $!\n" unless defined $pid;
  if ($pid == 0) {
    exec { $argv[0] } @argv or do { print STDERR "splice.pl: $argv[0]: $!\n"; exit 127; };
  }
  local $/;
  my $text = <$fh>;
  $text = '' unless defined $text;
  close $fh;
  my $status = $?;
  die "splice.pl: '@argv' failed (exit status " . ($status >> 8) .
      ($status & 127 ? ", signal " . ($status & 127) : '') . ")\n"
    if $status != 0;
  return $text;
}

my $src = slurp($in);
my $marker = "=for vmdkit-splice $key";
my $count = () = $src =~ /^\Q$marker\E[ \t]*$/mg;
die "splice.pl: $in: the marker line '$marker' occurs $count times, " .
    "expected once\n"
  unless $count == 1;

my $insert;
if (defined $verbatim) {
  my $text = slurp($verbatim);
  die "splice.pl: $verbatim is empty\n" unless length $text;
  my @lines = split /\n/, $text, -1;
  pop @lines if @lines && $lines[-1] eq '';
  for (@lines) {
    1 while s/^([^\t]*)\t/$1 . ' ' x (8 - length($1) % 8)/e;
    s/[ \t\r]+$//;
    $_ = " $_" if length;
  }
  # Leading and trailing empty lines would end the paragraph early.
  shift @lines while @lines && $lines[0] eq '';
  pop @lines while @lines && $lines[-1] eq '';
  $insert = join("\n", @lines) . "\n";
} else {
  my $pod = run(@cmd);
  $pod =~ s/\r//g;
  die "splice.pl: '@cmd' printed no \"=head2\" section: " .
      "the page would have no commands\n"
    unless $pod =~ /^=head2 /m;
  die "splice.pl: '@cmd' printed a \"=head1\" or \"=encoding\": only " .
      "\"=head2\" sections go into the COMMANDS section\n"
    if $pod =~ /^=(head1|encoding|pod|cut)\b/m;
  if (defined $require_cli) {
    my $help = run($require_cli, '--help');
    my ($list) = $help =~ /^Commands:\n((?:  \S.*\n)+)/m;
    die "splice.pl: '$require_cli --help' lists no commands\n" unless $list;
    my @commands = $list =~ /^  (\S+)/mg;
    my @missing = grep { $pod !~ /^=head2 vmdkit \Q$_\E\b/m } @commands;
    die "splice.pl: '@cmd' has no \"=head2 vmdkit COMMAND\" section for: " .
        join(', ', @missing) . "\n"
      if @missing;
  }
  $pod =~ s/\A\n+//;
  $pod =~ s/\n*\z/\n/;
  $insert = $pod;
}

$src =~ s/^\Q$marker\E[ \t]*$/$insert/m;

my $tmp = "$out.tmp$$";
open my $fh, '>:raw', $tmp or die "splice.pl: $tmp: $!\n";
print $fh $src or die "splice.pl: $tmp: $!\n";
close $fh or die "splice.pl: $tmp: $!\n";
rename $tmp, $out or do { unlink $tmp; die "splice.pl: $out: $!\n"; };
exit 0;
