set terminal pngcairo size 1000,800 font ',10'
set output 'bench/results/offered_load.png'
set multiplot layout 2,1 title 'Relay 1 KB, 50 msgs/conn, STARTTLS both hops, open loop (2 cores, AMD EPYC, Linux 6.18.44-fc-v1272, 9a1c225dad57)'
set grid
set key left top
set xlabel 'offered msgs/s'
set ylabel 'acknowledged msgs/s'
plot x title 'offered' dashtype 3 lc rgb 'gray', 'bench/results/offered_load.dat' index 0 using 1:2 with linespoints lw 2 lc rgb '#1b7837' title 'postern acknowledged/s', 'bench/results/offered_load.dat' index 1 using 1:2 with linespoints lw 2 lc rgb '#d95f02' title 'postfix acknowledged/s'
set logscale y
set ylabel 'p99 latency, ms'
plot 'bench/results/offered_load.dat' index 0 using 1:3 with linespoints lw 2 lc rgb '#1b7837' title 'postern p99 send time to 250', 'bench/results/offered_load.dat' index 0 using 1:4 with linespoints dashtype 2 lc rgb '#1b7837' title 'postern p99 end of DATA to 250', 'bench/results/offered_load.dat' index 1 using 1:3 with linespoints lw 2 lc rgb '#d95f02' title 'postfix p99 send time to 250', 'bench/results/offered_load.dat' index 1 using 1:4 with linespoints dashtype 2 lc rgb '#d95f02' title 'postfix p99 end of DATA to 250'
unset multiplot
