#!/usr/bin/env node
// Tests the package as a user gets it (npm run test:pack; .ci/run runs it):
//   1. `npm pack` (which runs prepare: the ESM and CommonJS builds);
//   2. the tarball's contents: LICENSE, docs, both builds, every relative
//      link of README.md and docs/*.md and every source map's sources present;
//      `npm run prepare` works in the unpacked tarball;
//   3. install into a fresh consumer project (offline from the npm cache when
//      it can, else from the registry), which builds the addon;
//   4. every entry point (., ./http, ./fastify, ./kafka) imported with ESM
//      and required with CommonJS; `npx zcopy info`;
//   5. the types, from a consumer's view: moduleResolution node16, nodenext
//      and bundler, ESM and CommonJS files, esModuleInterop off;
//   6. a failed native build (no C compiler on PATH): one clear line, in the
//      output of `npm rebuild zcopy` itself (npm hides a dependency's script
//      output: the line goes to the terminal, tested under script(1)), exit 0,
//      and `npx zcopy info` reports the portable path with the reason.
// Options: --keep (leave the temporary folder), --skip-native-failure.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, posix, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const keep = process.argv.includes('--keep');
const tmp = mkdtempSync(join(tmpdir(), 'zcopy-pack-'));
const ENTRIES = ['zcopy', 'zcopy/http', 'zcopy/fastify', 'zcopy/kafka'];
let failures = 0;

function step(title) {
  console.log(`\n== pack-test: ${title}`);
}
function check(ok, what) {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures++;
  return ok;
}
function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 10 * 60_000, killSignal: 'SIGKILL', ...opts, env: { ...process.env, ...opts.env } });
  return { status: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}`, stdout: r.stdout ?? '', error: r.error };
}
function must(r, what) {
  if (!check(r.status === 0, `${what} (exit ${r.status}${r.error ? `, ${r.error.message}` : ''})`)) {
    console.log(r.out.split('\n').slice(-40).join('\n'));
    finish();
  }
  return r;
}
function finish() {
  if (keep) console.log(`kept ${tmp}`);
  else rmSync(tmp, { recursive: true, force: true });
  console.log(`\npack-test: ${failures === 0 ? 'passed' : `${failures} check(s) failed`}`);
  process.exit(failures === 0 ? 0 : 1);
}

// 1. npm pack ------------------------------------------------------------
step('npm pack');
const pack = must(run('npm', ['pack', '--json', '--pack-destination', tmp], { cwd: root }), 'npm pack');
const info = JSON.parse(pack.stdout.slice(pack.stdout.indexOf('[')))[0];
const tgz = join(tmp, info.filename);
const files = new Set(info.files.map((f) => f.path));
console.log(`${info.filename}: ${info.files.length} files, ${(info.size / 1024).toFixed(0)} KiB packed, ${(info.unpackedSize / 1024).toFixed(0)} KiB unpacked`);

// 2. contents -------------------------------------------------------------
step('tarball contents');
for (const f of ['LICENSE', 'README.md', 'package.json', 'binding.gyp', 'scripts/build-native.mjs', 'dist/index.js', 'dist/cjs/index.js', 'dist/cjs/package.json', 'docs/api.md']) {
  check(files.has(f), `ships ${f}`);
}
for (const f of files) {
  if (/(^|\/)(\.test-build|test|bench-results|node_modules)\//.test(f) || f.startsWith('build/')) check(false, `does not ship ${f}`);
}
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
for (const [name, target] of Object.entries(pkg.exports)) {
  const leaves = typeof target === 'string' ? [target] : JSON.stringify(target).match(/"\.\/[^"]+"/g).map((s) => s.slice(1, -1));
  for (const leaf of leaves) check(files.has(leaf.slice(2)), `exports ${name} -> ${leaf} is shipped`);
}
const prepare = pkg.scripts?.prepare;
if (prepare) {
  // prepare runs where the tarball is unpacked and installed for development.
  for (const f of prepare.match(/[\w./-]+\.(?:json|mjs|js)\b/g) ?? []) check(files.has(f), `prepare's ${f} is shipped`);
}
mkdirSync(join(tmp, 'unpacked'));
must(run('tar', ['xzf', tgz, '-C', join(tmp, 'unpacked')]), 'tar xzf');
const unpacked = join(tmp, 'unpacked', 'package');
let links = 0;
for (const md of [...files].filter((f) => f === 'README.md' || /^docs\/[^/]+\.md$/.test(f))) {
  const text = readFileSync(join(unpacked, md), 'utf8').replace(/```[\s\S]*?```/g, '');
  for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
    const target = m[1].split('#')[0];
    if (!target || /^[a-z]+:/i.test(target)) continue;
    links++;
    const path = posix.normalize(posix.join(posix.dirname(md), decodeURI(target))).replace(/\/$/, '');
    check(files.has(path) || [...files].some((f) => f.startsWith(path + '/')), `${md}: link ${m[1]} resolves`);
  }
}
check(links > 5, `checked ${links} relative links`);
let maps = 0;
for (const f of files) {
  if (!f.endsWith('.map')) continue;
  maps++;
  const map = JSON.parse(readFileSync(join(unpacked, f), 'utf8'));
  for (const s of map.sources) {
    const path = posix.normalize(posix.join(posix.dirname(f), map.sourceRoot ?? '', s));
    if (!files.has(path)) check(false, `${f}: source ${s} is shipped`);
  }
}
check(true, `${maps} source maps, every source shipped`);
if (prepare) {
  // The unpacked tarball with its devDependencies (the checkout's) rebuilds itself.
  rmSync(join(unpacked, 'dist'), { recursive: true, force: true });
  symlinkSync(join(root, 'node_modules'), join(unpacked, 'node_modules'), 'dir');
  const r = run('npm', ['run', 'prepare'], { cwd: unpacked });
  check(r.status === 0 && existsSync(join(unpacked, 'dist', 'index.js')) && existsSync(join(unpacked, 'dist', 'cjs', 'index.js')), 'npm run prepare works in the unpacked tarball') || console.log(r.out.split('\n').slice(-20).join('\n'));
}

// 3. install into a consumer ---------------------------------------------
step('install into a fresh consumer project');
const app = join(tmp, 'app');
mkdirSync(app);
writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'zcopy-consumer', version: '1.0.0', private: true }, null, 2));
let inst = run('npm', ['install', '--offline', '--no-audit', '--no-fund', tgz], { cwd: app });
if (inst.status !== 0) {
  console.log(`offline install failed (a dependency not in the npm cache?); trying the registry. It said:\n${inst.out.split('\n').slice(-15).join('\n')}`);
  inst = run('npm', ['install', '--no-audit', '--no-fund', tgz], { cwd: app });
}
must(inst, 'npm install <tarball>');
check(!/EBADENGINE/.test(inst.out), 'no EBADENGINE warning');
const built = existsSync(join(app, 'node_modules', 'zcopy', 'build', 'Release', 'zcopy.node'));
console.log(`native addon ${built ? 'built' : 'NOT built'} by the install script`);

// 4. every entry point, ESM and CommonJS; the CLI ------------------------
step('entry points (ESM and CommonJS) and npx zcopy info');
const probe = {
  zcopy: 'typeof m.sendFile === "function" && typeof m.capabilities().native === "boolean"',
  'zcopy/http': 'typeof m.serveStatic === "function" && typeof m.serveFile === "function"',
  'zcopy/fastify': 'typeof m.default === "function" && m.default === m.zcopyFastify',
  'zcopy/kafka': 'typeof m.createBroker === "function"',
};
for (const e of ENTRIES) {
  const esm = run(process.execPath, ['--input-type=module', '-e', `import * as m from '${e}'; if (!(${probe[e]})) throw new Error('unexpected exports: ' + Object.keys(m));`], { cwd: app });
  check(esm.status === 0, `import '${e}'`) || console.log(esm.out);
  const cjs = run(process.execPath, ['--input-type=commonjs', '-e', `const m = require('${e}'); if (!(${probe[e]})) throw new Error('unexpected exports: ' + Object.keys(m)); if (!require.resolve('${e}').includes('/dist/cjs/')) throw new Error('not the CommonJS build: ' + require.resolve('${e}'));`], { cwd: app });
  check(cjs.status === 0, `require('${e}')`) || console.log(cjs.out);
}
const same = run(process.execPath, ['--input-type=module', '-e', `import { createRequire } from 'node:module'; import * as e from 'zcopy'; const c = createRequire(process.cwd() + '/')('zcopy'); console.log(JSON.stringify([e.capabilities().native, c.capabilities().native]));`], { cwd: app });
check(same.status === 0 && same.stdout.trim() === JSON.stringify([built, built]), `ESM and CommonJS agree on the native path (${same.stdout.trim() || same.out})`);
const cli = run('npx', ['--no-install', 'zcopy', 'info'], { cwd: app });
check(cli.status === 0 && cli.out.trim().length > 0, 'npx zcopy info') || console.log(cli.out);

// 5. types -----------------------------------------------------------------
step('types: node16, nodenext, bundler; ESM and CommonJS; esModuleInterop off');
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
const types = join(app, 'types');
mkdirSync(types);
// The consumer's @types/node: the one zcopy is developed against.
mkdirSync(join(app, 'node_modules', '@types'), { recursive: true });
if (!existsSync(join(app, 'node_modules', '@types', 'node'))) symlinkSync(join(root, 'node_modules', '@types', 'node'), join(app, 'node_modules', '@types', 'node'), 'dir');
if (!existsSync(join(app, 'node_modules', 'undici-types')) && existsSync(join(root, 'node_modules', 'undici-types'))) symlinkSync(join(root, 'node_modules', 'undici-types'), join(app, 'node_modules', 'undici-types'), 'dir');
const use = `
  const caps: boolean = capabilities().native;
  const handler: (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void = serveStatic('.', { maxAge: '1h' });
  const plugin: Function = zcopyFastify;
  const broker: Function = createBroker;
  void caps; void handler; void plugin; void broker;
`;
writeFileSync(join(types, 'esm.mts'), `import { capabilities } from 'zcopy';\nimport { serveStatic } from 'zcopy/http';\nimport zcopyFastify from 'zcopy/fastify';\nimport { createBroker } from 'zcopy/kafka';\n${use}`);
writeFileSync(join(types, 'cjs.cts'), `import zcopy = require('zcopy');\nimport http = require('zcopy/http');\nimport fastify = require('zcopy/fastify');\nimport kafka = require('zcopy/kafka');\nconst { capabilities } = zcopy; const { serveStatic } = http; const zcopyFastify = fastify.default; const { createBroker } = kafka;\n${use}`);
writeFileSync(join(types, 'bundler.ts'), `import { capabilities } from 'zcopy';\nimport { serveStatic } from 'zcopy/http';\nimport zcopyFastify from 'zcopy/fastify';\nimport { createBroker } from 'zcopy/kafka';\n${use}`);
const strict = { strict: true, noEmit: true, skipLibCheck: false, esModuleInterop: false, allowSyntheticDefaultImports: false, types: ['node'], target: 'ES2022', lib: ['ES2022'] };
const configs = {
  node16: { module: 'Node16', moduleResolution: 'Node16', files: ['esm.mts', 'cjs.cts'] },
  nodenext: { module: 'NodeNext', moduleResolution: 'NodeNext', files: ['esm.mts', 'cjs.cts'] },
  bundler: { module: 'ESNext', moduleResolution: 'Bundler', files: ['bundler.ts'] },
};
for (const [name, { files: list, ...opts }] of Object.entries(configs)) {
  const file = join(types, `tsconfig.${name}.json`);
  writeFileSync(file, JSON.stringify({ compilerOptions: { ...strict, ...opts }, files: list }, null, 2));
  const r = run(process.execPath, [tsc, '-p', file], { cwd: types });
  check(r.status === 0, `tsc, moduleResolution ${name} (${list.join(', ')})`) || console.log(r.out.split('\n').slice(0, 30).join('\n'));
}

// 6. a failed native build --------------------------------------------------
if (!process.argv.includes('--skip-native-failure')) {
  step('a failed native build: no C compiler on PATH');
  const bin = join(tmp, 'bin-without-cc');
  mkdirSync(bin);
  const compilers = /^(cc|c\+\+|gcc|g\+\+|cpp|clang|clang\+\+|tcc)(-[\d.]+)?$|-(gcc|g\+\+)(-[\d.]+)?$/;
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (!dir || !existsSync(dir)) continue;
    for (const name of readdirSync(dir)) {
      if (compilers.test(name) || existsSync(join(bin, name))) continue;
      // pyenv-style shims need their own PATH: link the interpreter itself.
      let target = join(dir, name);
      if (name === 'python3' || name === 'python') {
        const real = run(target, ['-c', 'import sys; print(sys.executable)']);
        if (real.status === 0) target = real.stdout.trim();
      }
      symlinkSync(target, join(bin, name));
    }
  }
  // run() adds process.env: CC/CXX must not point at a compiler either.
  delete process.env.CC;
  delete process.env.CXX;
  const env = { PATH: bin };
  check(run('sh', ['-c', 'command -v cc || command -v gcc'], { env }).status !== 0, 'no compiler on the stripped PATH');
  const r = run('npm', ['rebuild', 'zcopy', '--foreground-scripts'], { cwd: app, env });
  const line = r.out.split('\n').find((l) => l.startsWith('zcopy: native addon NOT built'));
  check(r.status === 0, `npm rebuild zcopy exits 0 (${r.status})`);
  check(Boolean(line), 'one "native addon NOT built" line') || console.log(r.out);
  if (line) {
    console.log(`   ${line}`);
    check(/portable/.test(line) && line.includes('npx zcopy info') && line.includes('npm rebuild zcopy'), 'the line names the portable path, npx zcopy info and npm rebuild zcopy');
    check(/\((native build failed: )?.*(cc|compiler).*\)/.test(line), 'the line says why (the compiler)');
  }
  check(r.out.split('\n').filter((l) => l.startsWith('zcopy: ')).length === 1, 'exactly one zcopy line');
  // Without --foreground-scripts npm captures the script's output: the line
  // must still reach the user's terminal. script(1) gives npm a terminal.
  const hasScript = run('sh', ['-c', 'command -v script']).status === 0;
  if (hasScript) {
    const t = run('script', ['-qec', 'npm rebuild zcopy', '/dev/null'], { cwd: app, env });
    check(t.status === 0 && /zcopy: native addon NOT built/.test(t.out), 'on a terminal, plain `npm rebuild zcopy` shows the line') || console.log(t.out);
  } else {
    console.log('skip: script(1) is not installed (util-linux); the terminal case is not tested');
  }
  const after = run('npx', ['--no-install', 'zcopy', 'info'], { cwd: app, env });
  check(after.status === 0 && /portable/i.test(after.out) && /cc/.test(after.out), '`npx zcopy info` reports the portable path and why') || console.log(after.out);
  const req = run(process.execPath, ['-e', `const z = require('zcopy'); const c = z.capabilities(); if (c.native) throw new Error('native after a failed build?'); console.log(c.reason)`], { cwd: app });
  check(req.status === 0 && /cc/.test(req.out), `capabilities().reason: ${req.out.trim()}`);

  step('install scripts not run (npm --ignore-scripts, or scripts not allowed)');
  const app2 = join(tmp, 'app-no-scripts');
  mkdirSync(app2);
  writeFileSync(join(app2, 'package.json'), JSON.stringify({ name: 'zcopy-consumer-2', version: '1.0.0', private: true }, null, 2));
  let i2 = run('npm', ['install', '--offline', '--ignore-scripts', '--no-audit', '--no-fund', tgz], { cwd: app2 });
  if (i2.status !== 0) i2 = run('npm', ['install', '--ignore-scripts', '--no-audit', '--no-fund', tgz], { cwd: app2 });
  must(i2, 'npm install --ignore-scripts <tarball>');
  const info2 = run(process.execPath, [join(app2, 'node_modules', 'zcopy', 'dist', 'cli', 'main.js'), 'info'], { cwd: app2 });
  check(info2.status === 0 && /install script did not run/.test(info2.out) && info2.out.includes('npm rebuild zcopy'), 'zcopy info says the install script did not run and how to rebuild') || console.log(info2.out);
}

console.log(`\nconsumer project: ${relative(process.cwd(), app) || app} (${basename(tgz)})`);
finish();
