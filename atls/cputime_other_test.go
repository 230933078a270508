//go:build !unix

package atls_test

import (
	"testing"
	"time"
)

// reportCPU reports nothing where getrusage is not available.
func reportCPU(*testing.B, time.Duration) {}

// cpuTime returns -1: unknown.
func cpuTime() time.Duration { return -1 }
