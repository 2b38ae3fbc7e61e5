// Helpers of the deploy tests: the real Helm, kubectl (kustomize), promtool,
// podman and TypeScript, run as a platform engineer would run them.
import { spawnSync, spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const here = path.dirname(fileURLToPath(import.meta.url));
export const sourceDir = process.env.TOKENBROKER_SOURCE_DIR || path.resolve(here, "../..");
export const binDir = process.env.TOKENBROKER_BIN_DIR || path.join(sourceDir, "build/asan/bin");
export const nodeDir = path.join(sourceDir, "tests/deploy/node");
export const toolsDir = path.join(nodeDir, "node_modules/.tools");
export const chartDir = path.join(sourceDir, "helm/tokenbroker");
export const kustomizeDir = path.join(sourceDir, "deploy/kubernetes");
export const rulesSource = path.join(kustomizeDir, "components/monitoring/prometheusrule.yaml");
export const dashboardSource = path.join(kustomizeDir, "components/monitoring/dashboard.json");
const require = createRequire(path.join(nodeDir, "package.json"));
export const YAML = require("yaml");

// A private temporary directory, removed when the process exits.
export function tempDir(prefix = "tokenbroker-deploy-") {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  process.on("exit", () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const helmHome = tempDir("tokenbroker-helm-");
const kubeconfig = path.join(helmHome, "kubeconfig");
fs.writeFileSync(kubeconfig, "");
// Helm keeps its state out of $HOME, and no cluster is ever contacted.
export const toolEnv = {
  ...process.env,
  HELM_CACHE_HOME: path.join(helmHome, "cache"),
  HELM_CONFIG_HOME: path.join(helmHome, "config"),
  HELM_DATA_HOME: path.join(helmHome, "data"),
  KUBECONFIG: kubeconfig,
};

// Runs a command to its end; returns {code, out, err}.
export function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: "utf8", env: toolEnv, maxBuffer: 256 << 20, ...opts });
  if (r.error) throw r.error;
  return { code: r.status, signal: r.signal, out: r.stdout, err: r.stderr };
}

// Runs a command that must succeed; returns its stdout.
export function must(cmd, args, opts = {}) {
  const r = run(cmd, args, opts);
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} exited ${r.code ?? r.signal}:\n${r.err}\n${r.out}`);
  }
  return r.out;
}

// Helm prints a notice for each linked file under files/ (the one source of
// the alerts and dashboard lives in deploy/); everything else it says stays.
export function helmStderr(err) {
  return err
    .split("\n")
    .filter((l) => !/found symbolic link in path/.test(l))
    .join("\n")
    .trim();
}

export const helm = (args) => run(path.join(toolsDir, "helm"), args);

// Renders the chart with extra values files and --set pairs; throws with
// Helm's message on failure.
export function helmTemplate({ valuesFiles = [], set = [], release = "tb", namespace = "mail", extra = [] } = {}) {
  const args = ["template", release, chartDir, "--namespace", namespace, "--kube-version", "1.30.0",
    "--api-versions", "monitoring.coreos.com/v1", "--api-versions", "cert-manager.io/v1", ...extra];
  for (const f of valuesFiles) args.push("-f", f);
  for (const s of set) args.push("--set", s);
  const r = helm(args);
  if (r.code !== 0) throw new Error(`helm template failed: ${helmStderr(r.err)}`);
  return r.out;
}

export function kustomize(dir) {
  return must(path.join(toolsDir, "kubectl"), ["kustomize", dir]);
}

// Every non-empty YAML document of a multi-document stream, as plain objects.
export function parseDocs(text) {
  return YAML.parseAllDocuments(text, { version: "1.1" })
    .map((d) => {
      if (d.errors.length > 0) throw new Error(`YAML: ${d.errors[0].message}`);
      return d.toJS();
    })
    .filter((o) => o !== null && o !== undefined);
}

export function objectName(o) {
  return `${o.kind}/${o.metadata?.name}`;
}

// The TypeScript type of each kind we render, from the pinned model packages.
const typeModules = {
  "v1/ConfigMap": ["kubernetes-models/v1/ConfigMap", "IConfigMap"],
  "v1/Secret": ["kubernetes-models/v1/Secret", "ISecret"],
  "v1/Service": ["kubernetes-models/v1/Service", "IService"],
  "v1/ServiceAccount": ["kubernetes-models/v1/ServiceAccount", "IServiceAccount"],
  "v1/Pod": ["kubernetes-models/v1/Pod", "IPod"],
  "v1/PersistentVolumeClaim": ["kubernetes-models/v1/PersistentVolumeClaim", "IPersistentVolumeClaim"],
  "apps/v1/Deployment": ["kubernetes-models/apps/v1/Deployment", "IDeployment"],
  "apps/v1/StatefulSet": ["kubernetes-models/apps/v1/StatefulSet", "IStatefulSet"],
  "policy/v1/PodDisruptionBudget": ["kubernetes-models/policy/v1/PodDisruptionBudget", "IPodDisruptionBudget"],
  "networking.k8s.io/v1/NetworkPolicy": ["kubernetes-models/networking.k8s.io/v1/NetworkPolicy", "INetworkPolicy"],
  "monitoring.coreos.com/v1/ServiceMonitor": ["@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor", "IServiceMonitor"],
  "monitoring.coreos.com/v1/PrometheusRule": ["@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule", "IPrometheusRule"],
  "cert-manager.io/v1/Certificate": ["@kubernetes-models/cert-manager/cert-manager.io/v1/Certificate", "ICertificate"],
};

// Checks objects strictly against their Kubernetes (or Grafana) types with
// `tsc --strict`: unknown fields, wrong types and missing required fields are
// errors, as a strict API server would report them. `items` are
// {label, object, type?}; type "grafana-dashboard" checks a dashboard JSON.
// Returns the diagnostics, each naming the item it is about ("" when clean).
export function strictTypeCheck(items) {
  const dir = tempDir("tokenbroker-tsc-");
  fs.symlinkSync(path.join(nodeDir, "node_modules"), path.join(dir, "node_modules"));
  const imports = [];
  const body = [];
  const ranges = [];
  let line = 1;
  items.forEach((item, i) => {
    let typeName;
    if (item.type === "grafana-dashboard") {
      typeName = "Dashboard";
      if (!imports.includes("grafana")) imports.push("grafana");
    } else {
      const key = `${item.object.apiVersion}/${item.object.kind}`;
      const t = typeModules[key];
      if (!t) throw new Error(`${item.label}: no type known for ${key}`);
      typeName = `${t[1]}_${Object.keys(typeModules).indexOf(key)}`;
      if (!imports.includes(key)) imports.push(key);
    }
    const text = `export const m${i} = ${JSON.stringify(item.object, null, 2)} satisfies ${typeName};\n`;
    body.push(text);
    const lines = text.split("\n").length - 1;
    ranges.push({ from: line, to: line + lines - 1, label: item.label });
    line += lines;
  });
  const header = imports.map((key) =>
    key === "grafana"
      ? `import type { Dashboard as GrafanaDashboard } from "@grafana/schema";\n` +
        // JSON holds an enum's value ("absolute"), never the TypeScript enum
        // member: compare string enums by their values, everything else as is.
        "type JsonOf<T> = T extends string ? `${T}` : T extends (infer E)[] ? JsonOf<E>[] : " +
        "T extends object ? { [K in keyof T]: JsonOf<T[K]> } : T;\n" +
        "type Dashboard = JsonOf<GrafanaDashboard>;"
      : `import type { ${typeModules[key][1]} as ${typeModules[key][1]}_${Object.keys(typeModules).indexOf(key)} } from "${typeModules[key][0]}";`);
  const offset = header.length;
  fs.writeFileSync(path.join(dir, "check.ts"), header.join("\n") + "\n" + body.join(""));
  const tsc = path.join(nodeDir, "node_modules/typescript/bin/tsc");
  fs.writeFileSync(path.join(dir, "tsconfig.json"), JSON.stringify({
    compilerOptions: {
      noEmit: true, strict: true, skipLibCheck: true, target: "es2022", module: "commonjs",
      moduleResolution: "node10", types: [],
    },
    files: ["check.ts"],
  }));
  const r = run(process.execPath, [tsc, "-p", dir], { cwd: dir });
  if (r.code === 0) return "";
  return (r.out + r.err)
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => {
      const m = /^check\.ts\((\d+),/.exec(l);
      if (!m) return l;
      const n = Number(m[1]) - offset;
      const range = ranges.find((x) => n >= x.from && n <= x.to);
      return `${range ? range.label : "?"}: ${l}`;
    })
    .join("\n");
}

// The PrometheusRule source's spec.groups as a plain Prometheus rule file.
export function ruleFileFromSource() {
  const rule = YAML.parse(fs.readFileSync(rulesSource, "utf8"));
  return YAML.stringify({ groups: rule.spec.groups }, { lineWidth: 0 });
}

export function projectVersion() {
  const cmake = fs.readFileSync(path.join(sourceDir, "CMakeLists.txt"), "utf8");
  return /project\(tokenbroker VERSION ([0-9.]+)/.exec(cmake)[1];
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

// Polls `probe` (async, returns a value or undefined) until it returns a value
// or `seconds` pass; the last error or value is in the thrown message.
export async function waitFor(what, seconds, probe, intervalMs = 200) {
  const deadline = Date.now() + seconds * 1000;
  let last;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
      last = v;
    } catch (e) {
      last = e.message;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${seconds}s waiting for ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

// A background process whose stdout and stderr are kept; stopped at exit.
export function startProcess(cmd, args, opts = {}) {
  const child = spawn(cmd, args, { env: toolEnv, stdio: ["ignore", "pipe", "pipe"], ...opts });
  const p = { child, out: "", err: "", exited: null };
  child.stdout.on("data", (d) => (p.out += d));
  child.stderr.on("data", (d) => (p.err += d));
  p.done = new Promise((resolve) => child.on("exit", (code, signal) => {
    p.exited = { code, signal };
    resolve(p.exited);
  }));
  process.on("exit", () => {
    if (p.exited === null) child.kill("SIGKILL");
  });
  return p;
}

// A CA, and a server certificate for localhost / 127.0.0.1 and `names`, made
// with the openssl command line: {dir, ca, cert, key}.
export function makeCertificates(dir, names = []) {
  const o = (args) => must("openssl", args, { cwd: dir });
  o(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
    "-subj", "/CN=tokenbroker test CA", "-keyout", "ca.key", "-out", "ca.crt"]);
  const san = ["DNS:localhost", "IP:127.0.0.1", ...names.map((n) => `DNS:${n}`)].join(",");
  fs.writeFileSync(path.join(dir, "ext.cnf"),
    `subjectAltName=${san}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n`);
  o(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost",
    "-keyout", "tls.key", "-out", "tls.csr"]);
  o(["x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
    "-extfile", "ext.cnf", "-out", "tls.crt"]);
  return { dir, ca: path.join(dir, "ca.crt"), cert: path.join(dir, "tls.crt"), key: path.join(dir, "tls.key") };
}

// A keyring file's text with one fresh key.
export function keyringYaml() {
  const key = must("openssl", ["rand", "-base64", "32"]).trim();
  return `active: k1\nkeys:\n  k1: ${key}\n`;
}

export async function httpGet(url) {
  const r = await fetch(url);
  return { status: r.status, text: await r.text() };
}
