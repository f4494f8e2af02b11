// The CommonJS build (dist/cjs, `require('zcopy')`) has the ESM build's API,
// works (a real copy), agrees on the native path, and a process that loads
// both builds is told once (ZCOPY_DUAL_PACKAGE). The packed tarball is tested
// by scripts/pack-test.mjs (npm run test:pack).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { NATIVE, makeFile, sha, tmpDir } from './helpers.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const ENTRIES = ['zcopy', 'zcopy/http', 'zcopy/fastify', 'zcopy/kafka'];
const built = fs.existsSync(path.join(root, 'dist', 'cjs', 'index.js')) && fs.existsSync(path.join(root, 'dist', 'cjs', 'package.json'));
const skip = built ? false : 'dist/cjs is not built (npm run prepare builds it)';
if (skip) console.log(`skip: ${skip}`);

/** Runs code in a fresh node from the package root, where 'zcopy' resolves to this package. */
function node(type: 'module' | 'commonjs', code: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [`--input-type=${type}`, '-e', code], { cwd: root, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('require() gets the same exports as import, for every entry point, from dist/cjs', { skip, timeout: 120_000 }, () => {
  const list = JSON.stringify(ENTRIES);
  const esm = node('module', `const out = {}; for (const e of ${list}) out[e] = Object.keys(await import(e)).sort(); console.log(JSON.stringify(out));`);
  assert.equal(esm.status, 0, esm.stderr);
  const cjs = node('commonjs', `const out = {}; for (const e of ${list}) { if (!require.resolve(e).includes('/dist/cjs/')) throw new Error(e + ' -> ' + require.resolve(e)); out[e] = Object.keys(require(e)).sort(); } console.log(JSON.stringify(out));`);
  assert.equal(cjs.status, 0, cjs.stderr);
  const a = JSON.parse(esm.stdout) as Record<string, string[]>;
  const b = JSON.parse(cjs.stdout) as Record<string, string[]>;
  for (const e of ENTRIES) {
    assert.ok(a[e]!.length > 0, e);
    // dist/ and dist/cjs/ are built together by `npm run prepare`; a dist/
    // rebuilt alone (tsc -p tsconfig.json) leaves dist/cjs behind.
    assert.deepEqual(b[e], a[e], `exports of ${e} differ between dist/cjs and dist (stale build? run npm run prepare)`);
  }
});

test('the CommonJS build copies a file and takes the same path as the ESM build', { skip, timeout: 120_000 }, () => {
  const dir = tmpDir();
  try {
    const src = makeFile(dir, 'src.bin', 3 * 1024 * 1024 + 7, 5);
    const dest = path.join(dir, 'dest.bin');
    const r = node(
      'commonjs',
      `const z = require('zcopy'); z.copyFile(${JSON.stringify(src.path)}, ${JSON.stringify(dest)}).then((n) => console.log(JSON.stringify({ n, native: z.capabilities().native, s: z.stats() })), (e) => { console.error(e); process.exit(1); });`,
    );
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { n: number; native: boolean; s: { bytesZeroCopy: number; bytesCopied: number } };
    assert.equal(out.n, src.data.length);
    assert.equal(sha(fs.readFileSync(dest)), sha(src.data));
    assert.equal(out.native, NATIVE, 'the CommonJS build loads the addon exactly when the ESM build does');
    // Its own stats() saw the bytes, by the path the mode allows.
    if (NATIVE) assert.equal(out.s.bytesZeroCopy, src.data.length);
    else assert.equal(out.s.bytesCopied, src.data.length);
    assert.equal(r.stderr, '', 'no warning when loaded one way');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('loading both builds in one process warns once (ZCOPY_DUAL_PACKAGE); one build alone does not', { skip, timeout: 120_000 }, () => {
  const both = node(
    'module',
    `import { createRequire } from 'node:module'; const require = createRequire(process.cwd() + '/');
     process.on('warning', (w) => console.log('warning ' + w.code));
     await import('zcopy'); await import('zcopy/http'); require('zcopy'); require('zcopy/kafka'); await import('zcopy/fastify');
     await new Promise((r) => setImmediate(r));`,
  );
  assert.equal(both.status, 0, both.stderr);
  assert.deepEqual(both.stdout.trim().split('\n'), ['warning ZCOPY_DUAL_PACKAGE']);
  for (const [type, code] of [
    ['module', `await import('zcopy'); await import('zcopy/http'); await import('zcopy/fastify'); await import('zcopy/kafka');`],
    ['commonjs', `require('zcopy'); require('zcopy/http'); require('zcopy/fastify'); require('zcopy/kafka');`],
  ] as const) {
    const one = node(type, `process.on('warning', (w) => console.log('warning ' + w.code)); ${code}; setImmediate(() => {});`);
    assert.equal(one.status, 0, one.stderr);
    assert.equal(one.stdout, '', `${type} alone: no warning`);
  }
});
