/**
 * The SVG chart of `zcopy bench`, hand-written (no dependency, no script):
 * per transport, small multiples with one horizontal bar per mechanism
 * (GB/s; CPU stacked sender/receiver; syscalls and mode switches per GiB on
 * a log scale; copies per byte; scheduler switches), then the classic copy
 * diagram redrawn per mechanism with the measured copies on its arrows.
 *
 * @module
 */
import type { BenchRaw } from './run.js';
import { fmtNum, fmtSize, TAG } from './report.js';
import type { Figure, MechanismSummary } from './summary.js';

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const n2 = (x: number): string => (Math.round(x * 10) / 10).toString();

interface Segment {
  value: number;
  color: string;
  name: string;
}
interface Panel {
  metric: string;
  title: string;
  log?: boolean;
  /** Segments per mechanism (null: not available), and the text shown after the bar. */
  bar(s: MechanismSummary): { segs: Segment[]; text: string; whisker?: [number, number] } | null;
  legend?: [string, string][];
}

const C = { send: '#1f77b4', recv: '#9ecae1', kToU: '#d62728', uToK: '#ff9896', kernel: '#9467bd', recvCopy: '#fdae6b', vol: '#2ca02c', invol: '#98df8a', plain: '#4c72b0' };
const v = (f: Figure): number | null => f.median;
const tagOf = (f: Figure): string => (f.source ? ` ${TAG[f.source]}` : '');

const PANELS: Panel[] = [
  {
    metric: 'gbps', title: 'throughput, GB/s',
    bar: (s) => (v(s.gbps) === null ? null : { segs: [{ value: v(s.gbps)!, color: C.plain, name: 'GB/s' }], text: fmtNum(v(s.gbps)), whisker: [s.gbps.min!, s.gbps.max!] }),
  },
  {
    metric: 'cpu', title: 'CPU s/GiB (user+sys)', legend: [[C.send, 'sender'], [C.recv, 'receiver']],
    bar: (s) => (v(s.cpuSender) === null ? null : {
      segs: [{ value: Math.max(0, v(s.cpuSender)!), color: C.send, name: 'sender' }, { value: Math.max(0, v(s.cpuReceiver) ?? 0), color: C.recv, name: 'receiver' }],
      text: `${fmtNum(v(s.cpuSender), 3)}${s.cpuReceiver.median !== null ? ` + ${fmtNum(v(s.cpuReceiver), 3)}` : ''}`,
    }),
  },
  {
    metric: 'syscalls', title: 'sender syscalls/GiB (log)', log: true,
    bar: (s) => (v(s.syscallsSender) === null ? null : {
      segs: [{ value: Math.max(1, v(s.syscallsSender)!), color: C.plain, name: 'syscalls' }],
      text: `${fmtNum(v(s.syscallsSender)!, 0)}${tagOf(s.syscallsSender)}`,
    }),
  },
  {
    metric: 'mode', title: 'mode switches/GiB: 2 x syscalls + faults (log)', log: true,
    bar: (s) => (v(s.modeSwitches) === null ? null : { segs: [{ value: Math.max(1, v(s.modeSwitches)!), color: C.plain, name: 'mode switches' }], text: `${fmtNum(v(s.modeSwitches), 0)}${tagOf(s.modeSwitches)}` }),
  },
  {
    metric: 'copies', title: 'CPU copies per byte', legend: [[C.kToU, 'send k>u'], [C.uToK, 'send u>k'], [C.kernel, 'kernel'], [C.recvCopy, 'recv k>u']],
    bar: (s) => {
      const c = s.copies;
      const parts: [Figure, string, string][] = [[c.senderKToU, C.kToU, 'send k>u'], [c.senderUToK, C.uToK, 'send u>k'], [c.kernel, C.kernel, 'kernel'], [c.receiverKToU, C.recvCopy, 'recv k>u']];
      const known = parts.filter(([f]) => f.median !== null);
      if (!known.length) return null;
      const unknown = parts.some(([f, , n]) => f.median === null && !(n === 'kernel' && s.transport !== 'file') && !(n === 'recv k>u' && s.transport === 'file'));
      return {
        segs: known.map(([f, color, name]) => ({ value: Math.max(0, f.median!), color, name })),
        text: `${fmtNum(known.reduce((a, [f]) => a + Math.max(0, f.median!), 0))}${unknown ? ' + ?' : ''}`,
      };
    },
  },
  {
    metric: 'sched', title: 'scheduler switches/GiB, both processes', legend: [[C.vol, 'voluntary'], [C.invol, 'involuntary']],
    bar: (s) => (v(s.schedVoluntary) === null ? null : {
      segs: [{ value: Math.max(0, v(s.schedVoluntary)!), color: C.vol, name: 'voluntary' }, { value: Math.max(0, v(s.schedInvoluntary) ?? 0), color: C.invol, name: 'involuntary' }],
      text: fmtNum(v(s.schedVoluntary)! + (v(s.schedInvoluntary) ?? 0), 0),
    }),
  },
];

const PW = 330; // panel width
const LABEL = 112;
const BARW = 128;
const ROW = 17;
const COLS = 3;

function panel(p: Panel, rows: MechanismSummary[], x: number, y: number): { svg: string; h: number } {
  const bars = rows.map((s) => ({ s, b: p.bar(s) }));
  const totals = bars.map(({ b }) => (b ? Math.max(b.segs.reduce((a, g) => a + g.value, 0), b.whisker?.[1] ?? 0) : 0));
  const max = Math.max(...totals, 1e-9);
  const lmax = Math.log10(Math.max(10, max));
  const scale = (val: number): number => (p.log ? (val <= 1 ? 0 : (Math.log10(val) / lmax) * BARW) : (val / max) * BARW);
  const top = 34;
  const h = top + rows.length * ROW + 26;
  const o: string[] = [];
  o.push(`<g class="panel" data-metric="${p.metric}" transform="translate(${x},${y})">`);
  o.push(`<rect x="0" y="0" width="${PW - 10}" height="${h - 6}" fill="#fafafa" stroke="#ddd"/>`);
  o.push(`<text x="8" y="16" font-weight="bold">${esc(p.title)}</text>`);
  if (p.legend) {
    let lx = 8;
    for (const [color, name] of p.legend) {
      o.push(`<rect x="${lx}" y="21" width="8" height="8" fill="${color}"/><text x="${lx + 11}" y="29" font-size="9">${esc(name)}</text>`);
      lx += 14 + name.length * 5.2;
    }
  }
  bars.forEach(({ s, b }, i) => {
    const by = top + i * ROW;
    o.push(`<g class="bar" data-mechanism="${esc(s.mechanism)}" data-value="${b ? n2(totals[i]!) : ''}">`);
    o.push(`<text x="${LABEL - 4}" y="${by + 11}" text-anchor="end">${esc(s.label)}</text>`);
    if (!b) {
      o.push(`<text x="${LABEL + 2}" y="${by + 11}" fill="#999">n/a</text>`);
    } else {
      let bx = LABEL;
      let acc = 0;
      for (const g of b.segs) {
        // On a log scale a stack cannot be read: one segment per bar there.
        const end = scale(acc + g.value);
        const w = Math.max(0, end - (bx - LABEL));
        o.push(`<rect x="${n2(bx)}" y="${by + 2}" width="${n2(w)}" height="${ROW - 5}" fill="${g.color}"><title>${esc(`${s.label}: ${g.name} ${fmtNum(g.value, 3)}`)}</title></rect>`);
        bx += w;
        acc += g.value;
      }
      if (b.whisker && b.whisker[0] !== b.whisker[1]) {
        const [a, z] = b.whisker.map(scale) as [number, number];
        o.push(`<line x1="${n2(LABEL + a)}" x2="${n2(LABEL + z)}" y1="${by + 8}" y2="${by + 8}" stroke="#000" stroke-width="1"/>`);
      }
      o.push(`<text x="${n2(Math.max(bx, LABEL + scale(b.whisker?.[1] ?? 0)) + 4)}" y="${by + 11}" font-size="9">${esc(b.text)}</text>`);
    }
    o.push('</g>');
  });
  const axisY = top + rows.length * ROW + 4;
  o.push(`<line x1="${LABEL}" x2="${LABEL + BARW}" y1="${axisY}" y2="${axisY}" stroke="#999"/>`);
  const ticks = p.log
    ? Array.from({ length: Math.floor(lmax) + 1 }, (_, k) => 10 ** k).filter((t) => t >= 10)
    : [0, max / 2, max];
  for (const t of ticks) {
    const tx = LABEL + scale(t);
    o.push(`<text x="${n2(tx)}" y="${axisY + 11}" font-size="8" text-anchor="middle" fill="#666">${p.log ? `1e${Math.round(Math.log10(t))}` : fmtNum(t, max < 10 ? 2 : 0)}</text>`);
  }
  o.push('</g>');
  return { svg: o.join('\n'), h };
}

const BOX = ['disk', 'page cache', 'user buffer', 'socket buffer', 'receiver'];
const BOX_FILE = ['disk', 'page cache', 'user buffer', 'page cache (dest)', 'disk (later)'];

function copyLabel(f: Figure, unit = 'copy/B'): { text: string; color: string; dash: boolean } {
  if (f.median === null) return { text: `? ${unit}`, color: '#e6a000', dash: true };
  const val = Math.max(0, f.median);
  return { text: `${fmtNum(val, val % 1 === 0 ? 0 : 2)} ${unit}${tagOf(f)}`, color: val > 0.005 ? '#d62728' : '#aaa', dash: val <= 0.005 };
}

function arrow(x1: number, y1: number, x2: number, y2: number, color: string, dash: boolean): string {
  return `<line x1="${n2(x1)}" y1="${n2(y1)}" x2="${n2(x2)}" y2="${n2(y2)}" stroke="${color}" stroke-width="2"${dash ? ' stroke-dasharray="4 3"' : ''} marker-end="url(#zc-arrow)"/>`;
}

function diagram(s: MechanismSummary, x: number, y: number): { svg: string; h: number } {
  const file = s.transport === 'file';
  const names = file ? BOX_FILE : BOX;
  const bw = 92;
  const gap = 70;
  const bx = (i: number): number => 150 + i * (bw + gap);
  const o: string[] = [];
  o.push(`<g class="diagram" data-mechanism="${esc(s.mechanism)}" transform="translate(${x},${y})">`);
  o.push(`<text x="0" y="24" font-weight="bold">${esc(s.label)}</text>`);
  o.push(`<text x="0" y="38" font-size="9" fill="#555">${esc(s.how.length > 34 ? `${s.how.slice(0, 33)}…` : s.how)}</text>`);
  names.forEach((n, i) => {
    o.push(`<rect x="${bx(i)}" y="10" width="${bw}" height="30" rx="4" fill="#fff" stroke="#333"/><text x="${bx(i) + bw / 2}" y="29" text-anchor="middle">${esc(n)}</text>`);
  });
  const mid = 25;
  const link = (i: number, label: { text: string; color: string; dash: boolean }): void => {
    o.push(arrow(bx(i) + bw, mid, bx(i + 1) - 3, mid, label.color, label.dash));
    o.push(`<text x="${bx(i) + bw + gap / 2}" y="${mid - 6}" text-anchor="middle" font-size="9" fill="${label.color === '#aaa' ? '#777' : label.color}">${esc(label.text)}</text>`);
  };
  const hit = s.pageCacheHit;
  link(0, { text: hit === null ? 'DMA ?' : hit ? 'no I/O (cached)' : `DMA ${fmtNum(s.readBytes, 0)} B`, color: hit ? '#aaa' : '#e6a000', dash: hit === true });
  link(1, copyLabel(s.copies.senderKToU));
  link(2, copyLabel(s.copies.senderUToK));
  if (file) {
    link(3, { text: 'writeback (not timed)', color: '#aaa', dash: true });
  } else {
    link(3, copyLabel(s.copies.receiverKToU));
  }
  // The bypass: page cache -> socket buffer (or dest page cache) without user memory.
  const by = 52;
  const x1 = bx(1) + bw / 2;
  const x2 = bx(3) + bw / 2;
  const refs = s.pageRefs.median;
  const kern = s.copies.kernel;
  let text: string;
  let color = '#2ca02c';
  let dash = false;
  if (refs === null) {
    text = 'in-kernel path: ? (needs --trace)';
    color = '#e6a000';
    dash = true;
  } else if (refs < 0.005) {
    text = 'not used';
    color = '#ccc';
    dash = true;
  } else if (file) {
    const k = kern.median === null ? 'kernel copy ? (needs --trace on ext4)' : `kernel copy ${fmtNum(kern.median, 2)} copy/B${tagOf(kern)}`;
    text = `${fmtNum(refs, 2)} B/B in the kernel: ${k}`;
    color = kern.median !== null && kern.median > 0.005 ? '#9467bd' : '#2ca02c';
  } else {
    text = `${fmtNum(refs, 2)} B/B as page references: 0 CPU copies${tagOf(s.pageRefs)}`;
  }
  o.push(`<path d="M${x1},40 V${by} H${x2} V43" fill="none" stroke="${color}" stroke-width="2"${dash ? ' stroke-dasharray="4 3"' : ''} marker-end="url(#zc-arrow)"/>`);
  o.push(`<text x="${(x1 + x2) / 2}" y="${by + 11}" text-anchor="middle" font-size="9" fill="${color === '#ccc' ? '#999' : color}">${esc(text)}</text>`);
  if (!file) o.push(`<text x="${bx(4) + bw / 2}" y="52" text-anchor="middle" font-size="8" fill="#777">no NIC on this path</text>`);
  o.push('</g>');
  return { svg: o.join('\n'), h: 72 };
}

const TITLE: Record<string, string> = { unix: 'Unix socket', tcp: 'loopback TCP', file: 'file -> file' };

/** The chart as a standalone SVG document. */
export function renderSvg(raw: BenchRaw, sums: MechanismSummary[]): string {
  const W = PW * COLS + 20;
  const parts: string[] = [];
  let y = 10;
  const m = raw.meta;
  parts.push(`<text x="10" y="${y + 14}" font-size="15" font-weight="bold">zcopy bench: ${esc(fmtSize(m.size))} page-cached file, Linux ${esc(m.machine.kernel)}, ${m.machine.cpus} CPUs</text>`);
  parts.push(`<text x="10" y="${y + 30}" font-size="10">${esc(`${m.placement}; median of ${m.runs} run(s); kernel tracing ${m.trace.used ? 'on (perf)' : `off: ${m.trace.reason}`}`)}</text>`);
  parts.push(`<text x="10" y="${y + 43}" font-size="10">${esc(`command: ${m.command}`)}</text>`);
  parts.push(`<text x="10" y="${y + 56}" font-size="9" fill="#555">tags: T traced by the kernel (perf), K kernel counter read by the process, P counted by the program, I inferred from syscall semantics; n/a: not available</text>`);
  y += 70;
  for (const t of m.transports) {
    const rows = sums.filter((s) => s.transport === t);
    if (!rows.length) continue;
    parts.push(`<g class="transport" data-transport="${t}">`);
    parts.push(`<text x="10" y="${y + 14}" font-size="14" font-weight="bold">${esc(TITLE[t] ?? t)}</text>`);
    y += 22;
    let rowH = 0;
    PANELS.forEach((p, i) => {
      const col = i % COLS;
      if (col === 0 && i > 0) {
        y += rowH + 4;
        rowH = 0;
      }
      const r = panel(p, rows, 10 + col * PW, y);
      parts.push(r.svg.replace('class="panel"', `class="panel" data-transport="${t}"`));
      rowH = Math.max(rowH, r.h);
    });
    y += rowH + 10;
    parts.push(`<text x="10" y="${y + 12}" font-weight="bold">The classic copy diagram, redrawn with the measured copies (${esc(TITLE[t] ?? t)})</text>`);
    y += 18;
    for (const s of rows) {
      const d = diagram(s, 10, y);
      parts.push(d.svg);
      y += d.h;
    }
    parts.push('</g>');
    y += 10;
  }
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${y}" viewBox="0 0 ${W} ${y}" font-family="sans-serif" font-size="10">`,
    '<defs><marker id="zc-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
    `<rect x="0" y="0" width="${W}" height="${y}" fill="#fff"/>`,
    ...parts,
    '</svg>',
    '',
  ].join('\n');
}
