# The stand-in lib: builtins plus what flake.nix, nix/package.nix and nix/tests need to be
# walked. nixosSystem returns the module files it reached instead of a system.
let
  # Arguments a module function is called with to reach its `imports`. Only `imports` is read,
  # so options and config are never evaluated; `lib` is this file, `pkgs` the stand-in pkgs.
  moduleArgs = {
    config = { };
    options = { };
    lib = self;
    pkgs = import ./pkgs.nix self "x86_64-linux";
    modulesPath = "/standin-nixpkgs/nixos/modules";
  };

  # Every module file reached from `modules`, as strings, in walk order.
  walk = args: seen: m:
    if builtins.isPath m || builtins.isString m then
      let key = toString m;
      in
      if builtins.elem key seen then seen
      else if !(builtins.pathExists m) then throw "stand-in nixosSystem: module file ${key} does not exist"
      else walkValue args (seen ++ [ key ]) (import m)
    else walkValue args seen m;
  walkValue = args: seen: v:
    let
      attrs = if builtins.isFunction v then v args else v;
      imports = if builtins.isAttrs attrs then attrs.imports or [ ] else throw "stand-in nixosSystem: a module is neither a function nor an attribute set";
    in
    builtins.foldl' (walk args) seen imports;

  self = {
    genAttrs = names: f: builtins.listToAttrs (map (name: { inherit name; value = f name; }) names);
    head = builtins.head;
    splitString = sep: s: builtins.filter builtins.isString (builtins.split sep s);
    optionalAttrs = cond: attrs: if cond then attrs else { };
    importTOML = path: builtins.fromTOML (builtins.readFile path);
    fileset = {
      toSource = { root, fileset }: builtins.seq fileset root;
      unions = builtins.foldl' (acc: p: if builtins.pathExists p then acc ++ [ p ] else throw "fileset: ${toString p} does not exist") [ ];
      maybeMissing = p: if builtins.pathExists p then p else [ ];
    };
    # specialArgs reach the module functions, as in nixpkgs (a missing one fails the walk).
    nixosSystem = { modules, specialArgs ? { }, ... }:
      let files = builtins.foldl' (walk (moduleArgs // specialArgs)) [ ] modules;
      in {
        standin.moduleFiles = files;
        config.system.build = {
          toplevel = { standin = "toplevel"; moduleFiles = files; };
          nixosLiftInstaller = { standin = "nixosLiftInstaller"; moduleFiles = files; };
        };
        extendModules = _: throw "stand-in nixosSystem: extendModules is not modelled";
      };
  };
in
self
