/* Figures of a result file: the config's "figures" array becomes, per figure,
 * a .dat file (gnuplot's data format), a self-contained .gp script built from
 * a template in plots/, and the PNG and SVG that gnuplot draws from them.
 * All four land in a folder beside the .h5 (results/x.h5 → results/x/), so a
 * user can edit the script and rerun gnuplot without plansim.
 *
 * A figure (all keys but name, x and y optional):
 *   {"name": "bubble", "title": "...", "xlabel": "...", "ylabel": "...",
 *    "table": "points", "x": "microbatches", "y": ["a", "b"],
 *    "style": ["points", "lines"], "series": "stages", "facet": "schedule",
 *    "where": {"schedule": "1f1b", "stages": [4, 8]},
 *    "logx": false, "logy": false, "kind": "lines" | "bars", "paper": "fig6"}
 * plots/README.md describes every key and the template variables. */
#ifndef PS_PLOT_H
#define PS_PLOT_H

#include <jansson.h>
#include <stddef.h>

#include "common/err.h"
#include "common/table.h"

/* Draw every figure declared in the result file's `config` attribute.
 * out_dir NULL → the .h5 path without ".h5" (created if needed).  report,
 * if not NULL, must be a JSON array; one object is appended per figure:
 * {"figure", "dat", "gp", "png", "svg"} (png/svg null when not drawn) or
 * {"figure", "skipped": reason} when no row passes the figure's filter.
 * Figures are validated first (PS_EINPUT naming "$.figures[i].field" and
 * the file) and nothing is written when one is bad.  Without gnuplot the
 * .dat and .gp files are still written and PS_ERUN says to install
 * gnuplot-nox.  A failing gnuplot run does not stop the other figures; the
 * first failure is returned.  Outputs are written under temporary names and
 * renamed, so a final name never holds a half-written file. */
int ps_plot_results(const char *h5_path, const char *out_dir, json_t *report, ps_err *e);

/* Check a config's "figures" value before anything runs (figures may be
 * NULL: no figures).  Keys, types, names and styles always; with `points`
 * (a table with the points table's columns, rows not needed) also the
 * columns of figures drawn from "points".  Messages name "$.figures[i].field"
 * only: the caller prefixes its config path. */
int ps_plot_check_figures(const json_t *figures, const ps_table *points, ps_err *e);

/* The folder holding the gnuplot templates: $PLANSIM_PLOTS; else, beside the
 * executable, ../plots, ../../plots (build/tests, build/san) or
 * ../share/plansim/plots (installed); else ./plots.  0, or PS_ERUN naming
 * the places tried. */
int ps_plot_scripts_dir(char *out, size_t n, ps_err *e);

/* gnuplot on PATH: 1 and its path in out, else 0. */
int ps_plot_find_gnuplot(char *out, size_t n);
/* Run `gnuplot -d -e "outbase='OUTBASE'" SCRIPT` inside dir (-d: no
 * ~/.gnuplot, so figures do not depend on who draws them).  0 on success;
 * else gnuplot's exit status (or -1), with the first error line gnuplot
 * printed in errline. */
int ps_plot_run_gnuplot(const char *gnuplot, const char *dir, const char *script,
                        const char *outbase, char *errline, size_t n);

#endif
