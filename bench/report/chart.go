package report

import (
	"errors"
	"fmt"
	"image/color"
	"io"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/toad-project/toad/bench/replaycmp"
)

// WriteChart draws the scaling run as an SVG: replay time and table memory
// against the number of connections, both on log scales, each beside the
// straight line of linear growth from the smallest size.
func WriteChart(w io.Writer, points []replaycmp.Point) error {
	if len(points) < 2 {
		return errors.New("a scaling chart needs two sizes or more")
	}
	replay := make(plotter.XYs, len(points))
	memory := make(plotter.XYs, len(points))
	for i, p := range points {
		replay[i] = plotter.XY{X: float64(p.Conns), Y: p.Replay.Seconds()}
		memory[i] = plotter.XY{X: float64(p.Conns), Y: float64(p.TableBytes) / (1 << 20)}
	}
	left, err := scalePlot("decode + table, all packets", "seconds", replay)
	if err != nil {
		return err
	}
	right, err := scalePlot("table memory, every connection held", "MiB", memory)
	if err != nil {
		return err
	}
	const width, height = 10 * vg.Inch, 4 * vg.Inch
	c := vgsvg.New(width, height)
	dc := draw.New(c)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Centimeter, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	plots := [][]*plot.Plot{{left, right}}
	canvases := plot.Align(plots, tiles, dc)
	left.Draw(canvases[0][0])
	right.Draw(canvases[0][1])
	_, err = c.WriteTo(w)
	return err
}

var (
	measured = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	linear   = color.RGBA{R: 0x99, G: 0x99, B: 0x99, A: 0xff}
)

func scalePlot(title, unit string, xys plotter.XYs) (*plot.Plot, error) {
	for _, p := range xys {
		if p.X <= 0 || p.Y <= 0 {
			return nil, fmt.Errorf("%s: %v at %v connections cannot go on a log scale", title, p.Y, p.X)
		}
	}
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "connections"
	p.Y.Label.Text = unit
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker, p.Y.Tick.Marker = countTicks{}, plot.LogTicks{Prec: -1}
	p.Add(plotter.NewGrid())

	ref := make(plotter.XYs, len(xys))
	for i := range xys {
		ref[i] = plotter.XY{X: xys[i].X, Y: xys[0].Y * xys[i].X / xys[0].X}
	}
	rl, err := plotter.NewLine(ref)
	if err != nil {
		return nil, err
	}
	rl.Color = linear
	rl.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}

	ml, mp, err := plotter.NewLinePoints(xys)
	if err != nil {
		return nil, err
	}
	ml.Color, ml.Width = measured, vg.Points(1.5)
	mp.Color, mp.Shape = measured, draw.CircleGlyph{}
	p.Add(rl, ml, mp)
	p.Legend.Add("measured", ml, mp)
	p.Legend.Add("linear growth", rl)
	p.Legend.Top, p.Legend.Left = true, true
	return p, nil
}

// countTicks are log ticks labelled 10k, 1M and so on.
type countTicks struct{}

func (countTicks) Ticks(min, max float64) []plot.Tick {
	ts := plot.LogTicks{Prec: -1}.Ticks(min, max)
	for i := range ts {
		switch v := ts[i].Value; {
		case ts[i].Label == "":
		case v >= 1e6:
			ts[i].Label = fmt.Sprintf("%gM", v/1e6)
		case v >= 1e3:
			ts[i].Label = fmt.Sprintf("%gk", v/1e3)
		}
	}
	return ts
}
