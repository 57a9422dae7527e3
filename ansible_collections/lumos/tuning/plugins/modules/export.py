#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lumos-mcp contributors
# MIT License (see the LICENSE of lumos-mcp)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: export
short_description: Export what lumos-mcp has committed on the host, in a format that persists
version_added: "0.1.0"
description:
  - Calls the server's read-only C(export_committed) tool and returns the committed state (knob,
    value, transaction, when) rendered as a sysctl.d drop-in, a TuneD profile, JSON, or a rollback
    script, with the committed knobs that format cannot carry and why.
  - With O(dest), also writes the rendered files under that directory on the managed host (for
    example C(/etc/sysctl.d) or C(/etc/tuned)); C(changed) is true only when a file's content
    differs from what is there, its export time aside. Without O(dest) it only reads.
options:
  format:
    description: The format to render.
    type: str
    choices: [sysctl.d, tuned, json, shell]
    default: sysctl.d
  dest:
    description: A directory on the managed host to write the rendered files in (created if missing).
    type: path
extends_documentation_fragment:
  - lumos.tuning.server
attributes:
  check_mode:
    description: Renders and reports which files would change without writing them.
    support: full
  diff_mode:
    description: Shows each file's old and new content when O(dest) is given.
    support: full
author:
  - lumos-mcp contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Keep the committed sysctls across reboots
  lumos.tuning.export:
    token: "{{ lumos_token }}"
    format: sysctl.d
    dest: /etc/sysctl.d
"""

RETURN = r"""
lumos_call_s:
  description: Wall time this module spent in calls to the server, in seconds.
  returned: always
  type: float
committed:
  description: The committed state, knob by knob (value, transaction, when, value before the first commit).
  returned: success
  type: list
  elements: dict
files:
  description: The rendered files, each with C(name) (relative to O(dest)) and C(text).
  returned: success
  type: list
  elements: dict
not_carried:
  description: Committed knobs this format cannot carry, each with C(knob) and C(reason).
  returned: success
  type: list
  elements: dict
written:
  description: The paths written (or, in check mode, that would be).
  returned: success
  type: list
  elements: str
code:
  description: The server's typed error code, on failure.
  returned: failure
  type: str
"""

import os
import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.lumos.tuning.plugins.module_utils.lumos_client import COMMON_ARGS, Lumos, LumosError


EXPORTED = re.compile(r'exported(?: |": ")\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ')


def _same(before, after):
    """Whether a file already says what the export says, apart from when it was exported (every
    export names its time: an unchanged state rewritten would otherwise always be "changed")."""
    return before is not None and EXPORTED.sub("exported", before) == EXPORTED.sub("exported", after)


def _current(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def main():
    argument_spec = dict(
        format=dict(type="str", choices=["sysctl.d", "tuned", "json", "shell"], default="sysctl.d"),
        dest=dict(type="path"),
    )
    argument_spec.update(COMMON_ARGS)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    server = Lumos(module)
    p = module.params
    try:
        result = server.call("export_committed", {"format": p["format"]})
    except LumosError as err:
        server.fail(err)
    written = []
    diffs = []
    if p["dest"]:
        for f in result["files"]:
            path = os.path.normpath(os.path.join(p["dest"], f["name"]))
            if not path.startswith(os.path.normpath(p["dest"]) + os.sep):
                module.fail_json(msg="the server named a file outside dest: %s" % f["name"], code="bad_export")
            before = _current(path)
            if _same(before, f["text"]):
                continue
            written.append(path)
            diffs.append({"before": before or "", "after": f["text"], "before_header": path, "after_header": path})
            if not module.check_mode:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                tmp = path + ".lumos-tmp"
                with open(tmp, "w", encoding="utf-8") as out:
                    out.write(f["text"])
                if p["format"] == "shell":
                    os.chmod(tmp, 0o700)
                os.replace(tmp, path)
    extra = {"diff": diffs} if module._diff and diffs else {}
    server.exit(
        changed=bool(written),
        committed=result["committed"],
        files=result["files"],
        not_carried=result["not_carried"],
        written=written,
        **extra,
    )


if __name__ == "__main__":
    main()
