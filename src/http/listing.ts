/**
 * An HTML directory listing: names escaped for HTML and encoded for hrefs,
 * sizes for humans, directories first.
 *
 * @module
 */
import { opendir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { escapeHtml, humanSize } from './headers.js';
import { htmlPage } from './response.js';

/** Entries listed at most; a directory with more says so at the end. */
export const MAX_LISTING_ENTRIES = 10_000;

interface Entry {
  name: string;
  dir: boolean;
  size?: number;
  mtime?: number;
}

/**
 * Renders the listing of `dir` (a real path inside the root) for the request
 * path `urlPath` (decoded, ending in `/`).
 */
export async function renderListing(dir: string, urlPath: string, showHidden: boolean, atRoot: boolean): Promise<string> {
  const entries: Entry[] = [];
  let truncated = false;
  const d = await opendir(dir, { bufferSize: 64 });
  try {
    for await (const e of d) {
      if (!showHidden && e.name.startsWith('.')) continue;
      if (entries.length >= MAX_LISTING_ENTRIES) {
        truncated = true;
        break;
      }
      entries.push({ name: e.name, dir: e.isDirectory() });
    }
  } finally {
    await d.close().catch(() => {});
  }
  // Sizes and times from stat (follows symlinks; a dangling one shows '-').
  const BATCH = 64;
  for (let i = 0; i < entries.length; i += BATCH) {
    await Promise.all(
      entries.slice(i, i + BATCH).map(async (e) => {
        try {
          const st = await stat(join(dir, e.name));
          e.dir = st.isDirectory();
          if (st.isFile()) e.size = st.size;
          e.mtime = st.mtimeMs;
        } catch {
          // Unreadable or dangling: listed without size.
        }
      }),
    );
  }
  entries.sort((a, b) => (a.dir === b.dir ? (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) : a.dir ? -1 : 1));

  const title = `Index of ${escapeHtml(urlPath)}`;
  const rows: string[] = [];
  if (!atRoot) rows.push('<tr><td><a href="../">../</a></td><td></td><td></td></tr>');
  for (const e of entries) {
    const href = encodeURIComponent(e.name) + (e.dir ? '/' : '');
    const label = escapeHtml(e.name) + (e.dir ? '/' : '');
    const size = e.dir ? '-' : e.size !== undefined ? humanSize(e.size) : '-';
    const when = e.mtime !== undefined ? new Date(e.mtime).toISOString().replace('T', ' ').slice(0, 16) : '';
    rows.push(`<tr><td><a href="./${href}">${label}</a></td><td class="s">${escapeHtml(size)}</td><td>${when}</td></tr>`);
  }
  if (truncated) rows.push(`<tr><td colspan="3">(only the first ${MAX_LISTING_ENTRIES} entries are listed)</td></tr>`);
  const style = '<style>body{font-family:system-ui,sans-serif;margin:2em}td{padding:.15em 1.5em .15em 0}.s{text-align:right}</style>';
  return htmlPage(title, `${style}\n<h1>${title}</h1>\n<table>\n${rows.join('\n')}\n</table>`);
}
