package metrics_test

import (
	"reflect"
	"testing"

	"github.com/toad-project/toad/api/preload"
	"github.com/toad-project/toad/internal/metrics"
)

// TestPreloadCollector checks that every preload counter is exported
// under its own name and type with the value of its own field.
func TestPreloadCollector(t *testing.T) {
	// Each field gets a distinct value, so that a counter reading the
	// wrong field shows.
	var st preload.Stats
	v := reflect.ValueOf(&st).Elem()
	for i := range v.NumField() {
		v.Field(i).SetUint(uint64(100 + i))
	}
	serving := true
	c := metrics.NewPreloadCollector(func() (preload.Stats, bool) { return st, serving })
	fams := families(t, c)
	if len(fams) != len(preload.Counters) {
		t.Errorf("got %d families, want %d", len(fams), len(preload.Counters))
	}
	byValue := map[uint64]string{}
	for _, k := range preload.Counters {
		name := metrics.PreloadMetricName(k)
		mf, ok := fams[name]
		if !ok {
			t.Errorf("no %s", name)
			continue
		}
		var got float64
		switch {
		case k.Gauge && mf.GetMetric()[0].GetGauge() != nil:
			got = mf.GetMetric()[0].GetGauge().GetValue()
		case !k.Gauge && mf.GetMetric()[0].GetCounter() != nil:
			got = mf.GetMetric()[0].GetCounter().GetValue()
		default:
			t.Errorf("%s: type %v, gauge %v", name, mf.GetType(), k.Gauge)
			continue
		}
		if want := k.Value(&st); got != float64(want) {
			t.Errorf("%s: got %v, want %d", name, got, want)
		}
		if prev, dup := byValue[uint64(got)]; dup {
			t.Errorf("%s and %s read the same field", prev, name)
		}
		byValue[uint64(got)] = name
		if m := metrics.PreloadCounters(&st); m[k.Name] != k.Value(&st) {
			t.Errorf("PreloadCounters[%s] = %d, want %d", k.Name, m[k.Name], k.Value(&st))
		}
	}
	for _, name := range []string{"toad_preload_getname_toa_ok_total", "toad_preload_getname_toa_empty_total", "toad_preload_getname_toa_mismatch_total"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("no %s", name)
		}
	}

	serving = false
	if fams := families(t, c); len(fams) != 0 {
		t.Errorf("without a preload socket: %d families, want none", len(fams))
	}
}
