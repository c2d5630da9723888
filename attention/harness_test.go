package attention_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/attention"
	"github.com/vkattn/vkattn/attention/reference"
	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/internal/testenv"
	"github.com/vkattn/vkattn/memory"
)

var (
	shared     *attention.Engine
	sharedErr  error
	sharedOnce sync.Once
)

func TestMain(m *testing.M) {
	code := m.Run()
	shared.Close()
	os.Exit(code)
}

// engine returns the engine shared by the package's tests; validation errors fail the test that
// was running when they were reported.
func engine(t testing.TB) *attention.Engine {
	t.Helper()
	sharedOnce.Do(func() {
		shared, sharedErr = attention.New(attention.Config{Validation: testenv.Validation(), PipelineCacheDir: "-"})
	})
	if sharedErr != nil {
		testenv.NoDevice(t, sharedErr)
	}
	testenv.CheckValidation(t, shared.Instance())
	t.Cleanup(func() { testenv.CheckValidation(t, shared.Instance()) })
	return shared
}

// tolerance is the largest error allowed, relative to the reference output's largest
// magnitude, by storage type (DESIGN: fp32 1e-5, fp16 2e-3, bf16 1e-2).
func tolerance(dt memory.DType) float64 {
	return map[memory.DType]float64{memory.F32: 1e-5, memory.F16: 2e-3, memory.BF16: 1e-2}[dt]
}

// fcase is one forward conformance case.
type fcase struct {
	dtype    memory.DType
	d        int
	hq, hk   int
	lq, lk   []int // per-sequence lengths; one entry and !varlen means a dense batch of 1
	batch    int   // dense batch size (when !varlen)
	varlen   bool
	causal   bool
	window   *attention.Window
	softcap  float32
	scale    float32
	tier     devices.Tier
	noLSE    bool
}

func (c fcase) String() string {
	s := fmt.Sprintf("%s/d%d/h%d:%d/q%v/k%v", c.dtype, c.d, c.hq, c.hk, c.lq, c.lk)
	if c.varlen {
		s += "/varlen"
	} else if c.batch > 1 {
		s += fmt.Sprintf("/b%d", c.batch)
	}
	if c.causal {
		s += "/causal"
	}
	if c.window != nil {
		s += fmt.Sprintf("/win%d,%d", c.window.Left, c.window.Right)
	}
	if c.softcap != 0 {
		s += fmt.Sprintf("/cap%g", c.softcap)
	}
	return s + "/" + c.tier.String()
}

// randn returns n standard normal values rounded to the storage type.
func randn(r *rand.Rand, n int, dt memory.DType) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = dt.Round(float32(r.NormFloat64()))
	}
	return out
}

func widen(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

// params returns the reference parameters and the engine options of a case.
func (c fcase) params() (reference.Params, attention.Options) {
	var cuQ, cuK []int
	if c.varlen {
		cuQ, cuK = reference.Cumulative(c.lq), reference.Cumulative(c.lk)
	} else {
		cuQ, cuK = reference.Uniform(c.batch, c.lq[0]), reference.Uniform(c.batch, c.lk[0])
	}
	p := reference.Params{Hq: c.hq, Hk: c.hk, D: c.d, CuSeqlensQ: cuQ, CuSeqlensK: cuK,
		Scale: float64(c.scale), Causal: c.causal, WindowLeft: -1, WindowRight: -1, Softcap: float64(c.softcap)}
	opts := attention.Options{Scale: c.scale, Causal: c.causal, Window: c.window, Softcap: c.softcap, LSE: !c.noLSE, Tier: c.tier}
	if c.window != nil {
		p.WindowLeft, p.WindowRight = c.window.Left, c.window.Right
	}
	if c.varlen {
		opts.CuSeqlensQ, opts.CuSeqlensK = cuQ, cuK
	}
	return p, opts
}

func (c fcase) shapes(p reference.Params) (qs, ks []int) {
	if c.varlen {
		return []int{p.TotalQ(), c.hq, c.d}, []int{p.TotalK(), c.hk, c.d}
	}
	return []int{c.batch, c.lq[0], c.hq, c.d}, []int{c.batch, c.lk[0], c.hk, c.d}
}

// runCase runs a case on fresh random inputs with poisoned outputs and checks it against the
// float64 reference. It returns the kernel that ran and the measured relative error.
func runCase(t *testing.T, e *attention.Engine, c fcase, seed uint64) (string, float64) {
	t.Helper()
	if c.batch == 0 {
		c.batch = 1
	}
	ctx := context.Background()
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	p, opts := c.params()
	qs, ks := c.shapes(p)
	nq, nk := p.TotalQ()*c.hq*c.d, p.TotalK()*c.hk*c.d
	qh, kh, vh := randn(r, nq, c.dtype), randn(r, nk, c.dtype), randn(r, nk, c.dtype)
	wantO, wantLSE, err := reference.Forward(p, widen(qh), widen(kh), widen(vh))
	require.NoError(t, err)

	q, err := e.Upload(ctx, c.dtype, qh, qs...)
	require.NoError(t, err)
	defer q.Close()
	k, err := e.Upload(ctx, c.dtype, kh, ks...)
	require.NoError(t, err)
	defer k.Close()
	v, err := e.Upload(ctx, c.dtype, vh, ks...)
	require.NoError(t, err)
	defer v.Close()
	o, err := e.NewTensor(c.dtype, qs...)
	require.NoError(t, err)
	defer o.Close()
	require.NoError(t, o.Fill(ctx, 0x7fc17fc1)) // NaN in every storage type: unwritten elements fail
	var lse *memory.Tensor
	if !c.noLSE {
		lse, err = e.NewTensor(memory.F32, qs[:len(qs)-1]...)
		require.NoError(t, err)
		defer lse.Close()
		require.NoError(t, lse.Fill(ctx, 0x7fc17fc1))
	}
	kernel, err := e.ForwardInto(ctx, o, lse, q, k, v, opts)
	require.NoError(t, err, "%v seed %d", c, seed)
	got, err := o.Download(ctx)
	require.NoError(t, err)

	maxRef, maxErr := 0.0, 0.0
	for i, w := range wantO {
		maxRef = math.Max(maxRef, math.Abs(w))
		d := math.Abs(float64(got[i]) - w)
		if math.IsNaN(d) {
			t.Fatalf("%v seed %d kernel %s: o[%d] = %v, want %v (unwritten or NaN)", c, seed, kernel, i, got[i], w)
		}
		maxErr = math.Max(maxErr, d)
	}
	rel := maxErr / math.Max(maxRef, 1e-30)
	if maxRef == 0 {
		rel = maxErr
	}
	require.LessOrEqual(t, rel, tolerance(c.dtype), "%v seed %d kernel %s: relative error %.3g", c, seed, kernel, rel)
	if lse != nil {
		gotLSE, err := lse.Download(ctx)
		require.NoError(t, err)
		for i, w := range wantLSE {
			g := float64(gotLSE[i])
			if math.IsInf(w, -1) {
				require.True(t, math.IsInf(g, -1), "%v seed %d: lse[%d] = %v, want -Inf", c, seed, i, g)
				continue
			}
			require.InDelta(t, w, g, 1e-4*math.Max(1, math.Abs(w)), "%v seed %d kernel %s: lse[%d]", c, seed, kernel, i)
		}
	}
	return kernel, rel
}

// seed returns a fresh seed, or $VKATTN_SEED to replay a failure.
func seed(t *testing.T) uint64 {
	if s := os.Getenv("VKATTN_SEED"); s != "" {
		var v uint64
		fmt.Sscan(s, &v)
		return v
	}
	return rand.Uint64()
}
