package report

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// si writes v with a k, M or G suffix and three significant digits.
func si(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e9:
		return sig(v/1e9) + " G"
	case a >= 1e6:
		return sig(v/1e6) + " M"
	case a >= 1e4:
		return sig(v/1e3) + " k"
	}
	return sig(v)
}

// sig writes v with three significant digits, no exponent.
func sig(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100 || a == 0:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3f", v)
}

// times writes a ratio.
func times(r float64) string {
	if math.IsInf(r, 0) || math.IsNaN(r) {
		return "—"
	}
	return sig(r) + "×"
}

// dur writes d rounded to three significant digits.
func dur(d time.Duration) string {
	switch {
	case d >= 100*time.Second:
		return sig(d.Minutes()) + " min"
	case d >= time.Second:
		return sig(d.Seconds()) + " s"
	case d >= time.Millisecond:
		return sig(float64(d)/1e6) + " ms"
	}
	return sig(float64(d)/1e3) + " µs"
}

// mib writes bytes in MiB.
func mib(b int64) string { return sig(float64(b)/(1<<20)) + " MiB" }

// count writes an integer with thin groups of three digits.
func count(n int) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// table writes a markdown table.
type table struct {
	head  []string
	align string // one of l or r per column
	rows  [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) String() string {
	var b strings.Builder
	b.WriteString("| " + strings.Join(t.head, " | ") + " |\n|")
	for i := range t.head {
		if i < len(t.align) && t.align[i] == 'r' {
			b.WriteString("---:|")
		} else {
			b.WriteString("---|")
		}
	}
	b.WriteByte('\n')
	for _, r := range t.rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	return b.String()
}

// plural writes n and noun, with an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
