package attention_test

import (
	"context"
	"math"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/attention"
	"github.com/vkattn/vkattn/attention/conformance"
	"github.com/vkattn/vkattn/attention/reference"
	"github.com/vkattn/vkattn/memory"
)

// mergeProblem is attention of varlen sequences whose keys are cut into parts: the oracle's
// partial results over each part (fp32, as Merge takes them) and its result over all keys.
type mergeProblem struct {
	parts          int
	shape, lseShp  []int // one partial's output and logsumexp shapes
	partO, partLSE []float32
	wantO, wantLSE []float64
	foldO, foldLSE []float64 // the partials merged pairwise by reference.Merge
}

// newMergeProblem draws q, k and v from seed for sequences of lq query and lk key tokens (hq
// query heads, hk kv heads, head dim d), cuts each sequence's keys at cuts[b] (parts+1 offsets
// from 0 to lk[b]; equal ones make a part without keys) and computes the partials by the oracle.
// Partial outputs of rows that see no key in their part are NaN: Merge must not read them.
func newMergeProblem(t *testing.T, seed uint64, hq, hk, d int, lq, lk []int, cuts [][]int, dense bool) *mergeProblem {
	t.Helper()
	r := newRand(seed)
	cuQ, cuK := reference.Cumulative(lq), reference.Cumulative(lk)
	p := reference.Params{Hq: hq, Hk: hk, D: d, CuSeqlensQ: cuQ, CuSeqlensK: cuK, WindowLeft: -1, WindowRight: -1}
	q := widen(randVals(r, memory.F32, p.TotalQ()*hq*d))
	k := widen(randVals(r, memory.F32, p.TotalK()*hk*d))
	v := widen(randVals(r, memory.F32, p.TotalK()*hk*d))
	m := &mergeProblem{parts: len(cuts[0]) - 1}
	var err error
	m.wantO, m.wantLSE, err = reference.Forward(p, q, k, v)
	require.NoError(t, err)
	for s := 0; s < m.parts; s++ {
		// Part s: keys [cuts[b][s], cuts[b][s+1]) of each sequence b, as a varlen batch.
		var ks, vs []float64
		plen := make([]int, len(lk))
		for b := range lk {
			lo, hi := cutsAt(t, cuts[b], s, lk[b])
			plen[b] = hi - lo
			ks = append(ks, k[(cuK[b]+lo)*hk*d:(cuK[b]+hi)*hk*d]...)
			vs = append(vs, v[(cuK[b]+lo)*hk*d:(cuK[b]+hi)*hk*d]...)
		}
		ps := p
		ps.CuSeqlensK = reference.Cumulative(plen)
		o, lse, err := reference.Forward(ps, q, ks, vs)
		require.NoError(t, err)
		for i, x := range o {
			if math.IsInf(lse[i/d], -1) {
				x = math.NaN()
			}
			m.partO = append(m.partO, float32(x))
		}
		for _, x := range lse {
			m.partLSE = append(m.partLSE, float32(x))
		}
		if s == 0 {
			m.foldO, m.foldLSE = o, lse
			continue
		}
		m.foldO, m.foldLSE, err = reference.Merge(m.foldO, m.foldLSE, o, lse, d)
		require.NoError(t, err)
	}
	m.shape, m.lseShp = []int{p.TotalQ(), hq, d}, []int{p.TotalQ(), hq}
	if dense {
		m.shape, m.lseShp = []int{len(lq), lq[0], hq, d}, []int{len(lq), lq[0], hq}
	}
	return m
}

func cutsAt(t *testing.T, cut []int, s, lk int) (int, int) {
	t.Helper()
	require.True(t, cut[0] == 0 && cut[len(cut)-1] == lk, "cuts %v of %d keys", cut, lk)
	return cut[s], cut[s+1]
}

// upload puts the problem's partials on e.
func (m *mergeProblem) upload(t *testing.T, e *attention.Engine) (partO, partLSE *memory.Tensor) {
	t.Helper()
	ctx := context.Background()
	partO, err := e.Upload(ctx, memory.F32, m.partO, append([]int{m.parts}, m.shape...)...)
	require.NoError(t, err)
	t.Cleanup(partO.Close)
	partLSE, err = e.Upload(ctx, memory.F32, m.partLSE, append([]int{m.parts}, m.lseShp...)...)
	require.NoError(t, err)
	t.Cleanup(partLSE.Close)
	return partO, partLSE
}

// evenCuts splits n keys into parts ranges as evenly as integers allow (some empty where parts >
// n): the parts + 1 cuts.
func evenCuts(n, parts int) []int {
	cuts := make([]int, parts+1)
	for i := range cuts {
		cuts[i] = i * n / parts
	}
	return cuts
}

// TestMerge: Merge of the oracle's partials over disjoint key ranges (2 to 41 parts, parts
// without keys, a sequence without keys, rows that see no key in some parts) equals the oracle
// over all keys, as the oracle's own pairwise merge does; into fp32, fp16 and bf16 outputs,
// dense and varlen, and a strided output; outputs poisoned.
func TestMerge(t *testing.T) {
	e := engine(t)
	ctx := context.Background()
	s := seed(t)
	t.Logf("seed %d (VKATTN_SEED replays it)", s)
	const hq, hk, d = 4, 2, 64
	varlen := newMergeProblem(t, s, hq, hk, d, []int{3, 2, 5, 1}, []int{37, 0, 20, 9},
		[][]int{{0, 10, 10, 30, 37}, {0, 0, 0, 0, 0}, {0, 1, 2, 20, 20}, {0, 9, 9, 9, 9}}, false)
	dense := newMergeProblem(t, s+1, hq, hk, d, []int{4, 4}, []int{29, 29},
		[][]int{{0, 16, 29}, {0, 0, 29}}, true)
	// More partials than the kernel reads in one batch (8), some without keys.
	many := newMergeProblem(t, s+2, hq, hk, d, []int{2, 3, 1}, []int{90, 30, 0},
		[][]int{evenCuts(90, 41), evenCuts(30, 41), evenCuts(0, 41)}, false)
	for name, m := range map[string]*mergeProblem{"varlen": varlen, "dense": dense, "many": many} {
		// The oracle's pairwise merge is the whole, and so is the partials' rounding to fp32.
		_, err := conformance.CompareOutput(toF32(m.foldO), m.wantO, 1e-6)
		require.NoError(t, err, name)
		require.NoError(t, conformance.CompareLSE(toF32(m.foldLSE), m.wantLSE), name)
		partO, partLSE := m.upload(t, e)

		t.Run(name+"/Merge", func(t *testing.T) {
			engine(t)
			res, err := e.Merge(ctx, partO, partLSE)
			require.NoError(t, err)
			defer res.Close()
			require.Equal(t, "merge", res.Kernel)
			require.Equal(t, memory.F32, res.O.DType)
			require.Equal(t, m.shape, res.O.Shape)
			checkMerged(t, res.O, res.LSE, m, memory.F32)
		})
		for _, dt := range []memory.DType{memory.F32, memory.F16, memory.BF16} {
			t.Run(name+"/MergeInto/"+dt.String(), func(t *testing.T) {
				engine(t)
				o := newTensor(t, e, dt, m.shape...)
				lse := newTensor(t, e, memory.F32, m.lseShp...)
				require.NoError(t, o.Fill(ctx, conformance.Poison))
				require.NoError(t, lse.Fill(ctx, conformance.Poison))
				kernel, err := e.MergeInto(ctx, o, lse, partO, partLSE)
				require.NoError(t, err)
				require.Equal(t, "merge", kernel)
				checkMerged(t, o, lse, m, dt)
			})
		}
	}
	t.Run("strided", func(t *testing.T) {
		engine(t)
		// o is every other head of a [tokens, 2*hq, d] tensor, from head 1; no logsumexp.
		m := varlen
		partO, partLSE := m.upload(t, e)
		wide := newTensor(t, e, memory.F16, m.shape[0], 2*hq, d)
		require.NoError(t, wide.Fill(ctx, conformance.Poison))
		o := view(t, wide, m.shape, []int{2 * hq * d, 2 * d, 1}, d)
		_, err := e.MergeInto(ctx, o, nil, partO, partLSE)
		require.NoError(t, err)
		all, err := wide.Download(ctx)
		require.NoError(t, err)
		var got []float32
		for i, x := range all {
			if (i/d)%2 == 1 {
				got = append(got, x)
			} else if math.Float32bits(x) != conformance.Poison && !math.IsNaN(float64(x)) {
				t.Fatalf("element %d, outside o, was written: %v", i, x)
			}
		}
		_, err = conformance.CompareOutput(got, m.wantO, conformance.Tolerance(memory.F16))
		require.NoError(t, err)
	})
}

// checkMerged compares a merged output (stored as dt) and logsumexp with the whole.
func checkMerged(t *testing.T, o, lse *memory.Tensor, m *mergeProblem, dt memory.DType) {
	t.Helper()
	ctx := context.Background()
	got, err := o.Download(ctx)
	require.NoError(t, err)
	_, err = conformance.CompareOutput(got, m.wantO, conformance.Tolerance(dt))
	require.NoError(t, err)
	gotLSE, err := lse.Download(ctx)
	require.NoError(t, err)
	require.NoError(t, conformance.CompareLSE(gotLSE, m.wantLSE))
	// Rows without any key: O = 0 exactly, logsumexp -Inf.
	d := m.shape[len(m.shape)-1]
	empty := 0
	for row, w := range m.wantLSE {
		if math.IsInf(w, -1) {
			empty++
			require.True(t, math.IsInf(float64(gotLSE[row]), -1))
			for c := 0; c < d; c++ {
				require.Zero(t, got[row*d+c], "row %d", row)
			}
		}
	}
	if len(m.shape) == 3 {
		require.Positive(t, empty, "the varlen problem has rows without keys")
	}
}

func toF32(x []float64) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32(v)
	}
	return out
}

// TestMergeNaNInf: a NaN logsumexp in one partial makes its row NaN, and so does +Inf in two
// partials (exp(inf - inf)); a NaN in a weighed partial output stays in its element; a partial
// at -Inf is not read; every other row is exact.
func TestMergeNaNInf(t *testing.T) {
	e := engine(t)
	ctx := context.Background()
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	const parts, rows, d = 3, 4, 32 // [parts, 4 tokens, 1 head, 32]
	partO := make([]float32, parts*rows*d)
	for i := range partO {
		partO[i] = float32(i%7) - 3
	}
	partLSE := []float32{
		nan, 1, 2, inf, // part 0
		0, 1, -1, inf, // part 1
		2, 0.5, 1, 3, // part 2
	}
	partO[(1*rows+1)*d+5] = nan // part 1, row 1, element 5
	po, err := e.Upload(ctx, memory.F32, partO, parts, rows, 1, d)
	require.NoError(t, err)
	defer po.Close()
	pl, err := e.Upload(ctx, memory.F32, partLSE, parts, rows, 1)
	require.NoError(t, err)
	defer pl.Close()
	res, err := e.Merge(ctx, po, pl)
	require.NoError(t, err)
	defer res.Close()
	got, err := res.O.Download(ctx)
	require.NoError(t, err)
	gotLSE, err := res.LSE.Download(ctx)
	require.NoError(t, err)
	// The oracle's pairwise merge, in float64.
	wo, wl := widen(partO[:rows*d]), widen(partLSE[:rows])
	for s := 1; s < parts; s++ {
		wo, wl, err = reference.Merge(wo, wl, widen(partO[s*rows*d:(s+1)*rows*d]), widen(partLSE[s*rows:(s+1)*rows]), d)
		require.NoError(t, err)
	}
	for row := 0; row < rows; row++ {
		nanRow := row == 0 || row == 3
		require.Equal(t, nanRow, math.IsNaN(float64(gotLSE[row])), "lse[%d] = %v", row, gotLSE[row])
		require.Equal(t, nanRow, math.IsNaN(wl[row]), "oracle row %d", row)
		for c := 0; c < d; c++ {
			g, w := float64(got[row*d+c]), wo[row*d+c]
			require.Equal(t, math.IsNaN(w), math.IsNaN(g), "o[%d, %d] = %v, want %v", row, c, g, w)
			if !math.IsNaN(w) {
				require.InDelta(t, w, g, 1e-5, "o[%d, %d]", row, c)
			}
		}
		if !nanRow {
			require.InDelta(t, wl[row], float64(gotLSE[row]), 1e-5)
		}
	}
	require.True(t, math.IsNaN(float64(got[1*d+5])), "the NaN of part 1 row 1 stays in its element")
	require.False(t, math.IsNaN(float64(got[1*d+6])))
}
