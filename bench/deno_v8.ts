// Deno side of `cargo xtask bench v8`: V8's own serializer and
// deserializer (node:v8, the format Deno KV stores) on the bytes kv-v8
// encoded, so both sides work on the same 1 KiB object. JSON lines.
//   deno run -A bench/deno_v8.ts --input FILE [--scale F]

import { deserialize, serialize } from "node:v8";

const args = Deno.args;
const input = Deno.readFileSync(args[args.indexOf("--input") + 1]);
const scaleAt = args.indexOf("--scale");
const scale = scaleAt >= 0 ? Number(args[scaleAt + 1]) : 1;
const budgetMs = 2000 * scale;

function measure(f: () => unknown): number {
  // A warm-up lets the JIT settle before the clock starts.
  for (let i = 0; i < 2000; i++) f();
  const start = performance.now();
  let calls = 0;
  let sink = 0;
  while (performance.now() - start < budgetMs) {
    for (let i = 0; i < 100; i++) sink ^= f() ? 1 : 0;
    calls += 100;
  }
  const secs = (performance.now() - start) / 1000;
  if (sink === 2) console.error("unreachable");
  return (input.length * calls) / 1e6 / secs;
}

const value = deserialize(input);
const decode = measure(() => deserialize(input));
const encode = measure(() => serialize(value));
for (const [name, mbs] of [["encode", encode], ["decode", decode]] as const) {
  console.log(JSON.stringify({ name, bytes: input.length, mb_per_sec: mbs }));
}
