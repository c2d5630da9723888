package quant

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"testing"
)

// newRand returns a generator seeded freshly, or from $VKATTN_SEED to replay a failure; a
// failing test prints its seed.
func newRand(t *testing.T) *rand.Rand {
	t.Helper()
	s := rand.Uint64()
	if env := os.Getenv("VKATTN_SEED"); env != "" {
		if _, err := fmt.Sscan(env, &s); err != nil {
			t.Fatalf("VKATTN_SEED=%q: %v", env, err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed %d (VKATTN_SEED=%d replays it)", s, s)
		}
	})
	return rand.New(rand.NewPCG(s, 0x9e3779b97f4a7c15))
}

func gaussian(r *rand.Rand, n int, sigma float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(sigma * r.NormFloat64())
	}
	return x
}

func f32bits(x []float32) []uint32 {
	b := make([]uint32, len(x))
	for i, v := range x {
		b[i] = math.Float32bits(v)
	}
	return b
}

var formats = []Format{Int8, Int4, E4M3}

// headDims are the head dims vkattn's kernels take.
var headDims = []int{32, 64, 80, 96, 128, 192, 256}
