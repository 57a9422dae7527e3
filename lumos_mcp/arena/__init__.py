"""The arena: real workloads, antagonists and measurements on this machine, for comparing tuners.

Import the submodules directly (``lumos_mcp.arena.workloads``, ``.probe``, ``.stats``); this
package stays light so that ``python -m lumos_mcp.arena.probe`` children start fast.
"""
