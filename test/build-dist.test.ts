// scripts/build-dist.mjs (npm run prepare) empties each outDir before it
// builds: a file left in dist/ by a module that moved (src/proxy.ts ->
// src/proxy/index.ts left dist/proxy.js behind) must never be packed. The
// builds here go to a temporary outDir, never the shared dist/.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { tmpDir } from './helpers.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SCRIPT = path.join(ROOT, 'scripts', 'build-dist.mjs');
const dir = tmpDir('zcopy-build-dist-');
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A config like tsconfig.json, for one small source file, built into `outDir`. */
function config(name: string, outDir: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(
    file,
    JSON.stringify({
      extends: path.join(ROOT, 'tsconfig.json'),
      compilerOptions: { outDir, declarationMap: false, sourceMap: false, typeRoots: [path.join(ROOT, 'node_modules', '@types')] },
      include: [],
      files: [path.join(ROOT, 'src', 'cli', 'common.ts')],
    }),
  );
  return file;
}

function build(...configs: string[]): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, [SCRIPT, ...configs], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describe('build-dist (npm run prepare)', () => {
  it('removes files a moved or deleted module left in the outDir, and builds the rest', () => {
    const out = path.join(dir, 'out');
    const stale = [path.join(out, 'proxy.js'), path.join(out, 'proxy.d.ts'), path.join(out, 'gone', 'old.js')];
    for (const f of stale) {
      fs.mkdirSync(path.dirname(f), { recursive: true });
      fs.writeFileSync(f, '// stale\n');
    }
    const r = build(config('tsconfig.a.json', out));
    assert.equal(r.status, 0, r.out);
    for (const f of stale) assert.equal(fs.existsSync(f), false, `${path.relative(out, f)} is still there`);
    assert.ok(fs.existsSync(path.join(out, 'cli', 'common.js')), r.out);
    assert.ok(fs.existsSync(path.join(out, 'cli', 'common.d.ts')), r.out);
  });

  it('a nested outDir built first survives the build of the one around it (dist/cjs inside dist/)', () => {
    const out = path.join(dir, 'nested');
    const inner = path.join(out, 'cjs');
    fs.mkdirSync(inner, { recursive: true });
    fs.writeFileSync(path.join(inner, 'stale.js'), '// stale\n');
    const r = build(config('tsconfig.inner.json', inner), config('tsconfig.outer.json', out));
    assert.equal(r.status, 0, r.out);
    assert.equal(fs.existsSync(path.join(inner, 'stale.js')), false);
    assert.ok(fs.existsSync(path.join(inner, 'cli', 'common.js')), 'the inner build is kept');
    assert.ok(fs.existsSync(path.join(out, 'cli', 'common.js')));
  });

  it('refuses to empty the package root or a folder above it', () => {
    // A copy of the script in a scratch package: were the guard broken, it
    // would empty that package, not this one.
    const pkg = path.join(dir, 'pkg');
    fs.mkdirSync(path.join(pkg, 'scripts'), { recursive: true });
    fs.copyFileSync(SCRIPT, path.join(pkg, 'scripts', 'build-dist.mjs'));
    fs.writeFileSync(path.join(pkg, 'package.json'), '{"name":"scratch","private":true}\n');
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(pkg, 'node_modules'));
    for (const outDir of [pkg, dir]) {
      const r = spawnSync(process.execPath, [path.join(pkg, 'scripts', 'build-dist.mjs'), config('tsconfig.bad.json', outDir)], { cwd: pkg, encoding: 'utf8', timeout: 120_000 });
      assert.equal(r.status, 1, `${r.stdout}${r.stderr}`);
      assert.match(r.stderr, /will not empty/);
      assert.ok(fs.existsSync(path.join(pkg, 'package.json')), 'the package is intact');
    }
  });
});
