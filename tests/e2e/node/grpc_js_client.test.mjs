// A service written in another language calls tokenbrokerd with nothing but
// the files in proto/: @grpc/grpc-js and @grpc/proto-loader load them at run
// time, with no generated code and no C++ anywhere on the client side.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const protoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'proto');
const binDir = process.env.TOKENBROKER_BIN_DIR;

let dir;
let daemon;
let exited;
let target;

before(async () => {
  assert.ok(binDir, 'TOKENBROKER_BIN_DIR must name the directory of tokenbrokerd');
  dir = mkdtempSync(join(tmpdir(), 'tokenbroker node '));
  const config = join(dir, 'broker.yaml');
  writeFileSync(config, [
    'server:',
    '  grpc_address: 127.0.0.1:0',
    '  metrics_address: ""',
    '  plaintext: true',
    'store:',
    '  sqlite:',
    `    path: "${join(dir, 'broker.db')}"`,
    'keys:',
    `  keyring_file: "${join(dir, 'keyring.yaml')}"`,
    '  create_if_missing: true',
    'auth:',
    '  local_caller: local',
    '  rules:',
    '    - callers: [local]',
    '      actions: ["*"]',
    '      grants: ["*"]',
    '',
  ].join('\n'));
  daemon = spawn(join(binDir, 'tokenbrokerd'), ['--config', config], { stdio: ['ignore', 'inherit', 'pipe'] });
  exited = new Promise((resolve) => daemon.on('exit', (code, signal) => resolve({ code, signal })));
  // The broker logs one JSON object per line; wait for the "serving" line.
  target = await new Promise((resolve, reject) => {
    const lines = createInterface({ input: daemon.stderr });
    lines.on('line', (line) => {
      const record = JSON.parse(line);
      if (record.msg === 'serving') resolve(record.grpc_address);
    });
    lines.on('close', () => reject(new Error('tokenbrokerd closed stderr before serving')));
  });
});

after(async () => {
  if (daemon && daemon.exitCode === null) daemon.kill('SIGKILL');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function load(file) {
  const definition = protoLoader.loadSync(file, {
    includeDirs: [protoRoot],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
  });
  return grpc.loadPackageDefinition(definition);
}

function call(client, method, request) {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + 10000);
    client[method](request, { deadline }, (err, response) => (err ? reject(err) : resolve(response)));
  });
}

test('health check answers SERVING', async () => {
  const { grpc: { health: { v1 } } } = load('grpc/health/v1/health.proto');
  const health = new v1.Health(target, grpc.credentials.createInsecure());
  const response = await call(health, 'Check', { service: '' });
  assert.equal(response.status, 'SERVING');
  health.close();
});

test('AdminService.GetServerInfo returns the version', async () => {
  const { tokenbroker: { v1 } } = load('tokenbroker/v1/admin_service.proto');
  const admin = new v1.AdminService(target, grpc.credentials.createInsecure());
  const info = await call(admin, 'GetServerInfo', {});
  assert.match(info.version, /^\d+\.\d+\.\d+$/);
  assert.equal(info.store, 'sqlite');
  assert.ok(info.active_key_id.length > 0);
  assert.ok(Number(info.start_time.seconds) > 1_700_000_000);
  admin.close();
});

test('TokenService.GetAccessToken errors carry the gRPC code and message', async () => {
  const { tokenbroker: { v1 } } = load('tokenbroker/v1/token_service.proto');
  const tokens = new v1.TokenService(target, grpc.credentials.createInsecure());
  await assert.rejects(call(tokens, 'GetAccessToken', { grant: 'g1', min_valid_for: { seconds: 300 } }), (err) => {
    assert.equal(err.code, grpc.status.NOT_FOUND);
    assert.equal(err.details, 'grant "g1" does not exist');
    return true;
  });
  tokens.close();
});

test('SIGTERM stops the broker with exit code 0', async () => {
  daemon.kill('SIGTERM');
  const { code, signal } = await exited;
  assert.equal(signal, null);
  assert.equal(code, 0);
});
