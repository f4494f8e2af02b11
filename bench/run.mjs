// Entry point of `npm run bench`: runs one named benchmark in a child process.
//
//   node bench/run.mjs [NAME] [ARGS...]      (NAME defaults to "core")
//   npm run bench -- NAME ARGS...
//   node bench/run.mjs --list
//
// NAME is an entry below, or else bench/NAME/index.mjs (or run.mjs) or
// bench/NAME.mjs if one exists, so a new benchmark runs without editing this
// file. ARGS go to the benchmark unchanged. Measured runs belong under
// /tmp/zcopy-bench.lock: core takes it around each run itself, and when an
// ancestor already holds it (`flock /tmp/zcopy-bench.lock npm run bench`)
// it does not take it again. Every benchmark is built on the harness in
// bench/lib.mjs (options and --help, child processes, the lock, repeated
// runs, median and ratio, results JSON); `NAME --help` shows its options.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { benchDir as here, headerOf } from './lib.mjs';

/** Registered benchmarks: name -> script relative to bench/, and what it measures. */
const entries = {
  core: { script: 'core/index.mjs', about: 'issue 2: 1 GiB file to a reader over TCP/Unix, cold cache, small-file crossover' },
};

function discover() {
  const found = { ...entries };
  for (const d of fs.readdirSync(here, { withFileTypes: true })) {
    if (d.name.startsWith('.') || d.name === 'results') continue;
    if (d.isDirectory()) {
      const main = ['index.mjs', 'run.mjs'].find((f) => fs.existsSync(path.join(here, d.name, f)));
      if (main) found[d.name] ??= { script: `${d.name}/${main}`, about: about(`${d.name}/${main}`) };
    } else if (d.isFile() && d.name.endsWith('.mjs') && d.name !== 'run.mjs' && d.name !== 'lib.mjs') {
      found[d.name.slice(0, -4)] ??= { script: d.name, about: about(d.name) };
    }
  }
  return found;
}

/** The first sentence of a script's header comment, for --list. */
function about(script) {
  const text = headerOf(path.join(here, script)).split('\n\n')[0].replace(/\s+/g, ' ').trim();
  const first = /^.*?[.;](?=\s|$)/.exec(text)?.[0] ?? text;
  return first.length > 110 ? `${first.slice(0, 107)}...` : first;
}

const [first, ...rest] = process.argv.slice(2);
const all = discover();
if (first === '--list' || first === '-l') {
  for (const [name, e] of Object.entries(all)) console.log(`${name.padEnd(12)} bench/${e.script}${e.about ? `  ${e.about}` : ''}`);
  process.exit(0);
}
// A leading option (e.g. `npm run bench -- --quick`) goes to the default benchmark.
const name = first === undefined || first.startsWith('-') ? 'core' : first;
const args = first === undefined || first.startsWith('-') ? process.argv.slice(2) : rest;
const entry = all[name];
if (!entry) {
  console.error(`unknown benchmark "${name}"; available: ${Object.keys(all).join(', ')}`);
  process.exit(2);
}
const child = spawn(process.execPath, [path.join(here, entry.script), ...args], { stdio: 'inherit' });
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
