package replay

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/toad-project/toad/capture"
)

// WriteTo writes the summary for people, a few lines: what was read, where
// the files leave a gap or overlap, what the connections were and how
// many were written.
func (s *Summary) WriteTo(w io.Writer) (int64, error) {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	plural := func(n uint64, one, many string) string {
		if n == 1 {
			return fmt.Sprintf("%d %s", n, one)
		}
		return fmt.Sprintf("%d %s", n, many)
	}
	st := &s.Capture
	p("replayed %s: %d packets, %d records, %d rejected (%s)\n",
		plural(uint64(len(s.Files)), "file", "files"), st.Packets, st.Records, st.Rejected(), st.FailureSummary())
	var read []capture.File
	for _, f := range s.Files {
		switch {
		case f.SameAs != "":
			p("%s is the same file as %s: read once\n", f.Name, f.SameAs)
		case f.Stats.Packets == 0:
			p("%s holds no packets\n", f.Name)
		}
		if f.SameAs == "" {
			read = append(read, f)
		}
	}
	if !slices.IsSortedFunc(read, func(a, b capture.File) int { return a.Named - b.Named }) {
		names := make([]string, len(read))
		for i, f := range read {
			names[i] = f.Name
		}
		p("read in capture order, not as named: %s\n", strings.Join(names, " "))
	}
	for _, sm := range s.Seams {
		if g := sm.Gap(); g > 0 {
			p("gap: %v without packets between %s (last packet %s) and %s (first packet %s)\n",
				round(g), sm.Before, stamp(sm.End), sm.After, stamp(sm.Start))
		} else {
			p("overlap: %s starts %v before %s ends (%s, %s): their packets were merged in time order\n",
				sm.After, round(-g), sm.Before, stamp(sm.Start), stamp(sm.End))
		}
	}

	c := &s.Conns
	p("connections: %d with a TOA, %d without; %d ended by FIN, %d by RST, %d by a new connection on their 4-tuple, %d open at the end\n",
		c.WithTOA, c.Conns-c.WithTOA, c.FIN, c.RST, c.Reused, c.Open)
	switch q := s.Query.String(); {
	case q != "":
		p("wrote %s matching %s\n", plural(s.Written, "connection", "connections"), q)
	default:
		p("wrote %s, every one a TOA resolved (--all adds those without)\n", plural(s.Written, "connection", "connections"))
	}
	trust := "TOAs believed from every peer (no --trusted-proxies)"
	if !c.AllTrusted {
		trust = plural(c.Untrusted, "segment", "segments") + " with a TOA from untrusted peers ignored"
	}
	p("TOAs: %d conflicting with their connection's first (ignored), %s with several; %s\n", c.Conflicts, plural(c.MultipleTOA, "segment", "segments"), trust)
	p("held at most %s at once; none dropped\n", plural(uint64(c.Peak), "connection", "connections"))
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// round rounds d for reading: to the millisecond, or to the second from a
// minute on.
func round(d time.Duration) time.Duration {
	if d >= time.Minute {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}
