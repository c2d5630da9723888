package reference

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

func randn(r *rand.Rand, n int) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = r.NormFloat64()
	}
	return x
}

func newRand(t *testing.T) *rand.Rand {
	s := rand.Uint64()
	t.Logf("seed %d", s)
	return rand.New(rand.NewPCG(s, 1))
}

func dense(hq, hk, d, lq, lk int) Params {
	return Params{Hq: hq, Hk: hk, D: d, CuSeqlensQ: Uniform(1, lq), CuSeqlensK: Uniform(1, lk), WindowLeft: -1, WindowRight: -1}
}

func requireClose(t *testing.T, want, got []float64, tol float64, what string) {
	t.Helper()
	require.Equal(t, len(want), len(got), what)
	for i := range want {
		if math.IsInf(want[i], 0) {
			require.Equal(t, want[i], got[i], "%s[%d]", what, i)
			continue
		}
		require.InDelta(t, want[i], got[i], tol*math.Max(1, math.Abs(want[i])), "%s[%d]", what, i)
	}
}

// A hand-computed case: one query, two keys, d=1.
func TestForwardByHand(t *testing.T) {
	p := dense(1, 1, 1, 1, 2)
	p.Scale = 1
	o, lse, err := Forward(p, []float64{1}, []float64{0, math.Log(3)}, []float64{10, 20})
	require.NoError(t, err)
	// scores 0 and ln 3: weights 1/4 and 3/4.
	require.InDelta(t, 17.5, o[0], 1e-12)
	require.InDelta(t, math.Log(4), lse[0], 1e-12)

	p.Softcap = 0.5 // scores become 0.5·tanh(2·s)
	o, lse, err = Forward(p, []float64{1}, []float64{0, math.Log(3)}, []float64{10, 20})
	require.NoError(t, err)
	s := 0.5 * math.Tanh(2*math.Log(3))
	w := math.Exp(s) / (1 + math.Exp(s))
	require.InDelta(t, 10*(1-w)+20*w, o[0], 1e-12)
	require.InDelta(t, math.Log(1+math.Exp(s)), lse[0], 1e-12)
}

// The masks, bottom-right aligned, against their definition written out per case.
func TestVisible(t *testing.T) {
	p := dense(1, 1, 1, 3, 5)
	p.Causal = true // lq=3, lk=5: query i sees keys 0..i+2
	for i := 0; i < 3; i++ {
		for j := 0; j < 5; j++ {
			require.Equal(t, j <= i+2, p.Visible(i, j, 3, 5), "causal i=%d j=%d", i, j)
		}
	}
	require.False(t, p.Visible(0, 0, 5, 3), "causal lq > lk: query 0 sees nothing")
	require.True(t, p.Visible(2, 0, 5, 3))
	p = dense(1, 1, 1, 4, 4)
	p.WindowLeft, p.WindowRight = 1, 2
	for i := 0; i < 4; i++ {
		for j := 0; j < 4; j++ {
			require.Equal(t, j >= i-1 && j <= i+2, p.Visible(i, j, 4, 4), "window i=%d j=%d", i, j)
		}
	}
	p.WindowLeft, p.WindowRight = math.MaxInt, math.MaxInt // no overflow at the extremes
	require.True(t, p.Visible(3, 0, 4, 4))
	require.True(t, p.Visible(0, 3, 4, 4))
	p.WindowLeft, p.WindowRight = 1, 2
	p.Causal = true // right bound becomes 0
	require.False(t, p.Visible(1, 2, 4, 4))
	require.True(t, p.Visible(1, 0, 4, 4))
	require.False(t, p.Visible(2, 0, 4, 4))
}

// Each output row is a convex combination of visible value rows, and a zero query averages them.
func TestZeroQueryAveragesVisibleValues(t *testing.T) {
	r := newRand(t)
	p := dense(2, 1, 3, 4, 6)
	p.Causal = true
	k, v := randn(r, 6*3), randn(r, 6*3)
	o, lse, err := Forward(p, make([]float64, 4*2*3), k, v)
	require.NoError(t, err)
	for i := 0; i < 4; i++ {
		n := i + 3 // keys 0..i+2
		require.InDelta(t, math.Log(float64(n)), lse[i*2], 1e-12)
		for c := 0; c < 3; c++ {
			mean := 0.0
			for j := 0; j < n; j++ {
				mean += v[j*3+c] / float64(n)
			}
			require.InDelta(t, mean, o[(i*2+1)*3+c], 1e-12)
		}
	}
}

// Permuting keys and values together changes nothing without a mask.
func TestKeyPermutationInvariance(t *testing.T) {
	r := newRand(t)
	p := dense(2, 2, 5, 7, 11)
	q, k, v := randn(r, 7*2*5), randn(r, 11*2*5), randn(r, 11*2*5)
	o, lse, err := Forward(p, q, k, v)
	require.NoError(t, err)
	perm := r.Perm(11)
	pk, pv := make([]float64, len(k)), make([]float64, len(v))
	for j, src := range perm {
		copy(pk[j*10:(j+1)*10], k[src*10:(src+1)*10])
		copy(pv[j*10:(j+1)*10], v[src*10:(src+1)*10])
	}
	o2, lse2, err := Forward(p, q, pk, pv)
	require.NoError(t, err)
	requireClose(t, o, o2, 1e-12, "o")
	requireClose(t, lse, lse2, 1e-12, "lse")
}

// Grouped-query attention equals multi-head attention with each K/V head repeated.
func TestGQAEqualsRepeatedHeads(t *testing.T) {
	r := newRand(t)
	const hq, hk, d, lq, lk = 6, 2, 4, 5, 9
	p := dense(hq, hk, d, lq, lk)
	p.Causal = true
	q, k, v := randn(r, lq*hq*d), randn(r, lk*hk*d), randn(r, lk*hk*d)
	o, lse, err := Forward(p, q, k, v)
	require.NoError(t, err)
	rep := func(x []float64) []float64 {
		out := make([]float64, lk*hq*d)
		for j := 0; j < lk; j++ {
			for h := 0; h < hq; h++ {
				copy(out[(j*hq+h)*d:][:d], x[(j*hk+h/(hq/hk))*d:][:d])
			}
		}
		return out
	}
	pm := dense(hq, hq, d, lq, lk)
	pm.Causal = true
	o2, lse2, err := Forward(pm, q, rep(k), rep(v))
	require.NoError(t, err)
	requireClose(t, o, o2, 1e-12, "o")
	requireClose(t, lse, lse2, 1e-12, "lse")
}

// A varlen batch equals each sequence computed alone.
func TestVarlenEqualsSeparateSequences(t *testing.T) {
	r := newRand(t)
	lq, lk := []int{3, 0, 5, 1}, []int{4, 2, 5, 0}
	const h, d = 2, 3
	p := Params{Hq: h, Hk: h, D: d, CuSeqlensQ: Cumulative(lq), CuSeqlensK: Cumulative(lk),
		Causal: true, WindowLeft: 2, WindowRight: -1}
	q, k, v := randn(r, p.TotalQ()*h*d), randn(r, p.TotalK()*h*d), randn(r, p.TotalK()*h*d)
	o, lse, err := Forward(p, q, k, v)
	require.NoError(t, err)
	for b := range lq {
		s := Params{Hq: h, Hk: h, D: d, CuSeqlensQ: Uniform(1, lq[b]), CuSeqlensK: Uniform(1, lk[b]),
			Causal: true, WindowLeft: 2, WindowRight: -1}
		qa, ka := p.CuSeqlensQ[b]*h*d, p.CuSeqlensK[b]*h*d
		ob, lseb, err := Forward(s, q[qa:qa+lq[b]*h*d], k[ka:ka+lk[b]*h*d], v[ka:ka+lk[b]*h*d])
		require.NoError(t, err)
		requireClose(t, ob, o[qa:qa+lq[b]*h*d], 0, "o")
		requireClose(t, lseb, lse[p.CuSeqlensQ[b]*h:p.CuSeqlensQ[b+1]*h], 0, "lse")
	}
	// The sequence with no keys has zero output and -Inf logsumexp.
	for i := p.CuSeqlensQ[3] * h; i < p.CuSeqlensQ[4]*h; i++ {
		require.True(t, math.IsInf(lse[i], -1))
	}
}

// Attention over two disjoint key sets, merged, equals attention over all keys.
func TestMergeOfSplitKeysEqualsWhole(t *testing.T) {
	r := newRand(t)
	const h, d, dv, lq, lk, split = 3, 4, 6, 5, 13, 8
	p := dense(h, h, d, lq, lk)
	p.DV = dv
	q, k, v := randn(r, lq*h*d), randn(r, lk*h*d), randn(r, lk*h*dv)
	o, lse, err := Forward(p, q, k, v)
	require.NoError(t, err)
	p1, p2 := dense(h, h, d, lq, split), dense(h, h, d, lq, lk-split)
	p1.DV, p2.DV = dv, dv
	p1.Scale, p2.Scale = p.EffectiveScale(), p.EffectiveScale()
	o1, l1, err := Forward(p1, q, k[:split*h*d], v[:split*h*dv])
	require.NoError(t, err)
	o2, l2, err := Forward(p2, q, k[split*h*d:], v[split*h*dv:])
	require.NoError(t, err)
	om, lm, err := Merge(o1, l1, o2, l2, dv)
	require.NoError(t, err)
	requireClose(t, o, om, 1e-12, "o")
	requireClose(t, lse, lm, 1e-12, "lse")

	// Merging with an empty partial is the identity.
	empty := make([]float64, len(l1))
	for i := range empty {
		empty[i] = math.Inf(-1)
	}
	om, lm, err = Merge(o, lse, make([]float64, len(o)), empty, dv)
	require.NoError(t, err)
	requireClose(t, o, om, 1e-15, "o")
	requireClose(t, lse, lm, 1e-15, "lse")
	_, _, err = Merge(o1, l1, o2[:3], l2, dv)
	require.Error(t, err)
}

// Softmax is shift invariant: a key-independent offset to the scores leaves o unchanged and
// moves the logsumexp by the offset. Adding a constant channel c to q and 1 to every k adds
// scale·c to every score.
func TestScoreShiftInvariance(t *testing.T) {
	r := newRand(t)
	const d, lq, lk = 4, 3, 7
	p := dense(1, 1, d, lq, lk)
	p.Scale = 0.5
	q, k, v := randn(r, lq*d), randn(r, lk*d), randn(r, lk*d)
	for i := 0; i < lq; i++ {
		q[i*d] = 0
	}
	for j := 0; j < lk; j++ {
		k[j*d] = 0
	}
	o, lse, err := Forward(p, q, k, v)
	require.NoError(t, err)
	for i := 0; i < lq; i++ {
		q[i*d] = 6
	}
	for j := 0; j < lk; j++ {
		k[j*d] = 1
	}
	o2, lse2, err := Forward(p, q, k, v)
	require.NoError(t, err)
	requireClose(t, o, o2, 1e-12, "o")
	for i := range lse {
		require.InDelta(t, lse[i]+3, lse2[i], 1e-12)
	}
}

// NaN in one query row stays in that row.
func TestNaNStaysInItsRow(t *testing.T) {
	r := newRand(t)
	p := dense(1, 1, 2, 3, 4)
	q, k, v := randn(r, 6), randn(r, 8), randn(r, 8)
	q[2] = math.NaN() // row 1
	o, lse, err := Forward(p, q, k, v)
	require.NoError(t, err)
	for i := 0; i < 3; i++ {
		require.Equal(t, i == 1, math.IsNaN(lse[i]), "lse[%d]", i)
		require.Equal(t, i == 1, math.IsNaN(o[i*2]), "o[%d]", i)
	}
}

func TestValidate(t *testing.T) {
	ok := dense(4, 2, 8, 3, 3)
	require.NoError(t, ok.Validate())
	bad := map[string]func(*Params){
		"Hq multiple":   func(p *Params) { p.Hk = 3 },
		"zero heads":    func(p *Params) { p.Hq = 0 },
		"zero dim":      func(p *Params) { p.D = 0 },
		"window":        func(p *Params) { p.WindowLeft = -2 },
		"softcap":       func(p *Params) { p.Softcap = math.NaN() },
		"scale":         func(p *Params) { p.Scale = math.Inf(1) },
		"cu start":      func(p *Params) { p.CuSeqlensQ = []int{1, 3} },
		"cu decreasing": func(p *Params) { p.CuSeqlensK = []int{0, 3, 2} },
		"cu short":      func(p *Params) { p.CuSeqlensK = []int{0} },
		"batch":         func(p *Params) { p.CuSeqlensK = []int{0, 1, 3} },
	}
	for name, f := range bad {
		p := ok
		f(&p)
		require.Error(t, p.Validate(), name)
	}
	_, _, err := Forward(ok, make([]float64, 5), make([]float64, 3*2*8), make([]float64, 3*2*8))
	require.ErrorContains(t, err, "q has 5 values")
}

func TestScoresMatchesForward(t *testing.T) {
	r := newRand(t)
	p := dense(2, 1, 3, 4, 5)
	p.Causal, p.Softcap = true, 1.5
	q, k, v := randn(r, 4*2*3), randn(r, 5*3), randn(r, 5*3)
	s, err := p.Scores(q, k, 0, 1)
	require.NoError(t, err)
	_, lse, err := Forward(p, q, k, v)
	require.NoError(t, err)
	for i := 0; i < 4; i++ {
		sum := 0.0
		for j := 0; j < 5; j++ {
			sum += math.Exp(s[i*5+j])
		}
		require.InDelta(t, math.Log(sum), lse[i*2+1], 1e-12)
	}
	_, err = p.Scores(q, k, 1, 0)
	require.Error(t, err)
}

func TestForwardRowsMatchesForward(t *testing.T) {
	r := newRand(t)
	p := Params{Hq: 4, Hk: 2, D: 3, DV: 5, CuSeqlensQ: Cumulative([]int{4, 0, 6}), CuSeqlensK: Cumulative([]int{3, 2, 9}),
		Causal: true, WindowLeft: 4, WindowRight: -1, Softcap: 3}
	q, k, v := randn(r, p.TotalQ()*4*3), randn(r, p.TotalK()*2*3), randn(r, p.TotalK()*2*5)
	o, lse, err := Forward(p, q, k, v)
	require.NoError(t, err)
	tokens := []int{9, 0, 4, 3}
	or, lr, err := ForwardRows(p, q, k, v, tokens)
	require.NoError(t, err)
	for n, tok := range tokens {
		requireClose(t, o[tok*4*5:(tok+1)*4*5], or[n*4*5:(n+1)*4*5], 0, "o")
		requireClose(t, lse[tok*4:(tok+1)*4], lr[n*4:(n+1)*4], 0, "lse")
	}
	_, _, err = ForwardRows(p, q, k, v, []int{10})
	require.ErrorContains(t, err, "out of range")
}
