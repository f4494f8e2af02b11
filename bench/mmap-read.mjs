// mmap benchmark (issue 4): random 4 KiB reads from a 1 GiB page-cached file.
//
//   npx tsc -p tsconfig.json
//   flock /tmp/zcopy-bench.lock node bench/mmap-read.mjs [--runs 5] [--seconds 2] [--size 1g]
//                                                       [--dir /tmp/zcopy-bench] [--quick]
//
// Each read copies one page-aligned 4 KiB block at a random offset into a
// reused buffer:
//   readSync         fs.readSync(fd, buf, 0, 4096, pos)            (reference)
//   mapFile          mapFile(file, { populate: true }) + buffer.copy
//   mapFile-nopop    mapFile(file) + buffer.copy: the run includes the first-touch page faults
//   mmap-io          mmap-io 1.1.7 map(...MAP_POPULATE) + buffer.copy (peer; only if it installs)
//   c-pread, c-mmap  the same loops in C (ceiling): pread(2), and memcpy from mmap(2)
// Every scenario runs in its own process, scenarios interleaved run by run,
// the measured runs under /tmp/zcopy-bench.lock. The table goes to stdout,
// the raw runs and medians to bench/results/mmap-read-<date>.json.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import {
  buildDir, commandLine, compileC, ensureFile, fmt, fmtRatio, fmtSize, fmtSpread, interleave, locked, machineInfo, options,
  parseCount, parseSeconds, parseSize, runChild, runSelf, scaleSpread, spread, table, warmFile, writeResults, xorshift32,
} from './lib.mjs';

const BLOCK = 4096;
const MMAPIO_DIR = '/tmp/zcopy-mmapio';

// --child and --file: one scenario in this process (the parent runs them).
const { values: argv, runs, seconds, size } = options(import.meta.url, {
  child: { type: 'string' },
  file: { type: 'string' },
  runs: { type: 'string' },
  seconds: { type: 'string' },
  size: { type: 'string', default: '1g' },
  dir: { type: 'string', default: '/tmp/zcopy-bench' },
  quick: { type: 'boolean', default: false },
  'no-install': { type: 'boolean', default: false },
}, {
  check: (v) => ({
    values: v,
    runs: parseCount(v.runs ?? (v.quick ? 2 : 5), 'runs'),
    seconds: parseSeconds(v.seconds ?? (v.quick ? 0.5 : 2)),
    size: parseSize(v.size, 'size'),
  }),
});

/** Page-aligned random offsets, the same sequence in every process (xorshift32). */
function offsets(size, n, seed = 0x1234567) {
  const pages = Math.floor(size / BLOCK);
  const out = new Float64Array(n);
  const next = xorshift32(seed);
  for (let i = 0; i < n; i++) out[i] = (next() % pages) * BLOCK;
  return out;
}

/** Runs read(pos) over the offsets for about `seconds`; returns ops/s and a checksum of the first pass. */
function measure(read, dst, offs, seconds) {
  let check = 0;
  for (let i = 0; i < 1000; i++) {
    read(offs[i]);
    check = (check * 31 + dst[0] + dst[BLOCK - 1] * 7) % 1_000_000_007;
  }
  const batch = 20_000;
  let done = 0;
  let i = 0;
  const t0 = process.hrtime.bigint();
  const limit = BigInt(Math.round(seconds * 1e9));
  let elapsed = 0n;
  while (elapsed < limit) {
    for (let k = 0; k < batch; k++) {
      read(offs[i]);
      if (++i === offs.length) i = 0;
    }
    done += batch;
    elapsed = process.hrtime.bigint() - t0;
  }
  return { ops: done, opsPerSec: done / (Number(elapsed) / 1e9), check };
}

async function child(scenario, file, seconds) {
  const size = fs.statSync(file).size;
  const offs = offsets(size, 1 << 20);
  const dst = Buffer.allocUnsafe(BLOCK);
  let result;
  if (scenario === 'readSync') {
    const fd = fs.openSync(file, 'r');
    result = measure((pos) => fs.readSync(fd, dst, 0, BLOCK, pos), dst, offs, seconds);
    fs.closeSync(fd);
  } else if (scenario === 'mapFile' || scenario === 'mapFile-nopop') {
    const { mapFile, capabilities } = await loadZcopy();
    if (!capabilities().mmap) throw new Error(`no mmap here: ${capabilities().reason}`);
    const t = process.hrtime.bigint();
    const m = await mapFile(file, { populate: scenario === 'mapFile' });
    const mapMs = Number(process.hrtime.bigint() - t) / 1e6;
    const src = m.buffer;
    result = { ...measure((pos) => src.copy(dst, 0, pos, pos + BLOCK), dst, offs, seconds), mapMs };
    m.close();
  } else if (scenario === 'mmap-io') {
    const mmap = createRequire(path.join(MMAPIO_DIR, 'index.js'))('mmap-io');
    const fd = fs.openSync(file, 'r');
    const t = process.hrtime.bigint();
    const src = mmap.map(size, mmap.PROT_READ, mmap.MAP_SHARED | mmap.MAP_POPULATE, fd, 0);
    const mapMs = Number(process.hrtime.bigint() - t) / 1e6;
    result = { ...measure((pos) => src.copy(dst, 0, pos, pos + BLOCK), dst, offs, seconds), mapMs };
    fs.closeSync(fd);
  } else {
    throw new Error(`unknown scenario ${scenario}`);
  }
  process.stdout.write(JSON.stringify(result) + '\n');
}

/** dist/index.js once the integrator exports issue 4 there; the module files until then. */
async function loadZcopy() {
  const index = await import('../dist/index.js').catch(() => ({}));
  if (typeof index.mapFile === 'function') return index;
  const { mapFile } = await import('../dist/mapped-file.js');
  const { capabilities } = await import('../dist/capabilities.js');
  return { mapFile, capabilities };
}

const C_REF = String.raw`
/* Random 4 KiB reads in C: pread(2) into a buffer, or memcpy out of a
 * MAP_POPULATE mapping. Same offsets as the Node scenarios. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char** argv) {
  if (argc != 4) return 2;
  int use_mmap = strcmp(argv[1], "mmap") == 0;
  double seconds = atof(argv[3]);
  int fd = open(argv[2], O_RDONLY);
  struct stat st; fstat(fd, &st);
  size_t pages = st.st_size / 4096, n = 1 << 20;
  uint64_t* offs = malloc(n * 8);
  uint32_t x = 0x1234567;
  for (size_t i = 0; i < n; i++) { x ^= x << 13; x ^= x >> 17; x ^= x << 5; offs[i] = (uint64_t)(x % pages) * 4096; }
  unsigned char* src = use_mmap ? mmap(NULL, st.st_size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0) : NULL;
  unsigned char dst[4096];
  uint64_t sum = 0, done = 0; size_t i = 0;
  double t0 = now(), el = 0;
  while (el < seconds) {
    for (int k = 0; k < 20000; k++) {
      if (use_mmap) memcpy(dst, src + offs[i], 4096);
      else if (pread(fd, dst, 4096, offs[i]) != 4096) return 1;
      sum += dst[0];
      __asm__ volatile("" ::: "memory");
      if (++i == n) i = 0;
    }
    done += 20000;
    el = now() - t0;
  }
  printf("{\"ops\":%llu,\"opsPerSec\":%f,\"sum\":%llu}\n", (unsigned long long)done, done / el, (unsigned long long)sum);
  return 0;
}
`;

function buildCRef() {
  fs.mkdirSync(buildDir, { recursive: true });
  const src = path.join(buildDir, 'mmap-read-ref.c');
  if (!fs.existsSync(src) || fs.readFileSync(src, 'utf8') !== C_REF) fs.writeFileSync(src, C_REF);
  return compileC(src, 'mmap-read-ref');
}

/** mmap-io as a peer: installed in a scratch dir, never in the project. Returns null or why not. */
function mmapIoStatus() {
  const load = () => {
    try {
      createRequire(path.join(MMAPIO_DIR, 'index.js'))('mmap-io');
      return null;
    } catch (err) {
      return err;
    }
  };
  if (load() === null) return { ok: true, note: fs.existsSync(path.join(MMAPIO_DIR, 'BUILD-NOTE')) ? fs.readFileSync(path.join(MMAPIO_DIR, 'BUILD-NOTE'), 'utf8').trim() : '' };
  if (argv['no-install']) return { ok: false, why: 'not installed (--no-install)' };
  fs.mkdirSync(MMAPIO_DIR, { recursive: true });
  if (!fs.existsSync(path.join(MMAPIO_DIR, 'package.json'))) fs.writeFileSync(path.join(MMAPIO_DIR, 'package.json'), '{"name":"scratch","private":true}\n');
  const plain = spawnSync('npm', ['install', '--no-save', 'mmap-io@1.1.7'], { cwd: MMAPIO_DIR, encoding: 'utf8', timeout: 300_000 });
  if (plain.status === 0 && load() === null) return { ok: true, note: '' };
  const firstErr = `${plain.stdout}\n${plain.stderr}`.split('\n').find((l) => /error:/.test(l))?.replace(/^npm error\s*/, '').trim();
  // The stock build fails on Node 20's headers (node.h needs C++17); retry once with that standard.
  const retry = spawnSync('npm', ['install', '--no-save', 'mmap-io@1.1.7'], {
    cwd: MMAPIO_DIR, encoding: 'utf8', timeout: 300_000, env: { ...process.env, CXXFLAGS: '-std=gnu++17' },
  });
  if (retry.status === 0 && load() === null) {
    const note = `the stock install fails on Node ${process.version} (${firstErr ?? 'compile error'}); built with CXXFLAGS=-std=gnu++17`;
    fs.writeFileSync(path.join(MMAPIO_DIR, 'BUILD-NOTE'), note + '\n');
    return { ok: true, note };
  }
  return { ok: false, why: `npm install mmap-io failed: ${firstErr ?? `exit ${plain.status}`}` };
}

async function main() {
  const file = path.join(argv.dir, `mmap-read-${fmtSize(size).replace(' ', '')}.bin`);
  ensureFile(file, size);
  const cref = buildCRef();
  const mmapio = mmapIoStatus();
  const scenarios = ['readSync', 'mapFile', 'mapFile-nopop', ...(mmapio.ok ? ['mmap-io'] : []), 'c-pread', 'c-mmap'];
  const checks = {};
  const results = await locked(() => {
    warmFile(file);
    return interleave(runs, scenarios, (s) =>
      s.startsWith('c-')
        ? runChild(cref, [s.slice(2), file, String(seconds)])
        : runSelf(import.meta.url, ['--child', s, '--file', file, '--seconds', String(seconds)]), {
      each: (s, _, r) => r.check !== undefined && (checks[s] ??= new Set()).add(r.check),
    });
  });
  // Every Node scenario must have read the same bytes.
  const sums = new Set(Object.values(checks).flatMap((c) => [...c]));
  if (sums.size !== 1) throw new Error(`scenarios read different bytes: ${JSON.stringify(Object.fromEntries(Object.entries(checks).map(([k, v]) => [k, [...v]])))}`);

  const summary = {};
  for (const s of scenarios) summary[s] = { opsPerSec: spread(results[s].map((r) => r.opsPerSec)), mapMs: spread(results[s].map((r) => r.mapMs).filter((x) => x !== undefined)) };
  const ref = summary.readSync.opsPerSec.median;
  const labels = {
    readSync: 'fs.readSync into a reused buffer (reference)',
    mapFile: 'zcopy mapFile({ populate: true }) + copy',
    'mapFile-nopop': 'zcopy mapFile() + copy, first-touch faults included',
    'mmap-io': 'mmap-io 1.1.7 map(MAP_POPULATE) + copy (peer)',
    'c-pread': 'C pread(2) (ceiling for readSync)',
    'c-mmap': 'C memcpy from mmap(2) (ceiling for mapFile)',
  };
  const rows = scenarios.map((s) => [
    s,
    labels[s],
    fmtSpread(scaleSpread(summary[s].opsPerSec, 1e6), 3),
    fmtRatio(summary[s].opsPerSec.median, ref),
    summary[s].mapMs ? fmt(summary[s].mapMs.median, 0) : '-',
  ]);
  const m = machineInfo();
  const header = `Random 4 KiB reads from a ${fmtSize(size)} page-cached file; ${runs} runs x ${seconds} s per scenario, each in its own process.\n` +
    `Node ${m.node}, ${m.cpus} x ${m.cpuModel ?? 'cpu'}, Linux ${m.kernel}`;
  const text = `${header}\n\n${table(['scenario', 'what', 'M reads/s median [min-max]', 'vs readSync', 'map ms'], rows)}\n` +
    (mmapio.ok ? (mmapio.note ? `\nmmap-io: ${mmapio.note}\n` : '') : `\nmmap-io skipped: ${mmapio.why}\n`);
  console.log(text);
  writeResults('mmap-read', {
    bench: 'mmap-read', issue: 4, date: new Date().toISOString(), node: m.node, kernel: m.kernel, cpus: m.cpus,
    command: commandLine(import.meta.url),
    config: { size, block: BLOCK, runs, seconds, file }, mmapIo: mmapio, runs: results, summary,
    ratioVsReadSync: Object.fromEntries(scenarios.map((s) => [s, summary[s].opsPerSec.median / ref])), table: text,
  });
}

if (argv.child) await child(argv.child, argv.file, seconds);
else await main();
