// `zcopy kafka`: a single-node Kafka-protocol broker whose fetches are sendfile.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createBroker } from '../kafka/index.js';
import type { LogLevel } from '../kafka/context.js';
import { invalid, parseDuration, untilStopped } from './common.js';
import { parseAddress } from './proxy.js';

const HELP = `Usage: zcopy kafka --data <dir> [options]

A single-node broker speaking Kafka's protocol (kafkajs, librdkafka/kcat, ...):
record batches stored as received, Fetch answered from the log segments'
page cache by sendfile. See docs/kafka.md.

Options:
  -d, --data <dir>              data directory (created if missing)
  -l, --listen <host:port>      where to accept (default 127.0.0.1:9092)
      --advertised <host:port>  what clients are told to connect to
                                (default: the listening address)
      --partitions <n>          num.partitions for auto-created topics (default 1)
      --no-auto-create          auto.create.topics.enable=false
      --segment-bytes <n>       segment.bytes (default 1 GiB)
      --retention-ms <n>        retention.ms (default 7 days; -1 unlimited)
      --retention-bytes <n>     retention.bytes per partition (default -1)
      --flush-messages <n>      log.flush.interval.messages (default: never)
      --flush-ms <n>            log.flush.interval.ms (default: never)
      --message-max-bytes <n>   message.max.bytes (default 1048588)
      --tls-cert <file>         PEM certificate: listen with TLS
      --tls-key <file>          PEM private key (with --tls-cert)
      --log-level <level>       debug, info (default), warn or error
      --shutdown-timeout <time> on SIGINT/SIGTERM, let responses finish this
                                long: 5s, 1500ms or plain ms (default 5s)
  -h, --help                    this help
`;

function num(name: string, v: string | undefined, min: number): number | undefined {
  if (v === undefined) return undefined;
  if (!/^-?\d+$/.test(v) || Number(v) < min || !Number.isSafeInteger(Number(v))) throw invalid(`invalid --${name} '${v}' (a whole number >= ${min})`);
  return Number(v);
}

/** Runs `zcopy kafka`; resolves with the exit code once stopped by a signal. */
export async function kafkaCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      data: { type: 'string', short: 'd' },
      listen: { type: 'string', short: 'l', default: '127.0.0.1:9092' },
      advertised: { type: 'string' },
      partitions: { type: 'string' },
      'no-auto-create': { type: 'boolean', default: false },
      'segment-bytes': { type: 'string' },
      'retention-ms': { type: 'string' },
      'retention-bytes': { type: 'string' },
      'flush-messages': { type: 'string' },
      'flush-ms': { type: 'string' },
      'message-max-bytes': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'log-level': { type: 'string', default: 'info' },
      'shutdown-timeout': { type: 'string', default: '5000' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (positionals.length > 0) throw invalid(`unexpected argument '${positionals[0]}' (see zcopy kafka --help)`);
  if (values.data === undefined) {
    process.stderr.write(`zcopy kafka: --data is required\n\n${HELP}`);
    return 2;
  }
  const listen = parseAddress('listen', values.listen, '127.0.0.1');
  if (!('port' in listen)) throw invalid('--listen: a host:port is required (no Unix sockets: Kafka clients speak TCP)');
  const level = values['log-level'] as LogLevel;
  if (!['debug', 'info', 'warn', 'error'].includes(level)) throw invalid(`invalid --log-level '${values['log-level']}' (debug, info, warn or error)`);
  if ((values['tls-cert'] === undefined) !== (values['tls-key'] === undefined)) throw invalid('--tls-cert and --tls-key go together');
  let tlsOpts: { cert: Buffer; key: Buffer } | undefined;
  if (values['tls-cert'] !== undefined) {
    try {
      tlsOpts = { cert: readFileSync(values['tls-cert']), key: readFileSync(values['tls-key']!) };
    } catch (err) {
      throw invalid(`cannot read the TLS files: ${(err as Error).message}`);
    }
  }
  const shutdownTimeout = parseDuration(values['shutdown-timeout']!, '--shutdown-timeout');
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
  });
  let broker;
  try {
    broker = await createBroker({
      dataDir: resolve(values.data),
      host: listen.host,
      port: listen.port,
      advertisedListeners: values.advertised,
      numPartitions: num('partitions', values.partitions, 1),
      autoCreateTopicsEnable: !values['no-auto-create'],
      segmentBytes: num('segment-bytes', values['segment-bytes'], 64),
      retentionMs: num('retention-ms', values['retention-ms'], -1),
      retentionBytes: num('retention-bytes', values['retention-bytes'], -1),
      logFlushIntervalMessages: num('flush-messages', values['flush-messages'], 1),
      logFlushIntervalMs: num('flush-ms', values['flush-ms'], 1),
      messageMaxBytes: num('message-max-bytes', values['message-max-bytes'], 1),
      tls: tlsOpts,
      logLevel: level,
      logger: (l, m) => (l === 'error' || l === 'warn' ? process.stderr : process.stdout).write(`zcopy kafka: ${l === 'info' ? '' : `${l}: `}${m}\n`),
    });
    await broker.listen();
  } catch (err) {
    process.stderr.write(`zcopy kafka: cannot start: ${(err as Error).message}\n`);
    await broker?.close(0).catch(() => {});
    return 1;
  }
  const a = broker.address();
  const b = broker;
  // The signal handlers go in before the ready line: a SIGTERM sent the
  // moment the line appears must shut down cleanly, not kill the process.
  const stopped = untilStopped({
    name: 'zcopy kafka',
    timeout: shutdownTimeout + 2000,
    begin(sig, finish) {
      process.stdout.write(`zcopy kafka: ${sig}, ${b.connections} open connection(s), finishing in-flight responses\n`);
      b.close(shutdownTimeout).then(finish, (err: Error) => {
        process.stderr.write(`zcopy kafka: close: ${err.message}\n`);
        finish();
      });
    },
    forceClose: () => {
      // A second signal: the broker's own deadline already bounds the close.
      void b.close(0);
    },
  });
  process.stdout.write(`zcopy kafka: ready on ${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}${tlsOpts ? ' (TLS)' : ''}, data ${resolve(values.data)}\n`);
  return stopped;
}
