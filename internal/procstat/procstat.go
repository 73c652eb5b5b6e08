// Package procstat reads what the benchmarks report about this process's
// own resource use (they run the bot and both fakes in one process).
package procstat

import (
	"os"
	"strconv"
	"strings"
)

// PeakRSSMB is the process's high-water resident set size (VmHWM in
// /proc/self/status) in MiB; 0 where /proc does not say (not Linux).
func PeakRSSMB() float64 {
	raw, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}
