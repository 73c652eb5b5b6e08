package procstat

import (
	"runtime"
	"testing"
)

func TestPeakRSSMB(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	big := make([]byte, 64<<20)
	for i := range big {
		big[i] = 1
	}
	if got := PeakRSSMB(); got < 64 {
		t.Errorf("PeakRSSMB = %.1f after touching 64 MiB", got)
	}
	runtime.KeepAlive(big)
}
