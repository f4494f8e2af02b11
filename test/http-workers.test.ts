// `zcopy serve --workers N` (issue 11): node:cluster workers share the port,
// both answer (their pids in the aggregated log), SIGTERM stops all of them
// within the shutdown timeout, exit 0.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { makeFile, MODE, sha, tmpDir, withTimeout } from './helpers.js';
import { until } from './http-helpers.js';

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const root = tmpDir('zcopy-workers-');
const file = makeFile(root, 'f.bin', 100_000, 5);

after(() => fs.rmSync(root, { recursive: true, force: true }));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function get(port: number, agent: http.Agent): Promise<{ status: number; body: Buffer }> {
  return withTimeout(
    new Promise((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: '/f.bin', agent }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (d: Buffer) => chunks.push(d));
          res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks) }));
          res.on('error', reject);
        })
        .on('error', reject);
    }),
    10_000,
    'GET /f.bin',
  );
}

describe(`zcopy serve --workers (issue 11) [${MODE}]`, () => {
  it('--workers 2: both workers answer, one log with worker=PID, SIGTERM stops all within the timeout, exit 0', async () => {
    const child = spawn(process.execPath, [MAIN, 'serve', root, '--port', '0', '--workers', '2', '--shutdown-timeout', '3000'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let errText = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (errText += d.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    try {
      await withTimeout(
        new Promise<void>((resolve, reject) => {
          const check = (): void => {
            if (/zcopy serve: 2 workers \(\d+, \d+\)/.test(out)) resolve();
          };
          child.stdout!.on('data', check);
          child.once('exit', () => reject(new Error(`exited early: ${out} ${errText}`)));
        }),
        30_000,
        'both workers listening',
      );
      const port = Number(/at http:\/\/127\.0\.0\.1:(\d+)\//.exec(out)![1]);
      const pids = /2 workers \((\d+), (\d+)\)/.exec(out)!.slice(1).map(Number);
      // Fresh connections: the primary hands them to the workers in turn.
      for (let i = 0; i < 8; i++) {
        const agent = new http.Agent({ keepAlive: false });
        const r = await get(port, agent);
        assert.equal(r.status, 200);
        assert.equal(sha(r.body), sha(file.data));
        agent.destroy();
      }
      // A line is written once its response finished: wait for the eighth.
      await until(() => [...out.matchAll(/^GET \/f\.bin /gm)].length >= 8, 10_000, 'eight log lines');
      const served = new Set([...out.matchAll(/^GET \/f\.bin 200 100000 .* worker=(\d+)$/gm)].map((m) => Number(m[1])));
      assert.deepEqual([...served].sort(), [...pids].sort(), `both workers served:\n${out}`);
      // Log lines are whole: every request line is complete.
      assert.equal([...out.matchAll(/^GET \/f\.bin /gm)].length, 8);
      const t0 = Date.now();
      child.kill('SIGTERM');
      const code = await withTimeout(exited, 8000, 'the primary to exit');
      assert.equal(code, 0, `exit code; stderr: ${errText}`);
      assert.ok(Date.now() - t0 < 3000 + 2000, 'within the shutdown timeout');
      for (const pid of pids) assert.ok(!alive(pid), `worker ${pid} stopped`);
      assert.match(out, /zcopy serve: stopped\n$/);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  it('--workers rejects bad values (exit 2)', async () => {
    const child = spawn(process.execPath, [MAIN, 'serve', root, '--workers', 'many'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let errText = '';
    child.stderr!.on('data', (d: Buffer) => (errText += d.toString()));
    const code = await withTimeout(new Promise<number | null>((r) => child.once('exit', (c) => r(c))), 10_000, 'exit');
    assert.equal(code, 2);
    assert.match(errText, /--workers/);
  });
});

