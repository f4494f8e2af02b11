// ApiVersions (18) v0-3. librdkafka opens every connection with v3, the
// first flexible version (compact arrays, tagged fields; the response header
// stays v0). A version above 3 gets UNSUPPORTED_VERSION in the v0 body layout
// listing every API, as Kafka answers, and the client retries lower.
import { reply, type Handler, Writer } from '../context.js';
import { VERSIONS } from '../protocol/api-keys.js';
import { E } from '../protocol/errors.js';

export const apiVersions: Handler = (req) => {
  const v = req.apiVersion;
  const w = new Writer();
  if (v > 3 || v < 0) {
    w.int16(E.UNSUPPORTED_VERSION);
    w.array(VERSIONS, (w, a) => w.int16(a.key).int16(a.min).int16(a.max));
    return reply(w);
  }
  if (v >= 3) {
    // Body: client_software_name, client_software_version, tagged fields.
    // Read leniently: the answer does not depend on them.
    w.int16(E.NONE);
    w.compactArray(VERSIONS, (w, a) => w.int16(a.key).int16(a.min).int16(a.max).emptyTaggedFields());
    w.int32(0); // throttle_time_ms
    w.emptyTaggedFields();
    return reply(w);
  }
  w.int16(E.NONE);
  w.array(VERSIONS, (w, a) => w.int16(a.key).int16(a.min).int16(a.max));
  if (v >= 1) w.int32(0);
  return reply(w);
};
