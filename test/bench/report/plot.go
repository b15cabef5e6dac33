package main

import (
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// plotted are the paths drawn in the plots: the two ends of the ladder,
// us and the peer.
var plotted = []string{"tcp", "direct", "proxy", "kas-ws", "kas-tcp", "remotedialer"}

// plotLatency draws p50 and p99 of the small GET against the arrival
// rate, one PNG per percentile, and returns the files written.
func plotLatency(r *results, file string) ([]string, error) {
	rates := r.children("LadderGet")
	if len(rates) == 0 {
		return nil, nil
	}
	var files []string
	for _, q := range []string{"p50", "p99"} {
		p := plot.New()
		p.Title.Text = "Small GET " + q + " vs load (open loop)"
		p.X.Label.Text = "arrival rate (requests/s)"
		p.Y.Label.Text = q + " latency (ms, log scale)"
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Legend.Top = true
		p.Legend.Left = true
		var args []any
		for _, name := range plotted {
			var xys plotter.XYs
			for _, rate := range rates {
				v, ok := r.get("LadderGet/"+rate+"/"+name, q+"-us")
				x, _ := numericValue(rate)
				if ok && v > 0 {
					xys = append(xys, plotter.XY{X: x, Y: v / 1000})
				}
			}
			if len(xys) > 0 {
				args = append(args, name, xys)
			}
		}
		if len(args) == 0 {
			continue
		}
		if err := plotutil.AddLinePoints(p, args...); err != nil {
			return nil, err
		}
		out := strings.TrimSuffix(file, ".png") + "-" + q + ".png"
		if err := p.Save(7*vg.Inch, 4.5*vg.Inch, out); err != nil {
			return nil, err
		}
		files = append(files, out)
	}
	return files, nil
}

// plotThroughput draws one stream's MB/s against the added RTT for us,
// remotedialer and direct.
func plotThroughput(r *results, file string) ([]string, error) {
	rtts := r.children("LadderThroughput")
	if len(rtts) == 0 {
		return nil, nil
	}
	p := plot.New()
	p.Title.Text = "One stream's throughput vs added round-trip time"
	p.X.Label.Text = "added RTT (ms)"
	p.Y.Label.Text = "MB/s"
	p.Legend.Top = true
	var args []any
	for _, name := range []string{"direct", "kas-ws", "kas-tcp", "remotedialer"} {
		var xys plotter.XYs
		for _, rtt := range rtts {
			v, ok := r.get("LadderThroughput/"+rtt+"/"+name, "MB/s")
			x, _ := numericValue(rtt)
			if ok {
				xys = append(xys, plotter.XY{X: x, Y: v})
			}
		}
		if len(xys) > 0 {
			args = append(args, name, xys)
		}
	}
	if len(args) == 0 {
		return nil, nil
	}
	if err := plotutil.AddLinePoints(p, args...); err != nil {
		return nil, err
	}
	p.Y.Min = 0
	if err := p.Save(7*vg.Inch, 4.5*vg.Inch, file); err != nil {
		return nil, err
	}
	return []string{file}, nil
}
