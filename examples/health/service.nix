# syshc: answers every HTTP GET with "Healthy". A stand-in for a real
# service whose health page a VM test can check.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.syshc;
  server = pkgs.writeText "syshc.py" ''
    import http.server
    import sys


    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"Healthy\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


    http.server.ThreadingHTTPServer(("", int(sys.argv[1])), Handler).serve_forever()
  '';
in
{
  options.services.syshc = {
    enable = lib.mkEnableOption "syshc, a tiny health-check web server";
    port = lib.mkOption {
      type = lib.types.port;
      default = 3000;
      description = "TCP port syshc listens on.";
    };
  };

  config = lib.mkIf cfg.enable {
    systemd.services.syshc = {
      description = "syshc health-check server";
      wantedBy = [ "multi-user.target" ];
      after = [ "network.target" ];
      serviceConfig = {
        ExecStart = "${lib.getExe pkgs.python3} ${server} ${toString cfg.port}";
        DynamicUser = true;
        Restart = "on-failure";
      };
    };
  };
}
