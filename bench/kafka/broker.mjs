// The broker under test, in its own process (so its CPU time is its own):
//   node bench/kafka/broker.mjs <dataDir> <zerocopy|zerocopy-sendfile|buffer|stream>
// Prints {"port":N} once listening; answers 'cpu' IPC messages with its
// process.cpuUsage(); exits on 'stop'.
import { createBroker } from '../../dist/kafka/index.js';

const [dataDir, mode = 'zerocopy'] = process.argv.slice(2);
// zerocopy (fetchMechanism auto), zerocopy-sendfile (forced sendfile), or a Node baseline.
const fetchMode = mode.startsWith('zerocopy') ? 'zerocopy' : mode;
const fetchMechanism = mode === 'zerocopy-sendfile' ? 'sendfile' : 'auto';
const broker = await createBroker({ dataDir, host: '127.0.0.1', port: 0, fetchMode, fetchMechanism, segmentBytes: 256 * 1024 * 1024 });
await broker.listen();
process.send({ port: broker.address().port });
process.on('message', async (m) => {
  if (m === 'cpu') process.send({ cpu: process.cpuUsage() });
  if (m === 'stop') {
    await broker.close(1000);
    process.exit(0);
  }
});
