#!/usr/bin/env python3
"""Snapshot costs, measured on a real mount (run as root):

  1. create time on an empty volume and on one holding FILES files / SIZE;
  2. diff of two snapshots 10 files apart vs a full `find` walk;
  3. the live path (write, read, stat, create) with 0 and with 100 snapshots;
  4. stored bytes before and after deleting every snapshot and file.

  bench/snapshots.py [--files 100000] [--size-gib 5] [--json]
"""
import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QCFS = os.environ.get("QCFS_BIN", os.path.join(ROOT, "build", "bin", "qcfs"))


def run(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True)


def qcfs(*args):
    return run(QCFS, *args)


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def timed(fn, *args):
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def info(mnt):
    return json.loads(qcfs("info", "--json", mnt).stdout)


def populate(mnt, files, total_bytes, seed=1):
    rng = random.Random(seed)
    pool = os.urandom(64 << 20)
    per_file = max(1, total_bytes // files)
    dirs = max(1, files // 1000)
    for d in range(dirs):
        os.makedirs(f"{mnt}/data/d{d}", exist_ok=True)
    for i in range(files):
        off = rng.randrange(0, len(pool) - per_file)
        with open(f"{mnt}/data/d{i % dirs}/f{i}", "wb") as f:
            f.write(pool[off:off + per_file])


def live_path(mnt, label, reps):
    """Median seconds of: overwrite a 1 GiB file, read it cold, stat 20,000 files cold, create 20,000 files."""
    results = {"write": [], "read": [], "stat": [], "create": []}
    for rep in range(reps):
        def write():
            run("fio", "--name=w", f"--filename={mnt}/live/big", "--rw=write", "--bs=1M", "--size=1G",
                "--ioengine=sync", "--refill_buffers", "--end_fsync=1", f"--randseed={rep + 1}")
        results["write"].append(timed(write))
        drop_caches()

        def read():
            with open(f"{mnt}/live/big", "rb") as f:
                while f.read(1 << 20):
                    pass
        results["read"].append(timed(read))
        drop_caches()

        def stat():
            for i in range(20000):
                os.stat(f"{mnt}/live/small/s{i}")
        results["stat"].append(timed(stat))

        def create():
            os.makedirs(f"{mnt}/live/new{rep}")
            for i in range(20000):
                os.close(os.open(f"{mnt}/live/new{rep}/n{i}", os.O_CREAT | os.O_WRONLY, 0o644))
        results["create"].append(timed(create))
        shutil.rmtree(f"{mnt}/live/new{rep}")
    med = {k: statistics.median(v) for k, v in results.items()}
    return {
        "label": label,
        "write_mib_s": 1024 / med["write"],
        "read_mib_s": 1024 / med["read"],
        "stat_per_s": 20000 / med["stat"],
        "create_per_s": 20000 / med["create"],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=100000)
    ap.add_argument("--size-gib", type=float, default=5)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="qcfs-snapbench.", dir="/var/tmp")
    mnt = f"{work}/mnt"
    img = f"{work}/vol.img"
    os.makedirs(mnt)
    env_run = dict(os.environ, QCFS_RUNTIME_DIR=f"{work}/run")
    os.environ.update(env_run)
    out = {}
    try:
        qcfs("mkfs", img, "--size", f"{int(args.size_gib * 2 + 8)}G")
        qcfs("mount", img, mnt)

        # 1. Create time, empty and full.
        def create(name):
            return json.loads(qcfs("snapshot", "create", "--json", mnt, name).stdout)["elapsed_us"] / 1e6
        empty = [create(f"empty{i}") for i in range(5)]
        for i in range(5):
            qcfs("snapshot", "delete", mnt, f"empty{i}")
        start = time.perf_counter()
        populate(mnt, args.files, int(args.size_gib * (1 << 30)))
        fill_s = time.perf_counter() - start
        full = [create(f"full{i}") for i in range(5)]
        for i in range(1, 5):
            qcfs("snapshot", "delete", mnt, f"full{i}")
        out["create"] = {"empty_ms": statistics.median(empty) * 1000, "full_ms": statistics.median(full) * 1000,
                         "files": args.files, "bytes": int(args.size_gib * (1 << 30)), "fill_s": fill_s}

        # 2. Diff of 10 changed files vs a full walk.
        for i in range(10):
            with open(f"{mnt}/data/d{i}/f{i}", "r+b") as f:
                f.write(b"changed!")
        qcfs("snapshot", "create", mnt, "after10")
        cli_s = timed(qcfs, "snapshot", "diff", mnt, "full0", "after10")
        diff = json.loads(qcfs("snapshot", "diff", "--json", mnt, "full0", "after10").stdout)
        diff_s = diff["elapsed_us"] / 1e6
        drop_caches()
        walk_s = timed(run, "find", f"{mnt}/data", "-type", "f")
        out["diff"] = {"diff_ms": diff_s * 1000, "cli_ms": cli_s * 1000, "find_ms": walk_s * 1000, "ratio": diff_s / walk_s,
                       "changes": len(diff["changes"]), "journal_keys": diff["journal_keys"]}
        for name in ("full0", "after10"):
            qcfs("snapshot", "delete", mnt, name)
        shutil.rmtree(f"{mnt}/data")

        # 3. Live path with 0 and with 100 snapshots (each after some changes).
        os.makedirs(f"{mnt}/live/small")
        for i in range(20000):
            with open(f"{mnt}/live/small/s{i}", "wb") as f:
                f.write(os.urandom(512))
        run("fio", "--name=w", f"--filename={mnt}/live/big", "--rw=write", "--bs=1M", "--size=1G",
            "--ioengine=sync", "--refill_buffers", "--end_fsync=1")
        base = live_path(mnt, "0 snapshots", args.reps)
        for s in range(100):
            for i in range(10):
                with open(f"{mnt}/live/small/s{(s * 10 + i) % 20000}", "wb") as f:
                    f.write(os.urandom(512))
            with open(f"{mnt}/live/big", "r+b") as f:
                f.seek(s * (10 << 20))
                f.write(os.urandom(1 << 20))
            qcfs("snapshot", "create", mnt, f"s{s:03d}")
        with_snaps = live_path(mnt, "100 snapshots", args.reps)
        out["live"] = [base, with_snaps]
        out["live_ratio"] = {k: with_snaps[k] / base[k] for k in base if k != "label"}

        # 4. Everything deleted: the space comes back.
        before = info(mnt)
        start = time.perf_counter()
        for s in range(100):
            qcfs("snapshot", "delete", mnt, f"s{s:03d}")
        delete_s = time.perf_counter() - start
        shutil.rmtree(f"{mnt}/live")
        qcfs("umount", mnt)
        qcfs("mount", img, mnt)
        after = info(mnt)
        du = int(run("du", "-B1", img).stdout.split()[0])
        qcfs("umount", mnt)
        check = run(QCFS, "check", img, check=False)
        out["space"] = {"stored_before": before["stored_bytes"], "stored_after": after["stored_bytes"],
                        "chunks_after": after["chunks"], "image_du_after": du, "delete_100_s": delete_s,
                        "check": "clean" if check.returncode == 0 else check.stdout}
    finally:
        if os.path.ismount(mnt):
            run(QCFS, "umount", mnt, check=False)
            run("fusermount3", "-u", "-z", mnt, check=False)
        shutil.rmtree(work, ignore_errors=True)

    if args.json:
        print(json.dumps(out, indent=2))
        return
    c, d = out["create"], out["diff"]
    print(f"create: {c['empty_ms']:.1f} ms empty, {c['full_ms']:.1f} ms with {c['files']:,} files / "
          f"{c['bytes'] / (1 << 30):.1f} GiB (median of 5, in the daemon)")
    print(f"diff of 10 changed files: {d['diff_ms']:.2f} ms in the daemon ({d['cli_ms']:.0f} ms with the CLI; "
          f"{d['changes']} changes, {d['journal_keys']} keys) vs a cold find walk {d['find_ms']:.0f} ms: "
          f"{100 * d['ratio']:.3f}%")
    print(f"{'live path':<15} {'write MiB/s':>12} {'read MiB/s':>11} {'stat/s':>9} {'create/s':>9}")
    for r in out["live"]:
        print(f"{r['label']:<15} {r['write_mib_s']:12.0f} {r['read_mib_s']:11.0f} {r['stat_per_s']:9.0f} "
              f"{r['create_per_s']:9.0f}")
    lr = out["live_ratio"]
    print(f"{'100 vs 0':<15} {lr['write_mib_s']:12.2f} {lr['read_mib_s']:11.2f} {lr['stat_per_s']:9.2f} "
          f"{lr['create_per_s']:9.2f}")
    s = out["space"]
    print(f"stored: {s['stored_before'] / (1 << 20):.1f} MiB with 100 snapshots -> {s['stored_after']} bytes "
          f"({s['chunks_after']} chunks) after deleting everything ({s['delete_100_s']:.1f} s for 100 deletes); "
          f"image on disk {s['image_du_after'] / (1 << 20):.1f} MiB; check {s['check']}")


if __name__ == "__main__":
    sys.exit(main())
