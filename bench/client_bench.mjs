// client_bench.mjs — the seed's own JS client path on the same envelopes.
//
// msgpackr unpack → InProcessTransport.publish → createClientReplica ingest
// (parse gate Ok passthrough, sequence check, apply into the cell), on the
// corpus client_bench.c wrote.  The seed is imported from where it lives
// (never copied): argv[2] = seed dir, argv[3] = msgpackr dir, argv[4] = corpus.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const [seedDir, msgpackrDir, corpusPath] = process.argv.slice(2);
const { createClientReplica, InProcessTransport } = await import(
  pathToFileURL(join(seedDir, "src/index.js")).href
);
const { unpack } = await import(
  pathToFileURL(join(msgpackrDir, "node_modules/msgpackr/index.js")).href
);

const raw = readFileSync(corpusPath);
const envelopes = [];
for (let off = 0; off < raw.length; ) {
  const len = raw.readUInt32LE(off);
  envelopes.push(raw.subarray(off + 4, off + 4 + len));
  off += 4 + len;
}

function round() {
  const transport = new InProcessTransport();
  const replica = createClientReplica({
    key: "users:123",
    schema: { parse: (v) => ({ tag: "Ok", value: v }) },
    transport,
  });
  const t0 = process.hrtime.bigint();
  for (const bytes of envelopes) {
    const env = unpack(bytes);
    transport.publish(env.key, env);
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (replica.stats.applied !== envelopes.length) throw new Error("wrong result");
  replica.dispose();
  return envelopes.length / seconds;
}

const rates = [];
for (let i = 0; i < 5; i++) rates.push(round());
rates.sort((a, b) => a - b);
console.log(
  `JS seed decode + reconcile: ${rates[2].toFixed(0).padStart(12)} envelopes/s (median; best ${rates[4].toFixed(0)})`
);
