package attention_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/attention"
	"github.com/vkattn/vkattn/attention/conformance"
	"github.com/vkattn/vkattn/attention/reference"
	"github.com/vkattn/vkattn/memory"
)

// naiveCases cover odd and prime lengths, rows that see no key, grouped heads, varlen batches
// with empty sequences, masks, soft cap and every storage type.
func naiveCases() []conformance.Case {
	var cs []conformance.Case
	for _, dt := range []memory.DType{memory.F32, memory.F16, memory.BF16} {
		cs = append(cs,
			conformance.Case{DType: dt, D: 64, Hq: 4, Hk: 4, Lq: []int{37}, Lk: []int{45}},
			conformance.Case{DType: dt, D: 80, Hq: 6, Hk: 2, Lq: []int{31}, Lk: []int{31}, Batch: 2, Causal: true},
			// lq > lk, causal: the first lq-lk rows see no key.
			conformance.Case{DType: dt, D: 32, Hq: 2, Hk: 1, Lq: []int{45}, Lk: []int{37}, Causal: true},
			conformance.Case{DType: dt, D: 128, Hq: 4, Hk: 1, Lq: []int{13, 0, 29, 7}, Lk: []int{17, 5, 31, 0}, Varlen: true, Causal: true},
		)
	}
	return append(cs,
		conformance.Case{DType: memory.F32, D: 96, Hq: 3, Hk: 3, Lq: []int{1}, Lk: []int{53}, Batch: 3},
		conformance.Case{DType: memory.F32, D: 256, Hq: 2, Hk: 2, Lq: []int{23}, Lk: []int{41}, NoLSE: true},
		conformance.Case{DType: memory.F32, D: 192, Hq: 2, Hk: 1, Lq: []int{19, 3}, Lk: []int{11, 47}, Varlen: true,
			Window: &attention.Window{Left: 5, Right: 2}, Softcap: 2.5},
		conformance.Case{DType: memory.BF16, D: 64, Hq: 4, Hk: 2, Lq: []int{61}, Lk: []int{61}, Causal: true,
			Window: &attention.Window{Left: 9, Right: -1}, Scale: 0.3},
		conformance.Case{DType: memory.F16, D: 32, Hq: 8, Hk: 1, Lq: []int{67}, Lk: []int{130}, Softcap: 5},
	)
}

func TestNaiveForward(t *testing.T) {
	e := engine(t)
	for _, c := range naiveCases() {
		t.Run(c.String(), func(t *testing.T) {
			engine(t)
			runNaive(t, e, c, naiveSeed(t))
		})
	}
}

// naiveSeed returns a fresh seed, logged, or $VKATTN_SEED to replay a failure.
func naiveSeed(t *testing.T) uint64 {
	s := rand.Uint64()
	if env := os.Getenv("VKATTN_SEED"); env != "" {
		_, err := fmt.Sscan(env, &s)
		require.NoError(t, err, "VKATTN_SEED")
	}
	t.Logf("seed %d", s)
	return s
}

// runNaive runs a case through NaiveForwardInto on fresh random inputs, outputs poisoned, and
// checks o and lse against the float64 oracle.
func runNaive(t *testing.T, e *attention.Engine, c conformance.Case, seed uint64) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	p, opts := c.Params()
	qs, ks := c.Shapes()
	random := func(n int) ([]float32, []float64) {
		x, w := make([]float32, n), make([]float64, n)
		for i := range x {
			x[i] = c.DType.Round(float32(r.NormFloat64()))
			w[i] = float64(x[i])
		}
		return x, w
	}
	qh, q64 := random(p.TotalQ() * c.Hq * c.D)
	kh, k64 := random(p.TotalK() * c.Hk * c.D)
	vh, v64 := random(p.TotalK() * c.Hk * c.D)
	wantO, wantLSE, err := reference.Forward(p, q64, k64, v64)
	require.NoError(t, err)

	tensor := func(dt memory.DType, data []float32, shape []int) *memory.Tensor {
		x, err := e.NewTensor(dt, shape...)
		require.NoError(t, err)
		t.Cleanup(x.Close)
		if data != nil {
			require.NoError(t, x.Upload(ctx, data))
		} else {
			require.NoError(t, x.Fill(ctx, conformance.Poison))
		}
		return x
	}
	q, k, v := tensor(c.DType, qh, qs), tensor(c.DType, kh, ks), tensor(c.DType, vh, ks)
	o := tensor(c.DType, nil, qs)
	var lse *memory.Tensor
	if !c.NoLSE {
		lse = tensor(memory.F32, nil, qs[:len(qs)-1])
	}
	kernel, err := e.NaiveForwardInto(ctx, o, lse, q, k, v, opts)
	require.NoError(t, err, "seed %d", seed)
	require.Equal(t, attention.NaiveKernel, kernel)

	got, err := o.Download(ctx)
	require.NoError(t, err)
	rel, err := conformance.CompareOutput(got, wantO, conformance.Tolerance(c.DType))
	require.NoError(t, err, "seed %d", seed)
	t.Logf("relative error %.3g", rel)
	if lse != nil {
		gotLSE, err := lse.Download(ctx)
		require.NoError(t, err)
		require.NoError(t, conformance.CompareLSE(gotLSE, wantLSE), "seed %d", seed)
	}
}

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
		t.Skip(err)
	}
	require.NoError(t, err)
	require.Equal(t, attention.NaiveKernel, kernel)
	require.Len(t, times, 3)
	for _, d := range times {
		require.Positive(t, d)
	}
}
