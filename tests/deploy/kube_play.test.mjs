// The Helm chart's single-replica manifests, rendered as a user renders them,
// run under `podman kube play` with the image of the deploy_image_build
// fixture: the broker comes up read-only as uid 10001 with the chart's
// ConfigMap, keyring Secret and volume claim, and answers health (plaintext
// health port and TLS) and /metrics from the host.
//
// What podman 4.3 cannot play is adapted, and only that: it has no
// StatefulSet (played as a Deployment with the claim as a
// PersistentVolumeClaim), no Service (host ports on 127.0.0.1 stand in), and
// its secret volumes ignore defaultMode and fsGroup and do not decode `data`,
// so each Secret the pod mounts is written to a directory the way the kubelet
// writes it (decoded, `items` applied, mode defaultMode, group fsGroup) and
// mounted as a hostPath.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import {
  binDir, freePort, helmTemplate, httpGet, makeCertificates, must, parseDocs, projectVersion, run, tempDir,
  waitFor, YAML,
} from "./lib.mjs";
import { podman, imageName } from "./podman.mjs";

const work = tempDir();
const ctl = path.join(binDir, "tokenbrokerctl");
const release = `kp${process.pid}`;
const playFile = path.join(work, "play.yaml");

const certs = makeCertificates(fs.mkdtempSync(path.join(work, "certs-")), [`${release}-tokenbroker`]);
const key = must("openssl", ["rand", "-base64", "32"]).trim();
const valuesFile = path.join(work, "values.yaml");
fs.writeFileSync(valuesFile, YAML.stringify({
  keyring: { active: "k1", keys: { k1: key } },
  tls: { secretName: `${release}-tls` },
  config: { log: { level: "info" } },
}));
const rendered = parseDocs(helmTemplate({ release, namespace: "default", valuesFiles: [valuesFile], extra: ["--skip-tests"] }));
// The TLS Secret the user (or cert-manager) provides.
const tlsSecret = {
  apiVersion: "v1", kind: "Secret", metadata: { name: `${release}-tls` }, type: "kubernetes.io/tls",
  data: Object.fromEntries([["tls.crt", certs.cert], ["tls.key", certs.key], ["ca.crt", certs.ca]]
    .map(([k, f]) => [k, fs.readFileSync(f).toString("base64")])),
};
const secrets = Object.fromEntries([...rendered.filter((o) => o.kind === "Secret"), tlsSecret].map((s) => [s.metadata.name, s]));

const statefulSet = rendered.find((o) => o.kind === "StatefulSet");
const configMaps = rendered.filter((o) => o.kind === "ConfigMap");
const ports = { grpc: await freePort(), health: await freePort(), metrics: await freePort() };

// The kubelet's secret volume: decoded files, `items` applied, defaultMode,
// owned by root with the pod's fsGroup as group.
function materializeSecret(volume, fsGroup) {
  const secret = secrets[volume.secret.secretName];
  const dir = path.join(work, "secrets", volume.name);
  fs.mkdirSync(dir, { recursive: true });
  if (!secret) {
    assert.ok(volume.secret.optional, `Secret ${volume.secret.secretName} is not optional and not rendered`);
    return dir;
  }
  const values = {
    ...Object.fromEntries(Object.entries(secret.data ?? {}).map(([k, v]) => [k, Buffer.from(v, "base64")])),
    ...Object.fromEntries(Object.entries(secret.stringData ?? {}).map(([k, v]) => [k, Buffer.from(v)])),
  };
  const items = volume.secret.items ?? Object.keys(values).map((k) => ({ key: k, path: k }));
  for (const item of items) {
    const file = path.join(dir, item.path);
    fs.writeFileSync(file, values[item.key]);
    fs.chmodSync(file, volume.secret.defaultMode ?? 0o644);
    fs.chownSync(file, 0, fsGroup);
  }
  return dir;
}

function playManifests() {
  const template = structuredClone(statefulSet.spec.template);
  const spec = template.spec;
  const claim = statefulSet.spec.volumeClaimTemplates[0];
  const claimName = `${release}-${claim.metadata.name}`;
  spec.volumes = spec.volumes.map((v) => (v.secret
    ? { name: v.name, hostPath: { path: materializeSecret(v, spec.securityContext.fsGroup), type: "Directory" } }
    : v));
  spec.volumes.push({ name: claim.metadata.name, persistentVolumeClaim: { claimName } });
  for (const p of spec.containers[0].ports) {
    p.hostPort = ports[p.name];
    p.hostIP = "127.0.0.1";
  }
  const deployment = {
    apiVersion: "apps/v1", kind: "Deployment", metadata: { name: statefulSet.metadata.name },
    spec: { replicas: 1, selector: statefulSet.spec.selector, template },
  };
  const pvc = { apiVersion: "v1", kind: "PersistentVolumeClaim", metadata: { name: claimName }, spec: claim.spec };
  return [...configMaps, pvc, deployment].map((o) => YAML.stringify(o)).join("---\n");
}

after(() => {
  podman(["kube", "down", playFile]);
  podman(["volume", "rm", "-f", `${release}-data`]);
});

test("the chart's single-replica manifests run under podman kube play and answer from the host", async () => {
  assert.equal(statefulSet.spec.replicas, 1);
  assert.equal(statefulSet.spec.template.spec.containers[0].image, imageName);
  fs.writeFileSync(playFile, playManifests());
  const play = podman(["kube", "play", playFile]);
  assert.equal(play.code, 0, play.err + play.out);
  const container = podman(["ps", "-a", "--format", "{{.Names}}", "--filter", `pod=${release}-tokenbroker-pod-0`]).out
    .split("\n").find((n) => n && !n.includes("infra"));
  assert.ok(container, `no broker container: ${podman(["ps", "-a"]).out}`);
  const logs = () => podman(["logs", container]).err;

  await waitFor("health SERVING on the health port", 60, async () => {
    const r = run(ctl, ["--target", `127.0.0.1:${ports.health}`, "--timeout", "2s", "health"]);
    if (r.code === 0 && r.out === "SERVING\n") return true;
    throw new Error(`${r.err.trim()}; container ${podman(["inspect", "--format", "{{.State.Status}}", container]).out.trim()}:\n${logs()}`);
  });
  const tls = run(ctl, ["--target", `127.0.0.1:${ports.grpc}`, "--ca-file", certs.ca, "health"]);
  assert.equal(tls.code, 0, tls.err);
  assert.equal(tls.out, "SERVING\n");
  const metrics = await httpGet(`http://127.0.0.1:${ports.metrics}/metrics`);
  assert.equal(metrics.status, 200);
  assert.match(metrics.text, new RegExp(`tokenbroker_build_info\\{[^}]*version="${projectVersion()}"`));

  // The pod's security context reached the container.
  const [inspect] = JSON.parse(podman(["inspect", container]).out);
  assert.equal(inspect.HostConfig.ReadonlyRootfs, true);
  assert.match(inspect.Config.User, /^10001(:10001)?$/);
  assert.ok(inspect.HostConfig.CapDrop.length > 0 && inspect.HostConfig.CapAdd.length === 0,
    `capabilities: drop ${inspect.HostConfig.CapDrop} add ${inspect.HostConfig.CapAdd}`);
  assert.match(logs(), /"msg":"serving"/);
  assert.match(logs(), /"step":"start-health-listener"/);
  const down = podman(["kube", "down", playFile]);
  assert.equal(down.code, 0, down.err);
});
