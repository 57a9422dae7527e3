// Drives lumos-mcp with an official TypeScript SDK client and prints one JSON report on stdout.
// Usage: node scenario.mjs '<json>' where json is
//   {"sdk": "v1" | "v2", "transport": "stdio", "command": "...", "args": [...], "env": {...}, "cwd": "..."}
//   {"sdk": "v1" | "v2", "transport": "http", "url": "http://127.0.0.1:PORT/mcp", "token": "..."}
// v1 is @modelcontextprotocol/sdk (1.x, what most hosts ship), v2 @modelcontextprotocol/client (2.x,
// what the MCP Inspector 2.x is built on). Run by tests/test_ts_client.py, which asserts on the report.
import { readFileSync } from "node:fs";

const config = JSON.parse(process.argv[2]);
const v2 = config.sdk === "v2";
const pkg = v2 ? "@modelcontextprotocol/client" : "@modelcontextprotocol/sdk";
const sdk = v2
  ? { ...(await import("@modelcontextprotocol/client")), ...(await import("@modelcontextprotocol/client/stdio")) }
  : {
      ...(await import("@modelcontextprotocol/sdk/client/index.js")),
      ...(await import("@modelcontextprotocol/sdk/client/stdio.js")),
      ...(await import("@modelcontextprotocol/sdk/client/streamableHttp.js")),
    };
const { Client, StdioClientTransport, StreamableHTTPClientTransport } = sdk;
const sdkVersion = JSON.parse(readFileSync(new URL(`node_modules/${pkg}/package.json`, import.meta.url), "utf8")).version;

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

const report = { sdk: pkg, sdkVersion, transport: config.transport, calls: {} };
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

  // app samples and the keep-or-revert comparison (a null verdict interval must match the schema)
  c.report_samples = await call(client, "report_app_metric", { name: "ts.ms", unit: "ms", values: [3, 4, 5, 6] });
  c.report_value = await call(client, "report_app_metric", { name: "ts.one", unit: "ms", value: 2 });
  c.compare_windows = await call(client, "compare_windows", { metric: "ts.ms", txid });
  c.compare_windows_seconds = await call(client, "compare_windows", {
    metric: "ts.ms",
    before: [600, 300],
    after: [300, 0],
  });

  // read_telemetry's two levels: the schema names each level's model in if/then/else
  c.read_telemetry = await call(client, "read_telemetry", { window_s: 1, fresh: true });
  c.read_telemetry_full = await call(client, "read_telemetry", { window_s: 1, fresh: true, detail: "full" });

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
