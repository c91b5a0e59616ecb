# The test from the blog post, written as data: boot a machine with the
# service, wait until it listens, and check that it reports "Healthy".
# `nixvm-gen generate` turns this into nix/checks.generated.nix.
{
  description = "syshc starts on boot and answers Healthy on port 3000";

  # A NixOS module per node; the flake's nixosModules are imported for you.
  nodes.machine = {
    services.syshc.enable = true;
  };

  steps = [
    { waitForUnit = "syshc.service"; }
    { waitForOpenPort = 3000; }
    {
      http.url = "http://localhost:3000/";
      http.contains = "Healthy";
    }
  ];
}
