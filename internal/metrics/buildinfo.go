package metrics

import "github.com/prometheus/client_golang/prometheus"

// BuildInfo returns the constant series toad_build_info{version, revision,
// goversion} = 1, which dashboards join on to show what runs.
func BuildInfo(version, revision, goVersion string) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "toad_build_info",
		Help:        "Always 1; the labels say which toad build runs.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": goVersion},
	}, func() float64 { return 1 })
}
