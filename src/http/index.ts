/**
 * zcopy/http: zero-copy static file serving for node:http, node:https,
 * http2 (compat API) and Express/Connect.
 *
 * @example
 * ```ts
 * import http from 'node:http';
 * import { serveStatic } from 'zcopy/http';
 *
 * http.createServer(serveStatic('./public')).listen(8080, '127.0.0.1');
 * ```
 *
 * @module
 */
export { serveFile, DEFAULT_SENDFILE_THRESHOLD, DEFAULT_SEND_TIMEOUT, type ServeFileOptions } from './serve-file.js';
export { serveStatic, type ServeStaticOptions, type StaticHandler, type OpenFileCacheView } from './serve-static.js';
export { DEFAULT_OPEN_FILE_CACHE, OPEN_FILE_CACHE_MAX_SIZE, type OpenFileCacheOptions } from './open-file-cache.js';
export { parseRange, DEFAULT_MAX_RANGES, type ByteRange, type RangeResult } from './range.js';
export { evaluatePreconditions, ifRangeAllows, type Validators, type PreconditionResult } from './conditional.js';
export { resolveRequestPath, type ResolvedPath, type RefusedPath } from './resolve-path.js';
export type { ServeResult, TransferPath, AnyRequest, AnyResponse } from './response.js';
export { receiveBody, type ReceiveBodyOptions, type BodyRequest } from './receive-body.js';
export { createUploadHandler, type UploadOptions, type UploadHandler } from './upload.js';
