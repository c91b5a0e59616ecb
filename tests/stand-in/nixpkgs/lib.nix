# STAND-IN for nixpkgs' `lib` (nixpkgs/lib/*.nix). NOT the real library.
#
# Only the handful of functions that nixvm-gen's generated code, its glue
# (nix/lib.nix, nix/package.nix, flake.nix) and the stand-in testers use.
# Semantics follow the real functions closely enough for evaluation tests;
# anything missing here is missing on purpose: if the glue starts using a new
# `lib` function, the tests fail until it is added (and it must exist in the
# real `lib` too).
let
  inherit (builtins)
    attrNames
    concatMap
    concatStringsSep
    elem
    filter
    foldl'
    genList
    hasAttr
    head
    isAttrs
    isList
    length
    listToAttrs
    mapAttrs
    replaceStrings
    ;

  # Real: lib/modules.nix `mkOverride`/`mkForce`/`mkDefault`/`mkIf`.
  # The `_type` tags are the real ones, so the stand-in test evaluator and
  # real module system agree on what a definition means.
  mkOverride = priority: content: {
    _type = "override";
    inherit priority content;
  };

  recursiveUpdate =
    lhs: rhs:
    lhs
    // mapAttrs (
      n: v: if isAttrs v && hasAttr n lhs && isAttrs lhs.${n} && !(isDerivation v) then recursiveUpdate lhs.${n} v else v
    ) rhs;

  isDerivation = v: isAttrs v && (v.type or null) == "derivation";

  unique = foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ];

  escapeShellArg = s: "'" + replaceStrings [ "'" ] [ "'\\''" ] (toString s) + "'";

  # Real: lib/meta.nix `getExe'` / `getExe` (uses meta.mainProgram, warns
  # when it is missing; here it is an error so tests catch it).
  getExe' = drv: exe: "${drv}/bin/${exe}";
  getExe =
    drv:
    getExe' drv (
      drv.meta.mainProgram or (throw "stand-in lib.getExe: ${drv.name or "?"} has no meta.mainProgram")
    );

  # Real: lib/fileset (a much richer, lazy implementation). Here a file set
  # is a list of paths; `toSource` copies `root` keeping only those paths
  # (and their parent directories), which is all nix/package.nix relies on.
  # `difference a b` appends b's paths as `{ exclude = …; }` entries, which
  # toSource drops with everything under them.
  fileset = rec {
    unions = concatMap (x: if isList x then x else [ x ]);
    maybeMissing = p: if builtins.pathExists p then [ p ] else [ ];
    difference = a: b: unions [ a ] ++ map (p: { exclude = toString p; }) (unions [ b ]);
    toSource =
      { root, fileset }:
      let
        all = unions [ fileset ];
        paths = map toString (builtins.filter (x: !isAttrs x) all);
        excludes = map (x: x.exclude) (builtins.filter isAttrs all);
        keep =
          p: _type:
          let
            s = toString p;
          in
          !(builtins.any (e: s == e || hasPrefix (e + "/") s) excludes)
          && builtins.any (f: s == f || hasPrefix (f + "/") s || hasPrefix (s + "/") f) paths;
      in
      builtins.path {
        path = root;
        name = "source";
        filter = keep;
      };
  };

  hasPrefix = pre: s: builtins.substring 0 (builtins.stringLength pre) s == pre;

  # Real: lib/attrsets.nix.
  hasAttrByPath =
    path: as:
    path == [ ] || (isAttrs as && hasAttr (head path) as && hasAttrByPath (builtins.tail path) as.${head path});
  attrByPath =
    path: default: as:
    if hasAttrByPath path as then foldl' (a: n: a.${n}) as path else default;
in
{
  inherit
    mkOverride
    recursiveUpdate
    isDerivation
    unique
    escapeShellArg
    getExe
    getExe'
    fileset
    hasPrefix
    hasAttrByPath
    attrByPath
    concatStringsSep
    attrNames
    mapAttrs
    ;
  mkForce = mkOverride 50;
  mkDefault = mkOverride 1000;
  mkOptionDefault = mkOverride 1500;
  mkIf = condition: content: {
    _type = "if";
    inherit condition content;
  };

  id = x: x;
  const = x: _: x;
  toList = x: if isList x then x else [ x ];
  genAttrs =
    names: f:
    listToAttrs (
      map (n: {
        name = n;
        value = f n;
      }) names
    );
  optional = cond: x: if cond then [ x ] else [ ];
  optionals = cond: xs: if cond then xs else [ ];
  optionalString = cond: s: if cond then s else "";
  optionalAttrs = cond: as: if cond then as else { };
  attrValues = builtins.attrValues;
  nameValuePair = name: value: { inherit name value; };
  mapAttrs' = f: as: listToAttrs (map (n: f n as.${n}) (attrNames as));
  mapAttrsToList = f: as: map (n: f n as.${n}) (attrNames as);
  filterAttrs =
    pred: as:
    listToAttrs (
      concatMap (
        n:
        if pred n as.${n} then
          [
            {
              name = n;
              value = as.${n};
            }
          ]
        else
          [ ]
      ) (attrNames as)
    );
  concatLists = builtins.concatLists;
  concatMapStringsSep = sep: f: xs: concatStringsSep sep (map f xs);
  escapeShellArgs = xs: concatStringsSep " " (map escapeShellArg xs);
  makeBinPath = xs: concatStringsSep ":" (map (p: "${p}/bin") (filter (p: p != null) xs));
  range = first: last: if first > last then [ ] else genList (n: first + n) (last - first + 1);
  last = xs: builtins.elemAt xs (length xs - 1);
  inherit head;

  licenses.mit = {
    shortName = "mit";
    spdxId = "MIT";
  };
  platforms.linux = [
    "x86_64-linux"
    "aarch64-linux"
  ];
  # The flake's `systems` list; real: lib/systems/flake-systems.nix.
  systems.flakeExposed = [
    "x86_64-linux"
    "aarch64-linux"
  ];
}
