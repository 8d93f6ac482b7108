package counter

import "testing"

func TestMetricName(t *testing.T) {
	type s struct{}
	for _, tt := range []struct {
		d    Desc[s]
		want string
	}{
		{Desc[s]{Name: "lookups_ok"}, "lookups_ok_total"},
		{Desc[s]{Name: "entries", Gauge: true}, "entries"},
		{Desc[s]{Name: "lookups_ok", Metric: "getname_toa_ok_total"}, "getname_toa_ok_total"},
		{Desc[s]{Name: "evictions_open", Metric: NoMetric}, ""},
	} {
		if got := tt.d.MetricName(); got != tt.want {
			t.Errorf("MetricName(%+v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}
