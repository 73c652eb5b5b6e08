package store

import (
	"fmt"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/linkbot/linkbot/pairing"
)

// BenchmarkReserveParallel measures check-and-record with 50 concurrent
// callers on a real, durable (fsync on) file, each for its own phone,
// each with the dedupe key of its command (as the bot sends them).
func BenchmarkReserveParallel(b *testing.B) {
	db, err := Open(filepath.Join(b.TempDir(), "bench.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var n atomic.Int64
	// RunParallel starts parallelism×GOMAXPROCS goroutines.
	b.SetParallelism(max(1, 50/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			r := reservation(fmt.Sprint("p", i), fmt.Sprint("I", i), fmt.Sprint("2010", 10000000+i), fmt.Sprint("U", i), t0)
			r.Dedupe = pairing.Dedupe{Key: fmt.Sprint("envelope:", i), Until: t0.Add(time.Hour)}
			if d, err := db.Reserve(b.Context(), r); err != nil || d.Refused != pairing.LimitNone {
				b.Errorf("reserve %d: %+v %v", i, d, err)
			}
		}
	})
	b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "reserves/s")
}
