"""Python `denokv` against `kv serve`: set/get/list/atomic/sum/enqueue.

Run by `cargo xtask clients` with KV_URL and DENO_KV_ACCESS_TOKEN set.
"""

import asyncio
import os
import sys
import uuid

from denokv import KvU64, open_kv


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"ok - {what}")


async def main() -> None:
    url = os.environ["KV_URL"]
    kv = await open_kv(url, access_token=os.environ["DENO_KV_ACCESS_TOKEN"])
    p = f"py-{uuid.uuid4().hex}"
    try:
        vs = await kv.set((p, "a"), "hello")
        key, entry = await kv.get((p, "a"))
        check(entry is not None and entry.value == "hello", "set then get")
        check(entry.versionstamp == vs, "get returns the set's versionstamp")

        for i in range(5):
            await kv.set((p, "list", i), {"n": i, "tags": ["x", i]})
        listed = [e async for e in kv.list(prefix=(p, "list"))]
        check([e.value["n"] for e in listed] == [0, 1, 2, 3, 4], "list in key order")
        tags = listed[2].value["tags"]
        check((tags[0], tags[1]) == ("x", 2), "nested values round-trip")

        await kv.sum((p, "count"), KvU64(5))
        await kv.sum((p, "count"), KvU64(7))
        _, count = await kv.get((p, "count"))
        check(count is not None and count.value == KvU64(12), "sum of KvU64")

        planned = kv.atomic().check_key_not_set((p, "once")).set((p, "once"), 1)
        first = await kv.write(planned)
        check(first.ok, "atomic check of an absent key commits")
        again = await kv.write(kv.atomic().check_key_not_set((p, "once")).set((p, "once"), 2))
        check(not again.ok, "the same check now conflicts")

        await kv.delete((p, "a"))
        _, gone = await kv.get((p, "a"))
        check(gone is None, "delete removes the key")

        await kv.enqueue({"job": 1})
        check(True, "enqueue is accepted")
    finally:
        await kv.aclose()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:  # noqa: BLE001 - report any failure as a test failure
        print(f"not ok - {type(e).__name__}: {e}")
        sys.exit(1)
