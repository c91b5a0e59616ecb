# A declarative VM test: nixvm-gen turns it into checks.<system>.{{ service }}.
# Regenerate with `nixvm-gen generate` after editing; run it with
# `nix build .#checks.x86_64-linux.{{ service }}`.
{
  name = "{{ service }}";
  description = "{{ service }} starts and serves its health page";

  nodes.machine =
    { ... }:
    {
      services.{{ service }}.enable = true;
    };

  steps = [
    { waitForUnit = "{{ service }}.service"; }
    { waitForOpenPort = {{ port }}; }
    {
      succeed = "curl --fail --silent http://localhost:{{ port }}/health";
      expect.contains = "Healthy";
    }
  ];
}
