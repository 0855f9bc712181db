"""Output: the text and markdown tables, and the offered-load plot
(gnuplot script, data and PNG)."""
import os
import shutil
import subprocess

from .harness import machine_line


def ratio(a, b):
    return a / b if a and b else None


def one_line(e):
    text = f"{type(e).__name__}: {e}" if not isinstance(e, (RuntimeError, TimeoutError)) else str(e)
    text = " ".join(text.split())
    return text[:400]


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"
    return str(v)


def fmt_cell(key, v):
    if v is None:
        return "-"
    if key in ("of_limit", "e2e_of_limit", "of_target") and isinstance(v, (int, float)):
        return f"{100 * v:.0f} %"
    if key == "difference" and isinstance(v, (int, float)):
        return f"{100 * v:+.1f} %"
    ratios = ("ratio", "e2e_ratio", "relative", "e2e_relative", "s2_relative", "speedup")
    if key in ratios and isinstance(v, (int, float)):
        return f"{v:.2f}×"
    return fmt(v)


def table_cells(result):
    cols = result.get("columns", [])
    rows = []
    for row in result.get("rows", []):
        cells = [fmt_cell(k, row.get(k)) for k, _ in cols]
        if row.get("note"):
            cells.append(row["note"])
        rows.append(cells)
    header = [h for _, h in cols]
    if any(r.get("note") for r in result.get("rows", [])):
        header.append("note")
        rows = [r + [""] * (len(header) - len(r)) for r in rows]
    return header, rows


def duration(result):
    if result.get("seconds") is None:
        return "run alternating with scenario 2"
    return f"{result['seconds']} s"


def render_text(result):
    out = [f"{result['title']}  [{result['status']}, {duration(result)}, "
           f"load before {result.get('load_before')}]"]
    header, rows = table_cells(result)
    if rows:
        widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
        line = lambda cells: "  ".join(str(c).rjust(w) if i else str(c).ljust(w)  # noqa: E731
                                       for i, (c, w) in enumerate(zip(cells, widths)))
        out.append(line(header))
        out.append("  ".join("-" * w for w in widths))
        out += [line(r) for r in rows]
    out += [f"  {n}" for n in result.get("notes", [])]
    return "\n".join(out) + "\n"


def render_markdown(meta, results):
    m = meta["machine"]
    out = [f"## Scenarios (bench/run_scenarios.py, {meta['profile']})", "",
           f"{meta['date']}, commit `{meta['commit']}`, {m['nproc']} cores ({m['cpu']}), "
           f"Linux {m['kernel']}. Command: `{meta['command']}`. Postern workers: "
           f"{meta['settings']['workers']}, loadgen connections: "
           f"{meta['settings']['connections']}.", ""]
    for name, result in results.items():
        out.append(f"### {result['title']}")
        out.append("")
        out.append(f"Load average before: {result.get('load_before')}; {duration(result)}.")
        out.append("")
        if not result.get("rows"):
            out.append(f"{result['status']}.")
            out.append("")
            continue
        header, rows = table_cells(result)
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "---|" * len(header))
        out += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows]
        out.append("")
        out += [f"{n}  " for n in result.get("notes", [])]
        out.append("")
    return "\n".join(out)


def write_plot(outdir, rows):
    """offered_load.dat, offered_load.gp and offered_load.png in outdir."""
    dat = os.path.join(outdir, "offered_load.dat")
    gp = os.path.join(outdir, "offered_load.gp")
    png = os.path.join(outdir, "offered_load.png")
    systems = []
    with open(dat, "w") as f:
        for system in ("postern", "postfix"):
            pts = [r for r in rows if r["system"] == system and r.get("msgs_per_s") is not None]
            if not pts:
                continue
            systems.append(system)
            f.write(f"# {system}: offered acked_per_s p99_message_ms p99_data_end_to_250_ms\n")
            for r in pts:
                f.write(f"{r['offered']} {r['msgs_per_s']:.1f} {r.get('p99_msg_ms') or 0:.3f} "
                        f"{r.get('p99_ms') or 0:.3f}\n")
            f.write("\n\n")
    color = {"postern": "#1b7837", "postfix": "#d95f02"}
    plots_rate = ", ".join(f"'{dat}' index {i} using 1:2 with linespoints lw 2 "
                           f"lc rgb '{color[s]}' title '{s} acknowledged/s'"
                           for i, s in enumerate(systems))
    plots_lat = ", ".join(
        f"'{dat}' index {i} using 1:3 with linespoints lw 2 lc rgb '{color[s]}' "
        f"title '{s} p99 send time to 250', '{dat}' index {i} using 1:4 with linespoints "
        f"dashtype 2 lc rgb '{color[s]}' title '{s} p99 end of DATA to 250'"
        for i, s in enumerate(systems))
    with open(gp, "w") as f:
        f.write(f"""set terminal pngcairo size 1000,800 font ',10'
set output '{png}'
set multiplot layout 2,1 title 'Relay 1 KB, 50 msgs/conn, STARTTLS both hops, open loop ({machine_line()})'
set grid
set key left top
set xlabel 'offered msgs/s'
set ylabel 'acknowledged msgs/s'
plot x title 'offered' dashtype 3 lc rgb 'gray', {plots_rate}
set logscale y
set ylabel 'p99 latency, ms'
plot {plots_lat}
unset multiplot
""")
    files = [dat, gp]
    if systems and shutil.which("gnuplot"):
        r = subprocess.run(["gnuplot", gp], capture_output=True, text=True, timeout=60)
        if r.returncode == 0:
            files.append(png)
        else:
            files.append(f"gnuplot failed: {one_line(r.stderr)}")
    return files
