// Cancellation of one transfer: the socket closing, the caller's signal, or
// an error. Waits that are safe to abandon (a readiness poll, a barrier) race
// with it; work that holds a resource (a threadpool job using the dup, a
// write still holding its buffer) is awaited to completion first.
export class Canceller {
  error: Error | undefined;
  readonly #listeners = new Set<(err: Error) => void>();

  cancel(err: Error): void {
    if (this.error) return;
    this.error = err;
    for (const l of [...this.#listeners]) l(err);
    this.#listeners.clear();
  }

  onCancel(fn: (err: Error) => void): () => void {
    if (this.error) {
      fn(this.error);
      return () => {};
    }
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  throwIfCancelled(): void {
    if (this.error) throw this.error;
  }

  /** Settles with `p`, or rejects as soon as the transfer is cancelled. */
  race<T>(p: Promise<T>): Promise<T> {
    if (this.error) {
      p.catch(() => {});
      return Promise.reject(this.error);
    }
    return new Promise<T>((resolve, reject) => {
      const off = this.onCancel(reject);
      p.then(
        (v) => {
          off();
          resolve(v);
        },
        (e: unknown) => {
          off();
          reject(e);
        },
      );
    });
  }
}
