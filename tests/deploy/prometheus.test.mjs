// A real Prometheus scrapes a running tokenbrokerd with the shipped alert
// rules: a client secret 5 days from expiry shows the critical expiry alert
// through Prometheus' own API (and one 20 days out the warning), the broker
// killed shows TokenbrokerDown pending, and every metric the dashboard and the
// alerts query exists on the broker's page.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import {
  binDir, dashboardSource, rulesSource, ruleFileFromSource, freePort, httpGet, must, run, startProcess,
  tempDir, waitFor, keyringYaml, YAML,
} from "./lib.mjs";

const work = tempDir();
const day = 86400 * 1000;
const iso = (ms) => new Date(ms).toISOString().replace(/\.\d+Z$/, "Z");

fs.mkdirSync(path.join(work, "var"), { mode: 0o700 });
fs.writeFileSync(path.join(work, "var/keyring.yaml"), keyringYaml(), { mode: 0o600 });
fs.writeFileSync(path.join(work, "secret-a"), "client-secret-a-0123456789", { mode: 0o600 });
fs.writeFileSync(path.join(work, "secret-b"), "client-secret-b-0123456789", { mode: 0o600 });
fs.writeFileSync(path.join(work, "secret-c"), "client-secret-c-0123456789", { mode: 0o600 });
const now = Date.now();
fs.writeFileSync(path.join(work, "broker.yaml"), YAML.stringify({
  server: { grpc_address: "127.0.0.1:0", metrics_address: "127.0.0.1:0", plaintext: true, shutdown_grace_period: "2s" },
  store: { sqlite: { path: path.join(work, "var/tokenbroker.db") } },
  keys: { keyring_file: path.join(work, "var/keyring.yaml") },
  auth: { local_caller: "local", rules: [{ callers: ["local"], actions: ["*"], grants: ["*"] }] },
  apps: [{
    id: "contoso", provider: "microsoft", tenant: "contoso.onmicrosoft.com",
    client_id: "11111111-2222-3333-4444-555555555555",
    credentials: [
      { id: "in-5-days", client_secret_file: path.join(work, "secret-a"), not_after: iso(now + 5 * day) },
      { id: "in-20-days", client_secret_file: path.join(work, "secret-b"), not_after: iso(now + 20 * day) },
      { id: "in-90-days", client_secret_file: path.join(work, "secret-c"), not_after: iso(now + 90 * day) },
    ],
  }],
}));

const broker = startProcess(path.join(binDir, "tokenbrokerd"), ["--config", path.join(work, "broker.yaml")], { cwd: work });
let prometheus;
after(async () => {
  if (prometheus?.exited === null) prometheus.child.kill("SIGTERM");
  if (broker.exited === null) broker.child.kill("SIGKILL");
});

const serving = await waitFor("the broker's serving line", 60, async () => {
  const line = broker.err.split("\n").find((l) => l.includes('"msg":"serving"'));
  if (broker.exited) throw new Error(`tokenbrokerd exited: ${broker.err}`);
  return line && JSON.parse(line);
});
const metricsAddress = serving.metrics_address;

// A delegated grant, so the per-grant series exist.
fs.writeFileSync(path.join(work, "refresh-token"), "0.AAAA-refresh-token-for-the-test", { mode: 0o600 });
must(path.join(binDir, "tokenbrokerctl"), ["--target", serving.grpc_address, "grant", "import", "alice", "--app", "contoso",
  "--mailbox", "alice@contoso.com", "--refresh-token-file", path.join(work, "refresh-token")]);

const promPort = await freePort();
const promUrl = `http://127.0.0.1:${promPort}`;
fs.writeFileSync(path.join(work, "rules.yaml"), ruleFileFromSource());
fs.writeFileSync(path.join(work, "prometheus.yml"), YAML.stringify({
  global: { scrape_interval: "1s", evaluation_interval: "1s" },
  rule_files: [path.join(work, "rules.yaml")],
  scrape_configs: [{ job_name: "tokenbroker", static_configs: [{ targets: [metricsAddress] }] }],
}));
prometheus = startProcess("prometheus", [`--config.file=${path.join(work, "prometheus.yml")}`,
  `--storage.tsdb.path=${path.join(work, "tsdb")}`, `--web.listen-address=127.0.0.1:${promPort}`,
  "--web.enable-lifecycle", "--log.level=warn"]);

async function activeAlerts() {
  const r = await httpGet(`${promUrl}/api/v1/alerts`);
  if (r.status !== 200) return undefined;
  return JSON.parse(r.text).data.alerts;
}

function metricNames(expr) {
  // Identifiers that name series in a PromQL expression (not functions,
  // label names, keywords or durations).
  const names = new Set();
  for (const m of expr.matchAll(/\b(tokenbroker_[a-z_]+|process_[a-z_]+)\b/g)) names.add(m[1]);
  return [...names];
}

test("every metric the dashboard and the alerts query is on the broker's page", async () => {
  const page = (await httpGet(`http://${metricsAddress}/metrics`)).text;
  const exposed = new Set(page.split("\n").filter((l) => l && !l.startsWith("#")).map((l) => l.split(/[{ ]/)[0]));
  const dashboard = JSON.parse(fs.readFileSync(dashboardSource, "utf8"));
  const exprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
  const rules = YAML.parse(fs.readFileSync(rulesSource, "utf8")).spec.groups.flatMap((g) => g.rules.map((r) => r.expr));
  assert.ok(exprs.length >= 15, "the dashboard has its queries");
  for (const expr of [...exprs, ...rules]) {
    for (const name of metricNames(expr)) assert.ok(exposed.has(name), `${name} (in ${expr}) is not on /metrics`);
  }
  // The page passes Prometheus' own lint.
  const lint = run("promtool", ["check", "metrics"], { input: page });
  assert.equal(lint.code, 0, lint.out + lint.err);
});

test("a client secret 5 days from expiry fires the critical alert in a real Prometheus", async () => {
  const alerts = await waitFor("the expiry alerts", 90, async () => {
    const all = await activeAlerts();
    const critical = all?.find((a) => a.labels.alertname === "TokenbrokerAppCredentialExpiringCritical");
    const warning = all?.find((a) => a.labels.alertname === "TokenbrokerAppCredentialExpiring");
    // TokenbrokerNotScraped is pending until the first scrape lands.
    const unscraped = all?.some((a) => a.labels.alertname === "TokenbrokerNotScraped");
    return critical && warning && !unscraped && all;
  });
  const expiry = alerts.filter((a) => a.labels.alertname.startsWith("TokenbrokerAppCredentialExpiring"));
  assert.deepEqual(expiry.map((a) => [a.labels.alertname, a.labels.credential, a.labels.severity, a.state]).sort(), [
    ["TokenbrokerAppCredentialExpiring", "in-20-days", "warning", "firing"],
    ["TokenbrokerAppCredentialExpiringCritical", "in-5-days", "critical", "firing"],
  ]);
  const critical = expiry.find((a) => a.labels.severity === "critical");
  assert.equal(critical.labels.app, "contoso");
  assert.equal(critical.annotations.summary, "client_secret contoso/in-5-days expires in under 7 days (or has expired)");
  assert.equal(critical.annotations.runbook_url,
    "https://github.com/tokenbroker/tokenbroker/blob/main/docs/operations.md#tokenbrokerappcredentialexpiringcritical");
  // Nothing else is wrong with this broker.
  const others = alerts.filter((a) => !a.labels.alertname.startsWith("TokenbrokerAppCredentialExpiring"));
  assert.deepEqual(others.map((a) => a.labels.alertname), []);
});

test("a killed broker shows TokenbrokerDown in Prometheus", async () => {
  broker.child.kill("SIGKILL");
  await broker.done;
  const down = await waitFor("TokenbrokerDown", 60, async () =>
    (await activeAlerts())?.find((a) => a.labels.alertname === "TokenbrokerDown"));
  assert.equal(down.state, "pending");  // fires after 5 minutes (promtool tests the timing)
  assert.equal(down.labels.instance, metricsAddress);
  assert.equal(down.labels.severity, "critical");
  const r = await fetch(`${promUrl}/-/quit`, { method: "POST" });
  assert.equal(r.status, 200);
  await prometheus.done;
});
