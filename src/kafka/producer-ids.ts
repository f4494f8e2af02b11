// Producer ids for InitProducerId, unique across restarts: ids are handed
// out from blocks whose upper bound is persisted (written and fsynced)
// before the first id of the block is used, like Kafka's ProducerIdManager.
import { promises as fsp } from 'node:fs';
import path from 'node:path';

const BLOCK = 1000;

export class ProducerIds {
  #next = 0;
  #limit = 0;
  #pending: Promise<void> | undefined;
  readonly #file: string;

  private constructor(file: string) {
    this.#file = file;
  }

  static async open(dataDir: string): Promise<ProducerIds> {
    const ids = new ProducerIds(path.join(dataDir, 'producer-id-block'));
    let start = 0;
    try {
      const text = (await fsp.readFile(ids.#file, 'utf8')).trim();
      if (/^\d+$/.test(text)) start = Number(text);
    } catch {
      // First start.
    }
    ids.#next = start;
    ids.#limit = start;
    return ids;
  }

  async #reserve(): Promise<void> {
    const limit = this.#limit + BLOCK;
    const tmp = `${this.#file}.tmp`;
    const fh = await fsp.open(tmp, 'w');
    try {
      await fh.writeFile(`${limit}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, this.#file);
    this.#limit = limit;
  }

  /** The next producer id, never handed out before (also across restarts). */
  async next(): Promise<number> {
    while (this.#next >= this.#limit) {
      this.#pending ??= this.#reserve().finally(() => (this.#pending = undefined));
      await this.#pending;
    }
    return this.#next++;
  }
}
