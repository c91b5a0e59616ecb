# services.{{ service }}: a tiny web service with a health page.
#
# It serves the text "Healthy" at http://localhost:<port>/health, which is
# what the VM test in {{ tests_dir }}/{{ service }}.nix checks.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.{{ service }};
  webroot = pkgs.writeTextDir "health" "Healthy\n";
in
{
  options.services.{{ service }} = {
    enable = lib.mkEnableOption "the {{ service }} health-page web service";

    port = lib.mkOption {
      type = lib.types.port;
      default = {{ port }};
      description = "TCP port the health page is served on.";
    };
  };

  config = lib.mkIf cfg.enable {
    systemd.services.{{ service }} = {
      description = "{{ service }} health-page web service";
      wantedBy = [ "multi-user.target" ];
      after = [ "network.target" ];
      serviceConfig = {
        ExecStart = "${pkgs.python3}/bin/python3 -m http.server ${toString cfg.port} --directory ${webroot}";
        DynamicUser = true;
        Restart = "on-failure";
      };
    };
  };
}
