# VM test `{{ name }}`: nixvm-gen turns it into checks.<system>.{{ name }}.
# Run `nixvm-gen generate` after editing.
{
  name = "{{ name }}";
  description = "TODO: what this test shows";
{%- if let Some(module) = module %}

  # nixosModules of this flake imported into every node (default: all).
  modules = [ "{{ module }}" ];
{%- endif %}
{% for node in nodes %}
  nodes.{{ node }} =
    { pkgs, ... }:
    {
      # NixOS configuration of `{{ node }}`.
    };
{% endfor %}
  steps = [
    {{ first_step }}

    # Every step kind, commented out. Keys other than the step kind:
    # `timeout` (seconds){% if nodes.len() > 1 %}, `node` (which node; required with several nodes){% endif %}.
    #
    # { waitForUnit = "nginx.service";{{ node_hint }} }
    # { waitForUnit = "pipewire.service"; user = "alice"; }
    # { waitForOpenPort = 80; addr = "127.0.0.1"; }
    # { waitForClosedPort = 80; }
    # { waitForFile = "/run/app/ready"; }
    # { waitForOpenUnixSocket = "/run/app/app.sock"; }  # `datagram = true;` for a datagram socket
    # { waitForConsoleText = "login:"; }
    # { succeed = "systemctl is-active nginx"; expect.contains = "active"; }
    # { succeed = "cat /etc/hostname"; expect.equals = "{{ first_node }}"; }
    # { succeed = "uname -r"; expect.matches = "^[0-9]+\\."; timeout = 30; }
    # { succeed = "false"; expect.exitCode = 1; }
    # { execute = "systemctl is-active nginx"; capture = "STATE"; }  # any exit status; later commands see $STATE
    # { systemctl = "restart nginx"; expect.exitCode = 0; }  # any exit status unless expect.exitCode; `user` too
    # { requireUnitState = "nginx.service"; state = "active"; }  # now, without waiting
    # { startJob = "nginx.service"; }  # `systemctl start` (status not checked, as the stock start_job)
    # { stopJob = "nginx.service"; }
    # { fail = "test -e /etc/shadow-"; }
    # { waitUntilSucceeds = "curl --fail http://localhost/"; }
    # { waitUntilFails = "pgrep -x setup"; }
    # { sleep = 2; }
    # { http = { url = "http://localhost/"; status = 200; contains = "Welcome"; }; }
    # { snapshot = "booted"; }  # every node, saved (QEMU snapshot; docs/snapshots.md)
    # { restore = "booted"; }   # every node back to that state, in about a second
    # { start = true; }  # or `start = "<node>";` instead of `node`
    # { shutdown = true; }
    # { waitForShutdown = true; }  # after a power-off the node starts itself
    # { crash = true; }
    # { reboot = true; }
    # { block = true; }
    # { unblock = true; }
    # { copyFromVm = "/var/log/app.log"; targetDir = "logs"; }
    # { copyFromHost = "files/app.conf"; target = "/etc/app/app.conf"; }  # next to this file, or a store path
    # { forwardPort = 8080; guestPort = 80; }  # host port 8080 to the node's port 80 (QEMU user network)
    # { screenshot = "after-login"; }
    # { waitUntilTtyMatches = "login: "; tty = 1; }   # what virtual console 1 shows
    # { sendChars = "root\n"; }                       # typed on the keyboard
    # { sendKeys = [ "alt-f2" "ret" ]; }              # QEMU key names
    # { dumpTtyContents = 1; }                         # tty text into the journal
    # { waitForText = "Welcome"; }                     # OCR of the screen (sets enableOCR)
    # { waitForX = true; }
    # { waitForWindow = "xterm"; }
    # { python = "machine.get_screen_text()"; }  # backend = "python" only: the stock driver's Python
    # {
    #   subtest = "the service restarts";
    #   # isolate = true;  # its subtests each start from the same state
    #   steps = [
    #     { succeed = "systemctl restart nginx"; }
    #     { waitForUnit = "nginx.service"; }
    #   ];
    # }
  ];
}
