# The installer's size budget: the compressed initrd (kexec/initrd in the tarball stage 1
# downloads), in MiB. Stage 1 and the kexec hold about three times this in RAM, so it sets the
# RAM floor (docs/benchmark.md). checks.<system>.installer-size fails past it (./size-check.nix).
{
  initrdMiB = 200;
}
