"""The persistence tool: what would persist, in the format an operator installs (read-only)."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult
from pydantic import BaseModel, Field

from lumos_mcp.persist import export, hostconf
from lumos_mcp.server.common import READ_ONLY, domain_errors, ok
from lumos_mcp.service import Service


class ExportedFile(BaseModel):
    name: str = Field(description="Where it goes, relative to the directory it is installed in.")
    text: str


class NotCarried(BaseModel):
    knob: str
    reason: str


class ExportResult(BaseModel):
    mode: str
    format: str
    committed: list[dict[str, Any]] = Field(description="The committed state, knob by knob (value, tx, when).")
    files: list[ExportedFile]
    not_carried: list[NotCarried] = Field(description="Committed knobs this format cannot carry, and why.")
    install: str = Field(description="The command that writes it in place.")


INSTALL = {
    "sysctl.d": "lumos-mcp export --format sysctl.d --out /etc/sysctl.d",
    "tuned": "lumos-mcp export --format tuned --out /etc/tuned && tuned-adm profile lumos-mcp",
    "json": "lumos-mcp export --format json",
    "shell": "lumos-mcp export --format shell --out DIR (a rollback script: read it, then run it as root)",
}


def export_result(service: Service, fmt: export.Format) -> ExportResult:
    """The committed state of ``service``'s mode rendered in ``fmt``."""
    knobs = service.committed()
    include = hostconf.active_profile(service.config.host_root)
    out = export.render(fmt, knobs, service.backend, service.mode, service.clock(), include)
    return ExportResult(
        mode=service.mode,
        format=fmt,
        committed=[k.to_dict() for k in knobs],
        files=[ExportedFile(name=n, text=t) for n, t in out.files.items()],
        not_carried=[NotCarried(knob=n.knob, reason=n.reason) for n in out.not_carried],
        install=INSTALL[fmt],
    )


def register(mcp: MCPServer[Service], service: Service) -> None:
    @mcp.tool(title="Export the committed state", annotations=READ_ONLY)
    @domain_errors
    def export_committed(
        format: Annotated[
            export.Format,
            Field(description="sysctl.d (drop-in), tuned (profile), json, or shell (rollback script)."),
        ] = "sysctl.d",
    ) -> Annotated[CallToolResult, ExportResult]:
        """Show what lumos-mcp has committed on this host (knob, value, transaction, when) and how it
        would persist across reboots: a sysctl.d drop-in, a TuneD profile, JSON, or a shell script that
        rolls back to the values before the first commit. Writes nothing: show it to the operator, who
        installs it with the `install` command. get_status's `drift` says whether the host still runs it."""
        return ok(export_result(service, format))

    _ = export_committed
