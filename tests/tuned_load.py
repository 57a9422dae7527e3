"""Load a TuneD profile with TuneD's own loader (run by the system's python3, where the Debian
package `tuned` installs it): ``/usr/bin/python3 tests/tuned_load.py DIR NAME``, or with no
arguments one ``DIR NAME`` per stdin line (one process for many profiles).

Prints JSON: the merged profile's units (type, devices, options) as TuneD would apply them, and
every option of DIR/NAME/tuned.conf that its unit's plugin does not declare (``unknown``). A
profile TuneD cannot load exits 1 with the loader's message.
"""

import importlib
import inspect
import json
import os
import sys

import tuned.profiles as profiles
import tuned.profiles.variables as variables
from tuned.plugins import base
from tuned.profiles.exceptions import InvalidProfileException
from tuned.utils.global_config import GlobalConfig

UNIT_KEYS = {
    "type",
    "devices",
    "enabled",
    "replace",
    "drop",
    "priority",
    "devices_udev_regex",
    "cpuinfo_regex",
    "uname_regex",
    "script",
}

DYNAMIC = {"sysctl", "sysfs"}
"""Plugins whose option names are the keys they set (any sysctl, any sysfs path)."""


def plugin_options(kind):
    module = importlib.import_module("tuned.plugins.plugin_" + kind)
    cls = next(
        c
        for _, c in inspect.getmembers(module, inspect.isclass)
        if issubclass(c, base.Plugin) and c.__module__ == module.__name__
    )
    get = cls.__dict__.get("_get_config_options")
    if isinstance(get, classmethod):
        return set(cls._get_config_options())
    return set(get(None)) if get is not None else set()


def main():
    if len(sys.argv) == 1:  # one request per stdin line ("DIR NAME"), one JSON answer per line
        for line in sys.stdin:
            directory, name = line.split()
            print(json.dumps(load(directory, name)), flush=True)
        return 0
    result = load(sys.argv[1], sys.argv[2])
    print(json.dumps(result))
    return 1 if "error" in result else 0


def load(directory, name):
    loader = profiles.Loader(
        profiles.Locator(["/usr/lib/tuned", directory]),
        profiles.Factory(),
        profiles.Merger(),
        GlobalConfig(),
        variables.Variables(),
    )
    try:
        profile = loader.load(name)
        own = loader._load_config_data(os.path.join(directory, name, "tuned.conf"))
    except InvalidProfileException as e:
        return {"error": str(e)}
    unknown = []
    for section, options in own.items():
        if section == "main":
            continue
        kind = options.get("type", section)
        if kind in DYNAMIC:
            continue
        known = plugin_options(kind)
        unknown += [[section, o] for o in options if o not in known and o not in UNIT_KEYS]
    units = {n: {"type": u.type, "devices": u.devices, "options": dict(u.options)} for n, u in profile.units.items()}
    return {"units": units, "unknown": unknown, "summary": profile.options.get("summary")}


sys.exit(main())
