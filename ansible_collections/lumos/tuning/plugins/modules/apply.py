#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lumos-mcp contributors
# MIT License (see the LICENSE of lumos-mcp)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: apply
short_description: Stage and apply a kernel tuning change through the host's lumos-mcp server
version_added: "0.1.0"
description:
  - Stages O(changes) on the host's running C(lumos-mcp serve --http) server (types, hard ranges,
    the host's own policy, step limits, cooldowns, cross-field rules), then applies it. The server
    journals the originals, writes and reads back each value, and arms an auto-revert deadline
    (O(confirm_within_s)). Commit it with M(lumos.tuning.commit) before the deadline or the server
    restores the originals by itself, with or without the controller.
  - In check mode the change is only staged. The result holds the verdict and the diff; nothing is written.
  - A change whose every value is already in place is not applied and reports C(changed=false).
  - A policy denial fails with code C(policy_denied) and the denials; any other refusal fails with
    the server's typed error code (for example C(approval_required), C(conflict), C(readback_mismatch)).
options:
  changes:
    description: >-
      Knob id to new value, for example C({"vm.swappiness": 30}).
      Ids come from the server's C(list_tunables) tool.
    type: dict
    required: true
  confirm_within_s:
    description: Auto-revert deadline after apply, in seconds. The host policy's default if omitted.
    type: float
  guards:
    description:
      - Per-change guards, passed to C(stage_sched_params) as given, only when set. Needs a server
        that has guards; see the lumos-mcp README "Guards" section for their form.
    type: list
    elements: dict
  approval_id:
    description: An approval granted by the host's operator, when the host's policy asks for one.
    type: str
extends_documentation_fragment:
  - lumos.tuning.server
attributes:
  check_mode:
    description: Can run in check mode and return the changed status without changing anything.
    support: full
  diff_mode:
    description: Returns the knobs' values before and after (one C(knob = value) line each).
    support: full
author:
  - lumos-mcp contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Apply with a 5 minute deadline
  lumos.tuning.apply:
    url: "http://127.0.0.1:8765/mcp"
    token: "{{ lumos_token }}"
    changes:
      vm.swappiness: 30
    confirm_within_s: 300
  register: applied
"""

RETURN = r"""
lumos_call_s:
  description: Wall time this module spent in calls to the server, in seconds (connect, MCP session, tool).
  returned: always
  type: float
txid:
  description: The transaction id (staged only, in check mode). Null when nothing needed to change.
  returned: success
  type: str
state:
  description: C(applied), or C(staged) in check mode, or C(unchanged).
  returned: success
  type: str
allowed:
  description: The policy's verdict.
  returned: always
  type: bool
denials:
  description: Every rule the change breaks (rule, knob, value, limit, message).
  returned: always
  type: list
  elements: dict
approval_required:
  description: Whether the host's policy asks for an approval before apply.
  returned: success
  type: bool
diff_entries:
  description: Per knob, before and after (canonical values).
  returned: always
  type: list
  elements: dict
values:
  description: The values the kernel holds after apply.
  returned: when applied
  type: dict
deadline_in_s:
  description: Seconds left before the server reverts the change by itself.
  returned: when applied
  type: float
code:
  description: The server's typed error code, on failure.
  returned: failure
  type: str
fields:
  description: The error's fields (knob, value, limit...), on failure.
  returned: failure
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.lumos.tuning.plugins.module_utils.lumos_client import (
    COMMON_ARGS,
    Lumos,
    LumosError,
    diff_text,
)


def main():
    argument_spec = dict(
        changes=dict(type="dict", required=True),
        confirm_within_s=dict(type="float"),
        guards=dict(type="list", elements="dict"),
        approval_id=dict(type="str"),
    )
    argument_spec.update(COMMON_ARGS)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    server = Lumos(module)
    p = module.params

    stage_args = {"changes": p["changes"]}
    if p["confirm_within_s"] is not None:
        stage_args["confirm_within_s"] = p["confirm_within_s"]
    if p["guards"] is not None:
        stage_args["guards"] = p["guards"]
    try:
        staged = server.call("stage_sched_params", stage_args)
    except LumosError as err:
        server.fail(err)

    entries = staged.get("diff", [])
    moving = [e for e in entries if e["before"] != e["after"]]
    result = dict(
        txid=staged["txid"],
        allowed=staged["allowed"],
        denials=staged.get("denials", []),
        approval_required=staged.get("approval_required", False),
        diff_entries=entries,
        confirm_within_s=staged.get("confirm_within_s"),
    )
    if module._diff:
        result["diff"] = dict(
            before=diff_text({e["knob"]: e["before"] for e in entries}),
            after=diff_text({e["knob"]: e["after"] for e in entries}),
        )
    if not staged["allowed"]:
        denied = "; ".join(d.get("message", d.get("rule", "")) for d in result["denials"])
        server.fail(LumosError("policy_denied", denied), **result)
    if not moving:
        result.update(txid=None, state="unchanged")
        server.exit(changed=False, **result)
    if module.check_mode:
        result.update(state="staged")
        server.exit(changed=True, **result)

    apply_args = {"txid": staged["txid"]}
    if p["approval_id"]:
        apply_args["approval_id"] = p["approval_id"]
    try:
        applied = server.call("apply", apply_args)
    except LumosError as err:
        server.fail(err, **result)
    result.update(state=applied["state"], values=applied["values"], deadline_in_s=applied.get("deadline_in_s"))
    server.exit(changed=True, **result)


if __name__ == "__main__":
    main()
