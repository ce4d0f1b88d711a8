#!/usr/bin/env python3
"""Curated figures for docs/peer-graphs.md from peer_graphs runs.

`plansim run experiments/peer_graphs.json` finishes in one run since every
point is bounded by time_limit_s (docs/DECISIONS.md); runs done in parts (or
re-runs of some points) can still be merged: later files override earlier
ones for the same graph/cluster/devices/planner.  Writes
peer_graphs_points.csv and draws throughput.png and search_time.png with
gnuplot (log scales).

usage: merge_and_plot.py OUT_DIR PART.h5 [PART.h5 ...]
"""
import csv, math, os, subprocess, sys
import h5py

os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")


def rows(path):
    with h5py.File(path, "r") as f:
        t = f["peer_graphs/points"][:]
    out = []
    for r in t:
        d = {}
        for n in t.dtype.names:
            v = r[n]
            d[n] = v.decode() if isinstance(v, bytes) else v.item() if hasattr(v, "item") else v
        out.append(d)
    return out


def main():
    out_dir, parts = sys.argv[1], sys.argv[2:]
    merged = {}
    for p in parts:
        for r in rows(p):
            merged[(r["graph"], r["cluster"], int(r["devices"]), r["planner"])] = r
    keys = sorted(merged)
    cols = ["graph", "cluster", "devices", "planner", "feasible", "throughput_samples_per_s",
            "search_time_s", "search_peak_bytes", "peer_objective", "peer_search_time_s",
            "time_limited"]
    with open(os.path.join(out_dir, "peer_graphs_points.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for k in keys:
            r = merged[k]
            w.writerow([r.get(c, "") for c in cols])
    graphs = []
    for k in keys:
        if k[0] not in graphs:
            graphs.append(k[0])
    planners = ["graphpipe", "pipedream", "piper"]
    # one block per (graph, cluster): columns devices, then per planner throughput / search
    dat = os.path.join(out_dir, "peer_graphs.dat")
    with open(dat, "w") as f:
        for g in graphs:
            for c in ["summit", "dgx-h100"]:
                f.write(f"# {g} {c}\n")
                for d in [4, 8, 16, 32]:
                    vals = []
                    for p in planners:
                        r = merged.get((g, c, d, p))
                        thr = r["throughput_samples_per_s"] if r and r["feasible"] == 1 else float("nan")
                        st = r["search_time_s"] if r else float("nan")
                        vals += [thr if thr and thr > 0 else float("nan"), st if st and st > 0 else float("nan")]
                    f.write(f"{d} " + " ".join("NaN" if math.isnan(v) else f"{v:.6g}" for v in vals) + "\n")
                f.write("\n\n")
    for what, col0, ylabel in [("throughput", 2, "samples/s (simulated)"), ("search_time", 3, "search time (s)")]:
        n = len(graphs)
        cols_ = 4
        rws = (n + cols_ - 1) // cols_
        gp = [f"set terminal pngcairo noenhanced size 2400,{560 * rws} font ',11'",
              f"set output '{os.path.join(out_dir, what + '.png')}'",
              f"set multiplot layout {rws},{cols_} title 'peer graphs: {what.replace('_', ' ')} (solid: Summit, dashed: DGX-H100)'",
              "set logscale xy", "set xrange [3:40]", "set xtics (4, 8, 16, 32)", "set grid",
              "set key top left font ',9'", "set datafile missing 'NaN'",
              "set xlabel 'devices'", f"set ylabel '{ylabel}'"]
        for gi, g in enumerate(graphs):
            b = 2 * gi
            gp.append(f"set title '{g}'")
            plots = []
            for pi, p in enumerate(planners):
                col = col0 + 2 * pi
                plots.append(f"'{dat}' index {b} using 1:{col} with linespoints lc {pi + 1} dt 1 pt 7 title '{p}'")
                plots.append(f"'{dat}' index {b + 1} using 1:{col} with linespoints lc {pi + 1} dt 2 pt 6 notitle")
            gp.append("plot " + ", ".join(plots))
        gp.append("unset multiplot")
        subprocess.run(["gnuplot"], input="\n".join(gp), text=True, check=True)


if __name__ == "__main__":
    main()
