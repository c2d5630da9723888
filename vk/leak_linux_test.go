//go:build linux

package vk_test

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// residentBytes is the process's resident set (VmRSS), after returning the Go heap's free
// memory to the system so that only what is in use counts.
func residentBytes(t *testing.T) int64 {
	t.Helper()
	debug.FreeOSMemory()
	b, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// TestQueriesFreeTheirMemory: creating buffers (which reads their memory requirements) and
// describing devices (their properties and memory heaps), many times over, leave the resident
// set where it was. Through goki/vulkan each of these calls leaves behind the C copy of the
// structure the driver fills unless it is freed.
func TestQueriesFreeTheirMemory(t *testing.T) {
	in, d := openDevice(t)
	round := func(n int) {
		for i := range n {
			b, err := d.NewBuffer(256)
			require.NoError(t, err)
			b.Close()
			if i%4 == 0 {
				_, err := in.PhysicalDevices()
				require.NoError(t, err)
			}
		}
	}
	round(8000) // the driver's, the C library's and the runtime's first allocations
	before := residentBytes(t)
	const n = 40000
	round(n)
	grown := residentBytes(t) - before
	t.Logf("resident set grew %d bytes over %d rounds", grown, n)
	require.Less(t, grown, int64(8<<20), "C memory left behind by the calls")
}
