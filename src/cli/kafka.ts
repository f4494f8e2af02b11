// `zcopy kafka`: a single-node Kafka-protocol broker whose fetches are sendfile.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { createBroker } from '../kafka/index.js';
import {
  OPTIONS,
  err,
  help,
  invalid,
  listenAddress,
  out,
  parseAddress,
  parseCount,
  parseDuration,
  parseLogLevel,
  parseOptions,
  parseSize,
  untilStopped,
} from './common.js';

const HELP = `Usage: zcopy kafka --data <dir> [options]

A single-node broker speaking Kafka's protocol (kafkajs, librdkafka/kcat, ...):
record batches stored as received, Fetch answered from the log segments'
page cache by sendfile. See docs/kafka.md.

Options:
  -d, --data <dir>              data directory (created if missing)
  -l, --listen <host:port>      where to accept (default 127.0.0.1:9092; a bare
                                port listens on 127.0.0.1)
  -p, --port <n>, -H, --host <addr>
                                the same as --listen, spelled as in zcopy serve
      --advertised <host:port>  what clients are told to connect to
                                (default: the listening address)
      --partitions <n>          num.partitions for auto-created topics (default 1)
      --no-auto-create          auto.create.topics.enable=false
      --segment-bytes <size>    segment.bytes: 65536, 64MiB, 1GiB (default 1GiB)
      --retention-ms <time>     retention.ms: 7d, 12h, plain ms, or -1 for
                                unlimited (default 7d)
      --retention-bytes <size>  retention.bytes per partition: a size, or -1
                                for unlimited (default -1)
      --flush-messages <n>      log.flush.interval.messages (default: never)
      --flush-ms <time>         log.flush.interval.ms: 1s, 500ms (default: never)
      --message-max-bytes <size> message.max.bytes (default 1048588)
      --tls-cert <file>         PEM certificate: listen with TLS
      --tls-key <file>          PEM private key (with --tls-cert)
      --log-level <level>       debug, info (default), warn or error
      --shutdown-timeout <time> on SIGINT/SIGTERM, let responses finish this
                                long: 5s, 1500ms or plain ms (default 5s)
  -h, --help                    this help

Times take 1500ms, 30s, 5m, 1h, 7d or plain milliseconds; sizes a byte count
or 64KiB, 256MiB, 1GiB. Exit status: 0 after SIGINT/SIGTERM, 1 cannot start,
2 usage error.
`;

/** `-1` (unlimited, as Kafka spells it) or what `parse` makes of the text. */
function orUnlimited(v: string | undefined, parse: (v: string) => number): number | undefined {
  if (v === undefined) return undefined;
  return v.trim() === '-1' ? -1 : parse(v);
}

/** Runs `zcopy kafka`; resolves with the exit code once stopped by a signal. */
export async function kafkaCommand(argv: string[]): Promise<number> {
  const { values } = parseOptions('kafka', argv, {
    data: { type: 'string', short: 'd' },
    listen: OPTIONS.listen,
    port: OPTIONS.port,
    host: OPTIONS.host,
    socket: OPTIONS.socket,
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
    'log-level': { ...OPTIONS['log-level'], default: 'info' },
    'shutdown-timeout': { ...OPTIONS['shutdown-timeout'], default: '5s' },
    help: { ...OPTIONS.help, default: false },
  });
  if (values.help) return help(HELP);
  if (values.data === undefined) throw invalid('--data is required: the data directory (zcopy kafka --help)');
  if (values.socket !== undefined) throw invalid('--socket: Kafka clients speak TCP; listen on a host:port (--listen, --port)');
  const listen = listenAddress(values, { host: '127.0.0.1', port: 9092 });
  if (!('port' in listen)) throw invalid(`invalid --listen '${values.listen}': Kafka clients speak TCP; expected host:port or a port`);
  if (values.advertised !== undefined) {
    // What clients are told: host:port, as Kafka writes it (PLAINTEXT://host:port too).
    const bare = values.advertised.replace(/^[A-Za-z_]+:\/\//, '');
    let ok = false;
    try {
      ok = 'port' in parseAddress('advertised', bare, undefined, { connect: true });
    } catch {
      ok = false;
    }
    if (!ok) throw invalid(`invalid --advertised '${values.advertised}': expected host:port or PLAINTEXT://host:port`);
  }
  const level = parseLogLevel(values['log-level']!);
  if ((values['tls-cert'] === undefined) !== (values['tls-key'] === undefined)) throw invalid('--tls-cert and --tls-key go together');
  const shutdownTimeout = parseDuration(values['shutdown-timeout']!, '--shutdown-timeout');
  // Every value is checked before anything is read or created.
  const config = {
    numPartitions: values.partitions === undefined ? undefined : parseCount(values.partitions, '--partitions'),
    segmentBytes: values['segment-bytes'] === undefined ? undefined : parseSize(values['segment-bytes'], '--segment-bytes', 64),
    retentionMs: orUnlimited(values['retention-ms'], (v) => parseDuration(v, '--retention-ms', Number.MAX_SAFE_INTEGER)),
    retentionBytes: orUnlimited(values['retention-bytes'], (v) => parseSize(v, '--retention-bytes')),
    logFlushIntervalMessages: values['flush-messages'] === undefined ? undefined : parseCount(values['flush-messages'], '--flush-messages', 1, Number.MAX_SAFE_INTEGER),
    logFlushIntervalMs: values['flush-ms'] === undefined ? undefined : parseDuration(values['flush-ms'], '--flush-ms'),
    messageMaxBytes: values['message-max-bytes'] === undefined ? undefined : parseSize(values['message-max-bytes'], '--message-max-bytes', 1),
  };
  if (config.logFlushIntervalMs === 0) throw invalid(`invalid --flush-ms '${values['flush-ms']}': expected a duration of at least 1ms`);
  let tlsOpts: { cert: Buffer; key: Buffer } | undefined;
  if (values['tls-cert'] !== undefined) {
    try {
      tlsOpts = { cert: readFileSync(values['tls-cert']), key: readFileSync(values['tls-key']!) };
    } catch (e) {
      // A file that cannot be read is a failure, as a folder serve cannot open.
      err(`zcopy kafka: cannot read the TLS files: ${(e as Error).message}\n`);
      return 1;
    }
  }
  let broker;
  try {
    broker = await createBroker({
      dataDir: resolve(values.data),
      host: listen.host,
      port: listen.port,
      advertisedListeners: values.advertised,
      autoCreateTopicsEnable: !values['no-auto-create'],
      ...config,
      tls: tlsOpts,
      logLevel: level,
      logger: (l, m) => (l === 'error' || l === 'warn' ? err : out)(`zcopy kafka: ${l === 'info' ? '' : `${l}: `}${m}\n`),
    });
    await broker.listen();
  } catch (e) {
    err(`zcopy kafka: cannot start: ${(e as Error).message}\n`);
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
      out(`zcopy kafka: ${sig}, ${b.connections} open connection(s), finishing in-flight responses\n`);
      b.close(shutdownTimeout).then(finish, (e: Error) => {
        err(`zcopy kafka: close: ${e.message}\n`);
        finish();
      });
    },
    forceClose: () => {
      // A second signal: the broker's own deadline already bounds the close.
      void b.close(0);
    },
  });
  out(`zcopy kafka: ready on ${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}${tlsOpts ? ' (TLS)' : ''}, data ${resolve(values.data)}\n`);
  return stopped;
}
