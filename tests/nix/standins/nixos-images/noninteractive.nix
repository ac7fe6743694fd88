# Stand-in for nixos-images' noninteractive module: imports nothing, declares nothing.
_: { }
