/**
 * zcopy: zero-copy I/O for Node.js.
 *
 * @packageDocumentation
 */
export { sendFile, type SendFileOptions, type Mechanism } from './send-file.js';
export { FileRegion, type TransferToOptions } from './file-region.js';
export { copyFile, type CopyFileOptions } from './copy-file.js';
export { capabilities, type Capabilities } from './capabilities.js';
export { stats, resetStats, type Stats, type Path } from './stats.js';
export { ZcopyError, type ZcopyErrorCode, type ZcopySystemError } from './errors.js';
export { splice, type SpliceOptions, type SpliceMechanism } from './splice.js';
export { createProxy, type ProxyOptions, type ProxyServer, type ProxyTarget, type ProxyConnectionInfo, type ProxyCloseInfo, type ProxyDirectionInfo, type ProxyCloseReason } from './proxy/index.js';
export { mapFile, MappedFile, type MapFileOptions, type MapMode, type MapAdvice } from './mapped-file.js';
export { CompositeBuffer, type CorkableWritable } from './composite-buffer.js';
export { BufferPool, type BufferPoolOptions, type BufferPoolStats, type PoolLeak } from './buffer-pool.js';
export { sendParts, partsLength, type Part, type FdRange, type SendPartsOptions } from './send-parts.js';
export { receiveFile, type ReceiveFileOptions, type ReceiveMechanism } from './receive-file.js';
export { crc32c, crc32cImplementation } from './crc32c.js';
