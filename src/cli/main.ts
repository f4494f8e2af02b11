#!/usr/bin/env node
// The zcopy command: `zcopy info`, `serve`, `proxy`, `send`, `recv`, `kafka`,
// `bench`. Their options share one parser and vocabulary (common.ts).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { capabilities } from '../capabilities.js';
import { packageRoot } from '../native.js';
import { OPTIONS, guardOutput, isUsageError, parseOptions, plainUsageError } from './common.js';

const USAGE = `Usage: zcopy <command> [options]

Commands:
  info [--json]        what zero-copy paths this machine offers, and why not (zcopy info --help)
  serve [root]         serve a folder over HTTP with sendfile (zcopy serve --help)
  proxy                forward TCP connections with splice (zcopy proxy --help)
  send FILE ADDRESS    send a file to 'zcopy recv' with sendfile (zcopy send --help)
  recv --listen ADDR   receive one file with splice into a file (zcopy recv --help)
  kafka                a Kafka-protocol broker whose fetches are sendfile (zcopy kafka --help)
  bench                measure copies, syscalls and CPU of each transfer path (zcopy bench --help)

Options:
  -v, --version        print the version
  -h, --help           print this help

Exit status: 0 done, 1 failure (cannot listen, a transfer failed, ...),
2 usage error (unknown option, bad value). Options: docs/cli.md.
`;

const INFO_HELP = `Usage: zcopy info [--json]

Prints what zero-copy paths this machine offers, why not where it cannot,
and what mechanism 'auto' would really use per transport (the portable,
copying path when the native addon is not in use).

Options:
      --json        the same as JSON: capabilities() and the version
  -h, --help        this help
`;

function version(): string {
  return (JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;
}

function info(argv: string[]): number {
  const { values } = parseOptions('info', argv, { json: OPTIONS.json, help: OPTIONS.help });
  if (values.help) {
    process.stdout.write(INFO_HELP);
    return 0;
  }
  const caps = capabilities();
  if (values.json) {
    console.log(JSON.stringify({ version: version(), ...caps }, null, 2));
    return 0;
  }
  const yes = (b: boolean): string => (b ? 'yes' : 'no');
  const lines = [
    `zcopy ${version()} on Node ${caps.node}, ${caps.platform} ${caps.kernel}`,
    `native addon:     ${caps.native ? 'loaded' : `not in use (${caps.reason})`}`,
    `sendfile:         ${yes(caps.sendfile)}`,
    `splice:           ${yes(caps.splice)}`,
    `copy_file_range:  ${yes(caps.copyFileRange)}`,
    `mmap:             ${yes(caps.mmap)}`,
    caps.native
      ? `auto mechanism:   unix socket -> ${caps.auto.unix}, loopback TCP -> ${caps.auto['tcp-loopback']}, TCP -> ${caps.auto.tcp}`
      : 'auto mechanism:   portable (Node reads and writes: no zero-copy) on every transport',
  ];
  if (!caps.native) lines.push('Every API works through the portable (copying) path.');
  console.log(lines.join('\n'));
  return 0;
}

async function main(argv: string[]): Promise<number> {
  // `zcopy serve | head -3`: a reader that goes away must not kill the server.
  guardOutput();
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(USAGE);
      return cmd === undefined ? 1 : 0;
    case '-v':
    case '--version':
      console.log(version());
      return 0;
    case 'info':
      return info(rest);
    case 'serve': {
      const { serveCommand } = await import('./serve.js');
      return serveCommand(rest);
    }
    case 'proxy': {
      const { proxyCommand } = await import('./proxy.js');
      return proxyCommand(rest);
    }
    case 'send': {
      const { sendCommand } = await import('./send.js');
      return sendCommand(rest);
    }
    case 'recv': {
      const { recvCommand } = await import('./recv.js');
      return recvCommand(rest);
    }
    case 'kafka': {
      const { kafkaCommand } = await import('./kafka.js');
      return kafkaCommand(rest);
    }
    case 'bench': {
      const { benchCommand } = await import('./bench.js');
      return benchCommand(rest);
    }
    default:
      process.stderr.write(`zcopy: unknown command '${cmd}'\n\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const cmd = process.argv[2];
    if (isUsageError(err)) {
      // Plain words, no error code: `zcopy serve: invalid --port 'abc': expected 0-65535`.
      const e = plainUsageError(err, cmd) as Error;
      process.stderr.write(`zcopy${cmd ? ` ${cmd}` : ''}: ${e.message}\n`);
      process.exitCode = 2;
      return;
    }
    const e = err as { code?: string; message?: string };
    process.stderr.write(`zcopy: ${e.code && !String(e.message).startsWith(e.code) ? `${e.code}: ` : ''}${e.message ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
