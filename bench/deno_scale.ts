// Deno side of `cargo xtask bench scale`: the same load and measures as
// kv-bench/src/bin/kv-bench-scale.rs (same keys, values, counts and random
// sequence), on Deno's built-in KV opened on a fresh file. Prints one JSON
// line per measure on stdout:
// {"name":"load"|"get"|"set"|"list1000","keys":..,"ops":..,"secs":..,"p50_us":..,"p99_us":..}
// then {"name":"file","keys":..,"bytes":..,"bytes_per_key":..} once closed.
//
//   deno run -A --unstable-kv bench/deno_scale.ts --path FILE --keys N [--scale F]
//
// Keep it in step with kv-bench-scale.

const LOAD_BATCH = 1000;
const LOAD_IN_FLIGHT = 8;
const GET_N = 20_000;
const SET_N = 3_000;
const LIST_N = 500;
const LIST_KEYS = 1000;
const VALUE_LEN = 100;
const GET_SEED = 0x9e3779b9;
const SET_SEED = 0x85ebca6b;
const LIST_SEED = 0xc2b2ae35;

const USAGE =
  "usage: deno run -A --unstable-kv bench/deno_scale.ts --path FILE --keys N [--scale F]";

function parseArgs(argv: string[]) {
  let path: string | undefined;
  let keys: number | undefined;
  let scale = 1;
  for (let i = 0; i < argv.length; i++) {
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(USAGE);
      return v;
    };
    switch (argv[i]) {
      case "--path":
        path = value();
        break;
      case "--keys":
        keys = Number(value());
        break;
      case "--scale":
        scale = Number(value());
        if (!(scale > 0)) throw new Error("--scale must be positive");
        break;
      default:
        throw new Error(`unknown argument \`${argv[i]}\`\n${USAGE}`);
    }
  }
  if (path === undefined || keys === undefined) throw new Error(USAGE);
  if (!Number.isInteger(keys) || keys < LIST_KEYS) {
    throw new Error(`--keys must be a whole number of at least ${LIST_KEYS}`);
  }
  return { path, keys, scale };
}

const args = parseArgs(Deno.args);
try {
  await Deno.stat(args.path);
  throw new Error(`${args.path} exists: the benchmark starts from a fresh file`);
} catch (e) {
  if (!(e instanceof Deno.errors.NotFound)) throw e;
}
const n = (count: number) => Math.max(1, Math.round(count * args.scale));
const value = () => new Uint8Array(VALUE_LEN).fill(0x78);
let kv = await Deno.openKv(args.path);

/** Marsaglia's xorshift32, as in kv-bench-scale. */
class Rng {
  constructor(private x: number) {}
  below(n: number): number {
    let x = this.x;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.x = x >>> 0;
    return this.x % n;
  }
}

function json(name: string, ops: number, secs: number, latencies: number[]): string {
  const lat = Float64Array.from(latencies).sort();
  const pct = (p: number) => {
    if (lat.length === 0) return 0;
    const i = Math.min(Math.floor((lat.length * p) / 100), lat.length - 1);
    return Math.round(lat[i] * 1000 * 10) / 10;
  };
  return JSON.stringify({
    name,
    keys: args.keys,
    ops,
    secs,
    p50_us: pct(50),
    p99_us: pct(99),
  });
}

/** Writes scale/0..keys in ascending order, LOAD_IN_FLIGHT commits at a time. */
async function load(): Promise<string> {
  const v = value();
  const batches = Math.ceil(args.keys / LOAD_BATCH);
  const latencies: number[] = [];
  let next = 0;
  const start = performance.now();
  const worker = async () => {
    for (let b = next++; b < batches; b = next++) {
      const op = kv.atomic();
      for (let i = b * LOAD_BATCH; i < Math.min((b + 1) * LOAD_BATCH, args.keys); i++) {
        op.set(["scale", i], v);
      }
      const t = performance.now();
      const res = await op.commit();
      latencies.push(performance.now() - t);
      if (!res.ok) throw new Error("a loading commit without checks failed its checks");
    }
  };
  await Promise.all(Array.from({ length: LOAD_IN_FLIGHT }, worker));
  return json("load", args.keys, (performance.now() - start) / 1000, latencies);
}

async function measure(name: string, seed: number): Promise<string> {
  const ops = name === "get" ? n(GET_N) : name === "set" ? n(SET_N) : n(LIST_N);
  const rng = new Rng(seed);
  const v = value();
  const latencies = new Array<number>(ops);
  const start = performance.now();
  for (let o = 0; o < ops; o++) {
    if (name === "get") {
      const i = rng.below(args.keys);
      const t = performance.now();
      const entry = await kv.get(["scale", i]);
      latencies[o] = performance.now() - t;
      if (entry.versionstamp === null) throw new Error(`key scale/${i} is missing`);
    } else if (name === "set") {
      const i = rng.below(args.keys);
      const t = performance.now();
      await kv.set(["scale", i], v);
      latencies[o] = performance.now() - t;
    } else {
      const i = rng.below(args.keys - LIST_KEYS + 1);
      const t = performance.now();
      let count = 0;
      for await (const _ of kv.list({ start: ["scale", i], end: ["scale", i + LIST_KEYS] })) {
        count++;
      }
      latencies[o] = performance.now() - t;
      if (count !== LIST_KEYS) {
        throw new Error(`listed ${count} keys from scale/${i}, expected ${LIST_KEYS}`);
      }
    }
  }
  return json(name, ops, (performance.now() - start) / 1000, latencies);
}

console.error(`deno_scale: ${args.keys} keys`);
console.log(await load());
// Closed and opened again, as kv-bench-scale does, so the measures meet
// the database at rest.
kv.close();
kv = await Deno.openKv(args.path);
for (const [name, seed] of [["get", GET_SEED], ["list1000", LIST_SEED], ["set", SET_SEED]] as const) {
  console.log(await measure(name, seed));
}
kv.close();

let bytes = 0;
for (const file of [args.path, `${args.path}-wal`]) {
  try {
    bytes += (await Deno.stat(file)).size;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound) || file === args.path) throw e;
  }
}
console.log(JSON.stringify({
  name: "file",
  keys: args.keys,
  bytes,
  bytes_per_key: Math.round((bytes / args.keys) * 10) / 10,
}));
