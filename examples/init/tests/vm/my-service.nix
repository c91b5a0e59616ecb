# A declarative VM test: nixvm-gen turns it into checks.<system>.my-service.
# Regenerate with `nixvm-gen generate` after editing; run it with
# `nix build .#checks.x86_64-linux.my-service`.
{
  name = "my-service";
  description = "my-service starts and serves its health page";

  nodes.machine =
    { ... }:
    {
      services.my-service.enable = true;
    };

  steps = [
    { waitForUnit = "my-service.service"; }
    { waitForOpenPort = 3000; }
    {
      succeed = "curl --fail --silent http://localhost:3000/health";
      expect.contains = "Healthy";
    }
  ];
}