// Deno side of `cargo xtask bench embedded`: the same workloads as the
// `kv-bench` crate (same keys, values and counts), on Deno's built-in KV
// opened on a file. Prints one JSON line per workload on stdout:
// {"name":..,"ops":..,"secs":..,"p50_us":..,"p99_us":..}
//
//   deno run -A --unstable-kv bench/deno_embedded.ts --path FILE \
//     [--workload NAME|all] [--scale F]
//
// Keep it in step with kv-bench/src/main.rs.

const WORKLOADS = [
  "set",
  "get",
  "counter",
  "sum",
  "list1000",
  "get_many10",
  "writers64",
] as const;
type Workload = typeof WORKLOADS[number];

const SET_N = 20_000;
const GET_N = 100_000;
const GET_KEYS = 10_000;
const COUNTER_N = 10_000;
const SUM_N = 20_000;
const LIST_KEYS = 1_000;
const LIST_N = 500;
const GET_MANY_N = 20_000;
const GET_MANY_KEYS = 1_000;
const WRITERS = 64;
const WRITER_SETS = 1_000;
const WRITERS_MAX_SECS = 3.0;
const SETUP_BATCH = 100;
const VALUE_LEN = 100;

const USAGE =
  "usage: deno run -A --unstable-kv bench/deno_embedded.ts --path FILE [--workload NAME|all] [--scale F]";

function parseArgs(argv: string[]) {
  let path: string | undefined;
  let workload = "all";
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
      case "--workload":
        workload = value();
        break;
      case "--scale":
        scale = Number(value());
        if (!(scale > 0)) throw new Error("--scale must be positive");
        break;
      default:
        throw new Error(`unknown argument \`${argv[i]}\`\n${USAGE}`);
    }
  }
  if (path === undefined) throw new Error(`--path FILE is required\n${USAGE}`);
  if (workload !== "all" && !(WORKLOADS as readonly string[]).includes(workload)) {
    throw new Error(`unknown workload \`${workload}\`; known: all, ${WORKLOADS.join(", ")}`);
  }
  return { path, workload, scale };
}

const args = parseArgs(Deno.args);
const n = (count: number) => Math.max(1, Math.round(count * args.scale));
const value = () => new Uint8Array(VALUE_LEN).fill(0x78);
const kv = await Deno.openKv(args.path);

interface Stats {
  name: Workload;
  ops: number;
  secs: number;
  latencies: number[]; // milliseconds
}

function json(s: Stats): string {
  const lat = Float64Array.from(s.latencies).sort();
  const pct = (p: number) => {
    if (lat.length === 0) return 0;
    const i = Math.min(Math.floor((lat.length * p) / 100), lat.length - 1);
    return Math.round(lat[i] * 1000 * 10) / 10;
  };
  return JSON.stringify({
    name: s.name,
    ops: s.ops,
    secs: s.secs,
    p50_us: pct(50),
    p99_us: pct(99),
  });
}

/** Writes prefix/0..count in untimed batches. */
async function fill(prefix: string, count: number) {
  const v = value();
  for (let start = 0; start < count; start += SETUP_BATCH) {
    const op = kv.atomic();
    for (let i = start; i < Math.min(start + SETUP_BATCH, count); i++) {
      op.set([prefix, i], v);
    }
    const res = await op.commit();
    if (!res.ok) throw new Error("a setup commit without checks failed its checks");
  }
}

async function timed(
  name: Workload,
  ops: number,
  body: (i: number) => Promise<void>,
): Promise<Stats> {
  const latencies = new Array<number>(ops);
  const start = performance.now();
  for (let i = 0; i < ops; i++) {
    const t = performance.now();
    await body(i);
    latencies[i] = performance.now() - t;
  }
  return { name, ops, secs: (performance.now() - start) / 1000, latencies };
}

const workloads: Record<Workload, () => Promise<Stats>> = {
  async set() {
    const v = value();
    return await timed("set", n(SET_N), async (i) => {
      await kv.set(["set", i], v);
    });
  },

  async get() {
    const keys = n(GET_KEYS);
    await fill("get", keys);
    return await timed("get", n(GET_N), async (i) => {
      const entry = await kv.get(["get", i % keys]);
      if (entry.versionstamp === null) throw new Error(`key get/${i % keys} is missing`);
    });
  },

  // Read the counter, then commit check(versionstamp) + set(n + 1).
  async counter() {
    const ops = n(COUNTER_N);
    const key = ["counter"];
    const stats = await timed("counter", ops, async () => {
      for (;;) {
        const entry = await kv.get<Deno.KvU64>(key);
        const current = entry.value?.value ?? 0n;
        const res = await kv.atomic()
          .check(entry)
          .set(key, new Deno.KvU64(current + 1n))
          .commit();
        if (res.ok) break;
      }
    });
    const end = await kv.get<Deno.KvU64>(key);
    if (end.value?.value !== BigInt(ops)) {
      throw new Error(`counter ended at ${end.value?.value}, expected ${ops}`);
    }
    return stats;
  },

  async sum() {
    return await timed("sum", n(SUM_N), async () => {
      await kv.atomic().sum(["sum"], 1n).commit();
    });
  },

  // Lists a 1000-key prefix with the default batch size (100).
  async list1000() {
    await fill("list", LIST_KEYS);
    return await timed("list1000", n(LIST_N), async () => {
      let count = 0;
      for await (const _ of kv.list({ prefix: ["list"] })) count++;
      if (count !== LIST_KEYS) throw new Error(`listed ${count} keys, expected ${LIST_KEYS}`);
    });
  },

  async get_many10() {
    await fill("gm", GET_MANY_KEYS);
    const batches: Deno.KvKey[][] = [];
    for (let b = 0; b < GET_MANY_KEYS / 10; b++) {
      const keys: Deno.KvKey[] = [];
      for (let j = 0; j < 10; j++) keys.push(["gm", b * 10 + j]);
      batches.push(keys);
    }
    return await timed("get_many10", n(GET_MANY_N), async (i) => {
      const entries = await kv.getMany(batches[i % batches.length]);
      if (entries.some((e) => e.versionstamp === null)) {
        throw new Error("getMany found a missing key");
      }
    });
  },

  // 64 concurrent writers, each setting its own keys until it has done its
  // share or the time is up; reports total commits per second.
  async writers64() {
    const perTask = n(WRITER_SETS);
    const deadlineMs = WRITERS_MAX_SECS * 1000;
    const start = performance.now();
    const tasks = Array.from({ length: WRITERS }, async (_, w) => {
      const v = value();
      const latencies: number[] = [];
      for (let j = 0; j < perTask; j++) {
        if (performance.now() - start >= deadlineMs) break;
        const t = performance.now();
        await kv.set(["w", w, j], v);
        latencies.push(performance.now() - t);
      }
      return latencies;
    });
    const latencies = (await Promise.all(tasks)).flat();
    const secs = (performance.now() - start) / 1000;
    return { name: "writers64", ops: latencies.length, secs, latencies };
  },
};

for (const name of WORKLOADS) {
  if (args.workload !== "all" && args.workload !== name) continue;
  console.error(`deno: ${name}`);
  console.log(json(await workloads[name]()));
}
kv.close();
