// The alert rules under promtool: they load, and every alert fires when it
// should and stays quiet when things are fine (tests/deploy/alerts_test.yaml).
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ruleFileFromSource, rulesSource, run, tempDir, YAML } from "./lib.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));

function promtoolTest(rulesText) {
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, "rules.yaml"), rulesText);
  fs.copyFileSync(path.join(here, "alerts_test.yaml"), path.join(dir, "alerts_test.yaml"));
  return run("promtool", ["test", "rules", "alerts_test.yaml"], { cwd: dir });
}

test("promtool check rules accepts every rule", () => {
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, "rules.yaml"), ruleFileFromSource());
  const r = run("promtool", ["check", "rules", "rules.yaml"], { cwd: dir });
  assert.equal(r.code, 0, r.out + r.err);
  const alerts = YAML.parse(fs.readFileSync(rulesSource, "utf8")).spec.groups.flatMap((g) => g.rules);
  assert.match(r.out, new RegExp(`SUCCESS: ${alerts.length} rules found`));
});

test("promtool test rules: every alert fires when it should and only then", () => {
  const r = promtoolTest(ruleFileFromSource());
  assert.equal(r.code, 0, r.out + r.err);
  assert.match(r.out, /SUCCESS/);
  // Every alert of the source has a test case.
  const tests = fs.readFileSync(path.join(here, "alerts_test.yaml"), "utf8");
  const alerts = YAML.parse(fs.readFileSync(rulesSource, "utf8")).spec.groups.flatMap((g) => g.rules.map((x) => x.alert));
  for (const a of alerts) assert.match(tests, new RegExp(`alertname: ${a}\\n`), `no promtool test for ${a}`);
});

test("the promtool tests fail when a rule is wrong", () => {
  // A warning that starts at 40 days instead of 30 would fire too early.
  const early = ruleFileFromSource().replace("< 30 * 86400", "< 10 * 86400");
  assert.notEqual(early, ruleFileFromSource());
  const r = promtoolTest(early);
  assert.notEqual(r.code, 0, "promtool passed a broken rule");
  assert.match(r.out + r.err, /TokenbrokerAppCredentialExpiring/);
});
