// podman on the private image store the deploy_image_build fixture filled
// (TOKENBROKER_PODMAN_ROOT / TOKENBROKER_PODMAN_RUNROOT), with the project's
// containers.conf.
import path from "node:path";
import { run, sourceDir, projectVersion, toolEnv } from "./lib.mjs";

const root = process.env.TOKENBROKER_PODMAN_ROOT;
const runroot = process.env.TOKENBROKER_PODMAN_RUNROOT;
if (!root || !runroot) throw new Error("TOKENBROKER_PODMAN_ROOT and TOKENBROKER_PODMAN_RUNROOT must name the test image store");
toolEnv.CONTAINERS_CONF = process.env.CONTAINERS_CONF || path.join(sourceDir, "scripts/podman-containers.conf");

// The image as the manifests name it (podman finds it as localhost/...).
export const imageName = `tokenbroker:${projectVersion()}`;

export function podman(args, opts = {}) {
  return run("podman", podman.args(args), opts);
}
podman.args = (args) => ["--root", root, "--runroot", runroot, ...args];
