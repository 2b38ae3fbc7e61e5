// The container image built from the Dockerfile (by the deploy_image_build
// fixture, scripts/build-image) run as a platform engineer runs it: read-only
// root filesystem, all capabilities dropped, a volume for the SQLite database,
// a tmpfs for /tmp, configuration, keyring and TLS files mounted read-only.
// Health and /metrics answer from the host, nothing in it runs as root, and
// `podman stop` ends it with exit code 0 within the grace period.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import {
  binDir, freePort, httpGet, keyringYaml, makeCertificates, must, projectVersion, run, tempDir, waitFor, YAML,
} from "./lib.mjs";
import { podman, imageName } from "./podman.mjs";

const work = tempDir();
const name = `tokenbroker-image-test-${process.pid}`;
const volume = `${name}-data`;
const ctl = path.join(binDir, "tokenbrokerctl");
const grace = 5;

// Mounted files belong to the image's user, as fsGroup arranges on Kubernetes.
function mountDir(sub, files) {
  const dir = path.join(work, sub);
  fs.mkdirSync(dir);
  for (const [file, content] of Object.entries(files)) fs.writeFileSync(path.join(dir, file), content, { mode: 0o400 });
  for (const f of [dir, ...Object.keys(files).map((f) => path.join(dir, f))]) fs.chownSync(f, 10001, 10001);
  return dir;
}

const certs = makeCertificates(fs.mkdtempSync(path.join(work, "certs-")));
const configDir = mountDir("config", {
  "config.yaml": YAML.stringify({
    server: {
      grpc_address: "[::]:50051", health_address: "[::]:50052", metrics_address: "0.0.0.0:9464",
      shutdown_grace_period: `${grace}s`,
      tls: { certificate_file: "/etc/tokenbroker/tls/tls.crt", private_key_file: "/etc/tokenbroker/tls/tls.key" },
    },
    store: { sqlite: { path: "/var/lib/tokenbroker/tokenbroker.db" } },
    keys: { keyring_file: "/etc/tokenbroker/keyring/keyring.yaml" },
    auth: { rules: [] },
  }),
});
const keyringDir = mountDir("keyring", { "keyring.yaml": keyringYaml() });
const tlsDir = mountDir("tls", {
  "tls.crt": fs.readFileSync(certs.cert), "tls.key": fs.readFileSync(certs.key), "ca.crt": fs.readFileSync(certs.ca),
});

after(() => {
  podman(["rm", "-f", "-t", "0", name]);
  podman(["volume", "rm", "-f", volume]);
});

test("the image's metadata: non-root user, exec-form entrypoint, OCI labels", () => {
  const [image] = JSON.parse(must("podman", podman.args(["image", "inspect", imageName])));
  const config = image.Config;
  assert.equal(config.User, "10001:10001");
  assert.deepEqual(config.Entrypoint, ["/usr/local/bin/tokenbrokerd"]);
  assert.deepEqual(config.Cmd, ["--config", "/etc/tokenbroker/config/config.yaml"]);
  assert.equal(config.StopSignal, "SIGTERM");
  assert.equal(config.Labels["org.opencontainers.image.version"], projectVersion());
  assert.equal(config.Labels["org.opencontainers.image.source"], "https://github.com/tokenbroker/tokenbroker");
  const git = run("git", ["-C", path.resolve(binDir, "../../.."), "rev-parse", "--short=12", "HEAD"]);
  if (git.code === 0) assert.equal(config.Labels["org.opencontainers.image.revision"], git.out.trim());
  console.log(`# image ${imageName}: ${Math.round(image.Size / 1e6)} MB`);
});

test("the image holds the runtime only: no compiler, no set-uid file", () => {
  const check = podman(["run", "--rm", "--user", "0", "--entrypoint", "/bin/sh", imageName, "-c",
    "find / -xdev -type f -perm /6000; for f in /usr/bin/g++ /usr/bin/cmake /usr/include/grpcpp; do [ -e $f ] && echo $f; done; true"]);
  assert.equal(check.code, 0, check.err);
  assert.equal(check.out.trim(), "", `set-uid files or build tools in the image:\n${check.out}`);
  const version = podman(["run", "--rm", imageName, "--version"]);
  assert.equal(version.code, 0, version.err);
  assert.match(version.out, new RegExp(`^tokenbrokerd ${projectVersion().replace(/\./g, "\\.")} `));
});

test("read-only and non-root it serves health, TLS gRPC and metrics, and stops with exit 0", async () => {
  const [grpcPort, healthPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
  const started = podman(["run", "-d", "--name", name, "--read-only", "--read-only-tmpfs=false",
    "--tmpfs", "/tmp:rw,size=64m,mode=1777", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
    "-v", `${volume}:/var/lib/tokenbroker`, "-v", `${configDir}:/etc/tokenbroker/config:ro`,
    "-v", `${keyringDir}:/etc/tokenbroker/keyring:ro`, "-v", `${tlsDir}:/etc/tokenbroker/tls:ro`,
    "-p", `127.0.0.1:${grpcPort}:50051`, "-p", `127.0.0.1:${healthPort}:50052`, "-p", `127.0.0.1:${metricsPort}:9464`,
    imageName]);
  assert.equal(started.code, 0, started.err);
  const logs = () => podman(["logs", name]).err;

  // The plaintext health listener, as the kubelet's gRPC probe asks it.
  await waitFor("health SERVING on the health port", 60, async () => {
    const r = run(ctl, ["--target", `127.0.0.1:${healthPort}`, "--timeout", "2s", "health"]);
    if (podman(["inspect", "--format", "{{.State.Running}}", name]).out.trim() !== "true") {
      throw new Error(`the container stopped:\n${logs()}`);
    }
    return r.code === 0 && r.out === "SERVING\n";
  });
  // The TLS listener, as a caller with the CA reaches it.
  const tls = run(ctl, ["--target", `127.0.0.1:${grpcPort}`, "--ca-file", certs.ca, "health"]);
  assert.equal(tls.code, 0, tls.err);
  assert.equal(tls.out, "SERVING\n");
  const plain = run(ctl, ["--target", `127.0.0.1:${grpcPort}`, "--timeout", "3s", "health"]);
  assert.notEqual(plain.code, 0, "the main listener must not answer without TLS");
  const metrics = await httpGet(`http://127.0.0.1:${metricsPort}/metrics`);
  assert.equal(metrics.status, 200);
  assert.match(metrics.text, new RegExp(`tokenbroker_build_info\\{[^}]*version="${projectVersion()}"`));

  // Nothing in the container runs as root; the root filesystem is read-only.
  const top = podman(["top", name, "huser", "user", "args"]);
  assert.equal(top.code, 0, top.err);
  const processes = top.out.trim().split("\n").slice(1);
  assert.ok(processes.length >= 1);
  for (const p of processes) assert.match(p, /^10001\s+tokenbroker\s+/, `a process not of uid 10001: ${p}`);
  const write = podman(["exec", name, "/bin/sh", "-c", "echo x > /usr/local/bin/x"]);
  assert.notEqual(write.code, 0);
  assert.match(write.err + write.out, /Read-only file system/);
  // SQLite lives in the volume, private to the broker.
  const ls = podman(["exec", name, "/bin/sh", "-c", "stat -c '%a %u %n' /var/lib/tokenbroker /var/lib/tokenbroker/tokenbroker.db"]);
  assert.equal(ls.code, 0, ls.err);
  assert.match(ls.out, /^700 10001 \/var\/lib\/tokenbroker\n600 10001 \/var\/lib\/tokenbroker\/tokenbroker\.db\n$/);

  const began = Date.now();
  const stop = podman(["stop", "-t", String(grace + 10), name]);
  const seconds = (Date.now() - began) / 1000;
  assert.equal(stop.code, 0, stop.err);
  const exit = podman(["inspect", "--format", "{{.State.ExitCode}}", name]).out.trim();
  assert.equal(exit, "0", logs());
  assert.ok(seconds < grace + 2, `podman stop took ${seconds}s with a ${grace}s grace period`);
  assert.match(logs(), /"msg":"stopped"/);
  console.log(`# podman stop: ${seconds.toFixed(1)} s`);
});
