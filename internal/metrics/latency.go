package metrics

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// lookupService is the full name of the service whose calls Latency times.
const lookupService = "/toad.v1.LookupService/"

// latencyBuckets span an answer from memory (microseconds) to a lookup
// that waited out a handshake (seconds).
var latencyBuckets = []float64{
	.00001, .000025, .00005, .0001, .00025, .0005,
	.001, .0025, .005, .01, .025, .05, .1, .25, .5,
	1, 2.5, 5, 10,
}

// Latency is a histogram of the time the server spends on each Lookup and
// BatchLookup call, by method and gRPC status code: from the call's arrival
// at the server to its answer, any wait for a handshake included, transport
// excluded.
type Latency struct {
	h *prometheus.HistogramVec
}

// NewLatency returns an empty Latency. It is exported as
// toad_lookup_duration_seconds, with classic buckets and, for scrapers that
// ask for them, native (sparse) buckets.
func NewLatency() *Latency {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:                            "toad_lookup_duration_seconds",
		Help:                            "Time the server spent answering Lookup and BatchLookup calls, waits for a handshake included, by method and gRPC status code.",
		Buckets:                         latencyBuckets,
		NativeHistogramBucketFactor:     1.1,
		NativeHistogramMaxBucketNumber:  160,
		NativeHistogramMinResetDuration: time.Hour,
	}, []string{"method", "code"})
	// The usual outcomes exist from the start, so that rates over them do
	// not begin with a gap.
	for _, m := range []string{"Lookup", "BatchLookup"} {
		for _, c := range []codes.Code{codes.OK, codes.NotFound} {
			h.WithLabelValues(m, c.String())
		}
	}
	return &Latency{h: h}
}

// Describe implements prometheus.Collector.
func (l *Latency) Describe(ch chan<- *prometheus.Desc) { l.h.Describe(ch) }

// Collect implements prometheus.Collector.
func (l *Latency) Collect(ch chan<- prometheus.Metric) { l.h.Collect(ch) }

// UnaryServerInterceptor times the unary calls of toad.v1.LookupService
// other than GetStats; other calls pass through untimed.
func (l *Latency) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		method, ok := strings.CutPrefix(info.FullMethod, lookupService)
		if !ok || (method != "Lookup" && method != "BatchLookup") {
			return handler(ctx, req)
		}
		start := time.Now()
		resp, err := handler(ctx, req)
		l.h.WithLabelValues(method, status.Code(err).String()).Observe(time.Since(start).Seconds())
		return resp, err
	}
}
