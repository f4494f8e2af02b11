// The broker under test, in its own process (so its CPU time is its own):
//   node bench/kafka/broker.mjs <dataDir> <zerocopy|buffer>
// Prints {"port":N} once listening; answers 'cpu' IPC messages with its
// process.cpuUsage(); exits on 'stop'.
import { createBroker } from '../../dist/kafka/index.js';

const [dataDir, fetchMode = 'zerocopy'] = process.argv.slice(2);
const broker = await createBroker({ dataDir, host: '127.0.0.1', port: 0, fetchMode, segmentBytes: 256 * 1024 * 1024 });
await broker.listen();
process.send({ port: broker.address().port });
process.on('message', async (m) => {
  if (m === 'cpu') process.send({ cpu: process.cpuUsage() });
  if (m === 'stop') {
    await broker.close(1000);
    process.exit(0);
  }
});
