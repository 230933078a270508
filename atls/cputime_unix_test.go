//go:build unix

package atls_test

import (
	"syscall"
	"testing"
	"time"
)

// reportCPU reports the CPU time this process used per iteration since
// start (from cpuTime), in user and system mode, all threads: both ends
// of a loopback handshake. Unlike ns/op it does not count time spent
// waiting for a CPU that other processes hold, so ratios stay
// comparable on a loaded machine.
func reportCPU(b *testing.B, start time.Duration) {
	if start < 0 || b.N == 0 {
		return
	}
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

// cpuTime returns the CPU time used by this process so far, or -1.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
