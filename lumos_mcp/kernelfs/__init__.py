"""Access to a kernel's /proc and /sys under a root: the only package that opens them."""

from lumos_mcp.kernelfs.root import BEHAVIOURS_FILE, KernelRoot, KernelVersion, parse_release

__all__ = ["BEHAVIOURS_FILE", "KernelRoot", "KernelVersion", "parse_release"]
