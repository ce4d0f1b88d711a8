# costmodel_validate.gp: predicted vs measured op times of the held-out
# points of `plansim costmodel validate`, log-log, with y = x and a +-25% band.
#
# plansim copies this file below the variables of the generated script
# (PLOT_DIR/costmodel_validate.gp), which reruns on its own.
#
# Variables:
#   datafile    the .dat: columns measured_s predicted_s rel_err source; one
#               index block per op kind, in the order of `kinds`
#   outbase     output name without extension
#   formats     "png svg" unless set
#   fig_title   title line
#   nkinds      number of index blocks; kinds: their names, space-separated

if (!exists("formats")) { formats = "png svg" }
if (!exists("width")) { width = 900 }
if (!exists("height")) { height = 800 }

do for [fmt in formats] {
    if (fmt eq "png") {
        set terminal pngcairo size width,height font "DejaVu Sans,11" noenhanced
    } else {
        if (fmt eq "svg") {
            set terminal svg size width,height dynamic font "DejaVu Sans,11" noenhanced background "white"
        } else {
            print sprintf("costmodel_validate.gp: unknown format '%s' (expected png or svg)", fmt)
            exit status 1
        }
    }
    set output outbase . "." . fmt
    set title fig_title
    set grid
    set logscale xy
    set format x "%.0e"
    set format y "%.0e"
    set xlabel "measured time (s)"
    set ylabel "predicted time (s)"
    set key left top Left reverse
    set size square
    # Both axes span the same decades, so y = x is the diagonal.
    stats datafile using 1 nooutput
    _lo1 = STATS_min
    _hi1 = STATS_max
    stats datafile using 2 nooutput
    _lo = (STATS_min < _lo1 ? STATS_min : _lo1) / 1.5
    _hi = (STATS_max > _hi1 ? STATS_max : _hi1) * 1.5
    set xrange [_lo:_hi]
    set yrange [_lo:_hi]
    # the diagonal runs corner to corner: both ends may round to just outside
    # the range, and gnuplot drops such segments unless told to clip them
    set clip two
    set samples 50
    plot for [i = 0:nkinds - 1] datafile index i using 1:2 with points pt 7 ps 0.8 title word(kinds, i + 1), \
         x with lines lc rgb "black" lw 1.5 title "y = x", \
         1.25 * x with lines lc rgb "gray50" dt 2 title "+-25%", \
         x / 1.25 with lines lc rgb "gray50" dt 2 notitle
    unset output
}
