// scripts/build-native.mjs without a C compiler: the install still succeeds
// (exit 0), prints ONE line that says zcopy runs on the portable path, why,
// and commands that work where it is installed, and records the reason that
// capabilities() and `zcopy info` report. --strict fails with the full log.
// (The same through npm, in a consumer project: scripts/pack-test.mjs.)
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { tmpDir } from './helpers.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const dir = tmpDir();
const bin = path.join(dir, 'bin-without-cc');
// The build runs in copies: a rebuild in the checkout would replace the addon
// the other tests use.
const checkout = path.join(dir, 'checkout');
const dependency = path.join(dir, 'app', 'node_modules', 'zcopy');
// The result does not depend on the transfer path: run in one mode only.
const skip = process.env.ZCOPY_FORCE_FALLBACK === '1' ? 'same in both modes (runs in the native run)' : process.platform !== 'linux' ? 'Linux only' : false;
after(() => fs.rmSync(dir, { recursive: true, force: true }));

before(() => {
  if (skip) return;
  // Every tool on PATH except C/C++ compilers.
  fs.mkdirSync(bin);
  const compilers = /^(cc|c\+\+|gcc|g\+\+|cpp|clang|clang\+\+|tcc)(-[\d.]+)?$|-(gcc|g\+\+)(-[\d.]+)?$/;
  for (const d of (process.env.PATH ?? '').split(':')) {
    if (!d || !fs.existsSync(d)) continue;
    for (const name of fs.readdirSync(d)) {
      if (compilers.test(name) || fs.existsSync(path.join(bin, name))) continue;
      let target = path.join(d, name);
      if (name === 'python3' || name === 'python') {
        // pyenv-style shims need their own PATH: link the interpreter itself.
        const r = spawnSync(target, ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' });
        if (r.status === 0) target = r.stdout.trim();
      }
      fs.symlinkSync(target, path.join(bin, name));
    }
  }
  for (const to of [checkout, dependency]) {
    fs.mkdirSync(path.join(to, 'scripts'), { recursive: true });
    fs.cpSync(path.join(root, 'native'), path.join(to, 'native'), { recursive: true });
    for (const f of ['binding.gyp', 'package.json', 'scripts/build-native.mjs']) fs.copyFileSync(path.join(root, f), path.join(to, f));
  }
});

function build(cwd: string, args: string[] = []): { status: number | null; stdout: string; stderr: string } {
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: bin };
  delete env.CC;
  delete env.CXX;
  delete env.npm_config_node_gyp;
  const r = spawnSync(process.execPath, ['scripts/build-native.mjs', ...args], { cwd, env, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function recorded(cwd: string): { ok: boolean; reason?: string } {
  return JSON.parse(fs.readFileSync(path.join(cwd, 'build', 'zcopy-build.json'), 'utf8')) as { ok: boolean; reason?: string };
}

test('no compiler, in a checkout: exit 0, one line naming the portable path, why, `npx zcopy info` and `npm run build:native`', { skip, timeout: 180_000 }, () => {
  const r = build(checkout);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const lines = (r.stdout + r.stderr).split('\n').filter((l) => l.trim() !== '');
  assert.equal(lines.length, 1, `one line, got:\n${lines.join('\n')}`);
  const line = lines[0]!;
  assert.match(line, /^zcopy: native addon NOT built \(.*\bcc\b.*\); zcopy still works, on the portable \(copying\) path\. /);
  assert.ok(line.includes('npx zcopy info'), line);
  assert.ok(line.endsWith('npm run build:native'), line);
  const rec = recorded(checkout);
  assert.equal(rec.ok, false);
  assert.match(rec.reason ?? '', /\bcc\b/);
  assert.ok(line.includes(rec.reason!), 'the line carries the recorded reason');
});

test('no compiler, installed under node_modules: the line says `npm rebuild zcopy`', { skip, timeout: 180_000 }, () => {
  const r = build(dependency);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const lines = (r.stdout + r.stderr).split('\n').filter((l) => l.trim() !== '');
  assert.equal(lines.length, 1, lines.join('\n'));
  assert.match(lines[0]!, /^zcopy: native addon NOT built .*npx zcopy info.*npm rebuild zcopy --foreground-scripts$/);
});

test('no compiler, --strict (npm run build:native): exit 1 with the full log', { skip, timeout: 180_000 }, () => {
  const r = build(checkout, ['--strict']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^zcopy: native addon NOT built/m);
  assert.match(r.stderr, /gyp (ERR!|info)/, 'the node-gyp log follows');
});
