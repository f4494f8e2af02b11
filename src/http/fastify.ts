/**
 * zcopy/fastify: a Fastify plugin serving a folder with zcopy's zero-copy
 * file responses (what `@fastify/static` does with read streams).
 *
 * Files that match are answered with `reply.hijack()` and zcopy writes the
 * response itself (so Fastify's onSend hooks and serializers do not see it);
 * paths that match nothing go to Fastify's not-found handler.
 *
 * @example
 * ```ts
 * import Fastify from 'fastify';
 * const app = Fastify();
 * await app.register(import('zcopy/fastify'), { root: '/srv/public', prefix: '/static/' });
 * await app.listen({ port: 8080 });
 * ```
 *
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { StaticRoot, type ServeStaticOptions } from './serve-static.js';
import { safeLocation, sendRedirect } from './response.js';
import { responseTurn } from './body.js';
import { invalidArgType, invalidArgValue } from './validate.js';

/** Options of the plugin: a root, a URL prefix, and serveStatic's options. */
export interface ZcopyFastifyOptions extends Omit<ServeStaticOptions, 'fallthrough'> {
  /** The folder to serve. */
  root: string;
  /** URL prefix the folder is served under. Default `/`. */
  prefix?: string;
}

// Structural types of the little of Fastify this uses, so that zcopy has no
// type dependency on fastify.
interface FastifyRequestLike {
  raw: IncomingMessage;
}
interface FastifyReplyLike {
  raw: ServerResponse;
  hijack(): unknown;
  callNotFound(): unknown;
}
interface FastifyLike {
  prefix: string;
  route(opts: { method: string[]; url: string; handler: (req: FastifyRequestLike, reply: FastifyReplyLike) => Promise<unknown> }): unknown;
}

function joinPrefix(a: string, b: string): string {
  const left = a.endsWith('/') ? a.slice(0, -1) : a;
  const right = b.startsWith('/') ? b : '/' + b;
  return left + right;
}

/**
 * The plugin. Not encapsulated (like a `fastify-plugin` plugin): it handles
 * `prefix` itself, on top of the prefix of the instance it is registered in.
 */
async function zcopyFastify(fastify: FastifyLike, opts: ZcopyFastifyOptions): Promise<void> {
  if (opts === null || typeof opts !== 'object') throw invalidArgType('options', 'of type object', opts);
  const { root, prefix = '/', ...rest } = opts;
  if (typeof prefix !== 'string') throw invalidArgType('options.prefix', 'of type string', prefix);
  if (/[?#%\s]/.test(prefix)) throw invalidArgValue('options.prefix', prefix, 'must be a plain path (no ?, #, % or spaces)');
  const s = new StaticRoot(root, { ...rest, fallthrough: true });
  // Routes are declared relative to the instance (Fastify adds its prefix);
  // request URLs carry the full prefix.
  const own = joinPrefix('', prefix);
  const ownDir = own.endsWith('/') ? own : own + '/';
  const full = joinPrefix(fastify.prefix ?? '', own);
  const dirPrefix = full.endsWith('/') ? full : full + '/';

  const handler = async (request: FastifyRequestLike, reply: FastifyReplyLike): Promise<unknown> => {
    const raw = request.raw;
    const url = raw.url ?? '/';
    if (!url.startsWith(dirPrefix)) {
      // The router matched a differently encoded spelling of the prefix:
      // not a path this plugin answers.
      return reply.callNotFound();
    }
    // A pipelined request opens nothing before its response owns the socket.
    const turn = responseTurn(raw, reply.raw);
    if (turn !== true && !(await turn)) {
      reply.hijack();
      return undefined;
    }
    const l = await s.lookup(raw, url.slice(dirPrefix.length - 1), url);
    if (l.kind === 'error' && l.status === 404) {
      StaticRoot.discard(l);
      return reply.callNotFound();
    }
    reply.hijack();
    await s.respond(raw, reply.raw, l);
    return undefined;
  };

  fastify.route({ method: ['GET', 'HEAD'], url: ownDir + '*', handler });
  if (dirPrefix !== '/') {
    // The prefix without its slash names the root directory.
    const bare = dirPrefix.slice(0, -1);
    fastify.route({
      method: ['GET', 'HEAD'],
      url: ownDir === '/' ? '' : ownDir.slice(0, -1),
      handler: async (request, reply) => {
        if (!s.redirect) return reply.callNotFound();
        const url = request.raw.url ?? bare;
        const q = url.indexOf('?');
        reply.hijack();
        sendRedirect(request.raw, reply.raw, safeLocation(dirPrefix) + (q >= 0 ? safeLocation(url.slice(q)) : ''));
        return undefined;
      },
    });
  }
}

// What fastify-plugin would set: no encapsulation, a name, the versions.
const meta = zcopyFastify as unknown as Record<symbol, unknown>;
meta[Symbol.for('skip-override')] = true;
meta[Symbol.for('fastify.display-name')] = 'zcopy';
meta[Symbol.for('plugin-meta')] = { name: 'zcopy', fastify: '>=4.0.0' };

export default zcopyFastify;
export { zcopyFastify };
