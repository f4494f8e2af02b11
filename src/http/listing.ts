/**
 * An HTML directory listing: names escaped for HTML and encoded for hrefs,
 * sizes for humans, directories first.
 *
 * The directory is read through the fd whose real path was checked (on
 * Linux `/proc/self/fd/N`, which reopens that very directory, not whatever
 * its path names by now), entries are `lstat`ed (never followed), and what
 * the server would refuse to serve is not described at all: symlinks whose
 * target leaves the root or is hidden, dotfiles when hidden, dangling links,
 * FIFOs, sockets and devices.
 *
 * @module
 */
import type { Stats } from 'node:fs';
import { lstat, opendir, stat } from 'node:fs/promises';
import { escapeHtml, humanSize } from './headers.js';
import { PROC_FD, isOpened, openResolved, type OpenedFile } from './open.js';
import { htmlPage } from './response.js';

/**
 * Entries listed at most by default. Each costs an `lstat` and a table row
 * (about 10 us of CPU: 30,000 entries were ~180 ms per request before the
 * cap); a directory with more says so at the end.
 */
export const DEFAULT_LISTING_LIMIT = 1000;

/** How a listing judges what it may show. */
export interface ListingOptions {
  /** Show names starting with `.` (dotfiles: 'allow'). */
  showHidden: boolean;
  /** The root itself (no `../` row). */
  atRoot: boolean;
  /** Entries listed at most. */
  limit: number;
  /**
   * Would a symlink entry whose target has this real path be served?
   * (inside the root unless following symlinks, and not hidden.)
   */
  servable(realPath: string | undefined): boolean;
}

interface Entry {
  name: string;
  dir: boolean;
  size?: number;
  mtime?: number;
}

const BATCH = 64;

/**
 * Renders the listing of the open directory `dir` (checked by the caller:
 * its real path is inside the root) for the request path `urlPath`
 * (decoded, ending in `/`). Does not close `dir`.
 */
export async function renderListing(dir: OpenedFile, urlPath: string, options: ListingOptions): Promise<string> {
  const { entries, truncated } = await readEntries(dir, options);
  entries.sort((a, b) => (a.dir === b.dir ? (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) : a.dir ? -1 : 1));

  const title = `Index of ${escapeHtml(urlPath)}`;
  const rows: string[] = [];
  if (!options.atRoot) rows.push('<tr><td><a href="../">../</a></td><td></td><td></td></tr>');
  for (const e of entries) {
    const href = encodeURIComponent(e.name) + (e.dir ? '/' : '');
    const label = escapeHtml(e.name) + (e.dir ? '/' : '');
    const size = e.dir ? '-' : e.size !== undefined ? humanSize(e.size) : '-';
    const when = e.mtime !== undefined ? new Date(e.mtime).toISOString().replace('T', ' ').slice(0, 16) : '';
    rows.push(`<tr><td><a href="./${href}">${label}</a></td><td class="s">${escapeHtml(size)}</td><td>${when}</td></tr>`);
  }
  if (truncated) rows.push(`<tr><td colspan="3">(more entries are not listed: a listing reads at most ${options.limit} entries, in directory order)</td></tr>`);
  const style = '<style>body{font-family:system-ui,sans-serif;margin:2em}td{padding:.15em 1.5em .15em 0}.s{text-align:right}</style>';
  return htmlPage(title, `${style}\n<h1>${title}</h1>\n<table>\n${rows.join('\n')}\n</table>`);
}

async function readEntries(dir: OpenedFile, options: ListingOptions): Promise<{ entries: Entry[]; truncated: boolean }> {
  // Linux: /proc/self/fd/N reopens the checked directory itself, and
  // `N/name` looks a name up in it, whatever its path names by now.
  // Elsewhere: the checked real path, proven to still be the same
  // directory (device and inode) after reading.
  const base = PROC_FD !== undefined ? PROC_FD + dir.fd : dir.realPath ?? dir.path;
  const names: string[] = [];
  let truncated = false;
  // Skipped (hidden) names cost a little too: stop scanning somewhere.
  const maxScanned = Math.max(4 * options.limit, 4096);
  let scanned = 0;
  const d = await opendir(base, { bufferSize: 64 });
  try {
    for await (const e of d) {
      if (++scanned > maxScanned) {
        truncated = true;
        break;
      }
      if (!options.showHidden && e.name.charCodeAt(0) === 46 /* . */) continue;
      if (names.length >= options.limit) {
        truncated = true;
        break;
      }
      names.push(e.name);
    }
  } finally {
    await d.close().catch(() => {});
  }
  if (PROC_FD === undefined) {
    const now = await stat(base);
    if (now.ino !== dir.stat.ino || now.dev !== dir.stat.dev) throw new Error('the directory was replaced while it was listed');
  }

  const entries: Entry[] = [];
  for (let i = 0; i < names.length; i += BATCH) {
    const batch = await Promise.all(names.slice(i, i + BATCH).map((name) => describe(base + '/' + name, name, options)));
    for (const e of batch) if (e !== undefined) entries.push(e);
  }
  return { entries, truncated };
}

/** An entry as it would be served, or undefined for what would be refused. */
async function describe(path: string, name: string, options: ListingOptions): Promise<Entry | undefined> {
  let st: Stats;
  try {
    st = await lstat(path);
  } catch {
    return undefined; // gone since readdir
  }
  if (st.isSymbolicLink()) {
    // Judge the target as a request for it would be judged: open it (non-
    // blocking, so a FIFO cannot hold a thread) and check the fd's real path.
    const f = await openResolved(path, true);
    if (!isOpened(f)) return undefined; // dangling, a loop, unreadable
    try {
      if (!options.servable(f.realPath)) return undefined;
      st = f.stat;
    } finally {
      f.close();
    }
  }
  if (st.isDirectory()) return { name, dir: true, mtime: st.mtimeMs };
  if (st.isFile()) return { name, dir: false, size: st.size, mtime: st.mtimeMs };
  return undefined; // FIFOs, sockets, devices: never served
}
