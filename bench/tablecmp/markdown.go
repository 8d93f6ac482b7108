package tablecmp

import (
	"fmt"
	"io"
)

// WriteMarkdown writes results as a markdown table, with a last column of
// ratios of the second result to the first when there are two.
func WriteMarkdown(w io.Writer, cfg Config, results []Result) error {
	var err error
	p := func(format string, a ...any) {
		if err == nil {
			_, err = fmt.Fprintf(w, format, a...)
		}
	}
	p("| %d keys, %d writers |", cfg.Keys, cfg.Writers)
	for _, r := range results {
		p(" %s |", r.Name)
	}
	ratio := len(results) == 2
	if ratio {
		p(" %s ÷ %s |", results[1].Name, results[0].Name)
	}
	p("\n|---|")
	for range results {
		p("---:|")
	}
	if ratio {
		p("---:|")
	}
	p("\n")
	row := func(name string, f func(Result) float64, format string) {
		p("| %s |", name)
		for _, r := range results {
			p(" "+format+" |", f(r))
		}
		if ratio {
			if a, b := f(results[0]), f(results[1]); a != 0 {
				p(" %.1f× |", b/a)
			} else {
				p(" — |")
			}
		}
		p("\n")
	}
	row("lost after concurrent inserts", func(r Result) float64 { return float64(r.Lost) }, "%.0f")
	row("lost, % of inserted", func(r Result) float64 { return 100 * float64(r.Lost) / float64(cfg.Keys) }, "%.1f%%")
	row("set, ns/op (1 writer, empty table)", func(r Result) float64 { return r.SetNs }, "%.0f")
	row("sets refused (1 writer)", func(r Result) float64 { return float64(r.SetDropped) }, "%.0f")
	row("get, ns/op (held keys, scattered)", func(r Result) float64 { return r.GetNs }, "%.0f")
	row("bytes per entry held", func(r Result) float64 { return r.BytesPerEntry }, "%.0f")
	row("entries held of those set gently", func(r Result) float64 { return float64(r.Held) }, "%.0f")
	return err
}
