# bars.gp: a clustered bar chart, one panel per facet (plansim figure kind
# "bars").  The x axis is categorical: category k sits at x = k, and each
# (series, y column) pair has its own slot in the cluster around it, so a
# series missing from one category leaves a gap instead of shifting bars.
#
# plansim copies this file below the variables of each generated figure
# script, as for lines.gp; the variables are the same, plus
#   boxwidth          width of one bar in x units (0.8 / bars per cluster)
# plotcmd[f] places each bar with `using ($1+offset):column`.

if (!exists("formats")) { formats = "png svg" }

do for [fmt in formats] {
    if (fmt eq "png") {
        set terminal pngcairo size width,height font "DejaVu Sans,11" noenhanced
    } else {
        if (fmt eq "svg") {
            set terminal svg size width,height dynamic font "DejaVu Sans,11" noenhanced background "white"
        } else {
            print sprintf("bars.gp: unknown format '%s' (expected png or svg)", fmt)
            exit status 1
        }
    }
    set output outbase . "." . fmt

    set grid ytics
    set key outside right top vertical Left reverse noautotitle
    set xlabel fig_xlabel
    set ylabel fig_ylabel
    set xtics autofreq norotate scale 0
    set autoscale
    set offsets 0, 0, graph (logy ? 0 : 0.04), 0
    set boxwidth boxwidth absolute
    set style fill solid 0.85 border -1
    set xrange [-0.5:ncats - 0.5]
    eval xtics_cmd
    # Bars grow from zero unless the axis is logarithmic.
    if (logy) { set logscale y } else { unset logscale y; set yrange [0:*] }

    if (nfacets > 1) {
        _cols = int(ceil(sqrt(nfacets)))
        _rows = (nfacets + _cols - 1) / _cols
        set multiplot layout _rows,_cols title fig_title
        do for [f = 1:nfacets] {
            set title facet_title[f]
            eval plotcmd[f]
        }
        unset multiplot
    } else {
        set title fig_title
        eval plotcmd[1]
    }
    unset output
}
