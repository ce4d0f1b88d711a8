# lines.gp: a line chart, one panel per facet (plansim figure kind "lines").
#
# plansim does not `load` this file: it copies it below the variables of each
# generated figure script (results/<run>/<figure>.gp), so a figure script
# reruns on its own, anywhere.  To restyle every figure, edit this file and
# rerun `plansim plot`; to restyle one, edit its generated script.
#
# Variables (plots/README.md has the details):
#   datafile          the .dat file: one gnuplot index block per facet x series
#   outbase           output name without extension
#   formats           "png svg" unless set (e.g. gnuplot -e 'formats="svg"')
#   width, height     canvas size in pixels
#   fig_title, fig_xlabel, fig_ylabel, logx, logy
#   ncats, xtics_cmd  categorical x: ncats positions labelled by xtics_cmd
#   nfacets           number of panels; facet_title[f] and plotcmd[f] for each
#   plotcmd[f]        the panel's whole `plot` command, written by plansim
#                     (which block, which column, which style and title)

if (!exists("formats")) { formats = "png svg" }

do for [fmt in formats] {
    if (fmt eq "png") {
        set terminal pngcairo size width,height font "DejaVu Sans,11" noenhanced
    } else {
        if (fmt eq "svg") {
            set terminal svg size width,height dynamic font "DejaVu Sans,11" noenhanced background "white"
        } else {
            print sprintf("lines.gp: unknown format '%s' (expected png or svg)", fmt)
            exit status 1
        }
    }
    set output outbase . "." . fmt

    # Column names carry underscores; noenhanced above keeps them literal.
    set grid
    set key outside right top vertical Left reverse noautotitle
    set xlabel fig_xlabel
    set ylabel fig_ylabel
    set xtics autofreq norotate
    set autoscale
    # Linear axes end at the data plus a small margin, so points on the edge
    # are not cut by the frame and no range grows to the next round tic; log
    # axes keep gnuplot's whole decades.
    _ox = logx ? 0 : 0.03
    _oy = logy ? 0 : 0.05
    set offsets graph _ox, graph _ox, graph _oy, graph _oy
    if (!logx) { set autoscale xfix }
    if (!logy) { set autoscale yfix }
    if (logx) { set logscale x } else { unset logscale x }
    if (logy) { set logscale y } else { unset logscale y }
    if (ncats > 0) {
        set xrange [-0.5:ncats - 0.5]
        eval xtics_cmd
    }

    if (nfacets > 1) {
        _cols = int(ceil(sqrt(nfacets)))
        _rows = (nfacets + _cols - 1) / _cols
        set multiplot layout _rows,_cols title fig_title
        # Panels share one legend, inside the first panel, so an outside key
        # does not squeeze every panel to a sliver.
        do for [f = 1:nfacets] {
            set title facet_title[f]
            if (f == 1) {
                set key inside right top vertical Left reverse noautotitle font ",8" samplen 2 spacing 0.9 opaque
            } else {
                unset key
            }
            eval plotcmd[f]
        }
        unset multiplot
    } else {
        set title fig_title
        eval plotcmd[1]
    }
    unset output
}
