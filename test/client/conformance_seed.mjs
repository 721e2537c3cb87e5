// conformance_seed.mjs — runs the seed's own createClientReplica (imported
// from where it lives, never copied) over the scripts test_conformance
// wrote, and prints the replica's state after every step in the format
// test_conformance.c prints for libparasync.
//
//   node conformance_seed.mjs <seed dir> <scripts.json>
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const [seedDir, scriptsPath] = process.argv.slice(2);
const { createClientReplica, InProcessTransport } = await import(
  pathToFileURL(join(seedDir, "src/index.js")).href
);
const scripts = JSON.parse(readFileSync(scriptsPath, "utf8"));

const envelopeOf = (e) => ({
  key: "conf:1",
  value: e.del ? null : { name: e.bad ? "BAD" : e.name },
  schema_version: e.sv,
  sequence: e.seq,
});

function state(r) {
  const m = r.peekMeta();
  const s = r.stats;
  const v = r.peek();
  const value = v === undefined ? "undefined" : v === null ? "null" : v.name;
  return [m.sequence, m.status, m.schemaVersion ?? "-", s.applied, s.ignoredStale, s.gaps,
    s.parseErrors, s.refetches, value].join(" ");
}

const out = [];
for (const script of scripts) {
  const outcomes = [...script.refetches];
  const transport = new InProcessTransport();
  const refetch = async () => {
    const o = outcomes.shift();
    if (o === undefined || o.fail) throw new Error("refetch failed");
    return envelopeOf(o);
  };
  const r = createClientReplica({
    key: "conf:1",
    schema: { parse: (v) => (v && v.name === "BAD" ? { tag: "Err", error: "bad" } : { tag: "Ok", value: v }) },
    transport,
    seed: script.seed ? envelopeOf(script.seed) : undefined,
    refetch: script.noRefetch ? undefined : refetch,
  });
  await r.whenIdle();
  out.push(state(r));
  for (const e of script.events) {
    transport.publish("conf:1", envelopeOf(e));
    await r.whenIdle();
    out.push(state(r));
  }
  r.dispose();
  out.push("--");
}
process.stdout.write(out.join("\n") + "\n");
