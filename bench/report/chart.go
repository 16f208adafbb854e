package report

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"slices"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Series is one named set of latency samples.
type Series struct {
	Name    string
	Samples []time.Duration
}

// Panel is one latency plot.
type Panel struct {
	Title  string
	Series []Series
}

// percentileX maps a percentile p (0..1) to the chart's x axis, where each
// "nine" takes the same width: x = log10(1/(1-p)). 50% is 0.3, 90% 1,
// 99% 2, 99.9% 3.
func percentileX(p float64) float64 {
	if p >= 1 {
		p = 1 - 1e-6
	}
	return math.Log10(1 / (1 - p))
}

type percentileTicks struct{}

func (percentileTicks) Ticks(min, max float64) []plot.Tick {
	var out []plot.Tick
	for _, t := range []struct {
		p     float64
		label string
	}{{0, "0%"}, {0.5, "50%"}, {0.9, "90%"}, {0.99, "99%"}, {0.999, "99.9%"}, {0.9999, "99.99%"}} {
		x := percentileX(t.p)
		if x >= min-1e-9 && x <= max+1e-9 {
			out = append(out, plot.Tick{Value: x, Label: t.label})
		}
	}
	return out
}

// LatencyChart draws one panel per row: latency (log scale, µs) against
// percentile, each series a line, and saves it as PNG.
func LatencyChart(path string, panels []Panel) error {
	if len(panels) == 0 {
		return fmt.Errorf("latency chart %s: no panels", path)
	}
	plots := make([][]*plot.Plot, len(panels))
	for i, pn := range panels {
		p := plot.New()
		p.Title.Text = pn.Title
		p.X.Label.Text = "percentile"
		p.Y.Label.Text = "latency (µs, log scale)"
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = logTicks125{}
		p.X.Tick.Marker = percentileTicks{}
		p.Legend.Top = true
		p.Legend.Left = true
		p.Add(plotter.NewGrid())
		maxX := 0.0
		for j, s := range pn.Series {
			if len(s.Samples) == 0 {
				continue
			}
			xys := percentileLine(s.Samples)
			l, err := plotter.NewLine(xys)
			if err != nil {
				return fmt.Errorf("latency chart %s: %w", path, err)
			}
			l.Color = plotutil.Color(j)
			l.Width = vg.Points(1.5)
			p.Add(l)
			p.Legend.Add(fmt.Sprintf("%s (n=%d)", s.Name, len(s.Samples)), l)
			maxX = math.Max(maxX, xys[len(xys)-1].X)
		}
		p.X.Min, p.X.Max = 0, math.Max(maxX, 1)
		plots[i] = []*plot.Plot{p}
	}
	return saveGrid(path, plots, 8*vg.Inch, vg.Length(len(panels))*4*vg.Inch)
}

// percentileLine turns samples into points (percentileX, µs), thinned to
// at most ~400 points spread evenly over the x axis.
func percentileLine(samples []time.Duration) plotter.XYs {
	s := slices.Clone(samples)
	slices.Sort(s)
	n := len(s)
	var out plotter.XYs
	lastX := -1.0
	for i, v := range s {
		p := float64(i) / float64(n)
		x := percentileX(p)
		if x-lastX < 0.01 && i != n-1 {
			continue
		}
		us := float64(v) / float64(time.Microsecond)
		if us <= 0 {
			us = 0.001
		}
		out = append(out, plotter.XY{X: x, Y: us})
		lastX = x
	}
	return out
}

// TimeSeries is one named line over time.
type TimeSeries struct {
	Name string
	// X in minutes since the start, Y in the panel's unit.
	X, Y []float64
}

// SeriesPanel is one time-series plot.
type SeriesPanel struct {
	Title, YLabel string
	Series        []TimeSeries
}

// SeriesChart draws one panel per row, x in minutes, and saves it as PNG.
func SeriesChart(path string, panels []SeriesPanel) error {
	if len(panels) == 0 {
		return fmt.Errorf("series chart %s: no panels", path)
	}
	plots := make([][]*plot.Plot, len(panels))
	for i, pn := range panels {
		p := plot.New()
		p.Title.Text = pn.Title
		p.X.Label.Text = "minutes"
		p.Y.Label.Text = pn.YLabel
		p.Y.Min = 0
		p.Legend.Top = true
		p.Add(plotter.NewGrid())
		for j, s := range pn.Series {
			if len(s.X) == 0 || len(s.X) != len(s.Y) {
				continue
			}
			xys := make(plotter.XYs, len(s.X))
			for k := range s.X {
				xys[k] = plotter.XY{X: s.X[k], Y: s.Y[k]}
			}
			l, err := plotter.NewLine(xys)
			if err != nil {
				return fmt.Errorf("series chart %s: %w", path, err)
			}
			l.Color = plotutil.Color(j)
			l.Width = vg.Points(1.5)
			p.Add(l)
			p.Legend.Add(s.Name, l)
		}
		plots[i] = []*plot.Plot{p}
	}
	return saveGrid(path, plots, 8*vg.Inch, vg.Length(len(panels))*2.5*vg.Inch)
}

func saveGrid(path string, plots [][]*plot.Plot, w, h vg.Length) error {
	img := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(96), vgimg.UseBackgroundColor(color.White))
	dc := draw.New(img)
	t := draw.Tiles{Rows: len(plots), Cols: 1, PadX: vg.Millimeter, PadY: 4 * vg.Millimeter,
		PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 4 * vg.Millimeter}
	canvases := plot.Align(plots, t, dc)
	for i := range plots {
		plots[i][0].Draw(canvases[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create chart %s: %w", path, err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("write chart %s: %w", path, err)
	}
	return f.Close()
}

// logTicks125 labels 1, 2 and 5 times each power of ten, so that a log
// axis spanning less than a decade still reads.
type logTicks125 struct{}

func (logTicks125) Ticks(min, max float64) []plot.Tick {
	if min <= 0 || max <= min {
		return nil
	}
	var out []plot.Tick
	for e := math.Floor(math.Log10(min)); e <= math.Ceil(math.Log10(max)); e++ {
		base := math.Pow(10, e)
		for _, m := range []float64{1, 2, 5} {
			v := m * base
			if v < min || v > max {
				continue
			}
			out = append(out, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', -1, 64)})
		}
		for m := 3.0; m < 10; m++ {
			if v := m * base; v >= min && v <= max && m != 5 {
				out = append(out, plot.Tick{Value: v})
			}
		}
	}
	return out
}
