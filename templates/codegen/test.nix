    {{ attr }} =
      pkgs:
      pkgs.testers.runNixOSTest (
        { config, lib, ... }:
{%- if let Some(description) = description %}
        let
          description = {{ description }};
        in
{%- endif %}
        {
          name = {{ name }};
{%- if let Some(module) = test_module %}
          imports = [ {{ module }} ];
{%- endif %}
{%- if let Some(seconds) = global_timeout %}
          globalTimeout = {{ seconds }};
{%- endif %}
{%- if enable_ocr %}
          enableOCR = true;
{%- endif %}
{%- for node in nodes %}
          nodes.{{ node.attr }} = {
            imports = [
{%- for import in node.imports %}
              {{ import }}
{%- endfor %}
            ];
          };
{%- endfor %}
          testScript = {{ script }};
{%- if let Some(plan) = plan %}
          driver = lib.mkForce (
            {{ input_name }}.lib.mkDriver {
              inherit config pkgs;
              plan = {{ plan }};
            }
          );
{%- endif %}
        }
      );
