# Evaluate flake.nix's outputs against a stub nixpkgs, offline: every builder returns a record of
# the arguments it was given, so a test can check the flake's structure (which outputs exist, what
# the image is pulled by, what the dev shell holds) without a Nix store or network.
let flake = ../../flake.nix; in
let
  systems = [ "x86_64-linux" "aarch64-linux" ];
  genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
  mk = kind: args: { type = "derivation"; inherit kind args; name = args.name or args.pname or kind;
                     outPath = "/nix/store/00000000000000000000000000000000-stub-${kind}"; };
  leaf = kind: mk kind { };
  stubPkgs = system: rec {
    lib = {
      fakeHash = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
      concatMapStringsSep = sep: f: l: builtins.concatStringsSep sep (map f l);
    };
    python3Packages = {
      buildPythonApplication = mk "python-app";
      setuptools = leaf "setuptools"; click = leaf "click"; rich = leaf "rich";
      pytest = leaf "pytest"; pip = leaf "pip";
    };
    python312Packages = { click = leaf "click312"; rich = leaf "rich312"; requiredPythonModules = l: l; };
    python312 = { sitePackages = "lib/python3.12/site-packages"; };
    python3 = { withPackages = f: mk "python-env" { pkgs = f python3Packages; }; };
    runCommand = name: env: script: mk "runCommand" { inherit name script; };
    dockerTools = { pullImage = mk "pullImage"; buildLayeredImage = mk "layered-image"; };
    mkShell = mk "shell";
    just = leaf "just"; shellcheck = leaf "shellcheck"; hadolint = leaf "hadolint"; ruff = leaf "ruff";
  };
  nixpkgs = { lib = { inherit genAttrs; }; legacyPackages = genAttrs systems stubPkgs; };
  f = import flake;
  outputs = f.outputs { self = outputs // { rev = "stubrev"; }; inherit nixpkgs; };
  sys = "x86_64-linux";
  image = outputs.packages.${sys}.image;
  pulled = image.args.fromImage;
in {
  inputs = builtins.attrNames f.inputs;
  nixpkgsUrl = f.inputs.nixpkgs.url;
  outputNames = builtins.attrNames outputs;
  systems = builtins.attrNames outputs.packages;
  packages = builtins.attrNames outputs.packages.${sys};
  defaultIsRecipe = outputs.packages.${sys}.default.args.pname;
  app = outputs.apps.${sys}.default;
  shell = map (p: p.kind) outputs.devShells.${sys}.default.args.packages;
  image = {
    kind = image.kind;
    entrypoint = image.args.config.Entrypoint;
    env = image.args.config.Env;
    labels = image.args.config.Labels;
    contents = map (c: c.kind) image.args.contents;
  };
  pulled = { inherit (pulled) kind; inherit (pulled.args) imageName imageDigest finalImageTag arch hash; };
  pulledArm = outputs.packages.aarch64-linux.image.args.fromImage.args.arch;
}
