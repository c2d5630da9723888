package attention_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/attention"
	"github.com/vkattn/vkattn/internal/testenv"
	"github.com/vkattn/vkattn/memory"
)

// The naive baseline's results are checked by the conformance suite (TestForwardConformance runs
// conformance.NaiveCases); here are only what is naive-specific: its limit on S and its timing.

// TestNaiveScoresTooLarge: S over maxStorageBufferRange is refused before anything is allocated
// or dispatched, naming its shape and size.
func TestNaiveScoresTooLarge(t *testing.T) {
	e := engine(t)
	lim := uint64(e.Profile().MaxStorageBufferRange)
	n := 1024
	for uint64(4*n*n) <= lim {
		n *= 2
	}
	q, err := e.NewTensor(memory.F32, 1, n, 1, 32)
	require.NoError(t, err)
	defer q.Close()
	o, err := e.NewTensor(memory.F32, 1, n, 1, 32)
	require.NoError(t, err)
	defer o.Close()
	_, err = e.NaiveForwardInto(context.Background(), o, nil, q, q, q, attention.Options{})
	require.Error(t, err)
	t.Logf("maxStorageBufferRange %d: %v", lim, err)
	want := fmt.Sprintf("[1, 1, %d, %d] (fp32) is %d bytes", n, n, 4*n*n)
	require.True(t, strings.Contains(err.Error(), want) && strings.Contains(err.Error(), "maxStorageBufferRange"), "%v", err)
}

// TestNaiveTime: TimeNaive returns one positive device time per iteration. A device without
// timestamps skips it, or fails it where a device is required (VKATTN_REQUIRE_DEVICE=1).
func TestNaiveTime(t *testing.T) {
	e := engine(t)
	ctx := context.Background()
	q, err := e.Upload(ctx, memory.F16, make([]float32, 2*33*2*64), 2, 33, 2, 64)
	require.NoError(t, err)
	defer q.Close()
	o, err := e.NewTensor(memory.F16, 2, 33, 2, 64)
	require.NoError(t, err)
	defer o.Close()
	times, kernel, err := e.TimeNaive(ctx, o, nil, q, q, q, attention.Options{Causal: true}, 1, 3)
	if err != nil && strings.Contains(err.Error(), "no timestamps") {
		testenv.Lacks(t, err)
	}
	require.NoError(t, err)
	require.Equal(t, attention.NaiveKernel, kernel)
	require.Len(t, times, 3)
	for _, d := range times {
		require.Positive(t, d)
	}
}
