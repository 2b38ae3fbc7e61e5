// The Helm chart and the kustomize overlays, checked without a cluster as
// strictly as one would: helm lint --strict, the values schema, every rendered
// object against the Kubernetes / Prometheus Operator / cert-manager types with
// unknown fields as errors, the rendered configuration through
// `tokenbrokerd --check-config`, the restricted Pod Security Standard on every
// pod, and no secret in any ConfigMap.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import {
  chartDir, kustomizeDir, binDir, dashboardSource, rulesSource, helm, helmStderr, helmTemplate, kustomize,
  parseDocs, objectName, strictTypeCheck, projectVersion, tempDir, run, YAML,
} from "./lib.mjs";

const examplesDir = path.join(chartDir, "examples");
const examples = fs.readdirSync(examplesDir).filter((f) => f.endsWith(".yaml")).sort();
const work = tempDir();

// Values with every secret inline and every optional object on, so that the
// secret and ConfigMap checks see all of them.
const inlineSecretsValues = path.join(work, "inline-secrets.yaml");
fs.writeFileSync(inlineSecretsValues, YAML.stringify({
  replicaCount: 2,
  store: { type: "postgres", postgres: { dsn: "host=pg dbname=tb user=tb password=pg-password-5f1d2c" } },
  keyring: { active: "k1", keys: { k1: "c2VjcmV0LWtleS1ieXRlcy0wMTIzNDU2Nzg5YWJjZGVmZ2g=" } },
  appSecrets: { files: { "contoso-secret": "client-secret-value-8e7d6c5b" } },
  tls: { clientAuth: true, certManager: { enabled: true, issuerRef: { name: "ca" } } },
  serviceAccountIdentities: { enabled: true },
  config: {
    apps: [{ id: "contoso", provider: "microsoft", tenant: "contoso.onmicrosoft.com",
      client_id: "11111111-2222-3333-4444-555555555555",
      credentials: [{ id: "s1", client_secret_file: "/etc/tokenbroker/app-secrets/contoso-secret", not_after: "2027-06-30" }] }],
  },
  metrics: { serviceMonitor: { enabled: true }, prometheusRule: { enabled: true }, dashboard: { enabled: true } },
}));

// Every rendering under test: label -> objects.
function renderings() {
  const out = {
    "helm defaults": parseDocs(helmTemplate()),
    "helm inline secrets": parseDocs(helmTemplate({ valuesFiles: [inlineSecretsValues] })),
  };
  for (const f of examples) out[`helm ${f}`] = parseDocs(helmTemplate({ valuesFiles: [path.join(examplesDir, f)] }));
  for (const o of ["overlays/single", "overlays/postgres", "examples/single-with-monitoring"]) {
    out[`kustomize ${o}`] = parseDocs(kustomize(path.join(kustomizeDir, o)));
  }
  return out;
}
const rendered = renderings();

function podSpecs(objects) {
  const out = [];
  for (const o of objects) {
    if (o.kind === "Pod") out.push([objectName(o), o.spec]);
    if (o.kind === "Deployment" || o.kind === "StatefulSet") out.push([objectName(o), o.spec.template.spec]);
  }
  return out;
}

test("helm lint --strict passes with the default values and every example", () => {
  for (const values of [null, ...examples.map((f) => path.join(examplesDir, f)), inlineSecretsValues]) {
    const r = helm(["lint", "--strict", chartDir, ...(values ? ["-f", values] : [])]);
    assert.equal(r.code, 0, `${values ?? "defaults"}:\n${r.out}\n${helmStderr(r.err)}`);
    assert.match(r.out, /1 chart\(s\) linted, 0 chart\(s\) failed/);
  }
});

test("the values schema rejects a misspelt key and a wrong type, naming them", () => {
  const typo = path.join(work, "typo.yaml");
  fs.writeFileSync(typo, "image:\n  tagg: 0.1.0\n");
  assert.throws(() => helmTemplate({ valuesFiles: [typo] }), /image: Additional property tagg is not allowed/);
  fs.writeFileSync(typo, "metrics:\n  serviceMonitor:\n    enable: true\n");
  assert.throws(() => helmTemplate({ valuesFiles: [typo] }),
    /metrics\.serviceMonitor: Additional property enable is not allowed/);
  fs.writeFileSync(typo, "config:\n  server:\n    grpc_address: 0.0.0.0:1\n");
  assert.throws(() => helmTemplate({ valuesFiles: [typo] }), /config: Additional property server is not allowed/);
  assert.throws(() => helmTemplate({ set: ["replicaCount=three"] }),
    /replicaCount: Invalid type. Expected: integer, given: string/);
  assert.throws(() => helmTemplate({ set: ["store.type=mysql"] }), /store\.type: store\.type must be one of/);
  assert.throws(() => helmTemplate({ set: ["networkPolicy.enabled=yes please"] }),
    /networkPolicy\.enabled: Invalid type. Expected: boolean, given: string/);
  // helm lint reports the same.
  const r = helm(["lint", "--strict", chartDir, "--set", "service.grpcPort=0"]);
  assert.notEqual(r.code, 0);
  assert.match(r.out + r.err, /service\.grpcPort: Must be greater than or equal to 1/);
});

test("several replicas are refused unless the store is PostgreSQL", () => {
  assert.throws(() => helmTemplate({ set: ["replicaCount=3"] }),
    /replicaCount is 3 but store.type is "sqlite": SQLite is single-process; set store.type=postgres/);
  assert.throws(() => helmTemplate({ set: ["store.type=postgres"] }),
    /store.type is postgres: set store.postgres.existingSecret/);
  const objects = parseDocs(helmTemplate({ set: ["replicaCount=3", "store.type=postgres", "store.postgres.existingSecret=pg"] }));
  const deployment = objects.find((o) => o.kind === "Deployment");
  assert.equal(deployment.spec.replicas, 3);
  assert.equal(objects.find((o) => o.kind === "StatefulSet"), undefined);
  // SQLite: a StatefulSet of exactly one, with its volume claim.
  const single = parseDocs(helmTemplate()).find((o) => o.kind === "StatefulSet");
  assert.equal(single.spec.replicas, 1);
  assert.equal(single.spec.volumeClaimTemplates[0].metadata.name, "data");
});

test("every rendered object passes the strict Kubernetes types (unknown fields are errors)", () => {
  const items = [];
  for (const [label, objects] of Object.entries(rendered)) {
    for (const o of objects) items.push({ label: `${label}: ${objectName(o)}`, object: o });
  }
  items.push({ label: "dashboard.json", object: JSON.parse(fs.readFileSync(dashboardSource, "utf8")), type: "grafana-dashboard" });
  const kinds = new Set(items.map((i) => i.object.kind ?? "Dashboard"));
  for (const k of ["ConfigMap", "Secret", "Service", "ServiceAccount", "StatefulSet", "Deployment", "Pod",
    "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor", "PrometheusRule", "Certificate", "Dashboard"]) {
    assert.ok(kinds.has(k), `no ${k} among the rendered objects`);
  }
  assert.equal(strictTypeCheck(items), "");
});

test("the strict check catches a misspelt field, a wrong type and a missing field", () => {
  const deployment = rendered["helm inline secrets"].find((o) => o.kind === "Deployment");
  const typo = structuredClone(deployment);
  typo.spec.template.spec.containers[0].imagee = typo.spec.template.spec.containers[0].image;
  assert.match(strictTypeCheck([{ label: "typo", object: typo }]), /typo: .*'"imagee"' does not exist in type 'IContainer'/);
  const wrongType = structuredClone(deployment);
  wrongType.spec.replicas = "two";
  assert.match(strictTypeCheck([{ label: "wrong", object: wrongType }]), /wrong: .*Type 'string' is not assignable to type 'number'/);
  const rule = rendered["helm inline secrets"].find((o) => o.kind === "PrometheusRule");
  const noExpr = structuredClone(rule);
  delete noExpr.spec.groups[0].rules[0].expr;
  assert.match(strictTypeCheck([{ label: "rule", object: noExpr }]), /rule: .*Property '"expr"' is missing/);
  const dashboard = JSON.parse(fs.readFileSync(dashboardSource, "utf8"));
  dashboard.panels[1].gridPoss = dashboard.panels[1].gridPos;
  assert.match(strictTypeCheck([{ label: "dash", object: dashboard, type: "grafana-dashboard" }]), /dash: .*'"gridPoss"' does not exist/);
});

test("the rendered broker configuration passes tokenbrokerd --check-config", () => {
  for (const [label, objects] of Object.entries(rendered)) {
    const configMaps = objects.filter((o) => o.kind === "ConfigMap" && o.data?.["config.yaml"]);
    assert.equal(configMaps.length, 1, `${label}: one configuration ConfigMap`);
    const file = path.join(work, "config.yaml");
    fs.writeFileSync(file, configMaps[0].data["config.yaml"]);
    const r = run(path.join(binDir, "tokenbrokerd"), ["--config", file, "--check-config"]);
    assert.equal(r.code, 0, `${label}: ${r.err}`);
    assert.match(r.out, /configuration OK/);
    const config = YAML.parse(configMaps[0].data["config.yaml"]);
    assert.equal(config.server.health_address, "[::]:50052", label);
    assert.equal(config.keys.keyring_file, "/etc/tokenbroker/keyring/keyring.yaml", label);
    assert.ok(config.server.tls.certificate_file, `${label}: TLS off loopback`);
  }
});

test("every pod follows the restricted Pod Security Standard", () => {
  for (const [label, objects] of Object.entries(rendered)) {
    const pods = podSpecs(objects);
    assert.ok(pods.length > 0, `${label}: no pod`);
    const saIdentities = label.includes("service-account-identities") || label.includes("inline secrets");
    for (const [name, spec] of pods) {
      const where = `${label}: ${name}`;
      assert.equal(spec.securityContext?.runAsNonRoot, true, `${where}: runAsNonRoot`);
      assert.ok(spec.securityContext?.runAsUser > 0, `${where}: runAsUser`);
      assert.equal(spec.securityContext?.seccompProfile?.type, "RuntimeDefault", `${where}: seccomp`);
      for (const key of ["hostNetwork", "hostPID", "hostIPC"]) assert.ok(!spec[key], `${where}: ${key}`);
      for (const v of spec.volumes ?? []) assert.equal(v.hostPath, undefined, `${where}: hostPath volume ${v.name}`);
      if (!saIdentities) assert.equal(spec.automountServiceAccountToken, false, `${where}: no service-account token`);
      for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
        const sc = c.securityContext ?? {};
        assert.equal(sc.allowPrivilegeEscalation, false, `${where}/${c.name}: allowPrivilegeEscalation`);
        assert.equal(sc.readOnlyRootFilesystem, true, `${where}/${c.name}: readOnlyRootFilesystem`);
        assert.ok(sc.capabilities?.drop?.includes("ALL"), `${where}/${c.name}: drop ALL`);
        assert.equal(sc.capabilities?.add, undefined, `${where}/${c.name}: no added capability`);
        assert.notEqual(sc.privileged, true, `${where}/${c.name}: privileged`);
        assert.notEqual(sc.runAsUser, 0, `${where}/${c.name}: root`);
        assert.ok(c.resources?.limits?.memory && c.resources?.requests?.cpu, `${where}/${c.name}: resources`);
      }
      if (name.startsWith("Pod/")) continue;  // the helm test pod: no probes
      const broker = spec.containers[0];
      for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
        assert.equal(broker[probe]?.grpc?.port, 50052, `${where}: native gRPC ${probe} on the health listener`);
      }
    }
  }
});

test("no Secret value appears in any ConfigMap, and secrets are mounted from Secrets", () => {
  for (const [label, objects] of Object.entries(rendered)) {
    const secretValues = [];
    for (const s of objects.filter((o) => o.kind === "Secret")) {
      for (const v of Object.values(s.stringData ?? {})) secretValues.push(String(v));
      for (const v of Object.values(s.data ?? {})) secretValues.push(Buffer.from(v, "base64").toString());
    }
    const configText = objects.filter((o) => o.kind === "ConfigMap").map((o) => JSON.stringify(o)).join("\n");
    for (const v of secretValues) {
      for (const piece of v.split(/\s+/).filter((p) => p.length >= 12)) {
        assert.ok(!configText.includes(piece), `${label}: a Secret's value is in a ConfigMap`);
      }
    }
    // The keyring, TLS key and DSN reach the pod only as Secret volumes.
    for (const [name, spec] of podSpecs(objects)) {
      if (name.startsWith("Pod/")) continue;
      const volumes = Object.fromEntries((spec.volumes ?? []).map((v) => [v.name, v]));
      for (const v of ["keyring", "tls"]) assert.ok(volumes[v]?.secret, `${label}: ${v} from a Secret`);
      assert.equal(volumes.keyring.secret.defaultMode, 0o440, `${label}: keyring readable by the group only`);
      if (volumes.postgres) assert.ok(volumes.postgres.secret, `${label}: the DSN from a Secret`);
    }
  }
  const inline = rendered["helm inline secrets"];
  assert.equal(inline.filter((o) => o.kind === "Secret").length, 3, "keyring, DSN and app secrets");
  assert.ok(JSON.stringify(inline).includes("pg-password-5f1d2c"), "the test put the DSN somewhere");
});

test("the chart's appVersion, the image tags and the chart's objects follow the project", () => {
  const version = projectVersion();
  const chart = YAML.parse(fs.readFileSync(path.join(chartDir, "Chart.yaml"), "utf8"));
  assert.equal(chart.appVersion, version, "Chart.yaml appVersion = CMakeLists.txt VERSION");
  const image = (objects) => podSpecs(objects)[0][1].containers[0].image;
  assert.equal(image(rendered["helm defaults"]), `tokenbroker:${version}`);
  assert.equal(image(rendered["kustomize overlays/single"]), `tokenbroker:${version}`);
  assert.equal(image(rendered["kustomize overlays/postgres"]), `tokenbroker:${version}`);
  // kustomize and Helm render the same kinds of objects for the same setup.
  const kinds = (objects) => objects.map((o) => o.kind).filter((k) => k !== "Pod").sort();
  assert.deepEqual(kinds(rendered["kustomize overlays/single"]), kinds(rendered["helm defaults"]));
});

test("the alerts and the dashboard have one source, used by kustomize and Helm alike", () => {
  const source = YAML.parse(fs.readFileSync(rulesSource, "utf8"));
  const fromHelm = rendered["helm inline secrets"].find((o) => o.kind === "PrometheusRule");
  const fromKustomize = rendered["kustomize examples/single-with-monitoring"].find((o) => o.kind === "PrometheusRule");
  assert.deepEqual(fromHelm.spec, source.spec);
  assert.deepEqual(fromKustomize.spec, source.spec);
  const dashboard = fs.readFileSync(dashboardSource, "utf8");
  const helmDashboard = rendered["helm inline secrets"].find((o) => o.kind === "ConfigMap" && o.data?.["tokenbroker.json"]);
  assert.deepEqual(JSON.parse(helmDashboard.data["tokenbroker.json"]), JSON.parse(dashboard));
  const kDashboard = rendered["kustomize examples/single-with-monitoring"].find((o) => o.kind === "ConfigMap" && o.data?.["tokenbroker.json"]);
  assert.deepEqual(JSON.parse(kDashboard.data["tokenbroker.json"]), JSON.parse(dashboard));
  assert.equal(kDashboard.metadata.labels.grafana_dashboard, "1");
  // Every alert has a severity, a summary and a runbook section that exists.
  const operations = fs.readFileSync(path.join(chartDir, "../../docs/operations.md"), "utf8");
  for (const group of source.spec.groups) {
    for (const rule of group.rules) {
      assert.ok(["warning", "critical"].includes(rule.labels?.severity), `${rule.alert}: severity`);
      assert.ok(rule.annotations?.summary, `${rule.alert}: summary`);
      const anchor = rule.alert.toLowerCase();
      assert.equal(rule.annotations?.runbook_url,
        `https://github.com/tokenbroker/tokenbroker/blob/main/docs/operations.md#${anchor}`);
      assert.match(operations, new RegExp(`^## ${rule.alert}$`, "m"), `docs/operations.md has a section ${rule.alert}`);
    }
  }
});

test("the packaged chart carries the linked alerts and dashboard and renders the same", () => {
  const out = tempDir();
  const r = helm(["package", chartDir, "-d", out]);
  assert.equal(r.code, 0, helmStderr(r.err));
  const tgz = path.join(out, `tokenbroker-${YAML.parse(fs.readFileSync(path.join(chartDir, "Chart.yaml"), "utf8")).version}.tgz`);
  assert.ok(fs.existsSync(tgz), r.out);
  const packaged = helm(["template", "tb", tgz, "--namespace", "mail", "--kube-version", "1.30.0", "-f", inlineSecretsValues,
    "--api-versions", "monitoring.coreos.com/v1", "--api-versions", "cert-manager.io/v1"]);
  assert.equal(packaged.code, 0, helmStderr(packaged.err));
  assert.deepEqual(parseDocs(packaged.out), rendered["helm inline secrets"]);
});

