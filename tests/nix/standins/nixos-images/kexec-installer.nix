# Stand-in for nixos-images' kexec-installer module: imports nothing, declares nothing.
_: { }
