#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lumos-mcp contributors
# MIT License (see the LICENSE of lumos-mcp)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: revert
short_description: Revert an applied change on the host's lumos-mcp server
version_added: "0.1.0"
description:
  - Reverts an applied transaction through the server's journal, in reverse order, verifying each original.
  - A transaction already reverted (by a call or by its deadline) reports C(changed=false).
  - A knob someone else changed since apply fails with code C(external_change) unless O(force).

  - In check mode the module only reads the server's status and reports whether the transaction is armed.
options:
  txid:
    description: The transaction id returned by M(lumos.tuning.apply).
    type: str
    required: true
  force:
    description: Also overwrite knobs someone else changed since apply.
    type: bool
    default: false
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
- name: Undo the change
  lumos.tuning.revert:
    token: "{{ lumos_token }}"
    txid: "{{ applied.txid }}"
"""

RETURN = r"""
lumos_call_s:
  description: Wall time this module spent in calls to the server, in seconds (connect, MCP session, tool).
  returned: always
  type: float
txid:
  description: The transaction id.
  returned: always
  type: str
state:
  description: The transaction's state after the call (C(reverted), or what it already was).
  returned: success
  type: str
values:
  description: The values the kernel holds for the transaction's knobs.
  returned: when the server answered
  type: dict
restored:
  description: Per knob, what a revert did (restored, unchanged, external_change, error).
  returned: when reverted
  type: list
  elements: dict
code:
  description: The server's typed error code, on failure.
  returned: failure
  type: str
fields:
  description: The error's fields, on failure.
  returned: failure
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.lumos.tuning.plugins.module_utils.lumos_client import COMMON_ARGS, Lumos, close_transaction


def main():
    argument_spec = dict(txid=dict(type="str", required=True), force=dict(type="bool", default=False))
    argument_spec.update(COMMON_ARGS)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    args = {"txid": module.params["txid"]}
    if module.params["force"]:
        args["force"] = True
    close_transaction(Lumos(module), "revert", "reverted", args)


if __name__ == "__main__":
    main()
