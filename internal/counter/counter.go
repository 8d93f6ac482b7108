// Package counter describes a component's counters once, for every view
// that shows them: Prometheus metrics, GetStats, toactl, the warnings of
// the daemon. A component lists a Desc for each field of its Stats; the
// views range over that list, and tests check the list against the struct
// and the proto.
//
// Descs are values, safe to share; Value must only read the Stats it is
// given.
package counter

// Desc describes one counter (or gauge) of a Stats struct S.
type Desc[S any] struct {
	// Name is the counter's name in snake case, as GetStats and toactl
	// show it: "lookups_ok".
	Name string
	// Help says what the counter counts, as /metrics shows it.
	Help string
	// ToaStats is the /proc/net/toa_stats name the counter stands for,
	// when there is one.
	ToaStats string
	// Gauge is true for a value that goes down as well as up.
	Gauge bool
	// Value reads the counter from a Stats.
	Value func(*S) uint64

	// Metric is the Prometheus name without the toad_ prefix, with its
	// _total suffix for a counter: "getname_toa_ok_total". "" is Name
	// (with _total for a counter); NoMetric exports none, for a counter
	// another one's Series shows.
	Metric string
	// Series, when set, splits the metric by the label Label: one series
	// per Series, in place of Value.
	Label  string
	Series []Series[S]

	// Warn, when set, is the warning the daemon logs when the counter
	// grows (at most once a minute), with the growth as attribute
	// WarnAttr.
	Warn, WarnAttr string
}

// NoMetric is the Metric of a counter exported by no series of its own.
const NoMetric = "-"

// Series is one labelled series of a metric.
type Series[S any] struct {
	Value string // the label's value
	Read  func(*S) uint64
}

// MetricName is d's Prometheus name, without the toad_ prefix; "" when it
// exports none.
func (d *Desc[S]) MetricName() string {
	switch {
	case d.Metric == NoMetric:
		return ""
	case d.Metric != "":
		return d.Metric
	case d.Gauge:
		return d.Name
	}
	return d.Name + "_total"
}
