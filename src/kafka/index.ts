/**
 * zcopy/kafka: a single-node broker speaking Kafka's protocol, whose Fetch
 * responses go from the log segments' page cache to the socket by sendfile.
 * See docs/kafka.md.
 *
 * @packageDocumentation
 */
export { createBroker, type Broker, type BrokerOptions } from './broker.js';
export type { LogLevel, LogFn } from './context.js';
export { GroupCoordinator, type GroupState } from './coordinator.js';
