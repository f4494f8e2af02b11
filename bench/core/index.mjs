// Core benchmark (issue 2): moving a 1 GiB page-cached file to a separate
// reader process over loopback TCP and a Unix socket, zcopy against Node's
// usual ways and against C references; event-loop delay under a cold page
// cache; and the small-file crossover between one buffered write and
// header + sendFile.
//
//   node bench/run.mjs core [--quick] [--runs N] [--sections warm,cold,crossover]
//        [--impls 'c-*,zcopy-auto,...'] [--transports tcp,unix] [--size 1g]
//        [--chunk-size N] [--c-sndbuf N] [--cold-runs N] [--cold-impls a,b] [--xover-runs N]
//        [--xover-seconds S] [--dir /tmp/zcopy-bench] [--c-reference FILE]
//        [--out FILE] [--from-json FILE]
//
// Senders (--impls, globs allowed):
//   c-sendfile, c-copy, c-splice        C, blocking socket: one sendfile call
//                                       for the whole file / 1 MiB pread+write /
//                                       file->1 MiB pipe->socket (the issue's references)
//   c-sendfile-nb, c-copy-nb, c-splice-nb
//                                       the same, non-blocking + poll(2) on EAGAIN,
//                                       at most chunkSize (2 MiB) per call: driven
//                                       the way an event loop drives zcopy
//                                       (--chunk-size sets their per-call size;
//                                       --c-sndbuf sets SO_SNDBUF on every C sender)
//   zcopy-auto, zcopy-sendfile, zcopy-splice, zcopy-copy
//                                       sendFile(socket, path, { mechanism })
//   node-pipe                           fs.createReadStream(file).pipe(socket)
//   node-rwloop                         fs.read into a reused 1 MiB buffer + socket.write
//
// Every scenario runs in its own process (senders, receivers, servers and
// clients), each measured run under /tmp/zcopy-bench.lock, after waiting for
// the shared machine to be quiet. The tables go to stdout and
// bench/results/core-<date>.txt; raw runs and summaries to
// bench/results/core-<date>.json. --from-json recomputes the summaries and
// tables of an earlier results file without measuring. GB means 10^9 bytes.
// ZCOPY_BENCH_RUNS sets --runs. The harness (options, processes, lock,
// statistics, results) is bench/lib.mjs.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {
  benchDir, buildC, commandLine, ensureFile, fmt, fmtSize, fmtSpread, jsonChild, lockStats, locked, machineInfo, options,
  parseCount, parseSeconds, parseSize, ratio, repoRoot, spread, table, waitQuiet, writeResults,
} from '../lib.mjs';

// Every value is checked before anything runs (a mistake: one line, exit 2).
const { values: argv, n: num } = options(import.meta.url, {
  quick: { type: 'boolean', default: false },
  runs: { type: 'string' },
  sections: { type: 'string', default: 'warm,cold,crossover' },
  impls: { type: 'string' },
  transports: { type: 'string', default: 'tcp,unix' },
  size: { type: 'string', default: '1g' },
  dir: { type: 'string', default: '/tmp/zcopy-bench' },
  'cold-runs': { type: 'string' },
  'cold-impls': { type: 'string', default: 'zcopy-auto,node-pipe' },
  'xover-runs': { type: 'string' },
  'xover-seconds': { type: 'string' },
  'chunk-size': { type: 'string' },
  'c-sndbuf': { type: 'string' },
  'c-reference': { type: 'string' },
  out: { type: 'string' },
  'from-json': { type: 'string' },
}, {
  check: (v) => {
    const q = v.quick;
    return {
      values: v,
      n: {
        runs: parseCount(v.runs ?? process.env.ZCOPY_BENCH_RUNS ?? (q ? 2 : 5), 'runs'),
        coldRuns: parseCount(v['cold-runs'] ?? (q ? 1 : 2), 'cold-runs'),
        xoverRuns: parseCount(v['xover-runs'] ?? (q ? 1 : 4), 'xover-runs'),
        xoverSeconds: parseSeconds(v['xover-seconds'] ?? (q ? 0.5 : 1), 'xover-seconds'),
        fileSize: parseSize(v.size, 'size'),
        chunkSize: v['chunk-size'] ? parseSize(v['chunk-size'], 'chunk-size') : null,
        cSndbuf: v['c-sndbuf'] ? parseSize(v['c-sndbuf'], 'c-sndbuf') : null,
      },
    };
  },
});

const ALL_IMPLS = [
  'c-sendfile', 'c-copy', 'c-splice',
  'c-sendfile-nb', 'c-copy-nb', 'c-splice-nb',
  'zcopy-auto', 'zcopy-sendfile', 'zcopy-splice', 'zcopy-copy',
  'node-pipe', 'node-rwloop',
];
function selectImpls(spec) {
  if (!spec) return ALL_IMPLS;
  const pats = spec.split(',').map((p) => new RegExp(`^${p.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`));
  return ALL_IMPLS.filter((i) => pats.some((p) => p.test(i)));
}

// The machine is shared (2 cores) and test suites do not take the lock.
// Before each measured run, under the lock, wait until other processes use
// less than NOISY_CORES (at most 20 s a run and QUIET_BUDGET_S in all, so the
// bench stays bounded). A run during which they still used more than that is
// repeated once; if still noisy it is kept, flagged, and left out of the
// medians as long as at least half of the runs are clean.
const NOISY_CORES = Number(process.env.ZCOPY_BENCH_NOISY_CORES ?? 0.25);
const NOISY_RETRIES = 1;

const startMs = Date.now();
const report = [];
function log(msg) {
  process.stdout.write(`${msg}\n`);
}
function out(text = '') {
  report.push(text);
  log(text);
}

let results;
let config;
if (argv['from-json']) {
  results = JSON.parse(fs.readFileSync(argv['from-json'], 'utf8'));
  config = results.meta.config;
  results.meta.resummarized = { date: new Date().toISOString(), command: commandLine(import.meta.url) };
} else {
  const quick = argv.quick;
  config = {
    runs: num.runs,
    coldRuns: num.coldRuns,
    xoverRuns: num.xoverRuns,
    xoverSeconds: num.xoverSeconds,
    fileSize: num.fileSize,
    sections: argv.sections.split(','),
    transports: argv.transports.split(','),
    impls: selectImpls(argv.impls),
    coldImpls: argv['cold-impls'].split(',').filter((i) => ALL_IMPLS.includes(i)),
    chunkSize: num.chunkSize,
    cSndbuf: num.cSndbuf,
    dir: argv.dir,
    quietBudgetS: Number(process.env.ZCOPY_BENCH_QUIET_BUDGET ?? (quick ? 60 : 180)),
    noisyCores: NOISY_CORES,
  };
  config.dataFile = path.join(config.dir, `data-${config.fileSize}.bin`);
  results = {
    meta: {
      date: new Date().toISOString(),
      command: commandLine(import.meta.url),
      machine: {
        ...machineInfo(),
        cc: execFileSync('cc', ['--version'], { encoding: 'utf8' }).split('\n')[0],
      },
      config,
      gb: '1e9 bytes',
    },
    warm: null,
    cold: null,
    crossover: null,
    targets: [],
  };
  await measure();
}
summarize();
write();
process.exit(0);

// ===================================================================== measure

async function measure() {
  const bins = buildC(['send', 'sink', 'pagecache', 'rr-client']);
  const nodeSender = path.join(benchDir, 'core', 'node-sender.mjs');
  const xoverServer = path.join(benchDir, 'core', 'crossover-server.mjs');
  const { dir, dataFile, fileSize } = config;
  let quietBudgetS = config.quietBudgetS;

  // zcopy comes from dist/ (npx tsc -p tsconfig.json); without it the zcopy
  // scenarios are skipped with the reason, the rest still runs.
  let zcopy = null;
  let zcopyReason = null;
  try {
    const mod = await import(path.join(repoRoot, 'dist', 'index.js'));
    if (typeof mod.sendFile !== 'function') zcopyReason = 'dist/index.js has no sendFile export yet';
    else zcopy = mod;
  } catch (err) {
    zcopyReason = `cannot import dist/index.js (${err.code ?? err.message}); run npx tsc -p tsconfig.json`;
  }
  results.meta.zcopy = zcopy ? { capabilities: zcopy.capabilities() } : { skipped: zcopyReason };
  const usable = (impl) => !impl.startsWith('zcopy-') || zcopy !== null;

  fs.mkdirSync(dir, { recursive: true });
  ensureFile(dataFile, fileSize, undefined, { log });

  function pagecache(cmd, file) {
    return JSON.parse(execFileSync(bins.pagecache, [cmd, file], { encoding: 'utf8' }).trim()).resident;
  }

  function dropCache(file) {
    // drop_caches spares pages mapped by running processes, so the sender's
    // own code (already loaded: it waits for "go") stays cached; the data
    // file, which nothing maps, goes.
    let method = 'drop_caches';
    let why = null;
    try {
      execFileSync('sync');
      fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
    } catch (err) {
      why = err.code ?? err.message;
      method = 'posix_fadvise(DONTNEED)';
      pagecache('drop', file);
    }
    return { method, why, residentBefore: pagecache('status', file) };
  }

  // ---- receivers: one C sink per transport, reused across runs.
  const sinks = {};
  async function sinkFor(transport) {
    if (!sinks[transport]) {
      const addr = transport === 'tcp' ? 'tcp:0' : `unix:${path.join(dir, `sink-${process.pid}.sock`)}`;
      const sink = jsonChild(bins.sink, [addr], { timeoutMs: 3_600_000 });
      sink.addr = (await sink.next()).listening;
      sinks[transport] = sink;
    }
    return sinks[transport];
  }
  async function resetSink(transport) {
    const sink = sinks[transport];
    delete sinks[transport];
    if (!sink) return;
    await sink.kill();
    if (sink.addr?.startsWith('unix:')) fs.rmSync(sink.addr.slice(5), { force: true });
  }
  async function resetSinks() {
    for (const t of Object.keys(sinks)) await resetSink(t);
  }

  /** One transfer of `file` by `impl` to the transport's sink; call under the lock. */
  async function transfer(impl, transport, file, { cold = false } = {}) {
    const sink = await sinkFor(transport);
    const size = fs.statSync(file).size;
    const chunk = String(config.chunkSize ?? 2 << 20);
    const child = impl.startsWith('c-')
      ? jsonChild(bins.send, [
        ...(config.cSndbuf ? ['--sndbuf', String(config.cSndbuf)] : []),
        ...(impl.endsWith('-nb') ? ['--nonblock', '--chunk', chunk, impl.slice(2, -3)] : [impl.slice(2)]),
        sink.addr, file])
      : jsonChild(process.execPath, [nodeSender, impl, sink.addr, file, ...(cold ? ['--wait-go'] : []),
        ...(config.chunkSize ? ['--chunk-size', chunk] : [])]);
    try {
      let dropped = null;
      if (cold) {
        await child.next(); // {"ready":true}: connected, code loaded
        dropped = dropCache(file);
        child.child.stdin.write('go\n');
      }
      const result = cold ? await child.next() : (await child.done())[0];
      if (cold) await child.done();
      const got = await sink.next();
      if (got.bytes !== size || result.bytes !== size) {
        throw new Error(`${impl}: sent ${result.bytes}, receiver got ${got.bytes}, expected ${size}`);
      }
      const gb = size / 1e9;
      // machineBusyS: all CPUs over the run (1/100 s ticks); the rest of the
      // machine used what sender and receiver did not.
      const otherCpuS = Math.max(0, result.machineBusyS - result.userS - result.sysS - got.cpuS);
      return {
        ...result,
        impl,
        cache: dropped ?? undefined,
        receiverWallS: got.wallS,
        receiverCpuS: got.cpuS,
        gbps: gb / result.wallS,
        cpuSPerGB: (result.userS + result.sysS) / gb,
        receiverCpuSPerGB: got.cpuS / gb,
        otherCores: otherCpuS / result.wallS,
      };
    } catch (err) {
      await child.kill();
      await resetSink(transport); // its per-connection lines may be out of step now
      throw err;
    }
  }

  async function quiet() {
    const q = await waitQuiet({ maxCores: NOISY_CORES, maxWaitS: Math.max(0, Math.min(20, quietBudgetS)) });
    quietBudgetS -= q.waitedS;
    return q;
  }

  async function measured(fn) {
    let rec;
    for (let attempt = 1; attempt <= 1 + NOISY_RETRIES; attempt++) {
      rec = await locked(async () => {
        const q = await quiet();
        return { ...(await fn()), quietWaitS: q.waitedS, loadBeforeCores: q.cores };
      });
      rec.attempts = attempt;
      rec.noisy = rec.otherCores > NOISY_CORES;
      if (!rec.noisy || quietBudgetS <= 0) break;
    }
    return rec;
  }

  // ---- warm page cache
  if (config.sections.includes('warm')) {
    results.warm = { runs: [] };
    const skipped = config.impls.filter((i) => !usable(i));
    if (skipped.length) log(`skipping ${skipped.join(', ')}: ${zcopyReason}`);
    const active = config.impls.filter(usable);
    log(`warm: ${fmtSize(fileSize)} page-cached, ${config.runs} runs x ${config.transports.join('+')} x ${active.length} senders`);
    for (let run = 1; run <= config.runs; run++) {
      for (const transport of config.transports) {
        // Rotate the order each run so no sender always follows the same one.
        const order = active.map((_, i) => active[(i + run - 1) % active.length]);
        for (const impl of order) {
          let rec;
          try {
            rec = await measured(async () => {
              pagecache('warm', dataFile);
              return transfer(impl, transport, dataFile);
            });
          } catch (err) {
            rec = { impl, error: String(err.message ?? err) };
            log(`  run ${run} ${transport} ${impl}: ERROR ${rec.error}`);
          }
          rec.run = run;
          rec.transport = transport;
          results.warm.runs.push(rec);
          if (!rec.error) {
            const eld = rec.eld ? `  eld p99 ${fmt(rec.eld.p99Ms)} ms max ${fmt(rec.eld.maxMs)} ms` : '';
            const noise = `  other ${fmt(rec.otherCores)} cores${rec.attempts > 1 ? ` (attempt ${rec.attempts}${rec.noisy ? ', still noisy' : ''})` : ''}`;
            log(`  run ${run} ${transport.padEnd(4)} ${impl.padEnd(14)} ${fmt(rec.gbps)} GB/s  ${fmt(rec.cpuSPerGB, 3)} CPU s/GB  receiver ${fmt(rec.receiverCpuSPerGB, 3)} s/GB${eld}${noise}`);
          }
        }
      }
    }
    await resetSinks();
  }

  // ---- cold page cache (loopback TCP)
  if (config.sections.includes('cold')) {
    results.cold = { runs: [], transport: 'tcp' };
    const skipped = config.coldImpls.filter((i) => !usable(i));
    if (skipped.length) log(`cold: skipping ${skipped.join(', ')}: ${zcopyReason}`);
    const active = config.coldImpls.filter(usable);
    log(`cold: ${fmtSize(fileSize)} after dropping the page cache, tcp, ${config.coldRuns} runs x ${active.join(', ')}`);
    for (let run = 1; run <= config.coldRuns && !results.cold.skipped; run++) {
      for (const impl of run % 2 ? active : [...active].reverse()) {
        let rec;
        try {
          rec = await measured(() => transfer(impl, 'tcp', dataFile, { cold: true }));
          if (rec.cache.residentBefore > 0.05) {
            results.cold.skipped = `could not drop the page cache: ${Math.round(rec.cache.residentBefore * 100)}% of the file still resident (${rec.cache.method}${rec.cache.why ? `, drop_caches: ${rec.cache.why}` : ''})`;
            break;
          }
        } catch (err) {
          rec = { impl, error: String(err.message ?? err) };
          log(`  cold run ${run} ${impl}: ERROR ${rec.error}`);
        }
        rec.run = run;
        results.cold.runs.push(rec);
        if (!rec.error) {
          log(`  cold run ${run} ${impl.padEnd(14)} ${fmt(rec.gbps)} GB/s  eld p99 ${fmt(rec.eld.p99Ms)} ms max ${fmt(rec.eld.maxMs)} ms  (${rec.cache.method}, ${fmt(rec.cache.residentBefore * 100, 1)}% resident before)  other ${fmt(rec.otherCores)} cores`);
        }
      }
    }
    await resetSinks();
    // Leave the file warm for whoever runs next.
    await locked(async () => pagecache('warm', dataFile));
  }

  // ---- small-file crossover
  if (config.sections.includes('crossover')) {
    const sizes = [];
    for (let s = 4 << 10; s <= 4 << 20; s *= 2) sizes.push(s);
    results.crossover = { runs: [], sizes, seconds: config.xoverSeconds };
    if (!zcopy) {
      results.crossover.skipped = zcopyReason;
    } else {
      log(`crossover: ${sizes.length} sizes x buffered/zcopy x ${config.xoverRuns} runs x ${config.xoverSeconds} s`);
      for (const s of sizes) ensureFile(path.join(dir, `xover-${s}.bin`), s, dataFile, { log });
      for (let run = 1; run <= config.xoverRuns; run++) {
        for (const size of sizes) {
          const file = path.join(dir, `xover-${size}.bin`);
          for (const mode of run % 2 ? ['buffered', 'zcopy'] : ['zcopy', 'buffered']) {
            let rec;
            try {
              rec = await locked(async () => {
                pagecache('warm', file);
                const server = jsonChild(process.execPath, [xoverServer, mode, file]);
                try {
                  const { port, responseBytes } = await server.next();
                  const q = await quiet();
                  const client = jsonChild(bins['rr-client'], [`tcp:${port}`, String(responseBytes), String(config.xoverSeconds), '0.3']);
                  const [c] = await client.done();
                  server.child.stdin.end();
                  const [srv] = await server.done();
                  return { ...c, server: srv, loadBeforeCores: q.cores };
                } catch (err) {
                  await server.kill();
                  throw err;
                }
              });
            } catch (err) {
              rec = { error: String(err.message ?? err) };
              log(`  ${fmtSize(size)} ${mode}: ERROR ${rec.error}`);
            }
            Object.assign(rec, { run, size, mode });
            results.crossover.runs.push(rec);
            if (!rec.error) log(`  run ${run} ${fmtSize(size).padEnd(7)} ${mode.padEnd(8)} ${fmt(rec.rps, 0)} req/s  p99 ${fmt(rec.p99Us, 0)} us`);
          }
        }
      }
    }
  }
  results.meta.quietBudgetLeftS = quietBudgetS;
  results.meta.lock = { ...lockStats };
}

// =================================================================== summarize

function dominantPaths(stats) {
  if (!stats?.bytesByPath) return '';
  const total = Object.values(stats.bytesByPath).reduce((a, b) => a + b, 0) || 1;
  return Object.entries(stats.bytesByPath)
    .filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1])
    .map(([p, n]) => (n === total ? p : `${p} ${Math.round((100 * n) / total)}%`))
    .join(', ');
}

/** The runs medians are taken over: the clean ones if at least half are clean. */
function counted(rs) {
  const clean = rs.filter((r) => !r.noisy);
  return clean.length >= Math.max(1, Math.ceil(rs.length / 2)) ? clean : rs;
}

function summarizeTransfers(rs) {
  const ok = rs.filter((r) => !r.error);
  const use = counted(ok);
  if (!use.length) return { errors: rs.length - ok.length };
  const last = use[use.length - 1];
  return {
    runs: use.length,
    noisyExcluded: ok.length - use.length,
    noisyKept: use.filter((r) => r.noisy).length,
    errors: rs.length - ok.length,
    gbps: spread(use.map((r) => r.gbps)),
    cpuSPerGB: spread(use.map((r) => r.cpuSPerGB)),
    receiverCpuSPerGB: spread(use.map((r) => r.receiverCpuSPerGB)),
    eldP99Ms: spread(use.map((r) => r.eld?.p99Ms)),
    eldMaxMs: spread(use.map((r) => r.eld?.maxMs)),
    otherCores: spread(use.map((r) => r.otherCores)),
    path: dominantPaths(last.stats),
    fallbacks: last.stats?.fallbacks,
    threadpoolChunks: last.stats ? spread(use.map((r) => r.stats.threadpoolChunks)) : undefined,
    waits: spread(use.map((r) => r.stats?.waits ?? r.waits)),
    method: last.cache?.method,
  };
}

function summarize() {
  const chunkLabel = fmtSize(config.chunkSize ?? 2 << 20);
  if (results.warm) {
    const S = (results.warm.summary = {});
    const impls = ALL_IMPLS.filter((i) => results.warm.runs.some((r) => r.impl === i));
    const transports = config.transports.filter((t) => results.warm.runs.some((r) => r.transport === t));
    for (const t of transports) {
      S[t] = {};
      for (const impl of impls) S[t][impl] = summarizeTransfers(results.warm.runs.filter((r) => r.transport === t && r.impl === impl));
      const s = S[t];
      const g = (i) => s[i]?.gbps?.median;
      const c = (i) => s[i]?.cpuSPerGB?.median;
      const bestC = Math.max(...['c-sendfile', 'c-copy', 'c-splice'].map((i) => g(i) ?? 0)) || undefined;
      for (const impl of impls) {
        if (!s[impl].gbps) continue;
        const mech = impl.startsWith('zcopy-') && impl !== 'zcopy-auto' ? impl.slice(6) : null;
        s[impl].ratios = {
          vsPipe: ratio(g(impl), g('node-pipe')),
          cpuVsPipe: ratio(c(impl), c('node-pipe')),
          vsCSendfile: ratio(g(impl), g('c-sendfile')),
          vsBestC: ratio(g(impl), bestC),
          vsCSameMechanism: mech ? ratio(g(impl), g(`c-${mech}`)) : null,
          vsCSameMechanismNb: mech ? ratio(g(impl), g(`c-${mech}-nb`)) : null,
          cpuVsCSameMechanismNb: mech ? ratio(c(impl), c(`c-${mech}-nb`)) : null,
        };
      }
    }

    out(`\n## Warm page cache: ${fmtSize(config.fileSize)} to a reader process, ${config.runs} runs (median [min-max]; GB = 1e9 B)\n`);
    out('CPU = sender user+sys per GB; recv = the receiver\'s CPU per GB; ELD = event-loop delay, median of the runs\' p99');
    out(`(max of their max); EAGAIN waits = times the sender waited for writability (median; zcopy: stats().waits);`);
    out(`other = cores other processes kept busy during a run (max); runs with other > ${NOISY_CORES}`);
    out('were retried once, and left out of the medians when at least half the runs were clean ("n noisy").');
    out(`c-X: blocking C sender; c-X-nb: non-blocking + poll, ${chunkLabel} per call like zcopy's chunkSize.\n`);
    const rows = [];
    for (const t of transports) {
      for (const impl of impls) {
        const x = S[t][impl];
        if (!x.gbps) {
          rows.push([t, impl, `all ${x.errors} runs failed`, '', '', '', '', '', '']);
          continue;
        }
        const noise = x.noisyExcluded ? ` (${x.noisyExcluded} noisy out)` : x.noisyKept ? ` (${x.noisyKept} noisy in)` : '';
        rows.push([
          t, impl, fmtSpread(x.gbps), fmtSpread(x.cpuSPerGB, 3), fmt(x.receiverCpuSPerGB?.median, 3),
          x.eldP99Ms ? `${fmt(x.eldP99Ms.median)} (${fmt(x.eldMaxMs.max)})` : '-',
          x.waits ? fmt(x.waits.median, 0) : '-',
          `${fmt(x.otherCores?.max)}${noise}`,
          (x.path || '') + (x.errors ? ` (${x.errors} failed runs)` : ''),
        ]);
      }
    }
    out(table(['transport', 'sender', 'GB/s', 'CPU s/GB', 'recv s/GB', 'ELD p99 ms (max)', 'EAGAIN waits', 'other', 'zcopy path'], rows));

    out('\nRatios of medians (throughput unless marked CPU):\n');
    const rrows = [];
    for (const t of transports) {
      for (const impl of impls) {
        const r = S[t][impl].ratios;
        if (!r || !(impl.startsWith('zcopy-') || impl.startsWith('node-'))) continue;
        rrows.push([t, impl, fmt(r.vsPipe), fmt(r.cpuVsPipe), fmt(r.vsCSendfile), fmt(r.vsBestC),
          fmt(r.vsCSameMechanism), fmt(r.vsCSameMechanismNb), fmt(r.cpuVsCSameMechanismNb)]);
      }
    }
    out(table(['transport', 'sender', 'x pipe', 'CPU x pipe', 'x c-sendfile', 'x best blocking C', 'x c-<same>', 'x c-<same>-nb', 'CPU x c-<same>-nb'], rrows));
  }

  if (results.cold) {
    if (results.cold.skipped) {
      out(`\n## Cold page cache: skipped: ${results.cold.skipped}`);
    } else {
      const S = (results.cold.summary = {});
      const rows = [];
      for (const impl of ALL_IMPLS.filter((i) => results.cold.runs.some((r) => r.impl === i))) {
        const s = (S[impl] = summarizeTransfers(results.cold.runs.filter((r) => r.impl === impl)));
        if (!s.gbps) continue;
        rows.push([impl, fmtSpread(s.gbps), fmtSpread(s.eldP99Ms), fmtSpread(s.eldMaxMs), fmtSpread(s.cpuSPerGB, 3),
          s.threadpoolChunks ? fmt(s.threadpoolChunks.median, 0) : '-', s.path]);
      }
      const method = results.cold.runs.find((r) => r.cache)?.cache.method ?? '?';
      out(`\n## Cold page cache (${method} before each run): ${fmtSize(config.fileSize)} over loopback TCP, ${config.coldRuns} runs\n`);
      out(table(['sender', 'GB/s', 'ELD p99 ms', 'ELD max ms', 'CPU s/GB', 'threadpool chunks', 'zcopy path'], rows));
    }
  }

  if (results.crossover) {
    const X = results.crossover;
    X.sizes ??= [...new Set(X.runs.map((r) => r.size))].sort((a, b) => a - b);
    if (X.skipped) {
      out(`\n## Crossover: skipped: ${X.skipped}`);
    } else {
      X.summary = [];
      const rows = [];
      for (const size of X.sizes) {
        const pick = (mode) => X.runs.filter((r) => r.size === size && r.mode === mode && !r.error);
        const side = (rs) => ({
          rps: spread(rs.map((r) => r.rps)),
          p50Us: spread(rs.map((r) => r.p50Us)),
          p99Us: spread(rs.map((r) => r.p99Us)),
          cpuUsPerRequest: spread(rs.map((r) => r.server.cpuUsPerRequest)),
          path: dominantPaths(rs[rs.length - 1]?.server?.stats),
        });
        const e = { size, buffered: side(pick('buffered')), zcopy: side(pick('zcopy')) };
        e.ratio = e.buffered.rps && e.zcopy.rps ? e.zcopy.rps.median / e.buffered.rps.median : null;
        X.summary.push(e);
        rows.push([fmtSize(size), fmtSpread(e.buffered.rps, 0), fmtSpread(e.zcopy.rps, 0), fmt(e.ratio),
          fmt(e.buffered.cpuUsPerRequest?.median, 0), fmt(e.zcopy.cpuUsPerRequest?.median, 0), e.zcopy.path]);
      }
      // The crossover is the smallest size from which zcopy wins at every
      // larger size too, so one noisy cell cannot move it down.
      let crossover = null;
      for (let i = X.summary.length - 1; i >= 0 && X.summary[i].ratio >= 1; i--) crossover = X.summary[i].size;
      X.crossoverBytes = crossover;
      X.statement = crossover === null
        ? `one buffered write won at every size up to ${fmtSize(X.sizes[X.sizes.length - 1])}`
        : crossover === X.sizes[0]
          ? `header + sendFile won (or tied) at every size from ${fmtSize(X.sizes[0])}`
          : `one buffered write wins below ${fmtSize(crossover)}; header + sendFile wins from ${fmtSize(crossover)} up`;
      out(`\n## Crossover: request-response on one keep-alive TCP connection, ${config.xoverRuns} runs x ${config.xoverSeconds} s (median [min-max])\n`);
      out('buffered: fs.read into a new Buffer behind the head, one socket.write; zcopy: socket.write(head) then sendFile (auto).');
      out('CPU us/req: server user+sys per request (warm-up included).\n');
      out(table(['body', 'buffered req/s', 'zcopy req/s', 'zcopy/buffered', 'buffered CPU us/req', 'zcopy CPU us/req', 'zcopy path'], rows));
      out(`\n${X.statement}`);
    }
  }

  // ---- targets
  results.targets = [];
  const target = (name, value, op, threshold, unit) => {
    const met = value == null ? null : op === '>=' ? value >= threshold : op === '<' ? value < threshold : value <= threshold;
    results.targets.push({ name, value, op, threshold, unit, met });
  };
  const S = results.warm?.summary ?? {};
  const auto = (t) => S[t]?.['zcopy-auto']?.ratios;
  if (S.unix) {
    target('unix: zcopy >= 4x stream pipe', auto('unix')?.vsPipe, '>=', 4, 'x');
    target('unix: zcopy >= 0.8x C sendfile', auto('unix')?.vsCSendfile, '>=', 0.8, 'x');
  }
  if (S.tcp) {
    target('tcp: zcopy >= 1.5x stream pipe', auto('tcp')?.vsPipe, '>=', 1.5, 'x');
    target('tcp: zcopy CPU/GB <= 0.6x stream pipe', auto('tcp')?.cpuVsPipe, '<=', 0.6, 'x');
    target('tcp: zcopy >= 0.85x C sendfile', auto('tcp')?.vsCSendfile, '>=', 0.85, 'x');
  }
  const zruns = [...(results.warm?.runs ?? []), ...(results.cold?.runs ?? [])].filter((r) => r.impl?.startsWith('zcopy-') && !r.error);
  const p99s = zruns.map((r) => r.eld?.p99Ms).filter(Number.isFinite);
  if (p99s.length) target(`event-loop delay p99 < 20 ms in every zcopy run (${p99s.length} runs, warm + cold)`, Math.max(...p99s), '<', 20, 'ms');
  if (results.targets.length) {
    out('\n## Targets (issue 2); zcopy = sendFile with mechanism auto\n');
    out(table(['target', 'measured', 'met'], results.targets.map((t) => [
      t.name, `${fmt(t.value)}${t.unit === 'ms' ? ' ms' : 'x'}`, t.met == null ? 'n/a' : t.met ? 'MET' : 'MISSED',
    ])));
  }
  const cz = results.cold?.summary?.['zcopy-auto'];
  if (cz?.gbps) {
    out(`\ncold cache (report): zcopy p99 ${fmt(cz.eldP99Ms.median)} ms [${fmt(cz.eldP99Ms.min)}-${fmt(cz.eldP99Ms.max)}], max ${fmt(cz.eldMaxMs.max)} ms, ${fmt(cz.gbps.median)} GB/s`);
  }
  if (results.crossover?.statement) out(`crossover (report): ${results.crossover.statement}`);
}

// ======================================================================= write

function write() {
  if (!argv['from-json']) results.meta.elapsedS = (Date.now() - startMs) / 1000;
  const outFile = writeResults('core', results, {
    date: results.meta.date,
    file: argv.out ?? argv['from-json'],
    text: `${results.meta.command}\n${report.join('\n')}`,
    log: () => {},
  });
  const lock = results.meta.lock;
  log(`\nwrote ${path.relative(process.cwd(), outFile)}${argv['from-json'] ? '' : ` (${fmt(results.meta.elapsedS, 0)} s, of which ${fmt(lock?.waitS, 0)} s waiting for the lock)`}`);

  if (argv['c-reference'] && results.warm?.summary) {
    const m = results.meta.machine;
    const cs = ['c-sendfile', 'c-copy', 'c-splice', 'c-sendfile-nb', 'c-copy-nb', 'c-splice-nb'];
    const lines = [
      `C reference senders (bench/core/c/send.c, cc -O2), ${fmtSize(config.fileSize)} page-cached file -> C sink (1 MiB reads) in another process`,
      `machine: ${m.cpus} CPUs (${m.cpuModel}), kernel ${m.kernel}; ${results.meta.date}`,
      `command: ${results.meta.command}`,
      `GB = 1e9 bytes; CPU = sender user+sys (getrusage) per GB; median [min-max] of ${config.runs} runs`,
      '',
      table(['transport', 'mode', 'GB/s', 'CPU s/GB'], Object.entries(results.warm.summary).flatMap(([t, s]) => cs
        .filter((i) => s[i]?.gbps)
        .map((i) => [t, i.slice(2), fmtSpread(s[i].gbps), fmtSpread(s[i].cpuSPerGB, 3)]))),
      '',
    ];
    fs.writeFileSync(argv['c-reference'], lines.join('\n'));
    log(`wrote ${argv['c-reference']}`);
  }
}
