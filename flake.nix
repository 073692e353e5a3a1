{
  # The runner as a Nix package and app, a dev shell with its toolchain, and the recipe image:
  # the runner and recipes layered onto the miles image pulled by digest (docker/image.lock).
  #
  #   nix develop                      python3, just, shellcheck, hadolint, the runner
  #   nix run . -- plan nemotron3_nano
  #   nix build .#image && docker load < result
  #
  # What has been checked: this file parses and its outputs evaluate against a stub of nixpkgs
  # (tests/test_flake.py, offline). Nothing here has been built with a real nixpkgs yet; the base
  # image's NAR hash is unknown until the first `nix build .#image`, which fails printing it
  # (docker/image.lock [nix] base_nar_hash is where it goes).
  description = "recipe-bundle: pinned, checkable, replayable LLM RL recipes";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});
      lock = builtins.fromTOML (builtins.readFile ./docker/image.lock);
      # "radixark/miles:v0.1.0@sha256:..." -> name, tag, digest
      baseRef = lock.base.reference;
      baseParts = builtins.match "([^:@]+):([^@]+)@(sha256:[0-9a-f]{64})" baseRef;
      baseName = builtins.elemAt baseParts 0;
      baseTag = builtins.elemAt baseParts 1;
      baseDigest = builtins.elemAt baseParts 2;
      nixLock = lock.nix or { };
      arch = system: if system == "aarch64-linux" then "arm64" else "amd64";

      runnerFor = pkgs: pkgs.python3Packages.buildPythonApplication {
        pname = "recipe-bundle";
        version = "0.1.0";
        pyproject = true;
        src = ./.;
        build-system = [ pkgs.python3Packages.setuptools ];
        dependencies = [ pkgs.python3Packages.click pkgs.python3Packages.rich ];
        # The recipes travel with the package: RECIPE_BUNDLE_ROOT points at them.
        postInstall = ''
          mkdir -p $out/share/recipe-bundle
          cp -r recipes docker pyproject.toml $out/share/recipe-bundle/
        '';
        makeWrapperArgs = [ "--set-default" "RECIPE_BUNDLE_ROOT" "${placeholder "out"}/share/recipe-bundle" ];
        doCheck = false;
      };

      # Inside the image the runner must run on the image's own Python 3.12 (the run scripts call
      # `python3` and `ray` from it), so only pure-Python dependencies come from Nix, on its path.
      imageFor = system: pkgs:
        let
          py = pkgs.python312Packages;
          deps = py.requiredPythonModules [ py.click py.rich ];
          sitePath = pkgs.lib.concatMapStringsSep "\", \"" (d: "${d}/${pkgs.python312.sitePackages}") deps;
          bundle = pkgs.runCommand "recipe-bundle-files" { } ''
            mkdir -p $out/opt/recipe-bundle $out/usr/local/bin
            cp -r ${./runner} $out/opt/recipe-bundle/runner
            cp -r ${./recipes} $out/opt/recipe-bundle/recipes
            mkdir -p $out/opt/recipe-bundle/docker
            cp ${./docker/image.lock} $out/opt/recipe-bundle/docker/image.lock
            cat > $out/usr/local/bin/recipe <<EOF
            #!/usr/bin/env python3
            import sys
            sys.path[:0] = ["/opt/recipe-bundle", "${sitePath}"]
            from runner.cli import main
            main()
            EOF
            chmod 0755 $out/usr/local/bin/recipe
          '';
          base = pkgs.dockerTools.pullImage {
            imageName = baseName;
            imageDigest = baseDigest;
            finalImageTag = baseTag;
            os = "linux";
            arch = arch system;
            hash = nixLock.base_nar_hash or pkgs.lib.fakeHash;
          };
        in
        pkgs.dockerTools.buildLayeredImage {
          name = "recipe-bundle";
          tag = "nix";
          fromImage = base;
          contents = [ bundle ];
          config = {
            Entrypoint = [ "/usr/local/bin/recipe" ];
            Cmd = [ "--help" ];
            Env = [ "RECIPE_BUNDLE_ROOT=/opt/recipe-bundle" "RECIPE_IN_IMAGE=1" ];
            Labels = {
              "org.opencontainers.image.title" = "recipe-bundle";
              "org.opencontainers.image.revision" = self.rev or "dirty";
              "org.opencontainers.image.base.name" = baseRef;
              "org.opencontainers.image.base.digest" = baseDigest;
            };
          };
        };
    in
    {
      packages = forAll (system: pkgs: rec {
        recipe = runnerFor pkgs;
        default = recipe;
        image = imageFor system pkgs;
      });

      apps = forAll (system: pkgs: {
        default = {
          type = "app";
          program = "${self.packages.${system}.recipe}/bin/recipe";
        };
      });

      devShells = forAll (system: pkgs: {
        default = pkgs.mkShell {
          packages = [
            (pkgs.python3.withPackages (ps: [ ps.click ps.rich ps.pytest ps.pip ]))
            pkgs.just
            pkgs.shellcheck
            pkgs.hadolint
            pkgs.ruff
            self.packages.${system}.recipe
          ];
        };
      });
    };
}
