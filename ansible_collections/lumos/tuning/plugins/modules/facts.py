#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lumos-mcp contributors
# MIT License (see the LICENSE of lumos-mcp)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: facts
short_description: Read the lumos-mcp server's status and the host's telemetry as facts
version_added: "0.1.0"
description:
  - Sets C(ansible_facts.lumos_status) from the server's C(get_status) (mode, policy, armed
    transactions with seconds left, recent transactions, journal problems) and
    C(ansible_facts.lumos_telemetry) from C(read_telemetry) (the host's performance signature,
    with application metrics under C(app)).
  - Reads only; check mode does the same.
options:
  gather:
    description: What to read.
    type: list
    elements: str
    choices: [status, telemetry]
    default: [status, telemetry]
  window_s:
    description: The telemetry window, in seconds.
    type: float
    default: 10.0
  fresh:
    description: Wait for a window of samples taken after this call (to measure a change just applied).
    type: bool
    default: false
  sections:
    description: Telemetry sections to read (all if omitted).
    type: list
    elements: str
extends_documentation_fragment:
  - lumos.tuning.server
attributes:
  check_mode:
    description: Can run in check mode and return the changed status without changing anything.
    support: full
  diff_mode:
    description: Changes no setting, or has no values to show.
    support: none
  facts:
    description: Sets C(lumos_status) and C(lumos_telemetry) facts.
    support: full
author:
  - lumos-mcp contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Baseline before the change
  lumos.tuning.facts:
    token: "{{ lumos_token }}"
    gather: [telemetry]
    window_s: 10
    sections: [app, psi]
"""

RETURN = r"""
lumos_call_s:
  description: Wall time this module spent in calls to the server, in seconds (connect, MCP session, tool).
  returned: always
  type: float
ansible_facts:
  description: C(lumos_status) and C(lumos_telemetry), as asked.
  returned: success
  type: dict
code:
  description: The server's typed error code, on failure.
  returned: failure
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.lumos.tuning.plugins.module_utils.lumos_client import COMMON_ARGS, Lumos, LumosError


def main():
    argument_spec = dict(
        gather=dict(type="list", elements="str", choices=["status", "telemetry"], default=["status", "telemetry"]),
        window_s=dict(type="float", default=10.0),
        fresh=dict(type="bool", default=False),
        sections=dict(type="list", elements="str"),
    )
    argument_spec.update(COMMON_ARGS)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    server = Lumos(module)
    p = module.params
    facts = {}
    try:
        if "status" in p["gather"]:
            facts["lumos_status"] = server.call("get_status")
        if "telemetry" in p["gather"]:
            args = {"window_s": p["window_s"], "fresh": p["fresh"]}
            if p["sections"]:
                args["sections"] = p["sections"]
            facts["lumos_telemetry"] = server.call("read_telemetry", args)
    except LumosError as err:
        server.fail(err)
    server.exit(changed=False, ansible_facts=facts)


if __name__ == "__main__":
    main()
