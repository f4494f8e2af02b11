#!/usr/bin/env node
// Builds the native addon with node-gyp. It never fails the install: when
// the addon cannot be built (no compiler, another OS) zcopy works through its
// portable path and capabilities() reports the reason recorded here.
// With --strict (npm run build:native) a failed build exits non-zero.
//
// A failed build prints ONE line (to stderr) saying so, why, and two commands
// that work where zcopy is installed: `npx zcopy info` and the rebuild. npm
// (7+) hides the output of a dependency's install script unless it fails, so
// when it is captured (stderr not a terminal, installed under node_modules)
// the same line also goes to the controlling terminal, if there is one.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const strict = process.argv.includes('--strict');
const statusFile = join(root, 'build', 'zcopy-build.json');

function record(ok, reason) {
  mkdirSync(dirname(statusFile), { recursive: true });
  writeFileSync(statusFile, JSON.stringify({ ok, reason, node: process.version, platform: process.platform, date: new Date().toISOString() }, null, 2) + '\n');
}

function findNodeGyp() {
  // npm puts its bundled node-gyp on the path of lifecycle scripts; also try
  // resolving it next to npm itself for a direct `node scripts/build-native.mjs`.
  if (process.env.npm_config_node_gyp && existsSync(process.env.npm_config_node_gyp)) return [process.execPath, process.env.npm_config_node_gyp];
  try {
    const req = createRequire(import.meta.url);
    return [process.execPath, req.resolve('node-gyp/bin/node-gyp.js')];
  } catch {}
  const npmDir = join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  if (existsSync(npmDir)) return [process.execPath, npmDir];
  return ['node-gyp'];
}

if (process.env.ZCOPY_SKIP_NATIVE === '1') {
  record(false, 'native build skipped (ZCOPY_SKIP_NATIVE=1)');
  console.log('zcopy: native build skipped; using the portable path');
  process.exit(0);
}
if (process.platform !== 'linux') {
  record(false, `zero-copy syscalls are Linux-only (platform ${process.platform})`);
  console.log(`zcopy: ${process.platform} has no supported zero-copy syscalls; using the portable path`);
  process.exit(0);
}

// Build against the headers of the running Node when they are installed
// beside it (as on Debian-style and official tarball installs): node-gyp
// would otherwise try to download them, and there may be no network.
const args = ['rebuild', '--release'];
const prefix = join(dirname(process.execPath), '..');
if (!process.env.npm_config_nodedir && existsSync(join(prefix, 'include', 'node', 'node_api.h')) && existsSync(join(prefix, 'include', 'node', 'common.gypi'))) {
  args.push(`--nodedir=${prefix}`);
}

const [cmd, ...pre] = findNodeGyp();
const r = spawnSync(cmd, [...pre, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
if (r.status === 0) {
  record(true, undefined);
  console.log('zcopy: native addon built (build/Release/zcopy.node)');
} else {
  const out = `${r.stdout ?? ''}\n${r.stderr ?? ''}`;
  // The most telling line: a missing tool, then a compiler error, then gyp's.
  const lines = out.split('\n').map((l) => l.trim());
  const firstError = [/No such file or directory|command not found|: not found|Could not find any/i, /fatal error|error:/i, /error|ENOENT/i]
    .map((re) => lines.find((l) => re.test(l) && !/^gyp ERR! (stack|System|command|cwd|node)/.test(l)))
    .find(Boolean)
    ?.replace(/^FileNotFoundError: \[Errno 2\] /, '');
  const reason = r.error ? `node-gyp could not run: ${r.error.message}` : `native build failed: ${firstError ?? `node-gyp exited ${r.status}`}`;
  record(false, reason);
  // In a consumer project npm's own command rebuilds it (with the log shown);
  // in a checkout of zcopy itself, the package script does.
  const dependency = root.split(sep).includes('node_modules');
  const rebuild = dependency ? 'npm rebuild zcopy --foreground-scripts' : 'npm run build:native';
  const line = `zcopy: native addon NOT built (${reason.replace(/\s+/g, ' ')}); zcopy still works, on the portable (copying) path. Check: npx zcopy info. Rebuild after fixing: ${rebuild}`;
  console.warn(line);
  if (dependency && !process.stderr.isTTY && process.env.npm_lifecycle_event && !strict) {
    try {
      writeFileSync('/dev/tty', line + '\n');
    } catch {
      // No terminal (CI): the line is in the log of --foreground-scripts and in `npx zcopy info`.
    }
  }
  if (strict) { process.stderr.write(out); process.exit(1); }
}
