// API keys and the version ranges this broker advertises (non-flexible
// versions only, plus ApiVersions v3: see docs/kafka.md).
export const ApiKey = {
  Produce: 0,
  Fetch: 1,
  ListOffsets: 2,
  Metadata: 3,
  OffsetCommit: 8,
  OffsetFetch: 9,
  FindCoordinator: 10,
  JoinGroup: 11,
  Heartbeat: 12,
  LeaveGroup: 13,
  SyncGroup: 14,
  DescribeGroups: 15,
  ListGroups: 16,
  ApiVersions: 18,
  CreateTopics: 19,
  DeleteTopics: 20,
  InitProducerId: 22,
} as const;

export interface VersionRange {
  key: number;
  name: string;
  min: number;
  max: number;
}

/**
 * What ApiVersions advertises. Produce advertises min 0 (librdkafka < 2.11
 * stops compressing otherwise) and answers v0-2 with UNSUPPORTED_VERSION;
 * every group API range covers 0 (librdkafka < 2.11 disables its balanced
 * consumer otherwise).
 */
export const VERSIONS: readonly VersionRange[] = [
  { key: ApiKey.Produce, name: 'Produce', min: 0, max: 7 },
  { key: ApiKey.Fetch, name: 'Fetch', min: 4, max: 11 },
  { key: ApiKey.ListOffsets, name: 'ListOffsets', min: 1, max: 5 },
  { key: ApiKey.Metadata, name: 'Metadata', min: 0, max: 8 },
  { key: ApiKey.OffsetCommit, name: 'OffsetCommit', min: 0, max: 7 },
  { key: ApiKey.OffsetFetch, name: 'OffsetFetch', min: 0, max: 5 },
  { key: ApiKey.FindCoordinator, name: 'FindCoordinator', min: 0, max: 2 },
  { key: ApiKey.JoinGroup, name: 'JoinGroup', min: 0, max: 5 },
  { key: ApiKey.Heartbeat, name: 'Heartbeat', min: 0, max: 3 },
  { key: ApiKey.LeaveGroup, name: 'LeaveGroup', min: 0, max: 3 },
  { key: ApiKey.SyncGroup, name: 'SyncGroup', min: 0, max: 3 },
  { key: ApiKey.DescribeGroups, name: 'DescribeGroups', min: 0, max: 4 },
  { key: ApiKey.ListGroups, name: 'ListGroups', min: 0, max: 2 },
  { key: ApiKey.ApiVersions, name: 'ApiVersions', min: 0, max: 3 },
  { key: ApiKey.CreateTopics, name: 'CreateTopics', min: 0, max: 4 },
  { key: ApiKey.DeleteTopics, name: 'DeleteTopics', min: 0, max: 3 },
  { key: ApiKey.InitProducerId, name: 'InitProducerId', min: 0, max: 1 },
];

export const VERSION_BY_KEY = new Map(VERSIONS.map((v) => [v.key, v]));
