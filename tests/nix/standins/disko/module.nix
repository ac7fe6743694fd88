# Stand-in for disko's NixOS module: imports nothing, declares nothing.
_: { }
