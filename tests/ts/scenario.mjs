// Drives lumos-mcp with the official TypeScript SDK client and prints one JSON report on stdout.
// Usage: node scenario.mjs '<json>' where json is
//   {"transport": "stdio", "command": "...", "args": [...], "env": {...}, "cwd": "..."}
//   {"transport": "http", "url": "http://127.0.0.1:PORT/mcp", "token": "..."}
// Run by tests/test_ts_client.py, which asserts on the report.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const config = JSON.parse(process.argv[2]);
const require = createRequire(import.meta.url);
const sdkVersion = JSON.parse(
  readFileSync(require.resolve("@modelcontextprotocol/sdk/package.json"), "utf8"),
).version;

function transportFor(c) {
  if (c.transport === "stdio") {
    return new StdioClientTransport({ command: c.command, args: c.args, env: c.env, cwd: c.cwd, stderr: "ignore" });
  }
  return new StreamableHTTPClientTransport(new URL(c.url), {
    requestInit: { headers: { Authorization: `Bearer ${c.token}` } },
  });
}

// One tool call as the report sees it: what a TS host would get from callTool.
async function call(client, name, args) {
  try {
    const r = await client.callTool({ name, arguments: args });
    const text = (r.content ?? []).filter((c) => c.type === "text").map((c) => c.text).join("");
    let error = null;
    if (r.isError) {
      try {
        error = JSON.parse(text).error ?? null;
      } catch {
        error = null; // untyped: the text is not our JSON error
      }
    }
    return {
      tool: name,
      isError: r.isError === true,
      structured: r.structuredContent ?? null,
      error,
      text: r.isError ? text.slice(0, 300) : "",
      thrown: null,
    };
  } catch (e) {
    return { tool: name, isError: null, structured: null, error: null, text: "", thrown: { code: e.code ?? null, message: String(e.message ?? e) } };
  }
}

const report = { sdkVersion, transport: config.transport, calls: {} };
const client = new Client({ name: "lumos-ts-suite", version: "1.0.0" });
const started = Date.now();
try {
  const transport = transportFor(config);
  const setVersion = transport.setProtocolVersion?.bind(transport);
  transport.setProtocolVersion = (v) => {
    report.protocolVersion = v; // the version the handshake settled on
    setVersion?.(v);
  };
  await client.connect(transport);
  const tools = (await client.listTools()).tools;
  report.tools = tools.map((t) => ({ name: t.name, hasOutputSchema: Boolean(t.outputSchema) }));
  const c = report.calls;

  c.list_tunables = await call(client, "list_tunables", { group: "vm" });
  const vm = c.list_tunables.structured?.tunables ?? [];
  const now = (id) => vm.find((t) => t.id === id)?.value;

  // success: stage, apply, revert
  const swappiness = now("vm.swappiness") === 10 ? 11 : 10;
  c.stage = await call(client, "stage_sched_params", { changes: { "vm.swappiness": swappiness } });
  const txid = c.stage.structured?.txid ?? "missing";
  c.apply = await call(client, "apply", { txid });
  c.revert = await call(client, "revert", { txid });

  // typed errors
  const denied = await call(client, "stage_sched_params", { changes: { "vm.swappiness": 90 } });
  c.policy_denied = await call(client, "apply", { txid: denied.structured?.txid ?? "missing" });
  const dirty = now("vm.dirty_ratio") === 30 ? 31 : 30;
  const needsApproval = await call(client, "stage_sched_params", { changes: { "vm.dirty_ratio": dirty } });
  c.approval_required = await call(client, "apply", { txid: needsApproval.structured?.txid ?? "missing" });
  c.invalid_arguments = await call(client, "apply", { txid: 42 });
  c.unknown_argument = await call(client, "get_status", { verbose: true });
  c.unknown_knob = await call(client, "stage_sched_params", { changes: { "kernel.core_pattern": "|/bin/sh" } });
  c.unknown_transaction = await call(client, "commit", { txid: "tx-nope" });
  c.unknown_tool = await call(client, "no_such_tool", {});
} catch (e) {
  report.fatal = String(e?.stack ?? e);
} finally {
  report.elapsed_s = (Date.now() - started) / 1000;
  await client.close().catch(() => {});
}
process.stdout.write(JSON.stringify(report) + "\n");
process.exit(report.fatal ? 1 : 0);
