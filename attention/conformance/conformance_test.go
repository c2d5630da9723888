package conformance

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/attention"
	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/internal/testenv"
	"github.com/vkattn/vkattn/memory"
)

func TestCompareOutput(t *testing.T) {
	want := []float64{1, -2, 0.5}
	rel, err := CompareOutput([]float32{1, -2, 0.5}, want, 1e-5)
	require.NoError(t, err)
	require.Zero(t, rel)
	_, err = CompareOutput([]float32{1, -2.01, 0.5}, want, 1e-3)
	require.ErrorContains(t, err, "relative error")
	_, err = CompareOutput([]float32{1, float32(math.NaN()), 0.5}, want, 1)
	require.ErrorContains(t, err, "unwritten")
	_, err = CompareOutput([]float32{1, 2}, want, 1)
	require.Error(t, err)
	// NaN expected (a NaN input row) must be NaN.
	_, err = CompareOutput([]float32{float32(math.NaN()), 0}, []float64{math.NaN(), 0}, 1e-5)
	require.NoError(t, err)
	_, err = CompareOutput([]float32{0, 0}, []float64{math.NaN(), 0}, 1e-5)
	require.Error(t, err)
}

func TestCompareLSE(t *testing.T) {
	inf := math.Inf(-1)
	require.NoError(t, CompareLSE([]float32{1, float32(inf)}, []float64{1, inf}))
	require.Error(t, CompareLSE([]float32{1, 0}, []float64{1, inf}))
	require.Error(t, CompareLSE([]float32{1.01, float32(inf)}, []float64{1, inf}))
	require.Error(t, CompareLSE([]float32{float32(math.NaN())}, []float64{1}))
}

func TestCasesCoverTheSpec(t *testing.T) {
	cs := ForwardCases(devices.TierScalar)
	seen := map[string]bool{}
	for _, c := range cs {
		seen[c.DType.String()] = true
		seen[fmt.Sprint("d", c.D)] = true
		if c.Varlen {
			seen["varlen"] = true
		}
		if c.Causal && c.Lq[0] > c.Lk[0] {
			seen["causal rows without keys"] = true
		}
		if c.Window != nil {
			seen["window"] = true
		}
		if c.Softcap > 0 {
			seen["softcap"] = true
		}
		if c.Hk == 1 && c.Hq > 1 {
			seen["mqa"] = true
		}
		if c.HeadsMajor {
			seen["heads-major"] = true
		}
		require.Equal(t, devices.TierScalar, c.Tier)
	}
	for _, d := range attention.HeadDims {
		require.True(t, seen[fmt.Sprint("d", d)], "head dim %d", d)
	}
	for _, want := range []string{"f32", "f16", "bf16", "varlen", "causal rows without keys", "window", "softcap", "mqa", "heads-major"} {
		require.True(t, seen[want], want)
	}
	// Each dtype the tier takes, at head dims 32, 80 and 256, with each mask, soft cap and varlen,
	// at lengths past two tiles of 64.
	long := map[string]bool{}
	for _, c := range cs {
		if c.Lq[0] > 128 && c.Lk[0] > 128 {
			long[fmt.Sprint(c.DType, c.D, c.Causal, c.Window != nil, c.Softcap > 0, c.Varlen)] = true
		}
	}
	for _, dt := range Inputs(devices.TierScalar) {
		for _, d := range []int{32, 80, 256} {
			for _, f := range [][4]bool{{true, false, false, false}, {false, true, false, false}, {true, true, false, false},
				{false, false, true, false}, {false, false, false, true}} {
				key := fmt.Sprint(dt, d, f[0], f[1], f[2], f[3])
				require.True(t, long[key], "long case %s", key)
			}
		}
	}
}

func TestCaseNames(t *testing.T) {
	names := map[string]bool{}
	for _, cs := range [][]Case{ForwardCases(devices.TierScalar), NaiveCases(), DecodeCases(devices.TierScalar)} {
		for _, c := range cs {
			require.False(t, names[c.String()], "two cases named %s", c)
			names[c.String()] = true
		}
	}
	for _, c := range NaiveCases() {
		require.True(t, c.Naive)
		require.Equal(t, devices.TierScalar, c.Tier)
		require.Equal(t, NaiveTier, c.TierName())
		require.True(t, strings.HasSuffix(c.String(), "/naive"), c.String())
	}
	for _, c := range DecodeCases(devices.TierSubgroup) {
		require.True(t, c.Decode)
		require.Equal(t, devices.TierSubgroup, c.Tier)
		require.Equal(t, "decode-subgroup", c.TierName())
		require.Contains(t, c.String(), "/decode", c.String())
	}
}

// The decode matrix covers what Decode takes: every dtype and head dim, GQA ratios 1, 4 and 8,
// 1 and 16 new tokens, causal and not, varlen with an empty sequence and one without keys, split
// counts of one, several, more than the key tiles and more than the keys, and heads-major K and V
// of every storage type.
func TestDecodeCasesCoverTheSpec(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range DecodeCases(devices.TierScalar) {
		require.True(t, c.Decode)
		seen[c.DType.String()] = true
		seen[fmt.Sprint("d", c.D)] = true
		seen[fmt.Sprint("gqa", c.Hq/c.Hk)] = true
		maxLq, maxLk := 0, 0
		for i := range c.Lq {
			maxLq, maxLk = max(maxLq, c.Lq[i]), max(maxLk, c.Lk[i])
			require.LessOrEqual(t, c.Lq[i], attention.MaxDecodeQueries, c.String())
			if c.Varlen && c.Lq[i] == 0 {
				seen["empty sequence"] = true
			}
			if c.Varlen && c.Lk[i] == 0 && c.Lq[i] > 0 {
				seen["sequence without keys"] = true
			}
		}
		seen[fmt.Sprint("q", maxLq)] = true
		seen[fmt.Sprint("heads-major ", c.HeadsMajor, " ", c.DType)] = true
		seen[fmt.Sprint("causal ", c.Causal)] = true
		switch {
		case c.Splits == 1:
			seen["one split"] = true
		case c.Splits > maxLk:
			seen["more splits than keys"] = true
		case c.Splits > (maxLk+31)/32:
			seen["more splits than key tiles"] = true
		case c.Splits > 1:
			seen["several splits"] = true
		case c.Splits == 0:
			seen["automatic splits"] = true
		}
	}
	want := []string{"f32", "f16", "bf16", "gqa1", "gqa4", "gqa8", "q1", "q16", "causal true", "causal false",
		"empty sequence", "sequence without keys", "one split", "several splits", "more splits than key tiles",
		"more splits than keys", "automatic splits"}
	for _, d := range attention.HeadDims {
		want = append(want, fmt.Sprint("d", d))
	}
	for _, dt := range []string{"f32", "f16", "bf16"} {
		want = append(want, "heads-major true "+dt)
	}
	for _, w := range want {
		require.True(t, seen[w], w)
	}
}

// testEngine opens an engine for the test, closed at cleanup; validation errors, those reported
// as its device is destroyed (objects left alive) included, fail the test.
func testEngine(t testing.TB) *attention.Engine {
	t.Helper()
	e, err := attention.New(attention.Config{Validation: testenv.Validation(), PipelineCacheDir: "-"})
	if err != nil {
		testenv.NoDevice(t, err)
	}
	t.Cleanup(func() {
		e.Close()
		testenv.CheckValidation(t, e.Instance())
	})
	return e
}

// cleanupRecorder is a testing.TB whose cleanups run when the test says and whose failures are
// recorded, not reported.
type cleanupRecorder struct {
	testing.TB
	cleanups []func()
	failed   bool
	msg      string
}

func (r *cleanupRecorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }

func (r *cleanupRecorder) Errorf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
}

func (r *cleanupRecorder) Fatalf(format string, args ...any) { r.Errorf(format, args...) }

func (r *cleanupRecorder) runCleanups() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
	r.cleanups = nil
}

// A VkBuffer left alive on a test engine's device fails the test when the engine closes.
func TestEngineLeakFailsTest(t *testing.T) {
	r := &cleanupRecorder{TB: t}
	e := testEngine(r)
	if !e.Instance().Validation() {
		r.runCleanups()
		t.Skip("validation is off: no leak is reported")
	}
	_, err := e.Allocator().Device().NewBuffer(256) // never closed
	require.NoError(t, err)
	r.runCleanups()
	require.True(t, r.failed, "a leaked VkBuffer went unreported")
	require.Contains(t, r.msg, "VkBuffer")
}

// The suite must notice a kernel that computes the wrong thing: here the engine is asked for a
// different mask, scale or soft cap than the oracle (forward, naive baseline and decode).
func TestRunDetectsWrongResults(t *testing.T) {
	e := testEngine(t)
	ctx := context.Background()
	for _, kind := range []string{"forward", "naive", "decode"} {
		naive := kind == "naive"
		c := Case{DType: memory.F16, D: 32, Hq: 2, Hk: 1, Lq: []int{13}, Lk: []int{21}, Tier: devices.TierScalar, Naive: naive,
			Decode: kind == "decode", Splits: 2}
		kernel, _, err := run(ctx, e, c, rand.Uint64(), nil)
		require.NoError(t, err)
		require.Equal(t, naive, kernel == attention.NaiveKernel, kernel)
		require.Equal(t, c.Decode, kernel == "decode_scalar+merge", kernel)
		for name, tamper := range map[string]func(*attention.Options){
			"causal":  func(o *attention.Options) { o.Causal = true },
			"scale":   func(o *attention.Options) { o.Scale = 0.2 },
			"softcap": func(o *attention.Options) { o.Softcap = 0.5 },
			"window":  func(o *attention.Options) { o.Window = &attention.Window{Left: 2, Right: 2} },
		} {
			_, _, err := run(ctx, e, c, rand.Uint64(), tamper)
			require.Error(t, err, "%s: %s", c, name)
		}
	}
}

// The suite runs the naive baseline's cases, under their own tier, whenever the scalar tier is
// selected, unless NoNaive.
func TestSelection(t *testing.T) {
	e := testEngine(t)
	scalar := []devices.Tier{devices.TierScalar}
	tiers, cases := Selection{Tiers: scalar}.Cases(e)
	require.Equal(t, []string{"scalar", NaiveTier, "decode-scalar"}, tiers)
	require.Len(t, cases, len(ForwardCases(devices.TierScalar))+len(NaiveCases())+len(DecodeCases(devices.TierScalar)))
	tiers, cases = Selection{Tiers: scalar, NoNaive: true, NoDecode: true}.Cases(e)
	require.Equal(t, []string{"scalar"}, tiers)
	require.Len(t, cases, len(ForwardCases(devices.TierScalar)))
	tiers, cases = Selection{Tiers: scalar, Match: regexp.MustCompile(`^f16/d32/.*/causal/naive$`)}.Cases(e)
	require.Equal(t, []string{"scalar", NaiveTier, "decode-scalar"}, tiers)
	require.NotEmpty(t, cases)
	for _, c := range cases {
		require.True(t, c.Naive, c.String())
	}
	tiers, _ = Selection{}.Cases(e)
	for _, tier := range e.ForwardTiers() {
		require.Contains(t, tiers, tier.String())
	}
	decode := e.DecodeTiers()
	require.NotEmpty(t, decode)
	require.Equal(t, NaiveTier, tiers[len(tiers)-len(decode)-1])
	for i, tier := range decode {
		require.Equal(t, DecodeTierName(tier), tiers[len(tiers)-len(decode)+i])
	}
	tiers, cases = Selection{NoDecode: true}.Cases(e)
	require.Equal(t, NaiveTier, tiers[len(tiers)-1])
	for _, c := range cases {
		require.False(t, c.Decode, c.String())
	}
}

func TestSuiteReport(t *testing.T) {
	e := testEngine(t)
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	r, err := Suite(ctx, e, Selection{Tiers: []devices.Tier{devices.TierScalar}}, func(done, total int, o Outcome) {
		n = done
		require.True(t, o.Passed(), o.Error)
		if done == 3 {
			cancel() // a short run: the report holds what ran
		}
	})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 3, n)
	require.Len(t, r.Outcomes, 3)
	require.Zero(t, r.Failed())
	var js, md bytes.Buffer
	require.NoError(t, r.WriteJSON(&js))
	require.Contains(t, js.String(), `"rel_err"`)
	require.NoError(t, r.WriteMarkdown(&md))
	require.True(t, strings.HasPrefix(md.String(), "# Conformance: "+e.Profile().Name))
	require.Contains(t, md.String(), "| scalar | 3 | 3 |")
}
