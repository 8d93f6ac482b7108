// Package endmark tells when a live capture has delivered everything sent
// before an end marker: a segment no workload sends, sent last.
package endmark

import (
	"sync"

	"github.com/toad-project/toad/capture"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft"
)

// Sink passes every record to next except the marker's, and closes the
// returned channel when the marker first arrives. The marker may be sent
// more than once (a full ring drops it too).
func Sink(marker *craft.Segment, next func(*decode.Record)) (capture.Sink, <-chan struct{}) {
	done := make(chan struct{})
	var once sync.Once
	return capture.SinkFunc(func(r *decode.Record) {
		if r.Peer == marker.Src && r.Seq == marker.Seq {
			once.Do(func() { close(done) })
			return
		}
		next(r)
	}), done
}
