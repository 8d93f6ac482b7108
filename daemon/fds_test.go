package daemon

import (
	"strings"
	"testing"
)

func TestConnBudget(t *testing.T) {
	for _, tt := range []struct {
		limit        uint64
		readers, api int
		want         ConnBudget
	}{
		{256, 1, 1, ConnBudget{API: 157, Health: 23, Metrics: 11}},
		{256, 1, 2, ConnBudget{API: 78, Health: 23, Metrics: 11}},
		{1024, 4, 1, ConnBudget{API: 876, Health: 64, Metrics: 16}},
		{1 << 20, 1, 2, ConnBudget{API: maxAPIConns, Health: maxHealthConns, Metrics: maxMetricsConns}},
		{1 << 62, 64, 1, ConnBudget{API: maxAPIConns, Health: maxHealthConns, Metrics: maxMetricsConns}},
		{97, 1, 1, ConnBudget{API: 26, Health: 4, Metrics: 2}},
	} {
		got, err := NewConnBudget(tt.limit, tt.readers, tt.api)
		if err != nil || got != tt.want {
			t.Errorf("NewConnBudget(%d, %d, %d) = %+v, %v; want %+v", tt.limit, tt.readers, tt.api, got, err, tt.want)
		}
		if err == nil && uint64(reservedFDs+tt.readers+got.API*tt.api+got.Health+got.Metrics) > tt.limit {
			t.Errorf("NewConnBudget(%d, %d, %d) = %+v: more than the limit", tt.limit, tt.readers, tt.api, got)
		}
	}
	if _, err := NewConnBudget(96, 1, 1); err == nil || !strings.Contains(err.Error(), "RLIMIT_NOFILE) is 96") {
		t.Errorf("NewConnBudget(96, 1, 1): %v; want an error naming the limit", err)
	}
}
