# services.my-service: a tiny web service with a health page.
#
# It serves the text "Healthy" at http://localhost:<port>/health, which is
# what the VM test in tests/vm/my-service.nix checks.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.my-service;
  webroot = pkgs.writeTextDir "health" "Healthy\n";
in
{
  options.services.my-service = {
    enable = lib.mkEnableOption "the my-service health-page web service";

    port = lib.mkOption {
      type = lib.types.port;
      default = 3000;
      description = "TCP port the health page is served on.";
    };
  };

  config = lib.mkIf cfg.enable {
    systemd.services.my-service = {
      description = "my-service health-page web service";
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