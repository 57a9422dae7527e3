#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lumos-mcp contributors
# MIT License (see the LICENSE of lumos-mcp)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: app_metric
short_description: Report an application metric to the host's lumos-mcp server
version_added: "0.1.0"
description:
  - Feeds one measurement (a latency percentile, a throughput) into the host's telemetry, where it
    appears under C(app) in M(lumos.tuning.facts) and where guards and the canary's regression check read it.
  - Changes no setting, so it reports C(changed=false). In check mode nothing is sent.
options:
  name:
    description: The metric's name, for example C(api.latency_p99_ms).
    type: str
    required: true
  value:
    description: The measured value, in O(unit).
    type: float
    required: true
  unit:
    description: The unit, for example C(ms) or C(rps).
    type: str
    required: true
extends_documentation_fragment:
  - lumos.tuning.server
attributes:
  check_mode:
    description: Can run in check mode and return the changed status without changing anything.
    support: full
  diff_mode:
    description: Changes no setting, or has no values to show.
    support: none
author:
  - lumos-mcp contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Report the p99 the load probe measured
  lumos.tuning.app_metric:
    token: "{{ lumos_token }}"
    name: api.latency_p99_ms
    value: "{{ probe.p99_ms }}"
    unit: ms
"""

RETURN = r"""
lumos_call_s:
  description: Wall time this module spent in calls to the server, in seconds (connect, MCP session, tool).
  returned: always
  type: float
name:
  description: The metric's name.
  returned: success
  type: str
value:
  description: The value reported.
  returned: success
  type: float
code:
  description: The server's typed error code, on failure.
  returned: failure
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.lumos.tuning.plugins.module_utils.lumos_client import COMMON_ARGS, Lumos, LumosError


def main():
    argument_spec = dict(
        name=dict(type="str", required=True),
        value=dict(type="float", required=True),
        unit=dict(type="str", required=True),
    )
    argument_spec.update(COMMON_ARGS)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    server = Lumos(module)
    p = module.params
    if not module.check_mode:
        try:
            server.call("report_app_metric", {"name": p["name"], "value": p["value"], "unit": p["unit"]})
        except LumosError as err:
            server.fail(err)
    server.exit(changed=False, name=p["name"], value=p["value"])


if __name__ == "__main__":
    main()
