#!/usr/bin/env python3
"""Checks every CUDA kernel's resources, as ptxas reported them at build time, against sm_90.

The build keeps ptxas's report (-Xptxas=-v) beside each object of loom_ops as <object>.ptxas
(cmake/nvcc_resources.sh). This reads them all, demangles the kernel names, and checks each
kernel against the launch configuration in ops/cuda/kernel_resources.tsv (threads per block,
dynamic shared memory, the blocks per SM it was designed to reach; a row's pattern is a regular
expression over "file.cu:Kernel<template args>"):

  - no spills (spill stores or loads) beyond what the table allows (0 unless a row says why);
  - registers x threads within the 64K register file, at most 255 registers per thread;
  - static + dynamic shared memory within the 227 KiB a block may use;
  - the occupancy those allow (blocks per SM, from registers, shared memory, threads and the
    32-block limit) at least the designed blocks per SM;
  - every kernel of the build has a row, every row matches a kernel (the table stays current).

It also writes the measured table (registers, shared memory, stack, spills per kernel) for
ops/cuda/kernel_resources.md with --write-table. Exit 0 when every check passes, 1 otherwise,
listing each failure with the kernel and the numbers.

usage: kernel_resources.py BUILD_DIR SOURCE_DIR [--write-table FILE]
"""
import glob
import os
import re
import subprocess
import sys

# sm_90 (H100/H200) per-SM and per-block limits (CUDA programming guide, compute capability 9.0).
REGS_PER_SM = 65536
REGS_PER_BLOCK = 65536
MAX_REGS_PER_THREAD = 255
SMEM_PER_SM = 228 * 1024
SMEM_PER_BLOCK = 227 * 1024  # with the opt-in attribute (cudaFuncSetAttribute)
SMEM_RESERVED_PER_BLOCK = 1024  # the system's share of each resident block
MAX_THREADS_PER_SM = 2048
MAX_BLOCKS_PER_SM = 32
REG_ALLOC_UNIT = 256  # registers are allocated per warp in units of 256


def demangle(names):
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True,
                         check=True).stdout.splitlines()
    return dict(zip(names, out))


def short_name(demangled):
    """'loom::ops::cuda::(anonymous namespace)::Map1Kernel<float, ...>(float*, ...)' ->
    'Map1Kernel<float, ...>': the namespace and the parameter list dropped."""
    name = demangled
    depth = 0
    for i, ch in enumerate(name):  # cut the parameter list: the first '(' at template depth 0
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif ch == "(" and depth == 0 and not name[i:].startswith("(anonymous namespace)"):
            name = name[:i]
            break
    if name.startswith("void "):
        name = name[len("void "):]
    for noise in ("(anonymous namespace)::", "loom::ops::cuda::attn::", "loom::ops::cuda::"):
        name = name.replace(noise, "")
    return name


def parse_reports(build_dir):
    kernels = {}
    files = sorted(glob.glob(os.path.join(build_dir, "ops", "**", "*.ptxas"), recursive=True))
    for path in files:
        current = None
        lines = open(path).read().splitlines()
        for i, line in enumerate(lines):
            m = re.search(r"Compiling entry function '([^']+)' for 'sm_(\d+)'", line)
            if m:
                current = {"mangled": m.group(1), "arch": m.group(2),
                           "file": os.path.basename(path).replace(".o.ptxas", ""),
                           "regs": 0, "smem": 0, "stack": 0, "spill_st": 0, "spill_ld": 0}
                kernels[m.group(1)] = current
                continue
            if current is None:
                continue
            m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill "
                          r"loads", line)
            if m and i > 0 and current["mangled"] in lines[i - 1]:
                current["stack"], current["spill_st"], current["spill_ld"] = map(int, m.groups())
            m = re.search(r"Used (\d+) registers", line)
            if m:
                current["regs"] = int(m.group(1))
                s = re.search(r"(\d+) bytes smem", line)
                current["smem"] = int(s.group(1)) if s else 0
                current = None
    names = demangle(list(kernels))
    for k in kernels.values():
        k["name"] = short_name(names[k["mangled"]])
    return files, sorted(kernels.values(), key=lambda k: (k["file"], k["name"]))


def parse_table(path):
    rows = []
    for n, line in enumerate(open(path), 1):
        line = line.rstrip("\n")
        if not line.strip() or line.startswith("#"):
            continue
        f = line.split("\t")
        if len(f) < 5:
            sys.exit(f"{path}:{n}: want 5-6 tab-separated fields (pattern, threads, dynamic smem, "
                     f"blocks per SM, allowed spill bytes[, why]), got {len(f)}")
        rows.append({"pattern": f[0], "threads": int(f[1]), "dyn_smem": int(f[2]),
                     "min_blocks": int(f[3]), "spill_ok": int(f[4]),
                     "why": f[5] if len(f) > 5 else "", "line": n, "used": False})
    return rows


def blocks_per_sm(regs, threads, smem):
    warps = (threads + 31) // 32
    regs_per_warp = ((max(regs, 1) * 32 + REG_ALLOC_UNIT - 1) // REG_ALLOC_UNIT) * REG_ALLOC_UNIT
    by_regs = REGS_PER_SM // (regs_per_warp * warps)
    by_smem = SMEM_PER_SM // (smem + SMEM_RESERVED_PER_BLOCK)
    by_threads = MAX_THREADS_PER_SM // threads
    return min(by_regs, by_smem, by_threads, MAX_BLOCKS_PER_SM)


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    build_dir, source_dir = argv[1], argv[2]
    table_out = argv[argv.index("--write-table") + 1] if "--write-table" in argv else None
    files, kernels = parse_reports(build_dir)
    if not kernels:
        print(f"kernel_resources: no ptxas reports under {build_dir}/ops (the build keeps them "
              f"as *.ptxas beside each CUDA object: cmake/nvcc_resources.sh)")
        return 1
    table_path = os.path.join(source_dir, "ops", "cuda", "kernel_resources.tsv")
    rows = parse_table(table_path)
    failures = []
    lines = ["| kernel | file | regs | static smem | dyn smem | threads | stack | spill st/ld "
             "| blocks/SM (designed) |", "|---|---|---|---|---|---|---|---|---|"]
    for k in kernels:
        key = f"{k['file']}:{k['name']}"
        match = [r for r in rows if re.fullmatch(r["pattern"], key)]
        if len(match) != 1:
            failures.append(f"{k['name']} ({k['file']}): {len(match)} rows of {table_path} match "
                            f"it; want exactly one (add its launch configuration)")
            continue
        r = match[0]
        r["used"] = True
        where = f"{k['name']} ({k['file']}, sm_{k['arch']})"
        spill = k["spill_st"] + k["spill_ld"]
        if r["threads"] == 0:
            # A library's kernel (CUB) launched with the library's own tuned configuration:
            # only what does not depend on the launch is checked.
            if spill > r["spill_ok"]:
                failures.append(f"{where}: spills {k['spill_st']} bytes stored, {k['spill_ld']} "
                                f"loaded (allowed {r['spill_ok']})")
            if k["regs"] > MAX_REGS_PER_THREAD:
                failures.append(f"{where}: {k['regs']} registers per thread")
            lines.append(f"| `{k['name'][:80]}` | {k['file']} | {k['regs']} | {k['smem']} | - | "
                         f"(library) | {k['stack']} | {k['spill_st']}/{k['spill_ld']} | - |")
            continue
        smem = k["smem"] + r["dyn_smem"]
        occ = blocks_per_sm(k["regs"], r["threads"], smem)
        if spill > r["spill_ok"]:
            failures.append(f"{where}: spills {k['spill_st']} bytes stored, {k['spill_ld']} loaded "
                            f"(allowed {r['spill_ok']})")
        if k["regs"] > MAX_REGS_PER_THREAD or k["regs"] * r["threads"] > REGS_PER_BLOCK:
            failures.append(f"{where}: {k['regs']} registers x {r['threads']} threads exceed "
                            f"the {REGS_PER_BLOCK}-register file: the launch cannot run")
        if smem > SMEM_PER_BLOCK:
            failures.append(f"{where}: {k['smem']} static + {r['dyn_smem']} dynamic bytes of "
                            f"shared memory exceed the {SMEM_PER_BLOCK} a block may use")
        if occ < r["min_blocks"]:
            failures.append(f"{where}: {occ} blocks per SM ({k['regs']} registers, {smem} bytes "
                            f"of shared memory, {r['threads']} threads) but it was designed for "
                            f"{r['min_blocks']}")
        lines.append(f"| `{k['name']}` | {k['file']} | {k['regs']} | {k['smem']} | {r['dyn_smem']} "
                     f"| {r['threads']} | {k['stack']} | {k['spill_st']}/{k['spill_ld']} | "
                     f"{occ} ({r['min_blocks']}) |")
    for r in rows:
        if not r["used"]:
            failures.append(f"{table_path}:{r['line']}: row '{r['pattern']}' matches no kernel of "
                            f"the build (remove it)")
    if table_out:
        with open(table_out, "w") as f:
            f.write("\n".join(lines) + "\n")
    print(f"kernel_resources: {len(kernels)} kernels in {len(files)} objects checked against "
          f"sm_90 limits and {table_path}")
    for f in failures:
        print("  FAIL " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
